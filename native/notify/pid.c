/* Process IDs for a program the shim does not reach (notify.h), notified
 * only in a remapped application (elsewhere every vpid is its spid): the
 * calls that give a PID are answered with the vpid from the tables (a
 * process is recorded at its first notified call, as the shim records
 * itself at start); the calls that take one are made from the supervisor
 * with the spid when the PID is one of the application's remapped vpids,
 * else left to the kernel as they are.
 *
 * Not done from outside: wait4 and waitid (only a process's parent may reap
 * it, so the supervisor cannot make the call for it) and fork's result (a
 * notification cannot change what the kernel returns): a static parent
 * sees its children's kernel PIDs there. So a child that such a parent
 * forked is recorded with its kernel PID as its vpid, in a remapped
 * application too: fork, wait, kill and the child's own getpid then agree.
 * A signal sent for the program by the supervisor carries the supervisor's
 * PID as its sender. */
#define _GNU_SOURCE
#include "notify_int.h"
#include "../core/procinfo.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The vpid of spid if it is one of the application's processes' (0 if
 * not); else spid. */
static pid_t to_virtual(pid_t spid)
{
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	uint32_t vpid = (uint32_t)spid;
	if (!t) return spid;
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (tabledb_rev(t, txn, RT_PID, (uint32_t)spid, &vpid) != REV_MINE) vpid = (uint32_t)spid;
		mdb_txn_abort(txn);
	}
	notify_tables_unlock();
	return (pid_t)vpid;
}

/* The spid of an application vpid; any other PID (the supervisor, PID 1, a
 * host daemon) as it is: the kernel judges it. */
static pid_t to_system(pid_t vpid)
{
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	struct fwd_val row;
	pid_t spid = vpid;
	if (!t || vpid <= 0) {
		if (t) notify_tables_unlock();
		return vpid;
	}
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (tabledb_fwd(t, txn, RT_PID, (uint32_t)vpid, &row) == 0) spid = (pid_t)row.srid;
		mdb_txn_abort(txn);
	}
	notify_tables_unlock();
	return spid;
}

uint32_t notify_vpid(struct call *c)
{
	struct proc *p = c->proc;
	if (p->vpid) return p->vpid;
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	uint32_t vpid = 0;
	if (!t) return (uint32_t)p->tgid;
	/* Most often recorded already: by its parent under the shim at fork. */
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (tabledb_pid_lookup(t, txn, (uint32_t)p->tgid, p->ticks, &vpid)) vpid = 0;
		mdb_txn_abort(txn);
	}
	pid_t parent = proc_parent(p->tgid);
	struct proc *pp = !vpid && parent > 0 ? notify_proc_find(parent) : NULL;
	/* Forked by a program under the filter, which holds its kernel PID. */
	uint32_t want = pp && notify_kind(pp) == KIND_NOTIFIED ? (uint32_t)p->tgid : 0;
	if (!vpid && tabledb_write_lock(t) == 0) {
		if (mdb_txn_begin(t->env, NULL, 0, &txn) == 0) {
			if (tabledb_pid_record(t, txn, (uint32_t)p->tgid, p->ticks, want, (uint32_t)(parent > 0 ? parent : 0), &vpid) == 0) {
				int rc = mdb_txn_commit(txn);
				if (rc && rc != MDB_EMPTY_TXN) vpid = 0;
			} else {
				mdb_txn_abort(txn);
				vpid = 0;
			}
		}
		tabledb_write_unlock(t);
	}
	notify_tables_unlock();
	/* Not recorded (the tables failed): its kernel PID, as the shim's
	 * fallback gives, and asked again next time. */
	if (!vpid) return (uint32_t)p->tgid;
	return p->vpid = vpid;
}

/* A signal call: made here when a PID argument was one of the
 * application's remapped vpids, else the program's own. */
static void signal_call(struct call *c, long nr, int npids)
{
	const __u64 *a = c->req->data.args;
	pid_t s[2] = { (pid_t)a[0], (pid_t)a[1] };
	int changed = 0;
	for (int i = 0; i < npids; i++) {
		pid_t v = s[i];
		s[i] = to_system(v);
		changed |= s[i] != v;
	}
	if (!changed) return notify_continue(c);
	long r = npids == 2 ? syscall(nr, s[0], s[1], (int)a[2]) : syscall(nr, s[0], (int)a[1]);
	notify_answer(c, 0, r ? errno : 0);
}

int pid_call(struct call *c)
{
	pid_t tid = (pid_t)c->req->pid;
	switch (c->req->data.nr) {
	case SYS_getpid: notify_answer(c, notify_vpid(c), 0); return 1;
	case SYS_gettid: /* the main thread's tid is the pid */
		notify_answer(c, tid == c->proc->tgid ? (long)notify_vpid(c) : tid, 0);
		return 1;
	case SYS_getppid: {
		pid_t parent = proc_parent(c->proc->tgid);
		if (parent < 0) notify_continue(c);
		else notify_answer(c, to_virtual(parent), 0);
		return 1;
	}
	case SYS_kill: signal_call(c, SYS_kill, 1); return 1;
	case SYS_tkill: signal_call(c, SYS_tkill, 1); return 1;
	case SYS_tgkill: signal_call(c, SYS_tgkill, 2); return 1;
	}
	return 0;
}
