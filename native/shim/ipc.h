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
/* The system ID behind a virtual one; -1 with EINVAL (as for a
 * nonexistent ID) when the application has none. */
int ipc_srid(uint8_t type, int vrid, uint32_t *srid);
/* A system key read from the kernel, as the application knows it. */
key_t ipc_virtual_key(uint8_t type, key_t skey);

/* The *_STAT and *_STAT_ANY commands: the index-th object of the
 * application in vrid order, read with the kernel's cmd into buf. Returns
 * its virtual ID, with buf's key virtual. */
int ipc_stat_nth(uint8_t type, int index, int cmd, void *buf);

/* Calls fn (if not NULL) for each of the application's objects of this
 * family; returns how many there are. For IPC_INFO and *_INFO, which count only them. */
uint32_t ipc_each(uint8_t type, void (*fn)(uint32_t srid, void *arg), void *arg);

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
