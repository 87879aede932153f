/* SysV semaphores: every semaphore set ID and IPC key the program passes or
 * receives is virtual; the kernel sees only system IDs and keys. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

#define CREATE_FLAGS (IPC_CREAT | IPC_EXCL)

static int fail(int err)
{
	errno = err;
	return -1;
}

/* A table error during allocation: nothing was created; the call fails as
 * the kernel fails when it is out of room. */
static int abort_with(MDB_txn *txn, int rc)
{
	write_abort(txn);
	shim_warn("cannot record semaphore set in %s: %s", shim_tables()->path, mdb_strerror(rc));
	return fail(ENOSPC);
}

/* What a creating semget found for its key under the write lock. */
enum key_lookup { KEY_EXISTING, KEY_TO_CREATE, KEY_FAILED };

/* Under the write lock, for a keyed semget: the application's own set if
 * it has one (*vrid), else the system key to create under (*skey, already
 * claimed host-wide in the tables unless *have_row says the key row was
 * there). On KEY_FAILED the transaction is over and errno says why. */
static enum key_lookup lookup_key(MDB_txn *txn, key_t vkey, int nsems, int flags,
				  uint32_t *skey, int *have_row, uint32_t *vrid)
{
	struct tables *t = shim_tables();
	struct fwd_val kv;
	int rc;
	*have_row = 0;
	if (tables_fwd(t, txn, RT_SEMKEY, (uint32_t)vkey, &kv) == 0) {
		*skey = kv.srid;
		*have_row = 1;
		int semid = REAL(semget)((key_t)*skey, 0, 0);
		if (semid >= 0 && tables_rev(t, txn, RT_SEM, (uint32_t)semid, vrid) == REV_MINE) {
			write_abort(txn);
			if ((flags & CREATE_FLAGS) == CREATE_FLAGS) return fail(EEXIST), KEY_FAILED;
			/* Let the kernel check permissions and nsems. */
			if (REAL(semget)((key_t)*skey, nsems, flags & ~CREATE_FLAGS) < 0) return KEY_FAILED;
			return KEY_EXISTING;
		}
		if (semid >= 0) {
			/* Something outside the application holds our system key:
			 * the application's key moves to a fresh one. */
			tables_unmap(t, txn, RT_SEMKEY, (uint32_t)vkey);
			*have_row = 0;
		}
	}
	if (!(flags & IPC_CREAT)) {
		write_abort(txn);
		return fail(ENOENT), KEY_FAILED;
	}
	if (!*have_row && (rc = tables_claim_skey(t, txn, RT_SEMKEY, (uint32_t)vkey, 1, skey)))
		return abort_with(txn, rc), KEY_FAILED;
	return KEY_TO_CREATE;
}

/* Creates the kernel set under skey (IPC_PRIVATE for a private one),
 * moving a keyed set to a fresh system key while the kernel says the key
 * is taken outside appshot. Returns the system ID, or -1 with the
 * transaction over. The inflight record is left filled on success. */
static int create_in_kernel(MDB_txn *txn, key_t vkey, int nsems, int flags, uint32_t *skey, int *have_row)
{
	struct tables *t = shim_tables();
	for (;;) {
		inflight_begin(shim_inflight(), shim_pid, t->aid, RT_SEM, *skey);
		int semid = REAL(semget)((key_t)*skey, nsems, (flags & 0777) | CREATE_FLAGS);
		if (semid >= 0) {
			inflight_created(shim_inflight(), (uint32_t)semid);
			return semid;
		}
		int err = errno, rc;
		inflight_clear(shim_inflight());
		if (err != EEXIST || vkey == IPC_PRIVATE) {
			write_abort(txn);
			return fail(err);
		}
		if (*have_row) tables_unmap(t, txn, RT_SEMKEY, (uint32_t)vkey);
		else tables_release_skey(t, txn, RT_SEMKEY, *skey);
		*have_row = 0;
		if ((rc = tables_claim_skey(t, txn, RT_SEMKEY, (uint32_t)vkey, 0, skey)))
			return abort_with(txn, rc);
	}
}

/* Records the new set (and its key, if new) and commits. */
static int record_set(MDB_txn *txn, key_t vkey, uint32_t skey, int have_row, int semid, uint32_t *vrid)
{
	struct tables *t = shim_tables();
	uint64_t now = now_ms();
	int rc = 0;
	if (vkey != IPC_PRIVATE && !have_row) {
		struct fwd_val krow = { .srid = skey, .created_ms = now };
		rc = tables_put_fwd(t, txn, RT_SEMKEY, (uint32_t)vkey, &krow);
	}
	if (!rc) {
		struct fwd_val row = { .srid = (uint32_t)semid, .vkey = (uint32_t)vkey, .skey = skey,
				       .creator = (uint32_t)shim_pid, .created_ms = now };
		rc = tables_map_new(t, txn, RT_SEM, &row, vrid);
	}
	if (rc) {
		write_abort(txn);
		return rc;
	}
	return write_commit(txn);
}

/* FIG. 11 and the allocating branch of FIG. 15: the kernel creates the set
 * under a system key (identity first), and the translation is recorded in
 * the same write transaction, with the inflight record covering the gap
 * between the kernel call and the commit. */
static int sem_create(key_t vkey, int nsems, int flags)
{
	MDB_txn *txn = write_begin();
	uint32_t skey = IPC_PRIVATE, vrid;
	int have_row = 0;
	if (vkey != IPC_PRIVATE) {
		switch (lookup_key(txn, vkey, nsems, flags, &skey, &have_row, &vrid)) {
		case KEY_EXISTING: return (int)vrid;
		case KEY_FAILED: return -1;
		case KEY_TO_CREATE: break;
		}
	}
	int semid = create_in_kernel(txn, vkey, nsems, flags, &skey, &have_row);
	if (semid < 0) return -1;
	shim_fault_point(FAULT_AFTER_CREATE);
	int rc = record_set(txn, vkey, skey, have_row, semid, &vrid);
	if (rc) {
		REAL(semctl)(semid, 0, IPC_RMID);
		inflight_clear(shim_inflight());
		shim_warn("cannot record semaphore set in %s: %s", shim_tables()->path, mdb_strerror(rc));
		return fail(ENOSPC);
	}
	inflight_clear(shim_inflight());
	return (int)vrid;
}

SHIM_EXPORT int semget(key_t key, int nsems, int semflg)
{
	if (!shim_active) return REAL(semget)(key, nsems, semflg);
	if (key == IPC_PRIVATE) return sem_create(key, nsems, semflg);
	uint32_t skey, vrid;
	/* A creating call that misses the cache goes straight to the write
	 * transaction, which looks the key up itself: one transaction, not two. */
	int known = (semflg & IPC_CREAT) ? vr_to_sr_cached(RT_SEMKEY, (uint32_t)key, &skey)
					  : vr_to_sr(RT_SEMKEY, (uint32_t)key, &skey);
	if (known == 0) {
		int exclusive = (semflg & CREATE_FLAGS) == CREATE_FLAGS;
		/* With IPC_EXCL an existing set is EEXIST before any other
		 * check, so only look it up; otherwise let the kernel check
		 * permissions and nsems as it would natively. */
		int semid = REAL(semget)((key_t)skey, exclusive ? 0 : nsems,
					 exclusive ? 0 : semflg & ~CREATE_FLAGS);
		if (semid >= 0 && sr_to_vr(RT_SEM, (uint32_t)semid, &vrid) == 0)
			return exclusive ? fail(EEXIST) : (int)vrid;
		if (semid < 0 && errno != ENOENT) return -1;
		/* A set under our key with no row yet is another process's
		 * creation in flight: the write lock waits for its commit. */
		if (semid >= 0) return sem_create(key, nsems, semflg);
	}
	if (!(semflg & IPC_CREAT)) return fail(ENOENT);
	return sem_create(key, nsems, semflg);
}

SHIM_EXPORT int semop(int semid, struct sembuf *sops, size_t nsops)
{
	uint32_t srid;
	if (!shim_active) return REAL(semop)(semid, sops, nsops);
	if (vr_to_sr(RT_SEM, (uint32_t)semid, &srid)) return fail(EINVAL);
	return REAL(semop)((int)srid, sops, nsops);
}

SHIM_EXPORT int semtimedop(int semid, struct sembuf *sops, size_t nsops, const struct timespec *timeout)
{
	uint32_t srid;
	if (!shim_active) return REAL(semtimedop)(semid, sops, nsops, timeout);
	if (vr_to_sr(RT_SEM, (uint32_t)semid, &srid)) return fail(EINVAL);
	return REAL(semtimedop)((int)srid, sops, nsops, timeout);
}

/* IPC_RMID: the set goes from the kernel and its rows (and its key's row)
 * from the tables in one write transaction. The rows go first, inside the
 * transaction, so a failed removal just aborts it. */
static int sem_remove(int vrid)
{
	struct tables *t = shim_tables();
	MDB_txn *txn = write_begin();
	struct fwd_val row;
	int rc = tables_take(t, txn, RT_SEM, (uint32_t)vrid, &row);
	if (rc) {
		write_abort(txn);
		return fail(EINVAL);
	}
	if (REAL(semctl)((int)row.srid, 0, IPC_RMID) != 0) {
		int err = errno;
		/* Gone already (removed from outside the shim): its rows go. */
		if (err == EINVAL || err == EIDRM) write_commit(txn);
		else write_abort(txn);
		return fail(err);
	}
	if (row.vkey != IPC_PRIVATE) rc = tables_unmap_row(t, txn, RT_SEMKEY, row.vkey, row.skey);
	if (rc) write_abort(txn);
	else write_commit(txn);
	return 0;
}

/* The system key in an IPC_STAT result becomes the application's key. */
static void virtual_key(struct semid_ds *ds)
{
	uint32_t vkey;
	if (ds->sem_perm.__key != IPC_PRIVATE &&
	    sr_to_vr(RT_SEMKEY, (uint32_t)ds->sem_perm.__key, &vkey) == 0)
		ds->sem_perm.__key = (key_t)vkey;
}

struct app_sems {
	uint32_t count, nsems, index, vrid;
	struct fwd_val row;
};

static int count_sems(MDB_txn *txn, void *arg)
{
	struct app_sems *a = arg;
	struct tables *t = shim_tables();
	int rc = tables_count(t, txn, RT_SEM, &a->count);
	for (uint32_t i = 0; !rc && i < a->count; i++) {
		uint32_t vrid;
		struct fwd_val row;
		struct semid_ds ds;
		if (tables_nth(t, txn, RT_SEM, i, &vrid, &row) == 0 &&
		    REAL(semctl)((int)row.srid, 0, IPC_STAT, &ds) == 0)
			a->nsems += (uint32_t)ds.sem_nsems;
	}
	return rc;
}

/* IPC_INFO and SEM_INFO: system-wide limits stay, but what is in use is
 * counted over this application's sets only, and the highest index is
 * the highest index of SEM_STAT's view, which holds only them. */
static int sem_info(int cmd, union semun arg)
{
	if (REAL(semctl)(0, 0, cmd, arg) < 0) return -1;
	struct app_sems a = { 0 };
	with_read_txn(count_sems, &a);
	if (cmd == SEM_INFO) {
		arg.__buf->semusz = (int)a.count;
		arg.__buf->semaem = (int)a.nsems;
	}
	return a.count ? (int)a.count - 1 : 0;
}

static int nth_sem(MDB_txn *txn, void *arg)
{
	struct app_sems *a = arg;
	return tables_nth(shim_tables(), txn, RT_SEM, a->index, &a->vrid, &a->row);
}

/* SEM_STAT and SEM_STAT_ANY index the application's own sets in vrid
 * order, so enumeration never reaches another application's. */
static int sem_stat(int index, union semun arg)
{
	struct app_sems a = { .index = (uint32_t)index };
	if (index < 0 || with_read_txn(nth_sem, &a)) return fail(EINVAL);
	if (REAL(semctl)((int)a.row.srid, 0, IPC_STAT, arg) < 0) return -1;
	virtual_key(arg.buf);
	return (int)a.vrid;
}

static int takes_arg(int cmd)
{
	switch (cmd) {
	case SETVAL: case GETALL: case SETALL: case IPC_STAT: case IPC_SET:
	case IPC_INFO: case SEM_INFO: case SEM_STAT: case SEM_STAT_ANY:
		return 1;
	}
	return 0;
}

SHIM_EXPORT int semctl(int semid, int semnum, int cmd, ...)
{
	union semun arg = { 0 };
	if (takes_arg(cmd)) {
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, union semun);
		va_end(ap);
	}
	if (!shim_active) return REAL(semctl)(semid, semnum, cmd, arg);
	switch (cmd) {
	case IPC_INFO: case SEM_INFO: return sem_info(cmd, arg);
	case SEM_STAT: case SEM_STAT_ANY: return sem_stat(semid, arg);
	case IPC_RMID: return sem_remove(semid);
	}
	uint32_t srid;
	if (vr_to_sr(RT_SEM, (uint32_t)semid, &srid)) return fail(EINVAL);
	int r = REAL(semctl)((int)srid, semnum, cmd, arg);
	if (r == 0 && cmd == IPC_STAT) virtual_key(arg.buf);
	return r;
}
