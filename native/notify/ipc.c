/* SysV IPC for a program the shim does not reach (notify.h).
 *
 * semget, shmget and msgget are answered here with the shim's own
 * allocation (core/ipcalloc.h): the key is the application's, the object
 * is recorded, and its vrid given back. A call on an ID is the program's
 * own kernel call when the ID is an identity one (vrid == srid, the common
 * case outside --no-identity): it then blocks, wakes and is interrupted as
 * natively, shmat attaches and SEM_UNDO undoes as natively. Only what
 * gives back keys or PIDs (IPC_STAT), and IPC_RMID (the rows), is always
 * answered here. On a remapped ID the call is made here on the system ID,
 * with the caller's buffers copied in and out: semop/semtimedop,
 * semctl, shmctl, msgctl, msgsnd and msgrcv; one that has to wait is made
 * by a worker thread (the caller then waits killably only: a handled
 * signal runs after the call, and the semaphore's and queue's last PID is
 * the supervisor's). What cannot be made from outside the process on a
 * remapped ID, shmat (the segment would be attached in the supervisor) and
 * semop with SEM_UNDO (the undo list is the caller's), fails with ENOSYS
 * and a one-line message naming the call and the way out, as do the
 * index-based *_STAT and *_INFO commands (the application's view of them
 * is the shim's). */
#define _GNU_SOURCE
#include "notify_int.h"
#include "../core/ipcalloc.h"
#include "../core/journal.h"
#include "../core/sysv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef IPC_64
#define IPC_64 0x0100
#endif

static const struct kernel_ops libc_kernel = { semget, semctl, shmget, shmctl, msgget, msgctl };

/* ------------------------------------------------------------ allocation */

static struct tabledb *tables;   /* held (notify_tables_lock) while a call is answered */
static struct call *current;     /* whose stderr a warning goes to */
static struct inflight_file inflight;
static int inflight_state;       /* 0 not opened, 1 open, -1 unusable */
/* The rows of the private objects the application's other processes made
 * (core/journal.h): folded in by every write here, read by id_of. */
static struct journal journal;

static void open_inflight(void)
{
	const char *home = getenv("APPSHOT_HOME");
	if (inflight_state) return;
	inflight_state = inflight_open(&inflight, home) == 0 && journal_open(&journal, home) == 0 ? 1 : -1;
	if (inflight_state > 0) journal_set_app(&journal, tables->aid);
}

static void warn_line(const char *msg) { notify_warn(current, "%s", msg); }

static void txn_abort(MDB_txn *txn)
{
	journal_fold_end(&journal, getpid(), 0); /* before the write lock goes, as the shim's write_abort */
	mdb_txn_abort(txn);
	tabledb_write_unlock(tables);
}

static int txn_commit(MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	if (rc == MDB_EMPTY_TXN) rc = 0;
	journal_fold_end(&journal, getpid(), rc == 0);
	tabledb_write_unlock(tables);
	return rc;
}

static int mapped_in(void *ctx, uint8_t type, uint32_t srid)
{
	uint32_t vrid;
	return tabledb_rev(tables, ctx, type, srid, &vrid) != REV_NONE;
}

/* A write transaction as the shim's write_begin makes it: what a creator
 * killed in its inflight window left is removed first. NULL on failure. */
static MDB_txn *write_begin(void)
{
	MDB_txn *txn;
	open_inflight();
	if (inflight_state < 0 || tabledb_write_lock(tables)) return NULL;
	int rc = mdb_txn_begin(tables->env, NULL, 0, &txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(tables->env, 0);
		rc = mdb_txn_begin(tables->env, NULL, 0, &txn);
	}
	if (rc) {
		tabledb_write_unlock(tables);
		return NULL;
	}
	inflight_recover(&inflight, &libc_kernel, mapped_in, txn, NULL, 0);
	journal_recover(&journal, &libc_kernel, mapped_in, txn, NULL, 0, 0);
	journal_fold_into(&journal, tables, txn, getpid());
	return txn;
}

static struct ipc_alloc allocator(struct call *c)
{
	current = c;
	return (struct ipc_alloc){ tables, &inflight, &journal, &libc_kernel, c->proc->tgid, txn_abort, txn_commit, warn_line, NULL };
}

static void do_get(struct call *c, uint8_t type, key_t key, size_t size, int flags)
{
	MDB_txn *txn = write_begin();
	if (!txn) return notify_answer(c, 0, ENOSPC);
	struct ipc_alloc a = allocator(c);
	int r = ipc_alloc_get(&a, txn, type, key, size, flags);
	notify_answer(c, r, r < 0 ? errno : 0);
}

static void do_remove(struct call *c, uint8_t type, int vrid)
{
	MDB_txn *txn = write_begin();
	if (!txn) return notify_answer(c, 0, ENOSPC);
	struct ipc_alloc a = allocator(c);
	int r = ipc_alloc_remove(&a, txn, type, (uint32_t)vrid, 0);
	notify_answer(c, 0, r < 0 ? errno : 0);
}

/* -------------------------------------------------------------- IDs */

enum id_kind { ID_SAME, ID_MAPPED, ID_NONE };

/* What the application's vrid is: its own system ID (the kernel's call
 * can be the program's), another (*srid), or none of the application's. */
static enum id_kind id_of(uint8_t type, int vrid, uint32_t *srid)
{
	MDB_txn *txn;
	struct fwd_val row;
	enum id_kind k = ID_NONE;
	struct journal_row jr;
	if (vrid < 0) return ID_SAME; /* the kernel's EINVAL */
	open_inflight();
	if (journal_find(&journal, type, (uint32_t)vrid, &jr) == 0) {
		*srid = jr.srid;
		return jr.srid == (uint32_t)vrid ? ID_SAME : ID_MAPPED;
	}
	if (mdb_txn_begin(tables->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (tabledb_fwd(tables, txn, type, (uint32_t)vrid, &row) == 0) {
			*srid = row.srid;
			k = row.srid == (uint32_t)vrid ? ID_SAME : ID_MAPPED;
		}
		mdb_txn_abort(txn);
	}
	return k;
}

/* A call on one object: 1 (and *srid) when the object is remapped and the
 * call is the supervisor's to make; 0 when it is answered already: an
 * identity ID goes on as the program's own call, an unknown one is EINVAL. */
static int made_here(struct call *c, uint8_t type, int vrid, uint32_t *srid)
{
	switch (id_of(type, vrid, srid)) {
	case ID_SAME: notify_continue(c); return 0;
	case ID_NONE: notify_answer(c, 0, EINVAL); return 0;
	default: return 1;
	}
}

static key_t virtual_key(uint8_t type, key_t skey)
{
	MDB_txn *txn;
	uint32_t vkey = (uint32_t)skey;
	if (skey == IPC_PRIVATE || mdb_txn_begin(tables->env, NULL, MDB_RDONLY, &txn)) return skey;
	if (tabledb_rev(tables, txn, sysv_key_type(type), (uint32_t)skey, &vkey) != REV_MINE) vkey = (uint32_t)skey;
	mdb_txn_abort(txn);
	return (key_t)vkey;
}

static pid_t virtual_pid(pid_t spid)
{
	MDB_txn *txn;
	uint32_t vpid = (uint32_t)spid;
	if (spid <= 0 || mdb_txn_begin(tables->env, NULL, MDB_RDONLY, &txn)) return spid;
	if (tabledb_rev(tables, txn, RT_PID, (uint32_t)spid, &vpid) != REV_MINE) vpid = (uint32_t)spid;
	mdb_txn_abort(txn);
	return (pid_t)vpid;
}

static const char *call_name(int nr)
{
	switch (nr) {
	case SYS_semget: return "semget";
	case SYS_semctl: return "semctl";
	case SYS_semop: return "semop";
	case SYS_semtimedop: return "semtimedop";
	case SYS_shmget: return "shmget";
	case SYS_shmctl: return "shmctl";
	case SYS_shmat: return "shmat";
	case SYS_msgget: return "msgget";
	case SYS_msgctl: return "msgctl";
	case SYS_msgsnd: return "msgsnd";
	case SYS_msgrcv: return "msgrcv";
	}
	return NULL;
}

/* Fails the call with ENOSYS, as for a call the kernel lacks, and says why
 * and what to do. */
static void refuse(struct call *c, const char *what, const char *why)
{
	notify_warn(c, "%s by a statically linked or Go program (kernel pid %d) is refused: %s; link the program dynamically (its calls then go through the shim), or run its application without --no-identity",
		    what, (int)c->proc->tgid, why);
	notify_answer(c, 0, ENOSYS);
}

/* ------------------------------------------------------------ workers */

/* A call that may have to wait: tried at once without waiting, and when
 * it would wait, made by a thread of its own (notify_answer_later). */
struct job {
	int (*run)(struct call *c, struct job *j, long *val); /* 0 or an errno */
	uint32_t srid;
	__u64 args[6];
	size_t len;
	struct timespec timeout;
	int has_timeout;
	char buf[]; /* the caller's operations or message */
};

static int job_run(struct call *c, void *arg, long *val)
{
	struct job *j = arg;
	return j->run(c, j, val);
}

static struct job *job_new(struct call *c, size_t extra)
{
	struct job *j = calloc(1, sizeof *j + extra);
	if (!j) return NULL;
	memcpy(j->args, c->req->data.args, sizeof j->args);
	j->len = extra;
	return j;
}

/* Runs j now if it does not have to wait (try), else in its thread. */
static void job_start(struct call *c, struct job *j, int (*try)(struct call *c, struct job *j, long *val))
{
	long val = 0;
	int err = try(c, j, &val);
	if ((err == EAGAIN || err == ENOMSG) && (err = notify_answer_later(c, job_run, free, j)) == 0) return;
	notify_answer(c, val, err);
	free(j);
}

/* ----------------------------------------------------------- semaphores */

static int semop_wait(struct call *c, struct job *j, long *val)
{
	(void)c;
	(void)val;
	return syscall(SYS_semtimedop, j->srid, j->buf, j->len / sizeof(struct sembuf), j->has_timeout ? &j->timeout : NULL) ? errno : 0;
}

/* Tried without waiting: every operation IPC_NOWAIT; EAGAIN when one of
 * them had to wait and the caller wanted to. */
static int semop_try(struct call *c, struct job *j, long *val)
{
	(void)c;
	size_t n = j->len / sizeof(struct sembuf);
	struct sembuf now[n];
	int waits = 0;
	memcpy(now, j->buf, j->len);
	for (size_t i = 0; i < n; i++) {
		waits |= !(now[i].sem_flg & IPC_NOWAIT);
		now[i].sem_flg |= IPC_NOWAIT;
	}
	(void)val;
	if (syscall(SYS_semtimedop, j->srid, now, n, NULL) == 0) return 0;
	if (errno != EAGAIN || !waits) return errno;
	j->run = semop_wait;
	return EAGAIN;
}

static void do_semop(struct call *c, int timed)
{
	const __u64 *a = c->req->data.args;
	uint32_t srid;
	size_t n = (size_t)a[2];
	if (!made_here(c, RT_SEM, (int)a[0], &srid)) return;
	if (n == 0 || n > 4096) return notify_answer(c, 0, n ? E2BIG : EINVAL);
	struct job *j = job_new(c, n * sizeof(struct sembuf));
	if (!j) return notify_answer(c, 0, ENOMEM);
	j->srid = srid;
	int bad = notify_read(c, a[1], j->buf, j->len);
	if (!bad && timed && a[3]) bad = notify_read(c, a[3], &j->timeout, sizeof j->timeout), j->has_timeout = 1;
	const struct sembuf *ops = (const struct sembuf *)j->buf;
	int undo = 0;
	for (size_t i = 0; !bad && i < n; i++) undo |= (ops[i].sem_flg & SEM_UNDO) != 0;
	if (bad || undo) {
		free(j);
		if (undo) return refuse(c, "semop with SEM_UNDO on a remapped semaphore set", "it cannot be made from outside the process (the undo list is the caller's)");
		return notify_answer(c, 0, EFAULT);
	}
	job_start(c, j, semop_try);
}

/* ------------------------------------------------------------- messages */

static int msgsnd_wait(struct call *c, struct job *j, long *val)
{
	(void)c;
	(void)val;
	return msgsnd((int)j->srid, j->buf, j->len - sizeof(long), (int)j->args[3]) ? errno : 0;
}

static int msgsnd_try(struct call *c, struct job *j, long *val)
{
	(void)c;
	(void)val;
	if (msgsnd((int)j->srid, j->buf, j->len - sizeof(long), (int)j->args[3] | IPC_NOWAIT) == 0) return 0;
	if (errno == EAGAIN && !(j->args[3] & IPC_NOWAIT)) {
		j->run = msgsnd_wait;
		return EAGAIN;
	}
	return errno;
}

/* The message received, copied to the caller: its size. */
static int msgrcv_flags(struct call *c, struct job *j, int flags, long *val)
{
	ssize_t n = msgrcv((int)j->srid, j->buf, j->len - sizeof(long), (long)j->args[3], flags);
	if (n < 0) return errno;
	/* Taken off the queue: lost if the caller's buffer is bad, as natively. */
	if (notify_write(c, j->args[1], j->buf, sizeof(long) + (size_t)n)) return EFAULT;
	*val = n;
	return 0;
}

static int msgrcv_wait(struct call *c, struct job *j, long *val) { return msgrcv_flags(c, j, (int)j->args[4], val); }

static int msgrcv_try(struct call *c, struct job *j, long *val)
{
	int err = msgrcv_flags(c, j, (int)j->args[4] | IPC_NOWAIT, val);
	if (err == ENOMSG && !(j->args[4] & IPC_NOWAIT)) {
		j->run = msgrcv_wait;
		return ENOMSG;
	}
	return err;
}

static void do_msg(struct call *c, int send)
{
	const __u64 *a = c->req->data.args;
	uint32_t srid;
	size_t size = (size_t)a[2];
	if (!made_here(c, RT_MSG, (int)a[0], &srid)) return;
	if ((long)a[2] < 0 || size > (1u << 20)) return notify_answer(c, 0, EINVAL);
	struct job *j = job_new(c, sizeof(long) + size);
	if (!j) return notify_answer(c, 0, ENOMEM);
	j->srid = srid;
	if (send && notify_read(c, a[1], j->buf, j->len)) {
		free(j);
		return notify_answer(c, 0, EFAULT);
	}
	job_start(c, j, send ? msgsnd_try : msgrcv_try);
}

/* ------------------------------------------------------------- controls */

/* IPC_STAT on the system ID, given back with the virtual key and PIDs. */
static void do_stat(struct call *c, uint8_t type, uint32_t srid, long nr, long semnum, long cmd, __u64 buf)
{
	union {
		struct semid_ds sem;
		struct shmid_ds shm;
		struct msqid_ds msg;
	} ds;
	size_t size = type == RT_SEM ? sizeof ds.sem : type == RT_SHM ? sizeof ds.shm : sizeof ds.msg;
	long r = type == RT_SEM ? syscall(nr, srid, semnum, cmd, &ds) : syscall(nr, srid, cmd, &ds);
	if (r < 0) return notify_answer(c, 0, errno);
	struct ipc_perm *perm = type == RT_SEM ? &ds.sem.sem_perm : type == RT_SHM ? &ds.shm.shm_perm : &ds.msg.msg_perm;
	perm->__key = virtual_key(type, perm->__key);
	if (type == RT_SHM) ds.shm.shm_cpid = virtual_pid(ds.shm.shm_cpid), ds.shm.shm_lpid = virtual_pid(ds.shm.shm_lpid);
	if (type == RT_MSG) ds.msg.msg_lspid = virtual_pid(ds.msg.msg_lspid), ds.msg.msg_lrpid = virtual_pid(ds.msg.msg_lrpid);
	notify_answer(c, r, notify_write(c, buf, &ds, size) ? EFAULT : 0);
}

/* A control command on a remapped ID other than IPC_STAT and IPC_RMID,
 * made here with its buffer copied in (IPC_SET, SETALL) or out (GETALL). */
static void do_ctl_mapped(struct call *c, uint8_t type, uint32_t srid, long nr, long semnum, long cmd, __u64 arg)
{
	int base = (int)(cmd & ~IPC_64);
	if (type == RT_SEM && (base == GETALL || base == SETALL)) {
		struct semid_ds ds;
		if (syscall(nr, srid, 0, IPC_STAT | (cmd & IPC_64), &ds) < 0) return notify_answer(c, 0, errno);
		unsigned short vals[ds.sem_nsems ? ds.sem_nsems : 1];
		size_t len = ds.sem_nsems * sizeof vals[0];
		if (base == SETALL && notify_read(c, arg, vals, len)) return notify_answer(c, 0, EFAULT);
		if (syscall(nr, srid, semnum, cmd, vals) < 0) return notify_answer(c, 0, errno);
		return notify_answer(c, 0, base == GETALL && notify_write(c, arg, vals, len) ? EFAULT : 0);
	}
	if (base == IPC_SET) {
		union {
			struct semid_ds sem;
			struct shmid_ds shm;
			struct msqid_ds msg;
		} ds;
		size_t size = type == RT_SEM ? sizeof ds.sem : type == RT_SHM ? sizeof ds.shm : sizeof ds.msg;
		if (notify_read(c, arg, &ds, size)) return notify_answer(c, 0, EFAULT);
		long r = type == RT_SEM ? syscall(nr, srid, semnum, cmd, &ds) : syscall(nr, srid, cmd, &ds);
		return notify_answer(c, 0, r < 0 ? errno : 0);
	}
	/* The rest take a value or nothing: GETVAL, SETVAL, GETNCNT, GETZCNT,
	 * GETPID (a PID: virtual), SHM_LOCK, SHM_UNLOCK. */
	long r = type == RT_SEM ? syscall(nr, srid, semnum, cmd, arg) : syscall(nr, srid, cmd, arg);
	if (r < 0) return notify_answer(c, 0, errno);
	notify_answer(c, type == RT_SEM && base == GETPID ? virtual_pid((pid_t)r) : r, 0);
}

/* The command numbers overlap between the families. */
static int index_based(uint8_t type, int base)
{
	if (base == IPC_INFO) return 1;
	if (type == RT_SEM) return base == SEM_INFO || base == SEM_STAT || base == SEM_STAT_ANY;
	if (type == RT_SHM) return base == SHM_INFO || base == SHM_STAT || base == SHM_STAT_ANY;
	return base == MSG_INFO || base == MSG_STAT || base == MSG_STAT_ANY;
}

static void do_ctl(struct call *c, uint8_t type)
{
	const __u64 *a = c->req->data.args;
	long nr = c->req->data.nr, semnum = 0, cmd;
	__u64 arg;
	if (type == RT_SEM) semnum = (long)a[1], cmd = (long)a[2], arg = a[3];
	else cmd = (long)a[1], arg = a[2];
	int base = (int)(cmd & ~IPC_64);
	if (index_based(type, base)) return refuse(c, type == RT_SEM ? "semctl of an index or *_INFO" : type == RT_SHM ? "shmctl of an index or *_INFO" : "msgctl of an index or *_INFO", "the application's view of them is the shim's");
	uint32_t srid;
	enum id_kind k = id_of(type, (int)a[0], &srid);
	if (k == ID_NONE) return notify_answer(c, 0, EINVAL);
	if (base == IPC_RMID) return (int)a[0] < 0 ? notify_continue(c) : do_remove(c, type, (int)a[0]);
	if (base == IPC_STAT && (int)a[0] >= 0) return do_stat(c, type, srid, nr, semnum, cmd, arg);
	if (k == ID_SAME) return notify_continue(c);
	do_ctl_mapped(c, type, srid, nr, semnum, cmd, arg);
}

static void do_shmat(struct call *c)
{
	uint32_t srid;
	if (!made_here(c, RT_SHM, (int)c->req->data.args[0], &srid)) return;
	refuse(c, "shmat of a remapped segment", "it cannot be made from outside the process (the segment would be attached in the supervisor)");
}

static void dispatch(struct call *c)
{
	const __u64 *a = c->req->data.args;
	switch (c->req->data.nr) {
	case SYS_semget: return do_get(c, RT_SEM, (key_t)a[0], (size_t)(int)a[1], (int)a[2]);
	case SYS_shmget: return do_get(c, RT_SHM, (key_t)a[0], (size_t)a[1], (int)a[2]);
	case SYS_msgget: return do_get(c, RT_MSG, (key_t)a[0], 0, (int)a[1]);
	case SYS_semop: return do_semop(c, 0);
	case SYS_semtimedop: return do_semop(c, 1);
	case SYS_semctl: return do_ctl(c, RT_SEM);
	case SYS_shmctl: return do_ctl(c, RT_SHM);
	case SYS_msgctl: return do_ctl(c, RT_MSG);
	case SYS_msgsnd: return do_msg(c, 1);
	case SYS_msgrcv: return do_msg(c, 0);
	case SYS_shmat: return do_shmat(c);
	}
}

int ipc_call(struct call *c)
{
	if (!call_name(c->req->data.nr)) return 0;
	if (!(tables = notify_tables_lock())) {
		notify_warn(c, "cannot open the tables of application '%s' for %s", getenv("APPSHOT_AID"), call_name(c->req->data.nr));
		notify_answer(c, 0, ENOSPC);
		return 1;
	}
	dispatch(c);
	notify_tables_unlock();
	return 1;
}
