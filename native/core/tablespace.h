/* Room for new tables, taken before LMDB maps anything.
 *
 * LMDB maps its lock file and (through the page cache) its data file: a
 * page of a mapping that the filesystem cannot back when it is first
 * written kills the process with SIGBUS, with no message. On a full disk a
 * new home must instead fail with ENOSPC while nothing is mapped, and leave
 * nothing half-made. */
#ifndef APPSHOT_TABLESPACE_H
#define APPSHOT_TABLESPACE_H

#include <stddef.h>

/* Makes the files of new tables under home (the data file, LMDB's lock
 * file, the inflight record) with their first blocks allocated: the data
 * and lock files stay 0 bytes long (LMDB sets them up as new), their blocks
 * reserved past their end. 0, or an errno (ENOSPC on a full disk) with
 * every file it made removed and a sentence in err. Call under the open
 * lock, when the data file does not exist or is empty. */
int tabledb_reserve(const char *home, char *err, size_t errlen);

/* Removes the files tabledb_reserve made, when what followed failed. */
void tabledb_unreserve(const char *home);

#endif
