/* Getting a SysV object by virtual key (ipcalloc.h), moved here from the
 * shim so that the supervisor answers a static program's get the same way. */
#define _GNU_SOURCE
#include "ipcalloc.h"
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/sem.h>

#define CREATE_FLAGS (IPC_CREAT | IPC_EXCL)

static int kernel_get(const struct ipc_alloc *a, uint8_t type, key_t key, size_t size, int flags)
{
	return sysv_get(a->k, type, key, size, flags);
}

static int fail(int err)
{
	errno = err;
	return -1;
}

static void warn(const struct ipc_alloc *a, uint8_t type, int rc)
{
	char msg[512];
	snprintf(msg, sizeof msg, "cannot record %s in %.400s: %s", sysv_noun(type), a->t->path, mdb_strerror(rc));
	a->warn(msg);
}

/* A table error during allocation: nothing was created; the call fails as
 * the kernel fails when it is out of room. */
static int abort_with(const struct ipc_alloc *a, uint8_t type, MDB_txn *txn, int rc)
{
	a->abort(txn);
	warn(a, type, rc);
	return fail(ENOSPC);
}

/* What the kernel checks of a get's arguments before it looks the key up:
 * semget's nsems, 0 to SEMMSL. Asked only where the shim answers without
 * the kernel (EEXIST, ENOENT), so that the kernel's EINVAL comes first
 * there too. */
static int args_refused(const struct kernel_ops *k, uint8_t type, size_t size)
{
	struct seminfo si;
	if (type != RT_SEM) return 0;
	if ((int)size < 0) return 1;
	return sysv_ctl(k, RT_SEM, 0, IPC_INFO, &si) >= 0 && (int)size > si.semmsl;
}

/* A get the shim answers itself fails with err, unless the kernel would
 * have refused its arguments first. */
int ipc_alloc_get_error(const struct kernel_ops *k, uint8_t type, size_t size, int err)
{
	return args_refused(k, type, size) ? EINVAL : err;
}

static int fail_get(const struct ipc_alloc *a, uint8_t type, size_t size, int err)
{
	return fail(ipc_alloc_get_error(a->k, type, size, err));
}

/* What a creating get found for its key under the write lock. */
enum key_lookup { KEY_EXISTING, KEY_TO_CREATE, KEY_FAILED };

/* Under the write lock, for a keyed get: the application's own object if
 * it has one (*vrid), else the system key to create under (*skey, already
 * claimed host-wide in the tables unless *have_row says the key row was
 * there). On KEY_FAILED the transaction is over and errno says why. */
static enum key_lookup lookup_key(const struct ipc_alloc *a, uint8_t type, MDB_txn *txn, key_t vkey, size_t size, int flags,
				  uint32_t *skey, int *have_row, uint32_t *vrid)
{
	const struct tabledb *t = a->t;
	uint8_t keytype = sysv_key_type(type);
	struct fwd_val kv;
	int rc;
	*have_row = 0;
	if (tabledb_fwd(t, txn, keytype, (uint32_t)vkey, &kv) == 0) {
		*skey = kv.srid;
		*have_row = 1;
		int id = kernel_get(a, type, (key_t)*skey, 0, 0);
		if (id >= 0 && tabledb_rev_seen(t, txn, type, (uint32_t)id, vrid) == REV_MINE) {
			a->abort(txn);
			if ((flags & CREATE_FLAGS) == CREATE_FLAGS) return fail_get(a, type, size, EEXIST), KEY_FAILED;
			/* Let the kernel check permissions and size. */
			if (kernel_get(a, type, (key_t)*skey, size, flags & ~CREATE_FLAGS) < 0) return KEY_FAILED;
			return KEY_EXISTING;
		}
		if (id >= 0) {
			/* Something outside the application holds our system key:
			 * the application's key moves to a fresh one. */
			tabledb_unmap(t, txn, keytype, (uint32_t)vkey);
			*have_row = 0;
		}
	}
	if (!(flags & IPC_CREAT)) {
		a->abort(txn);
		return fail_get(a, type, size, ENOENT), KEY_FAILED;
	}
	if (!*have_row && (rc = tabledb_claim_skey(t, txn, keytype, (uint32_t)vkey, 1, skey)))
		return abort_with(a, type, txn, rc), KEY_FAILED;
	return KEY_TO_CREATE;
}

/* Creates the kernel object under skey (IPC_PRIVATE for a private one),
 * moving a keyed object to a fresh system key while the kernel says the
 * key is taken outside appshot. Returns the system ID, or -1 with the
 * transaction over. The inflight record is left filled on success. */
static int create_in_kernel(const struct ipc_alloc *a, uint8_t type, MDB_txn *txn, key_t vkey, size_t size, int flags,
			    uint32_t *skey, int *have_row)
{
	const struct tabledb *t = a->t;
	uint8_t keytype = sysv_key_type(type);
	for (;;) {
		inflight_begin(a->inflight, a->creator, t->aid, type, *skey);
		int id = kernel_get(a, type, (key_t)*skey, size, (flags & ~CREATE_FLAGS) | CREATE_FLAGS);
		if (id >= 0) {
			inflight_created(a->inflight, (uint32_t)id);
			return id;
		}
		int err = errno, rc;
		inflight_clear(a->inflight);
		if (err != EEXIST || vkey == IPC_PRIVATE) {
			a->abort(txn);
			return fail(err);
		}
		if (*have_row) tabledb_unmap(t, txn, keytype, (uint32_t)vkey);
		else tabledb_release(t, txn, keytype, *skey);
		*have_row = 0;
		if ((rc = tabledb_claim_skey(t, txn, keytype, (uint32_t)vkey, 0, skey)))
			return abort_with(a, type, txn, rc);
	}
}

/* A remapped vrid from the journal's, where the application's private
 * objects take theirs, so that all its objects' indexes stay dense; else
 * tabledb_map_new's. */
static int map_object(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, const struct fwd_val *row, uint32_t *vrid)
{
	if (a->journal && a->t->app_flags & APP_FLAG_NO_IDENTITY && journal_take_vrid(a->journal, type, vrid) == 0 &&
	    tabledb_map_at(a->t, txn, type, *vrid, row) == 0)
		return 0;
	return tabledb_map_new(a->t, txn, type, row, vrid);
}

/* Records the new object (and its key, if new) and commits. */
static int record_object(const struct ipc_alloc *a, uint8_t type, MDB_txn *txn, key_t vkey, uint32_t skey, int have_row, int id,
			 uint32_t *vrid)
{
	const struct tabledb *t = a->t;
	uint64_t now = now_ms();
	int rc = 0;
	if (vkey != IPC_PRIVATE && !have_row) {
		struct fwd_val krow = { .srid = skey, .created_ms = now };
		rc = tabledb_put_fwd(t, txn, sysv_key_type(type), (uint32_t)vkey, &krow);
	}
	if (!rc) {
		struct fwd_val row = { .srid = (uint32_t)id, .vkey = (uint32_t)vkey, .skey = skey,
				       .creator = (uint32_t)a->creator, .created_ms = now };
		rc = map_object(a, txn, type, &row, vrid);
	}
	if (rc) {
		a->abort(txn);
		return rc;
	}
	return a->commit(txn);
}

/* FIG. 11 and the allocating branch of FIG. 15: the kernel creates the
 * object under a system key (identity first), and the translation is
 * recorded in the same write transaction, with the inflight record
 * covering the gap between the kernel call and the commit. */
int ipc_alloc_get(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, key_t vkey, size_t size, int flags)
{
	uint32_t skey = IPC_PRIVATE, vrid;
	int have_row = 0;
	if (vkey != IPC_PRIVATE) {
		switch (lookup_key(a, type, txn, vkey, size, flags, &skey, &have_row, &vrid)) {
		case KEY_EXISTING: return (int)vrid;
		case KEY_FAILED: return -1;
		case KEY_TO_CREATE: break;
		}
	}
	int id = create_in_kernel(a, type, txn, vkey, size, flags, &skey, &have_row);
	if (id < 0) return -1;
	if (a->after_create) a->after_create();
	int rc = record_object(a, type, txn, vkey, skey, have_row, id, &vrid);
	if (rc) {
		sysv_rmid(a->k, type, id);
		inflight_clear(a->inflight);
		warn(a, type, rc);
		return fail(ENOSPC);
	}
	inflight_clear(a->inflight);
	return (int)vrid;
}


int ipc_alloc_gone(int err) { return err == EINVAL || err == EIDRM; }

/* After IPC_RMID, a shared memory segment still attached lives on,
 * keyless, until its last detach; its row stays until then, marked. */
static int mark_removed(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, struct fwd_val row)
{
	row.vkey = IPC_PRIVATE;
	row.skey = SKEY_REMOVED;
	return tabledb_put_fwd(a->t, txn, type, vrid, &row);
}

/* A clone lets go of its template's shared segment; the kernel's segment
 * stays, the template's and the other clones'. The key row goes at once.
 * The ID row goes too, unless a process of the clone still has the segment
 * attached: then it stays, marked removed, until the last of them detaches,
 * as a removed segment lives on natively. */
static int let_go(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, struct fwd_val row, unsigned attached)
{
	const struct tabledb *t = a->t;
	int rc = row.vkey != IPC_PRIVATE ? tabledb_unmap(t, txn, sysv_key_type(type), row.vkey) : 0;
	if (!rc) rc = attached ? mark_removed(a, txn, type, vrid, row) : tabledb_unmap(t, txn, type, vrid);
	return rc;
}

int ipc_alloc_forget(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid, int lives_on)
{
	struct fwd_val row;
	int rc = tabledb_fwd(a->t, txn, type, vrid, &row);
	if (rc == 0 && row.srid == srid)
		rc = lives_on ? mark_removed(a, txn, type, vrid, row) : tabledb_unmap_row(a->t, txn, type, vrid, srid);
	else rc = 0;
	if (rc) {
		a->abort(txn);
		return rc;
	}
	return a->commit(txn);
}

/* IPC_RMID: the object goes from the kernel and its row from the tables
 * in one write transaction. */
int ipc_alloc_remove(const struct ipc_alloc *a, MDB_txn *txn, uint8_t type, uint32_t vrid, unsigned attached)
{
	const struct tabledb *t = a->t;
	struct fwd_val row;
	if (tabledb_fwd(t, txn, type, vrid, &row) != 0) {
		a->abort(txn);
		return fail(EINVAL);
	}
	if (row.creator == CREATOR_TEMPLATE) {
		if (let_go(a, txn, type, vrid, row, attached)) a->abort(txn);
		else a->commit(txn);
		return 0;
	}
	if (sysv_rmid(a->k, type, (int)row.srid) != 0) {
		int err = errno;
		/* Gone already (removed from outside the shim): its rows go. */
		if (ipc_alloc_gone(err) && tabledb_unmap_row(t, txn, type, vrid, row.srid) == 0) a->commit(txn);
		else a->abort(txn);
		return fail(err);
	}
	struct sysv_stat st;
	int lives_on = type == RT_SHM && sysv_stat(a->k, type, (int)row.srid, &st) == 0;
	/* The key's row stays: the key keeps its system key while the
	 * application lives, and its next create is the journal's. */
	int rc = lives_on ? mark_removed(a, txn, type, vrid, row)
			  : tabledb_unmap_row(t, txn, type, vrid, row.srid);
	if (rc) a->abort(txn);
	else a->commit(txn);
	return 0;
}

