/* The process's link to its application: set up before main from the
 * environment the harness gave it, and again in a child after fork. */
#define _GNU_SOURCE
#include "shim.h"
#include "../core/home.h"
#include "../core/rawcall.h"
#include "../core/afterfork.h"
#include "../core/populate.h"
#include "real.h"
#include "pid.h"
#include "path.h"
#include "trap.h"
#include "memory.h"
#include "canary.h"

#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int shim_active;
/* Written in a fork child: on the page it copies anyway (core/afterfork.h). */
pid_t shim_pid APPSHOT_AFTER_FORK;
enum shim_fault shim_fault;

static struct {
	/* Replaced whole (never rewritten in place) when the process reopens
	 * its tables, since other threads may be probing through it. */
	struct tabledb *tables;
	struct inflight_file inflight;
	/* The journal of new objects (core/journal.h), in the inflight file;
	 * replaced whole, never unmapped (after a restore other threads may
	 * still be reading through the old one), as the tables are. */
	struct journal *journal;
	int journal_old; /* set when the journal is the old home's */
	/* Copied at start: the program may change its environment later. */
	const char *aid, *home;
	/* The application's descriptors of the home's files (core/home.h):
	 * inherited, or opened by this process when it first opened the
	 * tables by path; have_fds when they are. */
	struct home_fds fds;
	int have_fds;
	/* The tables are left for their first use: this program's starter, a
	 * process of the application, told it what its start needs of them
	 * (pid_read_start). Most programs a shell or a server starts never
	 * use them, and their opening is most of the shim's start (issue 21).
	 * Cleared by the opening. */
	int tables_deferred;
	/* The canary page (below), here and not alone: the start writes P
	 * anyway, and a pointer of its own would cost a page (issue 21). */
	struct shim_canary *page;
} P;

struct kernel_ops shim_kernel;

const char *shim_home(void) { return P.home; }
struct tabledb *shim_tables_if_open(void) { return __atomic_load_n(&P.tables, __ATOMIC_ACQUIRE); }

static void check_canary(void);

/* A deferred start's tables, opened by the first thread that needs them.
 * NULL inside the opening (LMDB's calls into libc meet the wrappers,
 * which then read no tables). A restored process renews first: its
 * tables may be another home's now, and the renewal opens them. */
static struct tabledb *open_deferred_tables(void)
{
	if (!__atomic_load_n(&P.tables_deferred, __ATOMIC_ACQUIRE) || shim_in_tables()) return shim_tables_if_open();
	check_canary();
	if (translate_open_deferred()) pid_tables_opened();
	return shim_tables_if_open();
}

struct tabledb *shim_tables(void)
{
	struct tabledb *t = __atomic_load_n(&P.tables, __ATOMIC_ACQUIRE);
	return __builtin_expect(t != NULL, 1) ? t : open_deferred_tables();
}

int shim_tables_deferred(void) { return __atomic_load_n(&P.tables_deferred, __ATOMIC_ACQUIRE); }

struct inflight_file *shim_inflight(void) { return &P.inflight; }
static struct journal no_journal; /* until the tables open */
struct journal *shim_journal(void)
{
	struct journal *j = __atomic_load_n(&P.journal, __ATOMIC_ACQUIRE);
	if (__builtin_expect(!j, 0) && shim_tables_deferred() && shim_tables()) j = __atomic_load_n(&P.journal, __ATOMIC_ACQUIRE);
	return j ? j : &no_journal;
}
struct home_fds *shim_home_fds(void) { return P.have_fds ? &P.fds : NULL; }

static void vwrite_line(const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "appshot: ");
	n += vsnprintf(buf + n, sizeof buf - n, fmt, ap);
	if (n >= (int)sizeof buf - 1) n = sizeof buf - 2;
	buf[n++] = '\n';
	ssize_t w = write(2, buf, n);
	(void)w;
}

void shim_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(fmt, ap);
	va_end(ap);
	_exit(125);
}

void shim_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(fmt, ap);
	va_end(ap);
}

/* Declared in translate.c: forget the parent's read transaction and
 * environment handle in a fork child. */
void translate_after_fork_child(void);
void translate_before_fork(void);
void translate_after_fork_parent(void);

void exec_env_init(const char *aid, const char *home);
void port_init(void);

/* ------------------------------------------------------------ the threads */

/* Every thread that ever filled a translation cache or learned its vtid,
 * by its thread pointer: a restore makes the per-thread state (TLS) of
 * every thread stale, and shim_restored_entry, which runs while the other
 * threads are stopped, reaches theirs through this list (a module's
 * initial-exec TLS lies at the same offset from every thread's pointer).
 * A thread registers on a slow path (a cache refill, its first gettid)
 * and leaves at exit (thread_key's destructor), before its TLS is freed. */
#define MAX_THREADS 4096
static _Atomic uintptr_t threads[MAX_THREADS] SHIM_COLD;
/* One past the highest slot ever taken: the walks below stop there, so a
 * fork child reads (and faults in) only the part of the table in use; on
 * the after-fork page, so a child of a process that never registered a
 * thread reads no page of the table at all. */
static _Atomic unsigned threads_end APPSHOT_AFTER_FORK;
static pthread_key_t thread_key;
/* Made by the first thread that registers, not at start (issue 21: its
 * first use writes a page of libc's most programs never touch). */
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static int have_thread_key, threads_overflowed;
static __thread int thread_registered __attribute__((tls_model("initial-exec")));

static uintptr_t thread_pointer(void) { return (uintptr_t)__builtin_thread_pointer(); }

static void thread_add(uintptr_t tp)
{
	for (unsigned i = 0; i < MAX_THREADS; i++) {
		uintptr_t free_slot = 0;
		if (__atomic_compare_exchange_n(&threads[i], &free_slot, tp, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
			unsigned end = __atomic_load_n(&threads_end, __ATOMIC_RELAXED);
			while (end < i + 1 && !__atomic_compare_exchange_n(&threads_end, &end, i + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
				;
			return;
		}
	}
	/* More threads than slots: a restore cannot reach this one's caches,
	 * and says so (shim_restored_entry). */
	threads_overflowed = 1;
}

static void thread_gone(void *arg)
{
	uintptr_t tp = (uintptr_t)arg;
	for (unsigned i = 0, end = __atomic_load_n(&threads_end, __ATOMIC_ACQUIRE); i < end; i++) {
		uintptr_t was = tp;
		if (__atomic_compare_exchange_n(&threads[i], &was, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) return;
	}
}

static void make_thread_key(void) { have_thread_key = pthread_key_create(&thread_key, thread_gone) == 0; }

void shim_thread_seen(void)
{
	if (thread_registered || !shim_active) return;
	/* Set first: a signal handler's call while the key is made returns here. */
	thread_registered = 1;
	pthread_once(&thread_key_once, make_thread_key);
	if (!have_thread_key) {
		thread_registered = 0; /* not followed: no destructor would take it off */
		return;
	}
	thread_add(thread_pointer());
	pthread_setspecific(thread_key, (void *)thread_pointer());
}

/* A fork child has the calling thread alone; the others' TLS is glibc's
 * to reuse or unmap. */
APPSHOT_AFTER_FORK_CODE static void threads_after_fork(void)
{
	/* Only the slots in use are read, and only the others' written: a
	 * store to every one would copy each of the table's pages from the
	 * parent (copy-on-write), a read fault in the ones the parent never
	 * touched; the forking thread's own slot (its thread pointer is the
	 * child's) stays, so a single-threaded program's child writes none. */
	uintptr_t me = thread_registered ? thread_pointer() : 0;
	int kept = 0;
	for (unsigned i = 0, end = threads_end; i < end; i++) {
		uintptr_t tp = __atomic_load_n(&threads[i], __ATOMIC_RELAXED);
		if (tp && tp == me && !kept) kept = 1;
		else if (tp) __atomic_store_n(&threads[i], 0, __ATOMIC_RELAXED);
	}
	if (me && !kept) thread_add(me);
}

/* ------------------------------------------------------- the canary page */

/* A page the kernel wipes in the child of any fork (canary.h): libc's fork
 * runs the atfork handler below, but a child made by a raw system call
 * (syscall(SYS_fork), clone without CLONE_VM) does not, and finds the word
 * 0 instead; shim_check_fork then does what the handler would. A restorer
 * writes `restored` there too: the same check then renews as a restore. */

/* The restored application's AID and home, copied off the page (which a
 * fork child of the restored process finds wiped); the ones from before,
 * which the renewal replaces in the environment. */
static char restored_aid[SHIM_CANARY_AID_MAX] SHIM_COLD, restored_home[SHIM_CANARY_HOME_MAX] SHIM_COLD;
static const char *stale_aid, *stale_home;
/* Set by shim_restored_entry until the renewal is done; in memory, so a
 * fork child made before the renewal knows it too. */
static int restore_pending;
/* The thread that renews: its own calls into the shim meanwhile go on. */
static __thread int renewing __attribute__((tls_model("initial-exec")));

void shim_tables_enter(void)
{
	if (P.page) __atomic_add_fetch(&P.page->in_tables, 1, __ATOMIC_RELAXED);
}

void shim_tables_leave(void)
{
	if (P.page) __atomic_sub_fetch(&P.page->in_tables, 1, __ATOMIC_RELAXED);
}

APPSHOT_AFTER_FORK_CODE static void fill_canary(void)
{
	P.page->magic = SHIM_CANARY_MAGIC;
	P.page->entry = (uint64_t)(uintptr_t)shim_restored_entry;
	/* Memory mapped from an image is answered for through the trap. */
	P.page->features = trap_on ? SHIM_CANARY_ZEROES : 0;
	P.page->restored = 0;
	__atomic_store_n(&P.page->canary, 1, __ATOMIC_RELEASE);
}

/* MAP_POPULATE: filled right away, the page would be a fault of its own
 * (10-14 us in a VM) at every start. */
static void set_fork_canary(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) return;
	if (madvise(p, 4096, MADV_WIPEONFORK) != 0) {
		munmap(p, 4096); /* an old kernel: raw forks go unnoticed */
		return;
	}
	P.page = p;
	fill_canary();
}

void port_restored_entry(void);
void exec_env_restored(const char *aid, const char *home);

/* Copies a NUL-terminated string of at most max - 1 bytes; 0 if it is
 * longer or empty. No libc: the restorer may have stopped a thread in it. */
static int copy_field(char *dst, const char *src, size_t max)
{
	size_t n = 0;
	while (n < max && src[n]) n++;
	if (n == 0 || n == max) return 0;
	for (size_t i = 0; i <= n; i++) dst[i] = src[i];
	return 1;
}

static void say_raw(const char *msg)
{
	size_t n = 0;
	while (msg[n]) n++;
	raw_call(SYS_write, 2, msg, n);
}

/* Called by the restorer in the main thread of a restored process, with its
 * memory in place and every other thread stopped anywhere: so no malloc, no
 * lock, no stdio. What must hold before the program's next instruction is
 * done here (the trap, this process's kernel PID, every thread's caches
 * emptied, exec's environment); what needs the tables is done by the first
 * call into the shim afterwards (restore_renew). */
SHIM_EXPORT void shim_restored_entry(void)
{
	struct shim_canary *c = P.page;
	if (!c || c->magic != SHIM_CANARY_MAGIC || c->restored != 1) return;
	int saved_errno = errno;
	shim_pid = (pid_t)raw_call(SYS_getpid);
	if (!copy_field(restored_aid, c->aid, sizeof restored_aid) ||
	    !copy_field(restored_home, c->home, sizeof restored_home) || restored_home[0] != '/') {
		/* The renewal stops the process with the reason. */
		restored_aid[0] = restored_home[0] = 0;
	}
	if (!restore_pending) stale_aid = P.aid, stale_home = P.home;
	P.aid = restored_aid;
	P.home = restored_home;
	restore_pending = 1;
	exec_env_restored(P.aid, P.home);
	uintptr_t me = thread_pointer();
	for (unsigned i = 0, end = threads_end; i < end; i++) {
		uintptr_t tp = __atomic_load_n(&threads[i], __ATOMIC_ACQUIRE);
		if (!tp) continue;
		translate_forget_thread(tp, me);
		pid_forget_thread(tp, me);
	}
	if (threads_overflowed)
		say_raw("appshot: more threads than the shim can follow ran in this restored process; a thread it could not reach may translate from its old caches until the tables change\n");
	translate_forget_thread(me, me); /* registered or not */
	pid_forget_thread(me, me);
	pid_restored_entry();
	port_restored_entry();
	if (trap_reinstall() != 0)
		say_raw("appshot: cannot install the system call filter again in a restored process; its raw system calls are not translated\n");
	if (memory_restored_entry(c->image_major, c->image_minor, c->image_ino) != 0)
		say_raw("appshot: cannot install the filter for memory mapped from the snapshot in a restored process; pages it gives back may read its saved bytes, not zeros\n");
	errno = saved_errno;
}

static void forget_old_home(void);
static void renew_environ(void);

/* Its calls may come back into the shim before it is done (the canary is
 * filled last): a lazy binding in it, under LD_DEBUG, makes ld.so call
 * getpid, which the trap answers through the getpid wrapper (trap.c).
 * renew must not start it over there, which would recurse until the stack
 * ran out; and the PIDs come first, so that such a getpid is the child's. */
/* A fork child's reset under way (the child has one thread): renew()
 * waits for nothing then. Not the thread-local `renewing`, whose page the
 * child would copy from its parent only for this (issue 21). */
static int child_resetting APPSHOT_AFTER_FORK;

APPSHOT_AFTER_FORK_CODE static void after_fork_child(void)
{
	child_resetting = 1;
	pid_after_fork_child();
	tabledb_after_fork_child();
	translate_after_fork_child();
	path_after_fork_child();
	threads_after_fork();
	if (P.page) fill_canary();
	/* A raw fork child of a restored process that had not renewed yet:
	 * the old home's descriptors go, its tables open lazily under the
	 * restored AID and home (P.aid is that one); the rest of the renewal is
	 * its own. */
	if (restore_pending) {
		restore_pending = 0;
		forget_old_home();
		path_restored();
		renew_environ();
	}
	child_resetting = 0;
}

/* The restored application's home's files, which the restorer opened again
 * at this process's numbers of the home's files: taken when they are the
 * home's; else given up, and the tables opened by path. */
static void adopt_restored_fds(void)
{
	char spec[HOMEFD_COUNT * 64], err[512];
	if (!P.have_fds) return;
	struct home_fds now = P.fds;
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		struct stat st;
		if (fstat(now.fd[i], &st) != 0) now.dev[i] = 0, now.ino[i] = 0;
		else now.dev[i] = st.st_dev, now.ino[i] = st.st_ino;
	}
	struct home_fds adopted;
	if (home_fds_format(&now, spec, sizeof spec) && home_fds_adopt(&adopted, P.home, spec, err, sizeof err) == 0) {
		P.fds = adopted;
		return;
	}
	home_fds_release(&P.fds);
	P.have_fds = 0;
}

/* The stale AID and home in this process's environment (which its exec'd
 * programs and its own getenv read) replaced by the restored ones. */
static void renew_environ(void)
{
	const char *v = getenv("APPSHOT_AID");
	if (v && stale_aid && !strcmp(v, stale_aid)) setenv("APPSHOT_AID", P.aid, 1);
	v = getenv("APPSHOT_HOME");
	if (v && stale_home && !strcmp(v, stale_home)) setenv("APPSHOT_HOME", P.home, 1);
}

/* Whether fd is now one of the files of the home restored into: what a
 * restorer that gives every descriptor of a home file back by name puts
 * at the old tables' numbers. */
static int restored_home_file(int fd)
{
	struct stat st, hs;
	char path[PATH_MAX];
	if (fd < 0 || fstat(fd, &st) != 0) return 0;
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		snprintf(path, sizeof path, "%s/%s", P.home, home_fd_name(i));
		if (stat(path, &hs) == 0 && hs.st_dev == st.st_dev && hs.st_ino == st.st_ino) return 1;
	}
	return 0;
}

/* The old tables' own descriptors (LMDB's, and its open-lock one unless
 * it is the application's shared one): closed where they still are the old
 * files or the restorer gave the new home's there; a number holding
 * anything else is the program's now, no longer guarded. */
static void drop_old_table_fds(struct tabledb *old)
{
	struct { int fd; dev_t dev; ino_t ino; } fds[5];
	int n = 0;
	for (int i = 0; i < old->env_fds && n < 4; i++) fds[n].fd = old->env_fd[i], fds[n].dev = old->env_dev[i], fds[n++].ino = old->env_ino[i];
	if (!old->lock_shared) fds[n].fd = old->lock_fd, fds[n].dev = old->lock_dev, fds[n++].ino = old->lock_ino;
	old->env_fds = 0; /* shim_open_tables' tabledb_forget_fds: nothing left */
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (fds[i].fd < 0) continue;
		appshot_fd_unguard(fds[i].fd);
		int old_file = fstat(fds[i].fd, &st) == 0 && st.st_dev == fds[i].dev && st.st_ino == fds[i].ino;
		if (old_file || restored_home_file(fds[i].fd)) raw_call(SYS_close, fds[i].fd);
	}
}

/* What this process held of the old home: the old tables' descriptors,
 * the inflight record, the application's descriptors (adopted when they
 * are the new home's). */
static void forget_old_home(void)
{
	if (shim_tables_if_open()) drop_old_table_fds(shim_tables_if_open());
	if (P.inflight.rec) inflight_close(&P.inflight);
	P.inflight.rec = NULL;
	P.journal_old = 1;
	adopt_restored_fds();
}

static void reopen_restored_tables(void)
{
	forget_old_home();
	shim_open_tables();
}

/* The first call into the shim after a restore, in whichever thread makes
 * it (it won `restored` 1 -> 2). The process is a new kernel process with
 * the memory of the old: tables of the restored application from its home,
 * its own row (bound by the restorer; made here if it is not), the path
 * redirections of the restored application, the environment. */
static void restore_renew(void)
{
	renewing = 1;
	shim_tables_enter();
	if (!P.aid[0])
		shim_fatal("this process was restored without a valid application name and home on its canary page; "
			   "the program cannot run untranslated, so it stops");
	translate_restored(reopen_restored_tables);
	pid_restored();
	path_restored();
	renew_environ();
	restore_pending = 0;
	shim_tables_leave();
	renewing = 0;
	P.page->restored = 0;
	__atomic_store_n(&P.page->canary, 1, __ATOMIC_RELEASE);
}

static void renew(void)
{
	if (renewing || child_resetting) return;
	if (P.page->restored == 0) {
		after_fork_child(); /* a fork child: the kernel wiped the page */
		return;
	}
	/* A vfork child of a restored process that did not renew yet shares
	 * its memory: the parent renews; the child is about to exec, with
	 * exec's environment renewed already. */
	if ((pid_t)raw_call(SYS_getpid) != shim_pid) return;
	/* One thread renews. The others go on meanwhile where they need no
	 * tables (getpid, kill of a known PID: shim_restored_entry made those
	 * right): a thread waiting here could hold, in code its signal handler
	 * interrupted, a lock the renewal needs (malloc's). */
	uint32_t one = 1;
	if (__atomic_compare_exchange_n(&P.page->restored, &one, 2, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) restore_renew();
}

void shim_check_fork(void)
{
	if (__builtin_expect(P.page && P.page->canary == 0, 0)) renew();
}

static void check_canary(void)
{
	if (__builtin_expect(P.page && P.page->canary == 0, 0)) {
		renew();
		/* Another thread is renewing after a restore: the tables are not
		 * this process's until it is done. */
		while (!renewing && __atomic_load_n(&P.page->restored, __ATOMIC_ACQUIRE) == 2 &&
		       __atomic_load_n(&P.page->canary, __ATOMIC_ACQUIRE) == 0)
			raw_call(SYS_sched_yield);
	}
}

void shim_check_tables(void)
{
	check_canary();
	if (__builtin_expect(P.tables_deferred, 0)) (void)open_deferred_tables();
}

/* The first process of an application (no descriptors inherited) opens
 * the home's files by path, after checking the home, and keeps them; what
 * fails here is said again, better, by the checked open that follows. */
static void open_home_fds(void)
{
	char err[512];
	if (home_check(P.home, err, sizeof err) == 0 && home_fds_open(&P.fds, P.home, err, sizeof err) == 0)
		P.have_fds = 1;
}

static void open_journal(void)
{
	struct journal *j = malloc(sizeof *j);
	int rc = !j ? ENOMEM : P.have_fds ? journal_map_fd(j, P.fds.fd[HOMEFD_INFLIGHT]) : journal_open(j, P.home);
	if (rc) {
		if (rc == EPROTO)
			shim_fatal("the journal of new objects in %s/%s is damaged (its header is not a journal's): end this "
				   "home's applications (appshot ps, appshot stop) and remove that file; the program cannot run "
				   "untranslated, so it stops", P.home, APPSHOT_INFLIGHT_FILE);
		shim_fatal("cannot open the journal of new objects in %s/%s: %s; the program cannot run untranslated, so it stops",
			   P.home, APPSHOT_INFLIGHT_FILE, strerror(rc));
	}
	journal_set_app(j, P.aid);
	__atomic_store_n(&P.journal, j, __ATOMIC_RELEASE);
	P.journal_old = 0;
}

void shim_open_tables(void)
{
	char err[512];
	struct tabledb *t = malloc(sizeof *t), *old = shim_tables_if_open();
	if (!t) shim_fatal("out of memory opening the tables; the program cannot run untranslated, so it stops");
	/* The previous environment (the fork parent's, or one whose
	 * descriptors the program took) is left open, since closing it would
	 * end the parent's reader slot and locks; its descriptors that are
	 * still its own go. */
	if (old) tabledb_forget_fds(old);
	/* Descriptors adopted at this start were checked a moment ago. */
	if (P.have_fds && !P.fds.fresh && !home_fds_valid(&P.fds)) {
		home_fds_release(&P.fds); /* the program took one (a raw close_range) */
		P.have_fds = 0;
	}
	int inherited = P.have_fds;
	if (!inherited) open_home_fds();
	int rc = tabledb_open_fds(t, P.home, P.aid, shim_home_fds(), !inherited, err, sizeof err);
	if (rc) shim_fatal("%s; the program cannot run untranslated, so it stops", err);
	__atomic_store_n(&P.tables, t, __ATOMIC_RELEASE);
	translate_tables_opened();
	P.fds.fresh = 0; /* a later reopen checks them again */
	if (!P.inflight.rec && (rc = P.have_fds ? inflight_map_fd(&P.inflight, P.fds.fd[HOMEFD_INFLIGHT])
						: inflight_open(&P.inflight, P.home)))
		shim_fatal("cannot open %s/%s: %s; the program cannot run untranslated, so it stops",
			   P.home, APPSHOT_INFLIGHT_FILE, strerror(rc));
	if (!P.journal || P.journal_old) open_journal();
	__atomic_store_n(&P.tables_deferred, 0, __ATOMIC_RELEASE);
}


/* APPSHOT_HOME_FDS from the process that started this program: used when
 * they still are the home's files, ignored (the tables are then opened by
 * path) when not, for instance when the program was started with
 * descriptors closed. */
static void adopt_home_fds(void)
{
	char err[512];
	const char *spec = getenv(HOME_FDS_ENV);
	if (spec && home_fds_adopt(&P.fds, P.home, spec, err, sizeof err) == 0) P.have_fds = 1;
}

/* The crash tests' points: killed there; after a spawn stopped instead,
 * for the test to kill once the child has started (its start checks that
 * its starter is its parent still). */
void shim_fault_point(enum shim_fault where)
{
	if (__builtin_expect(shim_fault == where, 0)) raise(where == FAULT_AFTER_SPAWN ? SIGSTOP : SIGKILL);
}

static void read_fault(void)
{
	const char *f = getenv("APPSHOT_FAULT");
	if (f && !strcmp(f, "after-create")) shim_fault = FAULT_AFTER_CREATE;
	if (f && !strcmp(f, "after-spawn")) shim_fault = FAULT_AFTER_SPAWN;
}

/* The shim's own pages a start touches, mapped in two calls rather than a
 * fault each: in a VM a fault costs 10-14 us of CPU, a page mapped by
 * MADV_POPULATE_* under 1 us (issue 21). Its code and constants
 * (the start runs code on pages all over the text), and its variables
 * from appshot_start_bss (shim/cold.ld) to the end of its memory. A kernel
 * before 5.14 refuses the advice: the pages are then faulted in as before. */
extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));
extern char appshot_start_bss[] __attribute__((visibility("hidden")));
#define START_STACK (4 * 4096)

static void map_own_pages(void)
{
	uintptr_t base = (uintptr_t)&__ehdr_start, read_end = 0, end = 0;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + __ehdr_start.e_phoff);
	for (unsigned i = 0; i < __ehdr_start.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD) continue;
		uintptr_t seg_end = page_up(base + ph[i].p_vaddr + ph[i].p_memsz);
		if (!(ph[i].p_flags & PF_W) && seg_end > read_end) read_end = seg_end;
		if (seg_end > end) end = seg_end;
	}
	if (read_end) raw_call_kernel(SYS_madvise, base, read_end - base, MADV_POPULATE_READ);
	uintptr_t vars = page_down((uintptr_t)appshot_start_bss);
	if (end > vars) raw_call_kernel(SYS_madvise, vars, end - vars, MADV_POPULATE_WRITE);
	/* The stack below this frame: the start's first calls into libc are
	 * bound lazily, and ld.so saves the vector registers on the stack
	 * there, two pages deeper than the loader went. Within the stack's
	 * mapping, which the kernel makes 128 KiB at least; a thread's stack
	 * (the shim loaded by dlopen) that ends sooner is refused, harmlessly. */
	uintptr_t sp = page_down((uintptr_t)__builtin_frame_address(0));
	raw_call_kernel(SYS_madvise, sp - START_STACK, START_STACK, MADV_POPULATE_WRITE);
}

/* The start's copies of the application's AID and home, in the shim's own
 * memory: a strdup was the process's first malloc, which sets up its heap
 * (40-50 us and a page fault here) in a program that may never allocate. A
 * value longer than any the harness gives is copied by strdup after all. */
static char start_aid[SHIM_CANARY_AID_MAX], start_home[SHIM_CANARY_HOME_MAX];

static const char *kept(char *buf, size_t size, const char *s)
{
	size_t n = strlen(s);
	if (n >= size) return strdup(s);
	memcpy(buf, s, n + 1);
	return buf;
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *aid = getenv("APPSHOT_AID");
	if (aid && *aid) map_own_pages();
	if (aid && *aid) trap_init(); /* first: it decides what REAL gives */
	shim_kernel = (struct kernel_ops){ REAL(semget), REAL(semctl), REAL(shmget), REAL(shmctl), REAL(msgget), REAL(msgctl) };
	if (!aid || !*aid) return;
	P.home = getenv("APPSHOT_HOME");
	if (!P.home || P.home[0] != '/')
		shim_fatal("APPSHOT_AID is set but APPSHOT_HOME is %s; start programs with 'appshot run'",
			   P.home ? "not an absolute path" : "not set");
	P.home = kept(start_home, sizeof start_home, P.home);
	P.aid = kept(start_aid, sizeof start_aid, aid);
	shim_pid = (pid_t)raw_call(SYS_getpid);
	appshot_fd_band = 1;
	adopt_home_fds();
	/* Through the application's descriptors only: a program left to open
	 * by path later may have dropped the rights to by then. */
	int defer = pid_read_start() && P.have_fds;
	if (defer) P.tables_deferred = 1;
	else shim_open_tables();
	exec_env_init(aid, P.home);
	read_fault();
	port_init();
	pid_init();
	path_init(defer);
	set_fork_canary();
	pthread_atfork(translate_before_fork, translate_after_fork_parent, after_fork_child);
	shim_active = 1;
}
