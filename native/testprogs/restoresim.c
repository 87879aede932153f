/*
 * restoresim: a restore of this process, simulated as closely as a process
 * can without the restorer (native/checkpoint), to test the shim's side of
 * it: a new kernel process with this one's memory, made by a raw clone that
 * the shim does not see (no atfork handler, its canary page wiped by the
 * kernel, its kernel PID and every cache stale), whose canary page is then
 * filled as the restorer fills it, and whose shim_restored_entry is called
 * through the address on the page, before it calls anything else.
 *
 *   restoresim AID HOME GOFILE
 *
 * Runs under `appshot run` (application A). Makes semaphore key 0x5e51 in
 * A and a thread that translated once (so a stopped thread's caches exist),
 * finds the canary page as a restorer does (/proc/self/smaps: a 4096-byte
 * mapping with VmFlags wf and the magic at 8), clones, and in the clone
 * moves to application AID in HOME (which must be running). The clone then
 * prints one line per check, "name value", for the test to compare, waits
 * until GOFILE exists (the test reads the tables meanwhile) and exits. The
 * parent prints its own lines after the clone ends.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY_A 0x5e51
#define KEY_B 0x5e52
#define MAGIC 0x31544f4853505041ull

extern char **environ;

/* Reads a whole small file with raw system calls (not trapped, not the
 * shim's): usable in the clone before its shim is told. */
static int read_raw(const char *path, char *buf, size_t len)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
	if (fd < 0) return -1;
	long n = 0, r;
	while ((size_t)n < len - 1 && (r = syscall(SYS_read, fd, buf + n, len - 1 - n)) > 0) n += r;
	syscall(SYS_close, fd);
	buf[n] = 0;
	return 0;
}

static int seccomp_filters(void)
{
	char buf[4096];
	if (read_raw("/proc/self/status", buf, sizeof buf)) return -1;
	char *p = strstr(buf, "Seccomp_filters:");
	return p ? atoi(p + 16) : -1;
}

/* The shim's canary page, found as a restorer finds it. */
static unsigned char *find_canary(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long start = 0, end = 0, found = 0;
	while (f && fgets(line, sizeof line, f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			start = s, end = e;
		} else if (!strncmp(line, "VmFlags:", 8) && strstr(line, " wf") && end - start == 4096 &&
			   *(uint64_t *)(start + 8) == MAGIC) {
			found = start;
		}
	}
	if (f) fclose(f);
	return (unsigned char *)found;
}

static volatile sig_atomic_t usr1_from;
static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig, (void)ctx;
	usr1_from = si->si_pid;
}

static int helper_pipe[2];
static void *helper(void *arg)
{
	/* A thread that translated (its cache holds A's answers) and is then
	 * stopped anywhere, as a restorer finds a program's threads. */
	semctl(*(int *)arg, 0, GETVAL);
	char c;
	(void)!read(helper_pipe[0], &c, 1);
	return NULL;
}

static void line_ld(const char *name, long v) { printf("%s %ld\n", name, v); }
static void line_err(const char *name, long r)
{
	if (r < 0) printf("%s err %s\n", name, strerrorname_np(errno));
	else printf("%s %ld\n", name, r);
}

/* Threads of the restored process that all make their first call into the
 * shim at once, right after the entry: one renews, the others wait for it;
 * each must then see B and its own thread ID consistently. */
#define RACERS 4
static pthread_barrier_t start_line;
static pid_t racer_vpid;
static _Atomic int racers_ok;

static void *racer(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start_line);
	int ok = getpid() == racer_vpid && syscall(SYS_getpid) == racer_vpid && kill(getpid(), 0) == 0 &&
		 semget(KEY_A, 1, 0600) < 0 && errno == ENOENT && semget(KEY_B, 1, IPC_CREAT | 0600) >= 0 &&
		 gettid() == syscall(SYS_gettid);
	if (ok) racers_ok++;
	return NULL;
}

/* Started before the entry, with no call into the shim (pthread_create's
 * own system calls are not the shim's business), as a restorer's threads. */
static void start_racers(pthread_t *t, pid_t vpid)
{
	racer_vpid = vpid;
	pthread_barrier_init(&start_line, NULL, RACERS + 1);
	for (int i = 0; i < RACERS; i++) pthread_create(&t[i], NULL, racer, NULL);
}

static void race(pthread_t *t)
{
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
	printf("racers-ok %d\n", racers_ok);
}

static const char *const home_files[] = { "tables.mdb", "tables.mdb-lock", "inflight", "open.lock" };

/* The home a descriptor's file is in (one of home_files), into dir; 0 if
 * it is none of them. Raw calls: usable before the entry. */
static int home_file_of(int fd, char *dir, size_t len)
{
	char link[64], target[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	long n = syscall(SYS_readlinkat, AT_FDCWD, link, target, sizeof target - 1);
	if (n <= 0) return 0;
	target[n] = 0;
	char *slash = strrchr(target, '/');
	if (!slash) return 0;
	for (size_t i = 0; i < sizeof home_files / sizeof *home_files; i++)
		if (!strcmp(slash + 1, home_files[i])) {
			*slash = 0;
			snprintf(dir, len, "%s", target);
			return 1;
		}
	return 0;
}

/* What a restorer does with the home's descriptors: the same-named files of
 * the home restored into, at the same numbers (only the application's
 * four, at the top of the table; LMDB's own it leaves to the shim). */
static void give_home_fds(const char *old_home, const char *new_home)
{
	char dir[4096], path[4096];
	for (int fd = 900; fd < 1024; fd++) {
		if (!home_file_of(fd, dir, sizeof dir) || strcmp(dir, old_home)) continue;
		char link[64], target[4096];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		long n = syscall(SYS_readlinkat, AT_FDCWD, link, target, sizeof target - 1);
		target[n] = 0;
		snprintf(path, sizeof path, "%s/%s", new_home, strrchr(target, '/') + 1);
		int nfd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR);
		if (nfd < 0) continue;
		syscall(SYS_dup3, nfd, fd, 0);
		syscall(SYS_close, nfd);
	}
}

/* Descriptors of this process still naming a file of the old home. */
static int fds_in_home(const char *home)
{
	char dir[4096];
	int n = 0;
	for (int fd = 0; fd < 1024; fd++) n += home_file_of(fd, dir, sizeof dir) && !strcmp(dir, home);
	return n;
}

/* What the simulated restore must give: run in the clone after the entry. */
static void checks(pid_t vpid, char *const *stale_env)
{
	line_ld("vpid-kept", getpid() == vpid);
	line_ld("raw-getpid-kept", syscall(SYS_getpid) == vpid);
	/* /proc/<vpid> must reach this (new) kernel process: its stat's first
	 * field against the kernel's own /proc/self/stat. */
	char path[64], mine[256], self[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)getpid());
	FILE *f = fopen(path, "r");
	mine[0] = 0;
	if (f) {
		if (!fgets(mine, sizeof mine, f)) mine[0] = 0;
		fclose(f);
	}
	read_raw("/proc/self/stat", self, sizeof self);
	line_ld("proc-vpid-is-self", atoi(mine) > 0 && atoi(mine) == atoi(self));
	line_err("kill-self", kill(getpid(), 0));
	line_err("raw-kill-self", syscall(SYS_kill, getpid(), 0));
	struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	usr1_from = 0;
	syscall(SYS_kill, getpid(), SIGUSR1);
	line_ld("sigusr1-from-self", usr1_from == vpid);
	/* The tables are B's now: A's key is not there, a new key is made in B. */
	line_err("semget-a", semget(KEY_A, 1, 0600));
	line_err("raw-semget-a", syscall(SYS_semget, KEY_A, 1, 0600));
	int b = semget(KEY_B, 1, IPC_CREAT | 0600);
	line_err("semget-b", b);
	struct sembuf up = { 0, 1, 0 };
	line_err("semop-b", semop(b, &up, 1));
	line_err("raw-semop-b", syscall(SYS_semop, b, &up, 1));
	line_err("getval-b", semctl(b, 0, GETVAL));
	line_ld("getpid-b-is-self", semctl(b, 0, GETPID) == vpid);
	/* Programs it starts join B: through the environment, and through an
	 * environment copied before the restore. */
	fflush(stdout);
	line_err("system", system("echo \"system-aid $APPSHOT_AID\""));
	fflush(stdout);
	pid_t child;
	char *argv[] = { "sh", "-c", "echo \"spawn-aid $APPSHOT_AID\"", NULL };
	if (posix_spawn(&child, "/bin/sh", NULL, NULL, argv, stale_env) == 0) waitpid(child, NULL, 0);
	/* A fork child of the restored process is B's too. */
	fflush(stdout);
	pid_t c = fork();
	if (c == 0) {
		printf("fork-child-semget-b %d\n", semget(KEY_B, 1, 0600) == b);
		printf("fork-child-semget-a %s\n", semget(KEY_A, 1, 0600) < 0 ? strerrorname_np(errno) : "found");
		fflush(stdout);
		_exit(0);
	}
	int st = -1;
	waitpid(c, &st, 0);
	line_ld("fork-child-status", st);
	printf("clone-vpid %d\n", (int)getpid());
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "give-fds"))) {
		fprintf(stderr, "usage: restoresim AID HOME GOFILE [give-fds]\n");
		return 2;
	}
	const char *aid = argv[1], *home = argv[2], *go = argv[3];
	const char *old_home = getenv("APPSHOT_HOME");
	int give = argc == 5;
	int a = semget(KEY_A, 1, IPC_CREAT | 0600);
	if (a < 0) return perror("semget"), 1;
	pid_t vpid = getpid();
	if (pipe(helper_pipe)) return 1;
	pthread_t t;
	pthread_create(&t, NULL, helper, &a);
	usleep(20000);
	unsigned char *page = find_canary();
	void (*entry)(void) = page ? (void (*)(void))(uintptr_t) * (uint64_t *)(page + 16) : NULL;
	printf("canary-found %d\n", page != NULL);
	/* No thread is inside the shim's table code now (canary.h in_tables). */
	if (page) printf("in-tables %u\n", *(volatile uint32_t *)(page + 28));
	printf("entry-is-exported %d\n", entry && entry == (void (*)(void))dlsym(RTLD_DEFAULT, "shim_restored_entry"));
	if (!page || !entry) return 1;
	/* What the restorer restores: the page as it was when dumped. */
	unsigned char saved[32];
	memcpy(saved, page, sizeof saved);
	/* An environment copied before the "snapshot", naming A. */
	size_t n = 0;
	while (environ[n]) n++;
	char **stale_env = calloc(n + 1, sizeof *stale_env);
	for (size_t i = 0; i < n; i++) stale_env[i] = strdup(environ[i]);
	int filters_before = seccomp_filters();
	fflush(stdout);
	/* clone, not fork: the filter does not trap it, so no wrapper runs. */
	long c = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (c == 0) {
		memcpy(page, saved, sizeof saved);
		memset(page + 32, 0, 4096 - 32);
		strncpy((char *)page + 32, aid, 255);
		strncpy((char *)page + 288, home, 3807);
		*(volatile uint32_t *)(page + 24) = 1;
		*(volatile int32_t *)page = 0;
		if (give) give_home_fds(old_home, home);
		pthread_t racers[RACERS];
		start_racers(racers, vpid);
		entry();
		/* A raw fork before anything renewed: its child renews alone. */
		long g = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (g == 0) {
			printf("rawfork-semget-a %s\n", semget(KEY_A, 1, 0600) < 0 ? strerrorname_np(errno) : "found");
			printf("rawfork-semget-b %d\n", semget(KEY_B, 1, IPC_CREAT | 0600) >= 0);
			printf("rawfork-fds-in-old-home %d\n", strcmp(old_home, home) ? fds_in_home(old_home) : 0);
			printf("rawfork-aid %s\n", getenv("APPSHOT_AID"));
			fflush(stdout);
			_exit(0);
		}
		int gst = -1;
		waitpid((pid_t)g, &gst, 0);
		printf("rawfork-status %d\n", gst);
		race(racers);
		/* Renewed: nothing of the old home is held any more (unless it is
		 * the same home). */
		printf("fds-in-old-home %d\n", strcmp(old_home, home) ? fds_in_home(old_home) : 0);
		/* The application's four and the tables' own (LMDB's data file
		 * twice, its lock file, an open lock): no more. */
		printf("fds-in-new-home %d\n", fds_in_home(home));
		printf("filters-added %d\n", seccomp_filters() - filters_before);
		checks(vpid, stale_env);
		struct stat st;
		while (stat(go, &st) != 0) usleep(20000);
		_exit(0);
	}
	int st = -1;
	waitpid((pid_t)c, &st, 0);
	printf("clone-status %d\n", st);
	printf("parent-vpid-kept %d\n", getpid() == vpid);
	printf("parent-semget-a %d\n", semget(KEY_A, 1, 0600) == a);
	printf("parent-semget-b %s\n", semget(KEY_B, 1, 0600) < 0 ? strerrorname_np(errno) : "found");
	char *sh[] = { "sh", "-c", "echo \"parent-aid $APPSHOT_AID\"", NULL };
	fflush(stdout);
	pid_t p;
	if (posix_spawn(&p, "/bin/sh", NULL, NULL, sh, environ) == 0) waitpid(p, NULL, 0);
	(void)!write(helper_pipe[1], "x", 1);
	pthread_join(t, NULL);
	semctl(a, 0, IPC_RMID);
	return 0;
}
