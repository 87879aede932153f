/* The process's link to its application: set up before main from the
 * environment the harness gave it, and again in a child after fork. */
#define _GNU_SOURCE
#include "shim.h"
#include "../core/home.h"
#include "../core/rawcall.h"
#include "real.h"
#include "pid.h"
#include "path.h"
#include "trap.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int shim_active;
pid_t shim_pid;
enum shim_fault shim_fault;

static struct {
	/* Replaced whole (never rewritten in place) when the process reopens
	 * its tables, since other threads may be probing through it. */
	struct tabledb *tables;
	struct inflight_file inflight;
	/* Copied at start: the program may change its environment later. */
	const char *aid, *home;
	/* The application's descriptors of the home's files (core/home.h):
	 * inherited, or opened by this process when it first opened the
	 * tables by path; have_fds when they are. */
	struct home_fds fds;
	int have_fds;
} P;

struct kernel_ops shim_kernel;

const char *shim_home(void) { return P.home; }
struct tabledb *shim_tables(void) { return __atomic_load_n(&P.tables, __ATOMIC_ACQUIRE); }
struct inflight_file *shim_inflight(void) { return &P.inflight; }
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

/* A word on a page the kernel wipes in the child of any fork: libc's
 * fork runs the atfork handler below, but a child made by a raw system
 * call (syscall(SYS_fork), clone without CLONE_VM) does not, and finds the
 * word 0 instead; shim_check_fork then does what the handler would. */
static volatile int *fork_canary;

static void after_fork_child(void)
{
	tabledb_after_fork_child();
	pid_after_fork_child();
	translate_after_fork_child();
	path_after_fork_child();
	if (fork_canary) *fork_canary = 1;
}

void shim_check_fork(void)
{
	if (__builtin_expect(fork_canary && *fork_canary == 0, 0)) after_fork_child();
}

static void set_fork_canary(void)
{
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) return;
	if (madvise(page, 4096, MADV_WIPEONFORK) != 0) {
		munmap(page, 4096); /* an old kernel: raw forks go unnoticed */
		return;
	}
	fork_canary = page;
	*fork_canary = 1;
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

void shim_open_tables(void)
{
	char err[512];
	struct tabledb *t = malloc(sizeof *t), *old = shim_tables();
	if (!t) shim_fatal("out of memory opening the tables; the program cannot run untranslated, so it stops");
	/* The previous environment (the fork parent's, or one whose
	 * descriptors the program took) is left open, since closing it would
	 * end the parent's reader slot and locks; its descriptors that are
	 * still its own go. */
	if (old) tabledb_forget_fds(old);
	if (P.have_fds && !home_fds_valid(&P.fds)) {
		home_fds_release(&P.fds); /* the program took one (a raw close_range) */
		P.have_fds = 0;
	}
	int inherited = P.have_fds;
	if (!inherited) open_home_fds();
	int rc = tabledb_open_fds(t, P.home, P.aid, shim_home_fds(), !inherited, err, sizeof err);
	if (rc) shim_fatal("%s; the program cannot run untranslated, so it stops", err);
	__atomic_store_n(&P.tables, t, __ATOMIC_RELEASE);
	if (!P.inflight.rec && (rc = P.have_fds ? inflight_map_fd(&P.inflight, P.fds.fd[HOMEFD_INFLIGHT])
						: inflight_open(&P.inflight, P.home)))
		shim_fatal("cannot open %s/%s: %s; the program cannot run untranslated, so it stops",
			   P.home, APPSHOT_INFLIGHT_FILE, strerror(rc));
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

void shim_fault_point(enum shim_fault where)
{
	if (__builtin_expect(shim_fault == where, 0)) raise(SIGKILL);
}

static void read_fault(void)
{
	const char *f = getenv("APPSHOT_FAULT");
	if (f && !strcmp(f, "after-create")) shim_fault = FAULT_AFTER_CREATE;
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *aid = getenv("APPSHOT_AID");
	if (aid && *aid) trap_init(); /* first: it decides what REAL gives */
	shim_kernel = (struct kernel_ops){ REAL(semget), REAL(semctl), REAL(shmget), REAL(shmctl), REAL(msgget), REAL(msgctl) };
	if (!aid || !*aid) return;
	P.home = getenv("APPSHOT_HOME");
	if (!P.home || P.home[0] != '/')
		shim_fatal("APPSHOT_AID is set but APPSHOT_HOME is %s; start programs with 'appshot run'",
			   P.home ? "not an absolute path" : "not set");
	P.home = strdup(P.home);
	P.aid = strdup(aid);
	shim_pid = (pid_t)raw_call(SYS_getpid);
	appshot_fd_band = 1;
	adopt_home_fds();
	shim_open_tables();
	exec_env_init(aid, P.home);
	read_fault();
	port_init();
	pid_init();
	path_init();
	set_fork_canary();
	pthread_atfork(translate_before_fork, translate_after_fork_parent, after_fork_child);
	shim_active = 1;
}
