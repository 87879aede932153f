/* Getting a SysV object by virtual key, creating it under a system key
 * and recording its translation in one write transaction (FIG. 11 and the
 * allocating branch of FIG. 15): the one copy, used by the shim's semget,
 * shmget and msgget (shim/ipc.c) and by the supervisor answering a static
 * or Go program's (notify/ipc.c). */
#ifndef APPSHOT_IPCALLOC_H
#define APPSHOT_IPCALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "tabledb.h"
#include "inflight.h"
#include "sysv.h"

struct journal;

/* Who allocates, and how its write transaction ends. */
struct ipc_alloc {
	const struct tabledb *t;
	struct inflight_file *inflight;
	/* The journal of new objects (core/journal.h), whose application-wide
	 * remapped vrids a new object takes first, or NULL. */
	struct journal *journal;
	const struct kernel_ops *k;
	pid_t creator;              /* the spid recorded as the object's creator */
	void (*abort)(MDB_txn *txn);  /* ends the transaction and lets the write lock go */
	int (*commit)(MDB_txn *txn);  /* the same, committing: 0 or an LMDB code */
	void (*warn)(const char *msg); /* a line for the program's stderr, without "appshot: " */
	void (*after_create)(void);   /* a fault point for the crash tests, or NULL */
};

/* The get of vkey (IPC_PRIVATE: a new private object) with size (nsems for
 * a set, bytes for a segment) and flags, inside txn, which it ends: the
 * application's own object under its key, or a new one. Returns the vrid,
 * or -1 with errno as the kernel would set it for the virtual key (a table
 * error: ENOSPC, as when the kernel is out of room, after a warning). */
int ipc_alloc_get(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, key_t vkey, size_t size, int flags);

/* The errno for a get answered without the kernel (err: EEXIST, ENOENT):
 * EINVAL where the kernel would have refused its arguments first. */
int ipc_alloc_get_error(const struct kernel_ops *k, uint8_t type, size_t size, int err);

/* IPC_RMID of the application's vrid, inside txn, which it ends: the object
 * goes from the kernel and its rows from the tables (its key's row stays,
 * as long as the application lives: the key keeps its system key).
 * A segment still attached lives on, keyless, with its row marked removed
 * until its last detach; a template's shared segment (a clone's row with
 * creator CREATOR_TEMPLATE) is only let go, the ID row kept while the
 * application holds attached attachments. 0, or -1 with errno. */
int ipc_alloc_remove(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, unsigned attached);
/* After the kernel removed private object srid (or found it gone), inside
 * txn, which it ends: its row goes, or, for a segment still attached
 * (lives_on), stays marked removed. Nothing changes when the row is not
 * srid's. 0, or the table error. */
int ipc_alloc_forget(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid, int lives_on);
/* Whether a kernel error says the object is gone. */
int ipc_alloc_gone(int err);

#endif
