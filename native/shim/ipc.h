/* What the three SysV IPC families share in the shim (ipc.c): getting an
 * object by virtual key, creating it and recording its translation in one
 * step; removing it; its virtual key in a stat result; and the
 * application's own objects as the index-based *_STAT calls enumerate
 * them. sem.c, shm.c and msg.c keep only what is their family's own. */
#ifndef APPSHOT_SHIM_IPC_H
#define APPSHOT_SHIM_IPC_H

#include "shim.h"
#include "../core/sysv.h"

/* semget, shmget, msgget: size is nsems for a set, bytes for a segment. */
int ipc_get(uint8_t type, key_t vkey, size_t size, int flags);
/* IPC_RMID of a virtual ID. */
int ipc_remove(uint8_t type, int vrid);
/* Folds the journal of new objects into LMDB if it holds any row: before
 * a walk of the application's rows or a reverse lookup, which read LMDB
 * alone (core/journal.h). */
void ipc_settle(void);
/* The system ID behind a virtual one; -1 with EINVAL (as for a
 * nonexistent ID) when the application has none. */
int ipc_srid(uint8_t type, int vrid, uint32_t *srid);
/* The ID to give the kernel for the application's ID vrid: its system ID,
 * or, for an ID the application has no object under, one the kernel
 * refuses as it refuses a nonexistent ID: a negative ID as is, else an ID
 * no object has. The kernel then checks the call's other arguments first,
 * in its own order (a bad pointer is EFAULT, too many operations E2BIG),
 * as natively. */
int ipc_kernel_id(uint8_t type, int vrid);
/* 0 when the caller's len bytes at buf (up to 256) can be read, else -1
 * with EFAULT, without a SIGSEGV: for a call the shim refuses itself where
 * the kernel would have read the buffer first. */
int ipc_readable(const void *buf, size_t len);
/* A system key read from the kernel, as the application knows it. */
key_t ipc_virtual_key(uint8_t type, key_t skey);

/* The *_STAT and *_STAT_ANY commands, on the application's own objects:
 * id is an index, or a full virtual ID (the kernel takes its index bits);
 * an object's index is the index bits of its virtual ID. Reads the object
 * with the kernel's cmd into buf and returns its virtual ID, with buf's
 * key virtual. */
int ipc_stat_index(uint8_t type, int id, int cmd, void *buf);
/* *_STAT_ANY of the application's object srid into buf (no permission
 * needed): 0, or -1 with errno. For the *_INFO totals. */
int ipc_stat_any(uint8_t type, uint32_t srid, void *buf);

/* Calls fn for each of the application's objects of this family (one
 * walk of its rows); returns how many there are. */
uint32_t ipc_each(uint8_t type, void (*fn)(uint32_t srid, void *arg), void *arg);

/* What IPC_INFO and *_INFO tell of the application's objects of a family:
 * how many rows it has, and the highest index in its view (the index bits
 * of its virtual IDs; 0 when none, as the kernel says). Costs a probe of
 * the last committed transaction id while nothing changed since this
 * thread last asked, one walk of the rows after a change. */
struct ipc_summary {
	uint32_t count;
	int max_index;
};
void ipc_summary(uint8_t type, struct ipc_summary *s);

/* Whether the kernel's own *_INFO totals are the application's: when the
 * kernel has exactly as many objects of the family as the application has
 * rows, its objects are all the application's, since each row names a live
 * object of the application's own; so its totals count exactly them, at no
 * cost. Not so for an instant while another process removes one of the
 * application's objects (gone from the kernel, its row not yet), or for a
 * row whose object was removed behind the shim's back: should the kernel
 * then hold as many objects of others, their totals are counted too. */
static inline int ipc_alone(const struct ipc_summary *s, int kernel_in_use)
{
	return kernel_in_use >= 0 && (uint32_t)kernel_in_use == s->count;
}

/* A removed segment's row is dropped once the segment is gone for the
 * application: after its last detach. */
void ipc_forget_if_gone(uint8_t type, uint32_t vrid);

/* How many attachments of segment srid the application's processes hold. */
unsigned ipc_shm_attachments(uint32_t srid);

/* A stat result's key and mode as the application sees them: its virtual
 * key, or, for an object it removed that lives on, no key and (for a
 * segment) SHM_DEST, as the kernel shows a removed segment. */
void ipc_virtual_perm(uint8_t type, int removed, struct ipc_perm *perm);

#endif
