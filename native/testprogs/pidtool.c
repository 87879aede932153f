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
		else if (!strcmp(c, "group")) group();
		else if (!strcmp(c, "ipcpids")) ipcpids();
		else if (!strcmp(c, "procpath")) procpath();
		else if (!strcmp(c, "sched")) sched();
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
