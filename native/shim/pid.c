/* Process IDs: every PID the program sees is virtual (a vpid), and every
 * PID it passes is translated to the kernel's (spid). A fresh
 * application's processes get vpid == spid (identity first); a remapped
 * one (--no-identity, or a restored application) gets vpids from the
 * remapped range, which no kernel PID reaches. A PID that is not one of the
 * application's names a process outside it by its real number: the
 * harness, PID 1, a daemon of the host, all reached as natively.
 *
 * A process's own vpid lives in memory, so getpid costs less than the
 * system call. The parent records a fork child's row right after fork
 * (one write transaction, no round trip to another process); a remapped
 * child knows its vpid before it runs, from a vpid its parent reserved. */
#define _GNU_SOURCE
#include "pid.h"
#include "../core/rawcall.h"
#include "real.h"
#include "trap.h"
#include "../core/procinfo.h"
#include "../core/afterfork.h"
#include "../core/text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Written in a fork child: on the page it copies anyway (core/afterfork.h). */
static uint32_t self_vpid APPSHOT_AFTER_FORK;
/* A remapped fork child whose parent may not have committed its row yet:
 * it records the row itself before an exec, so the new program finds it. */
static int self_unconfirmed APPSHOT_AFTER_FORK;
/* Reserved for the next fork child, set before fork so that the child's
 * atfork handler finds it in its copy of memory. */
static uint32_t next_child_vpid APPSHOT_AFTER_FORK;
/* This process's start tick when known exactly (0: not known): what its
 * next program takes as its own (pid_start_entry), without /proc. */
static uint64_t self_ticks APPSHOT_AFTER_FORK;
static __thread uint32_t self_vtid __attribute__((tls_model("initial-exec")));
static pthread_key_t thread_row_key;
static pthread_once_t thread_row_key_once = PTHREAD_ONCE_INIT;

/* The processes this one recorded lately (its children) and itself, for
 * signal handlers: a handler may not read LMDB, and a child's row is
 * newer than any translation cache. Lock-free: a writer clears spid first
 * and sets it last, a reader checks it again after reading vpid. */
#define KNOWN_PIDS 64
static struct {
	_Atomic uint32_t spid, vpid;
	/* A child this process made and has not reaped yet: waitpid may take
	 * its vpid from here (child_vpid). */
	_Atomic uint32_t child;
} known[KNOWN_PIDS] APPSHOT_AFTER_FORK;
static _Atomic unsigned known_next APPSHOT_AFTER_FORK;

APPSHOT_AFTER_FORK_CODE static void remember(pid_t spid, uint32_t vpid, int child)
{
	/* One slot per process: an older one of its number goes first, so a
	 * number the kernel gave again is never answered with the dead one's
	 * vpid. */
	for (unsigned j = 0; j < KNOWN_PIDS; j++)
		if (atomic_load(&known[j].spid) == (uint32_t)spid) atomic_store(&known[j].spid, 0);
	unsigned i = atomic_fetch_add(&known_next, 1) % KNOWN_PIDS;
	atomic_store(&known[i].spid, 0);
	atomic_store(&known[i].child, (uint32_t)child);
	atomic_store(&known[i].vpid, vpid);
	atomic_store(&known[i].spid, (uint32_t)spid);
}

static int known_vpid(pid_t spid, uint32_t *vpid)
{
	for (unsigned i = 0; i < KNOWN_PIDS; i++) {
		if (atomic_load(&known[i].spid) != (uint32_t)spid) continue;
		uint32_t v = atomic_load(&known[i].vpid);
		if (atomic_load(&known[i].spid) != (uint32_t)spid) continue;
		*vpid = v;
		return 0;
	}
	return -1;
}

/* The vpid of child spid, which this process recorded and has not
 * reaped; reaped, the mark goes (a later process with its number is not
 * this child). -1 if it has no such entry. */
static int child_vpid(pid_t spid, int reaping, uint32_t *vpid)
{
	for (unsigned i = 0; i < KNOWN_PIDS; i++) {
		if (atomic_load(&known[i].spid) != (uint32_t)spid || !atomic_load(&known[i].child)) continue;
		uint32_t v = atomic_load(&known[i].vpid);
		if (atomic_load(&known[i].spid) != (uint32_t)spid) continue;
		if (reaping) atomic_store(&known[i].child, 0);
		*vpid = v;
		return 0;
	}
	return -1;
}

/* The kernel PID of child vpid, which this process recorded and has not
 * reaped: -1 if it has no such entry. */
static int child_spid(uint32_t vpid, pid_t *spid)
{
	for (unsigned i = 0; i < KNOWN_PIDS; i++) {
		uint32_t s = atomic_load(&known[i].spid);
		if (!s || atomic_load(&known[i].vpid) != vpid || !atomic_load(&known[i].child)) continue;
		if (atomic_load(&known[i].spid) != s) continue;
		*spid = (pid_t)s;
		return 0;
	}
	return -1;
}

static pid_t sys_getpid(void) { return (pid_t)raw_call(SYS_getpid); }
static pid_t sys_gettid(void) { return (pid_t)raw_call(SYS_gettid); }

/* What a program's starter tells it in APPSHOT_SPAWN_START, so that its
 * start needs neither /proc nor the tables (issue 21): its parent through
 * posix_spawn, or the process itself through exec, writes
 * TICK:PARENT:VPID:PARENT_VPID:FLAGS.
 *   TICK         its start tick, 0 when not known: the tick the parent read
 *                before the spawn (or the exec'ing process's own); when the
 *                program's first clock reading falls in it, its start is that
 *                tick too (it started after the one reading and before the
 *                other), which costs no /proc read (40-90 us of CPU)
 *   PARENT       its kernel parent's PID: a program that merely inherited the
 *                entry (a grandchild, a program of a restored image) has
 *                another and takes nothing from it
 *   VPID         its vpid, 0 for its own kernel PID (the identity child of a
 *                posix_spawn, whose number nobody knows before)
 *   PARENT_VPID  its parent's vpid (getppid's answer), 0 when not known
 *   FLAGS        START_NO_REDIRECTS: the starter had no path redirections;
 *                START_REMAPPED: the application runs remapped
 * The starter writes the program's row (an exec's process had it; a
 * posix_spawn's parent right after the spawn), so the program reads no
 * row at start, and with no redirections to read it leaves its tables
 * for their first use (process.c). The entry is removed here, so the
 * program and its children never see it. */
#define START_NO_REDIRECTS 1u
#define START_REMAPPED 2u
static struct {
	pid_t parent;
	uint32_t vpid, parent_vpid, flags;
	uint64_t tick; /* 0: not known */
	int valid;     /* an entry its starter made for it */
	int deferring; /* the tables left for their first use */
} start;

/* Whether the application runs remapped: the tables' flag, or before they
 * are opened the start entry's (getpid may ask, and must not open them:
 * ld.so's own getpid under LD_DEBUG comes here from a lazy binding). */
static int remapped(void)
{
	const struct tabledb *t = shim_tables_if_open();
	if (!t && start.deferring) return (start.flags & START_REMAPPED) != 0;
	return ((t ? t : shim_tables())->app_flags & APP_FLAG_NO_IDENTITY) != 0;
}

/* Records process spid (want: its vpid if known) and gives its vpid. A
 * table error leaves the process untranslated (vpid = spid) rather than
 * stopping it: the program runs on, and says so. */
struct lookup_pid {
	uint32_t spid, vpid;
	uint64_t ticks;
};

static int recorded_in(MDB_txn *txn, void *arg)
{
	struct lookup_pid *l = arg;
	return tabledb_pid_lookup(shim_tables(), txn, l->spid, l->ticks, &l->vpid);
}

/* Writes process spid's row (started at ticks), unless it is there;
 * child: one this process just made. */
static uint32_t record_row(pid_t spid, uint64_t ticks, uint32_t want, int child)
{
	uint32_t vpid = (uint32_t)spid;
	MDB_txn *txn = write_begin_unfolded();
	int rc = tabledb_pid_record(shim_tables(), txn, (uint32_t)spid, ticks, want, (uint32_t)shim_pid, &vpid);
	if (rc) {
		write_abort(txn);
		shim_warn("cannot record process %d in %s: %s", (int)spid, shim_tables()->path, mdb_strerror(rc));
		return want ? want : (uint32_t)spid;
	}
	/* A vpid whose row did not commit is nobody's: not remembered, and the
	 * process is left as a failed record leaves it (write_commit warned). */
	if (write_commit(txn)) return want ? want : (uint32_t)spid;
	remember(spid, vpid, child);
	return vpid;
}

/* Process spid, started at ticks: its vpid, its row written if it has
 * none. Most often the row is there (a program after exec, a child its
 * parent recorded first): a read tells, without the write lock. */
static uint32_t record_started(pid_t spid, uint64_t ticks, uint32_t want)
{
	struct lookup_pid l = { (uint32_t)spid, 0, ticks };
	if (with_read_txn(recorded_in, &l) == 0) return l.vpid;
	return record_row(spid, ticks, want, 0);
}

static uint32_t record(pid_t spid, uint32_t want)
{
	uint64_t ticks = 0;
	if (proc_start_ticks(spid, &ticks) != 0) return want ? want : (uint32_t)spid; /* gone already */
	return record_started(spid, ticks, want);
}

/* A child's start time without reading /proc/<spid>/stat (an open, a read
 * and a close, and the kernel formatting 52 fields, on every fork): the
 * kernel stamps a new process with CLOCK_BOOTTIME and /proc gives it in
 * clock ticks (USER_HZ), so when the clock read before the fork and the one
 * after fall in the same tick, the child's start is that tick. The first
 * child a process makes is checked against /proc too; a kernel that
 * disagrees is read through /proc from then on. */
static long clock_ticks_per_sec;
static int boot_clock_agrees = -1; /* -1: not checked yet */

static uint64_t to_ticks(const struct timespec *ts)
{
	return ((uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec) / (1000000000u / (uint64_t)clock_ticks_per_sec);
}

uint64_t pid_clock(void)
{
	struct timespec ts;
	if (clock_ticks_per_sec <= 0 || clock_gettime(CLOCK_BOOTTIME, &ts) != 0) return 0;
	return to_ticks(&ts);
}

/* The same clock by system call, for the one reading a new program makes
 * at its start and the one a fork child makes before fork returns: through
 * the vDSO it would fault in the vDSO's pages and libc's clock_gettime
 * (10-14 us each in a VM; a fork child does not get its parent's mappings
 * of them), for a process that may never read the clock again; the system
 * call is ~1 us. */
static uint64_t pid_clock_by_call(void)
{
	struct timespec ts;
	if (clock_ticks_per_sec <= 0 || raw_call(SYS_clock_gettime, CLOCK_BOOTTIME, &ts) != 0) return 0;
	return to_ticks(&ts);
}

static int start_entry(char *buf, size_t len, uint64_t tick, pid_t parent, uint32_t vpid, uint32_t parent_vpid, int redirected)
{
	if (boot_clock_agrees != 1) tick = 0; /* not known to match /proc here */
	unsigned flags = (redirected ? 0 : START_NO_REDIRECTS) | (remapped() ? START_REMAPPED : 0);
	int n = snprintf(buf, len, SPAWN_START_ENV "=%llu:%d:%u:%u:%u", (unsigned long long)tick, (int)parent, vpid, parent_vpid, flags);
	return n > 0 && (size_t)n < len;
}

int pid_spawn_start_entry(char *buf, size_t len, uint64_t before, uint32_t vpid, int redirected)
{
	return start_entry(buf, len, before, shim_pid, vpid, self_vpid, redirected);
}

/* For an exec: the program that replaces this one is this process, started
 * at self_ticks, with its vpid, and its kernel parent this one's (a fork
 * child's exec, a shell's command, most often within the tick it was forked
 * in), whose vpid it knows when that parent forked it or was named in its
 * own start entry. */
int pid_exec_start_entry(char *buf, size_t len, int redirected)
{
	pid_t parent = (pid_t)raw_call(SYS_getppid);
	uint32_t parent_vpid = 0;
	if (parent == start.parent) parent_vpid = start.parent_vpid;
	else if (known_vpid(parent, &parent_vpid) != 0) parent_vpid = 0;
	return start_entry(buf, len, self_ticks, parent, self_vpid, parent_vpid, redirected);
}

/* The number at *p, then sep (moved past it): 0, or -1. No strtoul: a
 * program's start reads these (core/text.h). */
static int read_u32(const char **p, char sep, uint32_t *out)
{
	uint64_t v;
	const char *end = text_decimal(*p, 0x7fffffff, &v);
	if (!end || *end != sep) return -1;
	*out = (uint32_t)v;
	*p = end + (sep != 0);
	return 0;
}

int pid_read_start(void)
{
	/* From the auxiliary vector, as sysconf has it, without sysconf's code
	 * (two pages a program's start would fault in for it). */
	clock_ticks_per_sec = (long)getauxval(AT_CLKTCK);
	if (clock_ticks_per_sec <= 0) clock_ticks_per_sec = sysconf(_SC_CLK_TCK);
	const char *s = getenv(SPAWN_START_ENV);
	if (!s) return 0;
	uint64_t tick;
	const char *p = text_decimal(s, UINT64_MAX, &tick);
	uint32_t parent, vpid, parent_vpid, flags;
	int ok = p && *p++ == ':' && read_u32(&p, ':', &parent) == 0 && read_u32(&p, ':', &vpid) == 0 &&
		 read_u32(&p, ':', &parent_vpid) == 0 && read_u32(&p, 0, &flags) == 0 && (long)parent == raw_call(SYS_getppid);
	unsetenv(SPAWN_START_ENV);
	if (!ok) return 0;
	start.valid = 1;
	start.parent = (pid_t)parent;
	start.vpid = vpid;
	start.parent_vpid = parent_vpid;
	start.flags = flags;
	if (tick && tick == pid_clock_by_call()) {
		start.tick = tick;
		/* The parent had checked this kernel's clock against /proc, and
		 * this one's reads as its did: this process's children may trust
		 * it too. */
		boot_clock_agrees = 1;
	}
	/* A restored application's first process takes a vpid from the
	 * harness (first_vpid), which only its row can confirm. */
	start.deferring = (flags & START_NO_REDIRECTS) && !getenv("APPSHOT_FIRST_VPID");
	return start.deferring;
}

static int child_ticks(pid_t spid, uint64_t before, uint64_t *ticks)
{
	uint64_t after = pid_clock();
	if (before && before == after && boot_clock_agrees == 1) return *ticks = before, 0;
	if (proc_start_ticks(spid, ticks) != 0) return -1;
	if (before && before == after && boot_clock_agrees == -1) boot_clock_agrees = *ticks == before;
	return 0;
}

/* A child this process just made (fork, posix_spawn), clock read before:
 * its row is new, so it is written straight away, without a read first. */
static uint32_t record_new_child(pid_t spid, uint64_t before, uint32_t want)
{
	uint64_t ticks;
	if (child_ticks(spid, before, &ticks) != 0) return want ? want : (uint32_t)spid; /* gone already */
	return record_row(spid, ticks, want, 1);
}

/* A tracer's reaps. A process that traces others (strace -f, gdb) keeps
 * them stopped while it handles their events, and strace stops a tracee at
 * every system call, one inside its tables write (LMDB's pwrite) too, while
 * it holds LMDB's write mutex. A forget in the tracer's wait wrapper would
 * then wait for that mutex, and the tracee moves on only when the tracer
 * resumes it: both wait forever. So a tracer whose write would wait for a
 * tracee of its own (stopped or not: a running one stops at its next system
 * call) keeps the reaped child's kernel PID here instead, and forgets it in
 * its next forget, at its next wait call that finds the mutex free of its
 * tracees, or at its exit. What that weakens: a reaped child's row lives on
 * until the tracee moves on, so meanwhile its vpid still translates to the
 * dead child (a new process the kernel gives the number to has a start time
 * of its own, which tells it apart, as after a crash). Only a tracer pays:
 * the try (one read of LMDB's lock file, and /proc only while the mutex is
 * held) runs in no other process. */
static atomic_int tracing; /* set at the first ptrace call that names a tracee */
#define DEFERRED_MAX 128
static _Atomic uint32_t deferred[DEFERRED_MAX];
static _Atomic unsigned deferred_count;

static int write_waits_for_tracee(void)
{
	pid_t holder = tabledb_write_holder(shim_tables());
	return holder > 0 && proc_tracer(holder) == sys_getpid();
}

/* Lock-free, as a wait call may run in a SIGCHLD handler: -1 if full (the
 * caller then forgets at once, as any process does). */
static int defer_forget(pid_t spid)
{
	for (unsigned i = 0; i < DEFERRED_MAX; i++) {
		uint32_t empty = 0;
		if (atomic_compare_exchange_strong(&deferred[i], &empty, (uint32_t)spid)) {
			atomic_fetch_add(&deferred_count, 1);
			return 0;
		}
	}
	return -1;
}

/* The forgets a tracer deferred, in the transaction of a forget. */
static int forget_deferred(MDB_txn *txn)
{
	int rc = 0;
	for (unsigned i = 0; i < DEFERRED_MAX && atomic_load(&deferred_count); i++) {
		uint32_t spid = atomic_exchange(&deferred[i], 0);
		if (!spid) continue;
		atomic_fetch_sub(&deferred_count, 1);
		/* A process of that number again: the kernel gave it to a new
		 * one meanwhile, whose row (if it has one) is not the dead
		 * child's to take. */
		if (raw_call_kernel(SYS_kill, (pid_t)spid, 0) == 0) continue;
		if (!rc) rc = tabledb_pid_forget(shim_tables(), txn, spid);
	}
	return rc;
}

/* Process spid's row goes (spid 0: only the deferred ones). */
static void forget(pid_t spid)
{
	MDB_txn *txn = write_begin_unfolded();
	int rc = spid > 0 ? tabledb_pid_forget(shim_tables(), txn, (uint32_t)spid) : 0;
	if (!rc && atomic_load(&deferred_count)) rc = forget_deferred(txn);
	if (rc) write_abort(txn);
	else write_commit(txn);
}

/* A reaped child's row goes; in a tracer, see above. A tracee that is not
 * this process's child (strace -f's grandchildren) is reported here at its
 * exit but stays a zombie until its parent reaps it: its row is the
 * parent's to forget then (and its number not free before). */
static void forget_reaped(pid_t spid)
{
	if (atomic_load_explicit(&tracing, memory_order_relaxed)) {
		if (raw_call_kernel(SYS_kill, spid, 0) == 0) return; /* errno left alone */
		if (write_waits_for_tracee() && defer_forget(spid) == 0) return;
	}
	forget(spid);
}

/* At a tracer's wait call: the forgets it deferred, once no tracee of its
 * own holds the mutex. Nothing to do in any other process. */
static void retry_deferred(void)
{
	if (atomic_load_explicit(&deferred_count, memory_order_relaxed) && !write_waits_for_tracee()) forget(0);
}

__attribute__((destructor)) static void deferred_at_exit(void) { retry_deferred(); }

/* The vpids this process reserved for its next fork children, taken
 * RESERVED_BLOCK at a time: one write transaction per that many forks, not
 * one per fork. A fork child starts with none (its copy of the block is
 * its parent's to hand out). */
#define RESERVED_BLOCK 64
static struct vrid_block reserved APPSHOT_AFTER_FORK = VRID_BLOCK_INIT;

static uint32_t reserve(void) { return vrid_block_take(&reserved, RT_PID, RESERVED_BLOCK); }

APPSHOT_AFTER_FORK_CODE static void reserved_forget(void) { reserved = (struct vrid_block)VRID_BLOCK_INIT; }

pid_t pid_to_virtual(pid_t spid)
{
	uint32_t vpid;
	if (spid <= 0) return spid;
	if (spid == shim_pid) return (pid_t)self_vpid;
	return sr_to_vr(RT_PID, (uint32_t)spid, &vpid) == 0 ? (pid_t)vpid : spid;
}

/* The kernel's PID for a PID the program passed. A remapped vpid the
 * application does not have goes to the kernel as it is: no kernel PID is
 * that large, so it names no process there, and the kernel answers as for
 * any PID it does not know, after the checks it makes first (a bad
 * pointer, a bad flag), with its own errno. So this never fails. */
int pid_to_system(pid_t vpid, pid_t *spid)
{
	uint32_t s;
	if (vpid <= 0) *spid = vpid;
	else if ((uint32_t)vpid == self_vpid) *spid = shim_pid;
	else if (vr_to_sr(RT_PID, (uint32_t)vpid, &s) == 0) *spid = (pid_t)s;
	else *spid = vpid;
	return 0;
}

/* A kill-style PID argument: >0 a process, <-1 a process group, 0 and -1
 * as they are, and INT_MIN too (it has no positive group; the kernel
 * refuses it with ESRCH). */
int pid_target_to_system(pid_t pid, pid_t *out)
{
	if (pid == 0 || pid == -1 || pid == INT_MIN) return *out = pid, 0;
	pid_t s;
	pid_to_system(pid > 0 ? pid : -pid, &s);
	*out = pid > 0 ? s : -s;
	return 0;
}

/* A thread's row goes with it: named by its kernel TID now (this runs in
 * the exiting thread), and only while it has one (a restore forgets the
 * rows of the process it was). */
static void forget_thread(void *arg)
{
	(void)arg;
	pid_t stid = sys_gettid();
	if (self_vtid && stid != shim_pid) forget(stid);
}

static void make_thread_row_key(void) { pthread_key_create(&thread_row_key, forget_thread); }

/* APPSHOT_FIRST_VPID: a restored application's first process takes the
 * vpid its first process had (a pid file written before the snapshot
 * names it again). Read once and removed, so its children do not ask. */
static uint32_t first_vpid(void)
{
	const char *s = getenv("APPSHOT_FIRST_VPID");
	if (!s) return 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	unsetenv("APPSHOT_FIRST_VPID");
	return *end == 0 && v > 0 && v < 0x7fffffff ? (uint32_t)v : 0;
}

void pid_init(void)
{
	shim_pid = sys_getpid();
	if (start.deferring) {
		/* Its row is its starter's to write (the start entry above). */
		self_ticks = start.tick;
		self_vpid = start.vpid ? start.vpid : (uint32_t)shim_pid;
		return;
	}
	uint64_t ticks = start.tick;
	uint32_t want = first_vpid();
	/* A row not written yet by the starter is written here under the vpid
	 * it reserved (it finds this one when it writes). */
	if (!want && start.valid) want = start.vpid;
	if (!ticks && proc_start_ticks(shim_pid, &ticks) != 0) {
		self_vpid = want ? want : (uint32_t)shim_pid; /* as record() leaves a process it cannot read */
		return;
	}
	self_ticks = ticks;
	self_vpid = record_started(shim_pid, ticks, want);
}

/* The tables opened at last after a deferred start (process.c): the row
 * the starter wrote is looked up, and written now if the starter died
 * before it could (a started program's start costs no read of it). */
void pid_tables_opened(void)
{
	uint64_t ticks = self_ticks;
	if (!ticks && proc_start_ticks(shim_pid, &ticks) != 0) return;
	uint32_t vpid = record_started(shim_pid, ticks, self_vpid == (uint32_t)shim_pid ? 0 : self_vpid);
	if (vpid != self_vpid)
		shim_warn("process %d: its starter named it %u, but its row in application '%s' says %u; it is %u now",
			  (int)shim_pid, self_vpid, shim_tables()->aid, vpid, vpid);
	self_vpid = vpid;
}

APPSHOT_AFTER_FORK_CODE void pid_after_fork_child(void)
{
	/* The parent's children are not this process's to reap. */
	for (unsigned i = 0; i < KNOWN_PIDS; i++)
		if (atomic_load(&known[i].child)) atomic_store(&known[i].child, 0);
	remember(shim_pid, self_vpid, 0); /* the parent, as it was */
	reserved_forget();
	shim_pid = sys_getpid();
	self_ticks = 0; /* the parent's; fork's wrapper sets the child's */
	/* Written only when set: its page (the thread's TLS) is one the child
	 * copies from its parent at the first store. */
	if (self_vtid) self_vtid = 0;
	if (next_child_vpid) {
		self_vpid = next_child_vpid;
		self_unconfirmed = 1;
	} else {
		self_vpid = (uint32_t)shim_pid;
		/* A fork our wrapper did not make (inside libc): in a
		 * remapped application the row is made on first need. */
		self_unconfirmed = remapped();
	}
	next_child_vpid = 0;
}

void pid_before_exec(void)
{
	if (!self_unconfirmed) return;
	/* Cleared first: record's calls may come back to getpid (a lazy
	 * binding under LD_DEBUG makes ld.so call it, trap.c), which must not
	 * record again inside the write (it would wait for its own lock). */
	self_unconfirmed = 0;
	self_vpid = record(shim_pid, self_vpid == (uint32_t)shim_pid ? 0 : self_vpid);
}

/* ---------------------------------------------------------- after restore */

/* From shim_restored_entry (no lock, no libc): a thread's vtid (tp its
 * thread pointer, my_tp the caller's) forgotten, since its row was the old
 * application's and its kernel TID is new; it gets a row again on its next
 * gettid. The processes remembered for signal handlers were the old ones. */
void pid_forget_thread(uintptr_t tp, uintptr_t my_tp)
{
	uintptr_t at = tp + ((uintptr_t)&self_vtid - my_tp);
	*(volatile uint32_t *)at = 0;
}

void pid_restored_entry(void)
{
	for (unsigned i = 0; i < KNOWN_PIDS; i++) atomic_store(&known[i].spid, 0);
	next_child_vpid = 0;
	self_ticks = 0; /* a new kernel process */
	reserved.left = 0; /* reserved in the old application's tables */
	boot_clock_agrees = -1; /* maybe another kernel now: checked again */
	start.parent = 0; /* the kernel's PIDs are new */
	start.parent_vpid = 0;
}

/* The renewal: this process's vpid is the one it had (it is in memory, and
 * the program may hold it); the restorer bound it to the new kernel PID in
 * the restored application's tables. If it did not, the row is made here. */
void pid_restored(void)
{
	self_unconfirmed = 0;
	uint32_t vpid = record(shim_pid, self_vpid);
	if (vpid != self_vpid)
		shim_warn("restored process %d: its vpid %u is taken in application '%s', so it is %u now",
			  (int)shim_pid, self_vpid, shim_tables()->aid, vpid);
	self_vpid = vpid;
}

WRAPPER(getpid)
{
	if (!shim_active) return sys_getpid();
	shim_check_fork();
	if (__builtin_expect(self_unconfirmed && self_vpid == (uint32_t)shim_pid && remapped(), 0))
		pid_before_exec();
	return (pid_t)self_vpid;
}

/* getpid's wrapper under a hidden name (pid.h): a direct call, no PLT. */
extern __typeof(getpid) pid_getpid __attribute__((alias("getpid"), copy(getpid), visibility("hidden")));

WRAPPER(gettid)
{
	if (!shim_active) return sys_gettid();
	shim_check_fork();
	if (self_vtid) return (pid_t)self_vtid;
	pid_t stid = sys_gettid();
	if (stid == shim_pid) return (pid_t)(self_vtid = self_vpid);
	self_vtid = record(stid, 0);
	/* The row goes with the thread; a restore forgets it (process.c).
	 * The key is made by the first thread that needs it, not at start:
	 * its first use writes a page of libc's that most programs never
	 * touch (a new page is 3-4 us here; issue 21). */
	pthread_once(&thread_row_key_once, make_thread_row_key);
	pthread_setspecific(thread_row_key, (void *)1);
	shim_thread_seen();
	return (pid_t)self_vtid;
}

APPSHOT_AFTER_FORK_CODE WRAPPER(fork)
{
	if (!shim_active) return REAL(fork)();
	uint32_t want = remapped() ? reserve() : 0;
	next_child_vpid = want;
	uint64_t before = pid_clock();
	pid_t spid = REAL(fork)();
	next_child_vpid = 0;
	/* The child: started within [before, now]; exactly known when both
	 * fall in one tick (its exec then needs no /proc read). */
	if (spid == 0 && before && pid_clock_by_call() == before) self_ticks = before;
	if (spid <= 0) return spid; /* the child, or a failure */
	return (pid_t)record_new_child(spid, before, want);
}

/* vfork is fork here: a vfork child shares the parent's memory and stack,
 * and the bookkeeping above cannot run in it. POSIX lets vfork be fork. */
WRAPPER(vfork) { return fork(); }

uint32_t pid_spawn_vpid(void) { return shim_active && remapped() ? reserve() : 0; }

pid_t pid_record_child(pid_t spid, uint64_t before, uint32_t want)
{
	return shim_active && spid > 0 ? (pid_t)record_new_child(spid, before, want) : spid;
}

/* A waited-for child: its vpid for the caller; if it was reaped, its row
 * goes (the kernel may give its number to a new process now). */
static pid_t reaped(pid_t spid, int still_there)
{
	if (spid <= 0) return spid;
	/* Most often a child this process recorded itself: its vpid is known
	 * without a read of the tables (which its own commit just made the
	 * cache miss). */
	uint32_t known_as;
	pid_t vpid;
	if (child_vpid(spid, !still_there, &known_as) == 0) vpid = (pid_t)known_as;
	/* A tracer learns of its tracees' children from ptrace's event
	 * message, which is the kernel's PID (see ptrace below), and before
	 * their rows exist: a tracee it did not fork itself is reported by
	 * that number, or strace -f would meet the same process under two
	 * (remapped mode: "Exit of unknown pid"). A PID the program passes
	 * back reaches the same process (pid_to_system passes a number that is
	 * not a vpid through). Its own children keep their vpids, while they
	 * are in the known list (the last KNOWN_PIDS it recorded). */
	else if (atomic_load_explicit(&tracing, memory_order_relaxed)) vpid = spid;
	else vpid = pid_to_virtual(spid);
	if (!still_there) forget_reaped(spid);
	return vpid;
}

/* A wait call's PID argument. Most often a child this process recorded,
 * found without the tables: its own commit emptied the translation cache,
 * and the read that refills it costs more than the wait. */
static pid_t wait_target(pid_t pid)
{
	pid_t spid;
	if (pid > 0 && child_spid((uint32_t)pid, &spid) == 0) return spid;
	pid_target_to_system(pid, &spid);
	return spid;
}

static int stopped_or_continued(int status) { return WIFSTOPPED(status) || WIFCONTINUED(status); }

/* EFAULT from a wait for one child: the kernel reaps the child before it
 * finds it cannot write the status, so the child may be gone, and its row
 * must go with it. */
static void reaped_unwritten(pid_t spid)
{
	int e = errno;
	if (e == EFAULT && spid > 0 && raw_call(SYS_kill, spid, 0) < 0 && errno == ESRCH) forget_reaped(spid);
	errno = e;
}

/* The wait calls hand the caller's status, rusage and siginfo pointers to
 * the kernel, which writes them only when it has something to write (not
 * on ECHILD, not for WNOHANG with nothing to report), and refuses a bad
 * one with EFAULT; the status is read back only after the kernel wrote it.
 * A PID the application does not have goes to the kernel as it is, which
 * gives its own errno (ECHILD, or ESRCH for INT_MIN). */
WRAPPER(waitpid)
{
	if (!shim_active) return REAL(waitpid)(pid, status, options);
	retry_deferred();
	pid_t spid = wait_target(pid);
	int st, *sp = status ? status : &st;
	pid_t r = REAL(waitpid)(spid, sp, options);
	if (r < 0) reaped_unwritten(spid);
	return reaped(r, r > 0 && stopped_or_continued(*sp));
}

WRAPPER(wait) { return waitpid(-1, status, 0); }

WRAPPER(wait4)
{
	if (!shim_active) return REAL(wait4)(pid, status, options, usage);
	retry_deferred();
	pid_t spid = wait_target(pid);
	int st, *sp = status ? status : &st;
	pid_t r = REAL(wait4)(spid, sp, options, usage);
	if (r < 0) reaped_unwritten(spid);
	return reaped(r, r > 0 && stopped_or_continued(*sp));
}

WRAPPER(wait3) { return wait4(-1, status, options, usage); }

WRAPPER(waitid)
{
	if (!shim_active) return REAL(waitid)(idtype, id, info, options);
	retry_deferred();
	pid_t sid = (pid_t)id;
	if (idtype == P_PID && (pid_t)id > 0) sid = wait_target((pid_t)id);
	else if (idtype == P_PID || idtype == P_PGID) pid_to_system((pid_t)id, &sid);
	int r = REAL(waitid)(idtype, (id_t)sid, info, options);
	if (r < 0 && idtype == P_PID && !(options & WNOWAIT)) reaped_unwritten(sid);
	if (r == 0 && info && info->si_pid > 0) {
		int gone = !(options & WNOWAIT) && (info->si_code == CLD_EXITED || info->si_code == CLD_KILLED ||
						    info->si_code == CLD_DUMPED);
		info->si_pid = reaped(info->si_pid, !gone);
	}
	return r;
}

/* The kernel's number for a PID argument, as an expression: every PID
 * wrapper below translates with pid_to_system, which never fails (an
 * unknown PID goes to the kernel as it is, for the kernel's own errno). */
static pid_t sys_of(pid_t pid)
{
	pid_t s;
	pid_to_system(pid, &s);
	return s;
}

static pid_t sys_target_of(pid_t pid)
{
	pid_t s;
	pid_target_to_system(pid, &s);
	return s;
}

/* Caller memory the shim must read before the kernel sees it (a PID inside
 * a struct): copied by the kernel, so that a bad pointer is -1 here, not
 * SIGSEGV, and the caller's pointer goes to the kernel untouched, which
 * answers EFAULT as natively. Costs one system call: only the rare calls
 * that carry a PID in memory use it. */
static int copy_in(void *dst, const void *src, size_t n)
{
	struct iovec local = { dst, n }, remote = { (void *)src, n };
	long r = raw_call(SYS_process_vm_readv, (pid_t)raw_call(SYS_getpid), &local, 1, &remote, 1, 0);
	if (r == (long)n) return 0;
	if (r < 0 && errno != EFAULT) { /* no process_vm_readv here (a seccomp profile): read it ourselves */
		memcpy(dst, src, n);
		return 0;
	}
	return -1;
}

WRAPPER(kill)
{
	if (!shim_active) return REAL(kill)(pid, sig);
	return REAL(kill)(sys_target_of(pid), sig);
}

WRAPPER(killpg)
{
	if (!shim_active) return REAL(killpg)(pgrp, sig);
	return REAL(killpg)(sys_of(pgrp), sig);
}

WRAPPER(sigqueue)
{
	if (!shim_active) return REAL(sigqueue)(pid, sig, value);
	return REAL(sigqueue)(sys_of(pid), sig, value);
}

WRAPPER(tgkill)
{
	if (!shim_active) return REAL(tgkill)(tgid, tid, sig);
	return REAL(tgkill)(sys_of(tgid), sys_of(tid), sig);
}

/* Process groups and sessions are named by their leader's PID. */
WRAPPER(getpgid)
{
	if (!shim_active) return REAL(getpgid)(pid);
	return pid_to_virtual(REAL(getpgid)(sys_of(pid)));
}

WRAPPER(getsid)
{
	if (!shim_active) return REAL(getsid)(pid);
	return pid_to_virtual(REAL(getsid)(sys_of(pid)));
}

WRAPPER(setpgid)
{
	if (!shim_active) return REAL(setpgid)(pid, pgid);
	return REAL(setpgid)(sys_of(pid), sys_of(pgid));
}

WRAPPER(tcsetpgrp)
{
	if (!shim_active) return REAL(tcsetpgrp)(fd, pgrp);
	return REAL(tcsetpgrp)(fd, sys_of(pgrp));
}

/* F_GETOWN and F_SETOWN: a positive owner is a process, a negative one a
 * process group; F_GETLK names the process that holds a lock. The
 * argument is read as the kernel reads it, a long. */
static long fcntl_arg(va_list ap) { return va_arg(ap, long); }

static int setown_ex(int (*real)(int, int, ...), int fd, int cmd, struct f_owner_ex *o)
{
	struct f_owner_ex so;
	if (copy_in(&so, o, sizeof so)) return real(fd, cmd, o); /* the kernel's EFAULT */
	so.pid = sys_of(so.pid);
	return real(fd, cmd, &so);
}

static int owner_fcntl(int (*real)(int, int, ...), int fd, int cmd, long arg)
{
	if (!shim_active) return real(fd, cmd, arg);
	if (cmd == F_GETOWN) {
		int r = real(fd, cmd);
		return r > 0 ? pid_to_virtual(r) : r < -1 ? -pid_to_virtual(-r) : r;
	}
	if (cmd == F_SETOWN) return real(fd, cmd, (long)sys_target_of((pid_t)arg));
	if (cmd == F_SETOWN_EX) return setown_ex(real, fd, cmd, (struct f_owner_ex *)arg);
	int r = real(fd, cmd, arg);
	/* What the kernel wrote, read back only when it wrote it. */
	if (r == 0 && cmd == F_GETOWN_EX) {
		struct f_owner_ex *o = (struct f_owner_ex *)arg;
		if (o->pid > 0) o->pid = pid_to_virtual(o->pid);
	} else if (r == 0 && cmd == F_GETLK) { /* F_GETLK64 is the same command on 64-bit */
		struct flock *l = (struct flock *)arg;
		/* LMDB asks F_GETLK of its own lock file while it opens the
		 * tables: that answer is for LMDB, in kernel PIDs. */
		if (l->l_type != F_UNLCK && l->l_pid > 0 && !shim_in_tables()) l->l_pid = pid_to_virtual(l->l_pid);
	}
	return r;
}

WRAPPER(fcntl)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = fcntl_arg(ap);
	va_end(ap);
	return owner_fcntl(REAL(fcntl), fd, cmd, arg);
}

WRAPPER(fcntl64)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = fcntl_arg(ap);
	va_end(ap);
	return owner_fcntl(REAL(fcntl64), fd, cmd, arg);
}

/* Policy PID_ARG (wrapped.def): the calls that take a PID, 0 meaning the
 * caller. */
#define PID_ARG_WRAPPER(ret, name, args, fail, pid)                            \
	WRAPPER(name)                                                          \
	{                                                                      \
		if (shim_active && pid != 0) pid = sys_of(pid);                \
		return REAL(name) args;                                        \
	}
WRAPPED_PID_ARG(PID_ARG_WRAPPER)

/* Policy PID_SYSCALL: the same for calls that are one system call in libc
 * and whose number the seccomp filter traps: the kernel is called from
 * the shim's own instruction (rawcall.h). */
#define PID_SYSCALL_WRAPPER(ret, name, args, fail, pid)                        \
	WRAPPER(name)                                                          \
	{                                                                      \
		if (shim_active && pid != 0) pid = sys_of(pid);                \
		return (ret)raw_call(SYS_##name, UNPAREN args);                \
	}
#define UNPAREN(...) __VA_ARGS__
WRAPPED_PID_SYSCALL(PID_SYSCALL_WRAPPER)

/* getpriority and setpriority: PRIO_PROCESS names a process, PRIO_PGRP a
 * process group by its leader's PID (0 for the caller's, both), PRIO_USER
 * a user, left as it is. */
static id_t priority_who(int which, id_t who)
{
	if (!shim_active || (which != PRIO_PROCESS && which != PRIO_PGRP)) return who;
	return (id_t)sys_of((pid_t)who);
}

WRAPPER(getpriority)
{
	long r = raw_call(SYS_getpriority, which, priority_who(which, who));
	/* The kernel gives 20 - nice, never negative; libc turns it back. */
	return r >= 0 ? (int)(20 - r) : -1;
}

WRAPPER(setpriority) { return (int)raw_call(SYS_setpriority, which, priority_who(which, who), prio); }

/* capget and capset name their process in the header: the kernel gets a
 * copy holding its PID. It writes to the header only the version (when
 * the caller's is not one it knows), so only that goes back; the caller's
 * PID stays as the caller wrote it. */
static int capability_call(long nr, cap_user_header_t hdr, void *data)
{
	struct __user_cap_header_struct h;
	if (!shim_active || copy_in(&h, hdr, sizeof h)) return (int)raw_call(nr, hdr, data);
	pid_t spid = sys_of(h.pid);
	if (spid == h.pid) return (int)raw_call(nr, hdr, data);
	uint32_t version = h.version;
	h.pid = spid;
	int r = (int)raw_call(nr, &h, data), e = errno;
	if (h.version != version) hdr->version = h.version;
	errno = e;
	return r;
}

WRAPPER(capget) { return capability_call(SYS_capget, hdrp, datap); }
WRAPPER(capset) { return capability_call(SYS_capset, hdrp, datap); }

/* pidfd_send_signal's siginfo names its sender: the kernel gets a copy
 * naming it by its kernel PID, as sigqueue's does, so that a receiver in
 * the application sees the vpid (siginfo_trampoline) and one outside sees
 * the PID it knows. */
WRAPPER(pidfd_send_signal)
{
	siginfo_t si;
	if (!shim_active || !info || copy_in(&si, info, sizeof si)) return (int)raw_call(SYS_pidfd_send_signal, pidfd, sig, info, flags);
	si.si_pid = sys_of(si.si_pid);
	return (int)raw_call(SYS_pidfd_send_signal, pidfd, sig, &si, flags);
}

/* ptrace: every request but PTRACE_TRACEME names the tracee. The event
 * message of a fork event (PTRACE_GETEVENTMSG) is the new child's kernel
 * PID, left so: the child records itself only when it runs. */
WRAPPER(ptrace)
{
	va_list ap;
	va_start(ap, request);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *), *data = va_arg(ap, void *);
	va_end(ap);
	if (shim_active && request != PTRACE_TRACEME) {
		pid = sys_of(pid);
		atomic_store_explicit(&tracing, 1, memory_order_relaxed);
	}
	return REAL(ptrace)(request, pid, addr, data);
}

/* getppid is not cached: the parent may die and the process be adopted.
 * The parent the start entry named has its vpid there, while it is the
 * parent (a started program that asks needs no tables for it). */
WRAPPER(getppid)
{
	pid_t r = REAL(getppid)();
	if (!shim_active || r <= 0) return r;
	if (start.parent_vpid && r == start.parent) return (pid_t)start.parent_vpid;
	return pid_to_virtual(r);
}

/* Policy PID_RESULT: the calls that return a PID. */
#define PID_RESULT_WRAPPER(ret, name, args, fail)                              \
	WRAPPER(name)                                                          \
	{                                                                      \
		ret r = REAL(name) args;                                       \
		return shim_active ? pid_to_virtual(r) : r;                    \
	}
WRAPPED_PID_RESULT(PID_RESULT_WRAPPER)

/* daemon() forks inside libc, past the fork wrapper: done here with it. */
WRAPPER(daemon)
{
	if (!shim_active) return REAL(daemon)(nochdir, noclose);
	pid_t p = fork();
	if (p < 0) return -1;
	if (p > 0) _exit(0);
	if (setsid() < 0) return -1;
	if (!nochdir && chdir("/") != 0) return -1;
	if (!noclose) {
		int fd = open("/dev/null", O_RDWR);
		if (fd < 0) return -1;
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2) close(fd);
	}
	return 0;
}

/* Signal handlers that take a siginfo see the sender's vpid. The handler
 * cannot read LMDB (not async-signal-safe), so it translates from what
 * the process knows without it: itself, the processes it recorded lately
 * (its children, its parent as it was at fork), and the cache. A sender it
 * has never met keeps its kernel PID. */
static void (*user_action[_NSIG])(int, siginfo_t *, void *);

/* A siginfo's sender as the application names it, for signals a process
 * sent (si_code <= 0: kill, sigqueue, tgkill) and SIGCHLD (the child). */
static void siginfo_sender_to_virtual(int sig, siginfo_t *si)
{
	if (si->si_pid > 0 && (si->si_code <= 0 || sig == SIGCHLD)) {
		uint32_t vpid;
		if (si->si_pid == shim_pid) si->si_pid = (pid_t)self_vpid;
		else if (known_vpid(si->si_pid, &vpid) == 0 || sr_to_vr_cached(RT_PID, (uint32_t)si->si_pid, &vpid) == 0)
			si->si_pid = (pid_t)vpid;
	}
}

static void siginfo_trampoline(int sig, siginfo_t *si, void *ctx)
{
	if (si) siginfo_sender_to_virtual(sig, si);
	user_action[sig](sig, si, ctx);
}

/* sigwaitinfo and sigtimedwait give the same siginfo as a handler gets. */
WRAPPER(sigtimedwait)
{
	int sig = REAL(sigtimedwait)(set, info, timeout);
	if (shim_active && sig > 0 && info) siginfo_sender_to_virtual(sig, info);
	return sig;
}

WRAPPER(sigwaitinfo) { return sigtimedwait(set, info, NULL); }

WRAPPER(sigaction)
{
	if (!shim_active || sig <= 0 || sig >= _NSIG) return REAL(sigaction)(sig, act, old);
	struct sigaction mine, fixed;
	int answered;
	if (trap_sigaction(sig, &act, old, &fixed, &answered)) return answered; /* SIGSYS is the trap's */
	void (*previous)(int, siginfo_t *, void *) = user_action[sig];
	/* act is read here, not copied in by the kernel: libc's sigaction
	 * reads it itself, so a bad act is SIGSEGV natively too. */
	if (act && (act->sa_flags & SA_SIGINFO) && act->sa_handler != SIG_IGN && act->sa_handler != SIG_DFL) {
		mine = *act;
		user_action[sig] = mine.sa_sigaction;
		mine.sa_sigaction = siginfo_trampoline;
		act = &mine;
	}
	int r = REAL(sigaction)(sig, act, old);
	if (r == 0 && old && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction == siginfo_trampoline)
		old->sa_sigaction = previous;
	return r;
}

/* One PID component of a /proc path at s, up to '/' or the end: the
 * number map gives for it in *out and where it ends in *end; -1 if s is
 * not one. */
static int proc_component(const char *s, pid_t (*map)(pid_t), pid_t *out, const char **end)
{
	if (*s < '1' || *s > '9') return -1;
	char *e;
	long v = strtol(s, &e, 10);
	if ((*e != '/' && *e) || v > INT_MAX) return -1;
	*end = e;
	*out = map((pid_t)v);
	return 0;
}

/* /proc/<pid>/... and /proc/<pid or self>/task/<tid>/... with each PID
 * mapped, written into buf; path itself when nothing changed or the result
 * would not fit. */
static const char *proc_path_map(const char *path, char *buf, size_t len, pid_t (*map)(pid_t))
{
	const char *rest, *tail = NULL;
	pid_t pid = 0, tid = 0;
	if (!shim_active || strncmp(path, "/proc/", 6)) return path;
	int self = !strncmp(path + 6, "self", 4) && (path[10] == '/' || !path[10]);
	if (self) rest = path + 10;
	else if (proc_component(path + 6, map, &pid, &rest)) return path;
	if (!strncmp(rest, "/task/", 6) && proc_component(rest + 6, map, &tid, &tail)) tail = NULL;
	if (self && !tail) return path;
	char pid_part[16] = "self";
	if (!self) snprintf(pid_part, sizeof pid_part, "%d", (int)pid);
	int n = tail ? snprintf(buf, len, "/proc/%s/task/%d%s", pid_part, (int)tid, tail)
		     : snprintf(buf, len, "/proc/%s%s", pid_part, rest);
	return n > 0 && (size_t)n < len && strcmp(buf, path) ? buf : path;
}

/* /proc/<vpid>/... reaches /proc/<spid>/..., and /proc/<vpid>/task/<vtid>
 * and /proc/self/task/<vtid> the kernel's thread too: gettid gives vtids
 * in a remapped application (a thread's row is made on its first gettid;
 * a tid read from the task directory is the kernel's and passes as it
 * is). /proc/self and /proc/thread-self are the kernel's to resolve. The
 * path family calls this for every path (path.c), so it is the one place. */
const char *pid_proc_path(const char *path, char *buf, size_t len)
{
	return proc_path_map(path, buf, len, sys_of);
}

const char *pid_proc_path_virtual(const char *path, char *buf, size_t len)
{
	return proc_path_map(path, buf, len, pid_to_virtual);
}
