/* Checking the tables file before LMDB trusts it.
 *
 * LMDB has no page checksums: it follows every page number and node offset
 * it reads from the file, so a damaged page makes it read past its map
 * (SIGSEGV, SIGBUS) or trip an assertion (abort). These functions walk the
 * file's B-trees the way LMDB would read them and say where they are
 * damaged, without ever touching a byte outside the file. */
#ifndef APPSHOT_TABLECHECK_H
#define APPSHOT_TABLECHECK_H

#include <stddef.h>

/* How far a check goes. TABLECHECK_TOP reads the header pages, the root
 * page of every database and the main database's records of the named
 * ones: a few pages, cheap enough for every process that opens the tables.
 * TABLECHECK_ALL reads every page reachable from the header, once.
 * TABLECHECK_FIRST is for a reader of the first rows in key order (the
 * first page of a listing): the databases that grow with the number of
 * mappings (fwd and rev, a row per translation each way) and the free-page
 * list (which readers never read) are checked only on the pages a cursor
 * reading their first `rows` rows passes through (the path from the root
 * to the first leaf, then each leaf and branch after it until that many
 * rows are seen); every other database whole, as TABLECHECK_ALL does. Its
 * cost depends on `rows` and the number of applications, not of mappings. */
enum tablecheck_scope { TABLECHECK_TOP, TABLECHECK_ALL, TABLECHECK_FIRST };

/* What the checks return when the file is damaged; err then holds a phrase
 * naming the page and what is wrong with it ("page 30 (fwd): ..."). */
#define TABLECHECK_DAMAGED (-1)

/* Checks the file as it lies in memory (size bytes from map: its first
 * page at map). rows is TABLECHECK_FIRST's (ignored by the others). 0 when
 * sound, else TABLECHECK_DAMAGED. */
int tablecheck_map(const void *map, size_t size, enum tablecheck_scope scope, unsigned long rows, char *err, size_t errlen);

/* Opens path read-only and checks it: 0, TABLECHECK_DAMAGED, or an errno
 * when the file cannot be read (err says which call failed). */
int tablecheck_file(const char *path, enum tablecheck_scope scope, unsigned long rows, char *err, size_t errlen);

#endif
