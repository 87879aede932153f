/* LMDB's heap: where mdb.c and midl.c allocate (a define on those two
 * files, native/CMakeLists.txt), kept apart from the program's heap in
 * memory the kernel wipes in a fork child (MADV_WIPEONFORK).
 *
 * Why: the shim writes a fork child's row in a write transaction right
 * after fork returns in the parent. With LMDB's buffers (its transaction,
 * dirty list, free list, page buffers) in the ordinary heap, every page
 * that transaction writes was still shared with the just-forked child and
 * was copied first (copy-on-write): ~14 page copies per fork at 3-4 us each
 * in a VM. Wipe-on-fork memory is not shared with the child at all, so the
 * parent writes it in place. The child never uses its parent's
 * environment (LMDB's rule after fork: it opens its own), so it loses
 * nothing; it finds this heap empty (the allocator's state lives in the
 * wiped memory too) and allocates its own environment from it afresh,
 * also after a fork that ran no atfork handler (a raw fork system call). A
 * checkpoint leaves wipe-on-fork memory out and a restore brings it back
 * empty, the same way: a restored process opens its tables again.
 *
 * One rule follows: nothing may read an environment's LMDB memory in a
 * fork child or a restored process, the environment handle (MDB_env)
 * included. What a fork child reads of its parent's tables until it opens
 * its own (the last transaction's id, tabledb_txnid) lies in the tables'
 * handle (struct tabledb, in libc's heap), which keeps its address.
 *
 * A pointer from anywhere else (a strdup inside mdb.c, an allocation made
 * when this heap was full) goes to libc's free and realloc. */
#ifndef APPSHOT_LMDBHEAP_H
#define APPSHOT_LMDBHEAP_H

#include <stddef.h>

void *appshot_lmdb_malloc(size_t n);
void *appshot_lmdb_calloc(size_t count, size_t n);
void *appshot_lmdb_realloc(void *p, size_t n);
void appshot_lmdb_free(void *p);

/* For tests: whether p lies in LMDB's heap, and whether that heap is wiped
 * in a fork child (1), copied (0: a kernel without MADV_WIPEONFORK), or not
 * made yet (-1). */
int appshot_lmdb_heap_has(const void *p);
int appshot_lmdb_heap_wiped(void);

#endif
