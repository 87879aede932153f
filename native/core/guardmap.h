/* Guarded mappings of appshot's shared files in a program's address space.
 *
 * LMDB's lock file (its reader table and write lock) and the inflight
 * record are mapped writable and shared by every process of every
 * application. A program's stray write that runs off the end of one of its
 * own mappings (PHP 8.2 writes 1 MiB past a shared memory segment) must not
 * land in them: each is mapped between two PROT_NONE guard regions, where
 * such a write faults in the program itself. mdb.c's own mmap and munmap
 * calls come here through a define on that one file (native/CMakeLists.txt). */
#ifndef APPSHOT_GUARDMAP_H
#define APPSHOT_GUARDMAP_H

#include <stddef.h>
#include <sys/types.h>

/* Larger than any overrun seen in the wild (1 MiB): address space only. */
#define GUARD_BYTES ((size_t)16 << 20)

/* mmap; a shared writable mapping of a file placed by the kernel gets its guards. */
void *appshot_guarded_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* mdb.c's mmap: guarded as above, and the pages every opening touches at
 * once mapped in the same step rather than a fault each (10-14 us in a VM,
 * issue 21): the lock file's first page for writing (its header is read
 * and the reader mutex taken there right away: a read fault, then a write
 * fault), the data file's two meta pages for reading. Written or read
 * anyway, nothing changes by mapping them first. */
void *appshot_lmdb_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* munmap; a guarded mapping's guards go with it. */
int appshot_guarded_munmap(void *addr, size_t len);

#endif
