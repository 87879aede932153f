/*
 * pidtool: runs a list of process ID operations and prints one line per
 * result, so tests can assert what a program sees. Each argument is one
 * command.
 *
 *   pid | ppid | tid | pgrp | sid      what the calls return
 *   child CODE            fork a child that prints its pid and ppid and exits
 *                         CODE; print "forked V", wait for it, "reaped V status CODE"
 *   spawn CODE            the same through posix_spawn of /bin/sh -c "exit CODE"
 *   kill PID SIG | waitpid PID        the result or the errno
 *   threads N             N threads print their gettid twice; "main tid == pid" or not
 *   peercred              SO_PEERCRED across a socketpair with a fork child, both ways
 *   orphan                a grandchild whose parent exits: its getppid and the kernel's
 *   siginfo               a child signals its parent; the handler's si_pid and the child's pid
 *   storm N               fork N children that exit at once, and reap them all
 *   owner                 F_SETOWN to itself, then F_GETOWN
 *   ipcpids               the PIDs in shm, sem and msg stat results after using each
 *   procpath              open /proc/<own pid>/cmdline and print it
 *   sched                 sched_getscheduler and prlimit on its own pid
 *   daemon FILE           daemon(), write getpid() to FILE, then run the rest
 *   group                 a child in a process group of its own, led by itself: its
 *                         getpgrp and getpgid, then killpg and sigqueue and tgkill on it
 *   rawfork               a child made by syscall(SYS_fork), past libc's fork: its
 *                         getpid, the kernel's, and whether it differs from the parent's
 *   nowrite               RLIMIT_FSIZE 0 with SIGXFSZ ignored: every write to a file
 *                         fails (EFBIG), so every commit to the tables fails too
 *   calls                 every call that takes a PID, on itself, a child, a child's
 *                         thread, a vpid no process has, PID 1 (not a child) and -5:
 *                         one line per call with its result or errno, nothing that
 *                         differs between runs, so a native run and both modes compare
 *   waits                 the wait family where nothing is to be reaped and with bad
 *                         pointers: each result, and whether the caller's status,
 *                         rusage and siginfo stayed as they were
 *   forkfaults N          fork N children that exit at once, one after another, each
 *                         reaped before the next: "faults per fork F child C", the
 *                         minor page faults per fork of this process (the pages it
 *                         copied) and of each child (those it copied or mapped again)
 *   sleep MS
 */
#define _GNU_SOURCE
#include "tool.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <linux/capability.h>
#include <sys/pidfd.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>

extern char **environ;

static void child(int code)
{
	/* The child speaks only after the parent's "forked" line, so the
	 * output has one order to check. */
	int go[2];
	if (pipe(go) != 0) {
		result(-1, "pipe");
		return;
	}
	pid_t p = fork();
	if (p == 0) {
		char c;
		close(go[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR) {}
		printf("child pid %d ppid %d\n", getpid(), getppid());
		fflush(stdout);
		_exit(code);
	}
	close(go[0]);
	printf("forked %d\n", p);
	fflush(stdout);
	close(go[1]);
	int st;
	pid_t r = waitpid(p, &st, 0);
	printf("reaped %d status %d\n", r, status_of(st));
}

static void spawn(const char *code)
{
	char script[32];
	snprintf(script, sizeof script, "exit %s", code);
	char *argv[] = { "sh", "-c", script, NULL };
	pid_t p;
	int e = posix_spawn(&p, "/bin/sh", NULL, NULL, argv, environ);
	if (e) {
		errno = e;
		result(-1, "spawned");
		return;
	}
	printf("spawned %d\n", p);
	int st;
	pid_t r = waitpid(p, &st, 0);
	printf("reaped %d status %d\n", r, status_of(st));
}

static void *print_tid(void *arg)
{
	pid_t a = gettid(), b = gettid();
	printf("thread %ld tid %d again %d\n", (long)(intptr_t)arg, a, b);
	return NULL;
}

static void threads(int n)
{
	pthread_t th[16];
	for (int k = 0; k < n && k < 16; k++) pthread_create(&th[k], NULL, print_tid, (void *)(intptr_t)k);
	for (int k = 0; k < n && k < 16; k++) pthread_join(th[k], NULL);
	printf("main tid %s pid\n", gettid() == getpid() ? "==" : "!=");
}

static pid_t peer_pid(int fd)
{
	struct ucred c;
	socklen_t len = sizeof c;
	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0 ? c.pid : -1;
}

static void peercred(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		result(-1, "socketpair");
		return;
	}
	/* socketpair's credentials are the creator's, on both ends. */
	pid_t p = fork();
	if (p == 0) {
		printf("child %d sees peer %d parent %d\n", getpid(), peer_pid(sv[1]), getppid());
		fflush(stdout);
		_exit(0);
	}
	waitpid(p, NULL, 0);
	printf("parent %d sees peer %d\n", getpid(), peer_pid(sv[0]));
	close(sv[0]);
	close(sv[1]);
}

static void orphan(void)
{
	int ready[2];
	if (pipe(ready) != 0) return;
	pid_t p = fork();
	if (p == 0) {
		pid_t parent = getpid();
		if (fork() == 0) {
			/* Wait until the parent has gone and we were adopted. */
			while (getppid() == parent) usleep(1000);
			printf("orphan ppid %d kernel ppid %ld\n", getppid(), syscall(SYS_getppid));
			fflush(stdout);
			char c = 1;
			ssize_t w = write(ready[1], &c, 1);
			(void)w;
			_exit(0);
		}
		_exit(0);
	}
	waitpid(p, NULL, 0);
	char c;
	ssize_t r = read(ready[0], &c, 1);
	(void)r;
}

static volatile sig_atomic_t signal_from;

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	signal_from = si->si_pid;
}

static void siginfo(void)
{
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1, old;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	pid_t p = fork();
	if (p == 0) {
		kill(getppid(), SIGUSR1);
		_exit(0);
	}
	while (!signal_from) sigsuspend(&old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	waitpid(p, NULL, 0);
	printf("si_pid %d child %d\n", (int)signal_from, p);
}

static void storm(int n)
{
	int reaped = 0;
	for (int k = 0; k < n; k++) {
		pid_t p = fork();
		if (p == 0) _exit(0);
		if (p < 0) break;
	}
	while (wait(NULL) > 0) reaped++;
	printf("stormed %d\n", reaped);
}

static void group(void)
{
	int ready[2];
	if (pipe(ready) != 0) return;
	pid_t p = fork();
	if (p == 0) {
		setpgid(0, 0);
		printf("child pgrp %s pid, pgid %s pid\n", getpgrp() == getpid() ? "==" : "!=",
		       getpgid(0) == getpid() ? "==" : "!=");
		fflush(stdout);
		char c = 1;
		ssize_t w = write(ready[1], &c, 1);
		(void)w;
		for (;;) pause();
	}
	char c;
	ssize_t r = read(ready[0], &c, 1);
	(void)r;
	printf("parent sees pgid %s child\n", getpgid(p) == p ? "==" : "!=");
	union sigval v = { .sival_int = 0 };
	result(sigqueue(p, 0, v), "sigqueue");
	result(tgkill(p, p, 0), "tgkill");
	result(killpg(p, SIGTERM), "killpg");
	int st;
	waitpid(p, &st, 0);
	printf("reaped status %d\n", status_of(st));
}

static void rawfork(void)
{
	pid_t parent = getpid();
	long p = syscall(SYS_fork);
	if (p == 0) {
		pid_t me = getpid();
		printf("rawchild getpid %d kernel %ld %s parent\n", me, syscall(SYS_getpid), me == parent ? "same as" : "differs from");
		fflush(stdout);
		_exit(0);
	}
	waitpid((pid_t)p, NULL, 0);
}

static void forkfaults(int n)
{
	struct rusage before, after, kids_before, kids_after;
	getrusage(RUSAGE_SELF, &before);
	getrusage(RUSAGE_CHILDREN, &kids_before);
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		if (p == 0) _exit(0);
		waitpid(p, NULL, 0);
	}
	getrusage(RUSAGE_SELF, &after);
	getrusage(RUSAGE_CHILDREN, &kids_after);
	printf("faults per fork %ld child %ld\n", (after.ru_minflt - before.ru_minflt + n / 2) / n,
	       (kids_after.ru_minflt - kids_before.ru_minflt + n / 2) / n);
}

static void owner(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	result(fcntl(fd, F_SETOWN, getpid()), "setown");
	printf("getown %d pid %d\n", fcntl(fd, F_GETOWN), getpid());
	struct f_owner_ex ex;
	if (fcntl(fd, F_GETOWN_EX, &ex) == 0) printf("getown_ex %d\n", ex.pid);
	close(fd);
}

static void ipcpids(void)
{
	int shm = shmget(IPC_PRIVATE, 4096, 0600), sem = semget(IPC_PRIVATE, 1, 0600), msg = msgget(IPC_PRIVATE, 0600);
	void *a = shmat(shm, NULL, 0);
	struct sembuf op = { 0, 1, 0 };
	semop(sem, &op, 1);
	struct { long type; char text[4]; } m = { 1, "hi" };
	msgsnd(msg, &m, sizeof m.text, 0);
	struct shmid_ds sd;
	struct msqid_ds md;
	shmctl(shm, IPC_STAT, &sd);
	msgctl(msg, IPC_STAT, &md);
	printf("pid %d shm_cpid %d shm_lpid %d sem_pid %d msg_lspid %d\n", getpid(), sd.shm_cpid, sd.shm_lpid,
	       semctl(sem, 0, GETPID), md.msg_lspid);
	shmdt(a);
	shmctl(shm, IPC_RMID, NULL);
	semctl(sem, 0, IPC_RMID);
	msgctl(msg, IPC_RMID, NULL);
}

static void procpath(void)
{
	char path[64], buf[256] = { 0 };
	snprintf(path, sizeof path, "/proc/%d/cmdline", getpid());
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		result(-1, "open");
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	printf("cmdline %s\n", n > 0 ? buf : "");
}

static void sched(void)
{
	result(sched_getscheduler(getpid()), "policy");
	struct rlimit rl;
	result(prlimit(getpid(), RLIMIT_NOFILE, NULL, &rl), "prlimit");
}


/* --- calls: one line per call ------------------------------------------- */

#define GONE_VPID 0x100003e7 /* remapped range: no process has it */

static void said(const char *call, const char *who, long r)
{
	if (r < 0) printf("%s %s err %s\n", call, who, strerrorname_np(errno));
	else printf("%s %s %ld\n", call, who, r);
}

/* libc exports them; only libcap's header declares them. */
int capget(cap_user_header_t hdrp, cap_user_data_t datap);
int capset(cap_user_header_t hdrp, const cap_user_data_t datap);
#define capget_raw capget

static void path_calls(pid_t pid, const char *who)
{
	char p[96], exe[PATH_MAX], self_exe[PATH_MAX];
	struct stat st, self;
	stat("/proc/self", &self);
	snprintf(p, sizeof p, "/proc/%d", pid);
	int r = stat(p, &st);
	printf("stat %s %s\n", who, r ? strerrorname_np(errno) : st.st_ino == self.st_ino ? "self" : "other");
	r = lstat(p, &st);
	printf("lstat %s %s\n", who, r ? strerrorname_np(errno) : st.st_ino == self.st_ino ? "self" : "other");
	r = fstatat(AT_FDCWD, p, &st, 0);
	printf("fstatat %s %s\n", who, r ? strerrorname_np(errno) : st.st_ino == self.st_ino ? "self" : "other");
	struct statx sx;
	said("statx", who, statx(AT_FDCWD, p, 0, STATX_INO, &sx));
	snprintf(p, sizeof p, "/proc/%d/status", pid);
	said("access", who, access(p, R_OK));
	said("faccessat", who, faccessat(AT_FDCWD, p, R_OK, 0));
	said("euidaccess", who, euidaccess(p, R_OK));
	snprintf(p, sizeof p, "/proc/%d/exe", pid);
	ssize_t n = readlink(p, exe, sizeof exe - 1), m = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	if (n >= 0) exe[n] = 0;
	if (m >= 0) self_exe[m] = 0;
	printf("readlink %s %s\n", who, n < 0 ? strerrorname_np(errno) : strcmp(exe, self_exe) ? "other" : "same exe");
	n = readlinkat(AT_FDCWD, p, exe, sizeof exe - 1);
	printf("readlinkat %s %s\n", who, n < 0 ? strerrorname_np(errno) : "ok");
	snprintf(p, sizeof p, "/proc/%d/task", pid);
	DIR *d = opendir(p);
	printf("opendir %s %s\n", who, d ? "ok" : strerrorname_np(errno));
	if (d) closedir(d);
	struct dirent **list;
	int k = scandir(p, &list, NULL, alphasort);
	printf("scandir %s %s\n", who, k < 0 ? strerrorname_np(errno) : k > 2 ? "entries" : "empty");
	for (int i = 0; i < k; i++) free(list[i]);
	if (k >= 0) free(list);
	snprintf(p, sizeof p, "/proc/%d/cmdline", pid);
	FILE *f = fopen(p, "r");
	printf("fopen %s %s\n", who, f ? "ok" : strerrorname_np(errno));
	if (f) fclose(f);
}

static volatile long marker = 0x5eed;

static void pid_calls(pid_t pid, const char *who)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, pid };
	struct __user_cap_data_struct data[2];
	int r = capget_raw(&h, data);
	said("capget", who, r);
	printf("capget %s header pid %s\n", who, h.pid == pid ? "kept" : "changed");
	if (r == 0) said("capset", who, capset(&h, data));
	errno = 0;
	int prio = getpriority(PRIO_PROCESS, (id_t)pid);
	said("getpriority", who, errno ? -1 : prio + 100);
	said("setpriority", who, setpriority(PRIO_PROCESS, (id_t)pid, errno ? 0 : prio));
	errno = 0;
	prio = getpriority(PRIO_PGRP, (id_t)getpgid(pid)); /* its process group, by the leader's PID */
	said("getpriority-pgrp", who, errno ? -1 : prio + 100);
	int fd = pidfd_open(pid, 0);
	said("pidfd_open", who, fd < 0 ? -1 : 0);
	if (fd >= 0) {
		said("pidfd_send_signal", who, pidfd_send_signal(fd, 0, NULL, 0));
		close(fd);
	}
	long got = 0;
	struct iovec local = { &got, sizeof got }, remote = { (void *)&marker, sizeof marker };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	printf("process_vm_readv %s %s\n", who, n < 0 ? strerrorname_np(errno) : got == 0x5eed ? "read marker" : "wrong");
	n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
	said("process_vm_writev", who, n);
	clockid_t clk;
	int e = clock_getcpuclockid(pid, &clk);
	printf("clock_getcpuclockid %s %s\n", who, e ? strerrorname_np(e) : "ok");
	cpu_set_t set;
	said("sched_getaffinity", who, sched_getaffinity(pid, sizeof set, &set) < 0 ? -1 : 0);
	said("sched_getscheduler", who, sched_getscheduler(pid));
	struct rlimit rl;
	said("prlimit", who, prlimit(pid, RLIMIT_NOFILE, NULL, &rl));
	said("kill", who, kill(pid, 0));
	union sigval v = { 0 };
	said("sigqueue", who, sigqueue(pid, 0, v));
	said("getpgid", who, getpgid(pid) < 0 ? -1 : 0);
	said("getsid", who, getsid(pid) < 0 ? -1 : 0);
}

/* A thread of a child: its vtid in /proc/<vpid>/task/<vtid>, seen by
 * the thread itself. */
static void *task_path(void *arg)
{
	(void)arg;
	char p[96];
	struct stat st;
	snprintf(p, sizeof p, "/proc/%d/task/%d/stat", getpid(), gettid());
	printf("task thread %s\n", stat(p, &st) ? strerrorname_np(errno) : "ok");
	char link[64], want[64];
	ssize_t n = readlink("/proc/thread-self", link, sizeof link - 1);
	link[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof want, "%d/task/%d", getpid(), gettid());
	printf("readlink thread-self %s\n", n < 0 ? strerrorname_np(errno) : strcmp(link, want) ? link : "pid/task/tid");
	snprintf(p, sizeof p, "/proc/self/task/%d/comm", gettid());
	said("task self-thread", "access", access(p, R_OK));
	/* Old binaries call __xstat (a compat symbol now): the same path. */
	int (*xstat)(int, const char *, struct stat *) = (int (*)(int, const char *, struct stat *))dlsym(RTLD_DEFAULT, "__xstat");
	snprintf(p, sizeof p, "/proc/%d/task/%d", getpid(), gettid());
	if (xstat) said("__xstat", "thread", xstat(1, p, &st));
	said("tgkill", "thread", tgkill(getpid(), gettid(), 0));
	return NULL;
}

static void lock_holder(pid_t child, int go)
{
	/* The child holds a lock; the parent asks who. */
	char path[] = "/tmp/pidtool-lock-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	(void)go;
	pid_t p = fork();
	if (p == 0) {
		struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		fcntl(fd, F_SETLK, &l);
		pause();
		_exit(0);
	}
	struct flock l;
	for (int i = 0; i < 2000; i++) {
		l = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		if (fcntl(fd, F_GETLK, &l) == 0 && l.l_type != F_UNLCK) break;
		usleep(1000);
	}
	printf("getlk holder %s\n", l.l_type == F_UNLCK ? "none" : l.l_pid == p ? "child" : "other");
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	close(fd);
	(void)child;
}

static void calls(void)
{
	int go[2];
	if (pipe(go) != 0) return;
	pid_t child = fork();
	if (child == 0) {
		/* Waits until the parent is done with it, then shows its thread. */
		char c;
		close(go[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR) {}
		pthread_t t;
		pthread_create(&t, NULL, task_path, NULL);
		pthread_join(t, NULL);
		_exit(0);
	}
	close(go[0]);
	struct { pid_t pid; const char *who; } targets[] = {
		{ getpid(), "self" }, { child, "child" }, { GONE_VPID, "gone" }, { 1, "pid1" }, { -5, "minus5" },
	};
	for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
		if (targets[i].pid > 0) path_calls(targets[i].pid, targets[i].who);
		pid_calls(targets[i].pid, targets[i].who);
	}
	char link[32], want[32];
	ssize_t n = readlink("/proc/self", link, sizeof link - 1);
	link[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof want, "%d", getpid());
	printf("readlink self-link %s\n", n < 0 ? strerrorname_np(errno) : strcmp(link, want) ? link : "pid");
	printf("readlink self-link short %zd\n", readlink("/proc/self", link, 1));
	char real[PATH_MAX], wantp[64];
	snprintf(wantp, sizeof wantp, "/proc/%d", getpid());
	printf("realpath self %s\n", !realpath("/proc/self", real) ? strerrorname_np(errno) : strcmp(real, wantp) ? real : "/proc/<pid>");
	char *canon = canonicalize_file_name("/proc/self/");
	printf("canonicalize self %s\n", !canon ? strerrorname_np(errno) : strcmp(canon, wantp) ? canon : "/proc/<pid>");
	free(canon);
	/* An unknown version: the kernel writes its own into the header. */
	struct __user_cap_header_struct h = { 0, getpid() };
	said("capget-version", "self", capget_raw(&h, NULL));
	printf("capget-version header %#x pid %s\n", h.version, h.pid == getpid() ? "kept" : "changed");
	said("capget-bad", "self", capget_raw((void *)1, NULL));
	said("pidfd_send_signal-bad", "self", pidfd_send_signal(pidfd_open(getpid(), 0), 0, (void *)1, 0));
	said("setown_ex-bad", "self", fcntl(0, F_SETOWN_EX, (void *)1));
	said("tcgetsid", "stdin", tcgetsid(0) < 0 ? -1 : 0);
	said("ptrace-seize", "gone", ptrace(PTRACE_SEIZE, GONE_VPID, 0, 0));
	said("ptrace-seize", "child", ptrace(PTRACE_SEIZE, child, 0, 0));
	said("ptrace-interrupt", "child", ptrace(PTRACE_INTERRUPT, child, 0, 0));
	int st;
	pid_t w = waitpid(child, &st, 0);
	printf("ptrace-stop %s %s\n", w == child ? "child" : "other", WIFSTOPPED(st) ? "stopped" : "not stopped");
	said("ptrace-detach", "child", ptrace(PTRACE_DETACH, child, 0, 0));
	lock_holder(child, go[1]);
	/* sigwaitinfo names the sender. */
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	pid_t parent = getpid(), sender = fork();
	if (sender == 0) {
		kill(parent, SIGUSR1);
		_exit(0);
	}
	siginfo_t si;
	int sig = sigwaitinfo(&usr1, &si);
	printf("sigwaitinfo %d from %s\n", sig, si.si_pid == sender ? "sender" : "other");
	waitpid(sender, NULL, 0);
	/* A siginfo of its own, naming itself, sent through a pidfd. */
	siginfo_t mine = { .si_signo = SIGUSR1, .si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid() };
	int self_fd = pidfd_open(getpid(), 0);
	said("pidfd_send_signal-info", "self", pidfd_send_signal(self_fd, SIGUSR1, &mine, 0));
	close(self_fd);
	sig = sigtimedwait(&usr1, &si, NULL);
	printf("sigtimedwait %d from %s code %d\n", sig, si.si_pid == getpid() ? "self" : "other", si.si_code);
	close(go[1]);
	w = waitpid(child, &st, 0);
	printf("reaped %s status %d\n", w == child ? "child" : "other", status_of(st));
}

/* --- waits: nothing to reap, and bad pointers --------------------------- */

static void kept(const char *call, const char *arg, long r, int st)
{
	said(call, arg, r);
	printf("%s %s status %s\n", call, arg, st == 12345 ? "kept" : "written");
}

static void waits(void)
{
	int st = 12345;
	kept("wait", "nochild", wait(&st), st);
	struct { pid_t pid; const char *name; } args[] = {
		{ -1, "-1" }, { 0, "0" }, { INT_MIN, "INT_MIN" }, { -99999, "-99999" }, { GONE_VPID, "gone" }, { 1, "pid1" },
	};
	for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
		st = 12345;
		kept("waitpid", args[i].name, waitpid(args[i].pid, &st, WNOHANG), st);
		st = 12345;
		struct rusage ru = { .ru_maxrss = 12345 };
		kept("wait4", args[i].name, wait4(args[i].pid, &st, 0, &ru), st);
		printf("wait4 %s rusage %s\n", args[i].name, ru.ru_maxrss == 12345 ? "kept" : "written");
		siginfo_t si = { .si_pid = 12345 };
		said("waitid", args[i].name, waitid(P_PID, (id_t)args[i].pid, &si, WEXITED | WNOHANG));
	}
	st = 12345;
	struct rusage ru = { .ru_maxrss = 12345 };
	kept("wait3", "nochild", wait3(&st, WNOHANG, &ru), st);
	/* A running child: WNOHANG has nothing to give. */
	int go[2];
	if (pipe(go) != 0) return;
	pid_t c = fork();
	if (c == 0) {
		char b;
		close(go[1]);
		while (read(go[0], &b, 1) < 0 && errno == EINTR) {}
		_exit(7);
	}
	close(go[0]);
	st = 12345;
	kept("waitpid", "running", waitpid(c, &st, WNOHANG), st);
	st = 12345;
	kept("wait4", "running", wait4(-1, &st, WNOHANG, &ru), st);
	siginfo_t si;
	memset(&si, 0x55, sizeof si);
	said("waitid", "running", waitid(P_PID, (id_t)c, &si, WEXITED | WNOHANG));
	printf("waitid running si_pid %d\n", si.si_pid);
	said("waitid-badinfo", "running", waitid(P_ALL, 0, (void *)1, WEXITED | WNOHANG));
	close(go[1]);
	/* Let it exit, then wait with bad pointers. */
	siginfo_t peek;
	waitid(P_PID, (id_t)c, &peek, WEXITED | WNOWAIT);
	said("waitid-badinfo", "exited", waitid(P_PID, (id_t)c, (void *)1, WEXITED | WNOWAIT));
	pid_t r = waitpid(c, (void *)1, 0);
	said("waitpid-badstatus", "exited", r == c ? 0 : r);
	said("waitpid", "after", waitpid(c, NULL, WNOHANG));
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		if (!strcmp(c, "pid")) printf("pid %d\n", getpid());
		else if (!strcmp(c, "ppid")) printf("ppid %d\n", getppid());
		else if (!strcmp(c, "tid")) printf("tid %d\n", gettid());
		else if (!strcmp(c, "pgrp")) printf("pgrp %d\n", getpgrp());
		else if (!strcmp(c, "sid")) printf("sid %d\n", getsid(0));
		else if (!strcmp(c, "child")) child((int)num(argv[++i]));
		else if (!strcmp(c, "spawn")) spawn(argv[++i]);
		else if (!strcmp(c, "kill")) {
			result(kill((pid_t)num(argv[i + 1]), (int)num(argv[i + 2])), "ok");
			i += 2;
		} else if (!strcmp(c, "waitpid")) result(waitpid((pid_t)num(argv[++i]), NULL, WNOHANG), "waited");
		else if (!strcmp(c, "threads")) threads((int)num(argv[++i]));
		else if (!strcmp(c, "peercred")) peercred();
		else if (!strcmp(c, "orphan")) orphan();
		else if (!strcmp(c, "siginfo")) siginfo();
		else if (!strcmp(c, "storm")) storm((int)num(argv[++i]));
		else if (!strcmp(c, "owner")) owner();
		else if (!strcmp(c, "rawfork")) rawfork();
		else if (!strcmp(c, "forkfaults")) forkfaults((int)num(argv[++i]));
		else if (!strcmp(c, "group")) group();
		else if (!strcmp(c, "ipcpids")) ipcpids();
		else if (!strcmp(c, "procpath")) procpath();
		else if (!strcmp(c, "sched")) sched();
		else if (!strcmp(c, "calls")) calls();
		else if (!strcmp(c, "waits")) waits();
		else if (!strcmp(c, "daemon")) {
			if (daemon(1, 1) != 0) return result(-1, "daemon"), 1;
			FILE *f = fopen(argv[++i], "w");
			if (!f) return 1;
			fprintf(f, "%d\n", getpid());
			fclose(f);
		} else if (!strcmp(c, "nowrite")) {
			struct rlimit none = { 0, 0 };
			signal(SIGXFSZ, SIG_IGN);
			result(setrlimit(RLIMIT_FSIZE, &none), "ok");
		} else if (!strcmp(c, "sleep")) usleep((useconds_t)num(argv[++i]) * 1000);
		else {
			fprintf(stderr, "pidtool: unknown command %s\n", c);
			return 2;
		}
	}
	return 0;
}
