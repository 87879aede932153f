/* Raw system calls, past libc's wrappers, beside the libc path, for the trap
 * tests (test/trap.test.ts). Each command prints lines the tests compare
 * between a native run and runs under appshot.
 *
 *   pids          getpid/gettid/getppid/getpgrp through libc, syscall() and an
 *                 inline `syscall` instruction: "same" when all agree
 *   sem KEY       a set made by raw semget on KEY; raw and libc semctl on it
 *                 (SETVAL, GETVAL, IPC_STAT's key), a raw semtimedop, raw RMID
 *   shm KEY       raw shmget, shmat, a write read back, shmdt, RMID
 *   msg KEY       raw msgget, msgsnd, msgrcv, msgctl IPC_STAT counts, RMID
 *   kill          a child (libc fork) killed by a raw kill of its pid, reaped
 *                 by a raw wait4: the status
 *   semwait KEY   a child blocks in a raw semtimedop; the parent posts after
 *                 100 ms; the child's wake-up and result
 *   rawfork       syscall(SYS_fork): the child's getpid equals its raw getpid
 *   rawclone      the same for a child of a raw clone(SIGCHLD), which no
 *                 wrapper and no atfork handler sees
 *   raise         raise(SIGUSR1) caught; then pthread_kill of another thread
 *   cancel        pthread_cancel of a thread blocked in pause(), then of one
 *                 blocked in msgrcv on a private queue
 *   abort         abort(): dies by SIGABRT
 *   assert        a failed assert(): dies by SIGABRT
 *   syslog        openlog(LOG_PID|LOG_PERROR): the pid in its stderr line equals getpid
 *   system        system("exit 7"): the status
 *   spawn         posix_spawn with POSIX_SPAWN_SETPGROUP: the child's status
 *   blockall      a thread blocks every signal and makes a raw getpid
 *   sigsys        the program's own SIGSYS handler gets a SIGSYS it raises,
 *                 and sigaction(SIGSYS) shows it back
 *   mask          sigprocmask blocking SIGSYS (and all): the mask shows it
 *   rawsigaction  SIGSYS's handler set by a raw rt_sigaction (as Go's runtime
 *                 does): raw calls still work, and the handler gets a SIGSYS
 *   ancestor      a second filter as an ancestor's shim may leave (its mark,
 *                 trapping kill, semget and semctl from where this shim's
 *                 text now lies, as ASLR may place it): the shim's own calls
 *                 still complete (from its stub page): "no shim" natively
 */
#define _GNU_SOURCE
#include "tool.h"

#include <assert.h>
#include <link.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>

extern char **environ;

static long inline_call0(long nr)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
	return r;
}

static void line(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void pids(void)
{
	long libc[] = { getpid(), gettid(), getppid(), getpgrp() };
	long nrs[] = { SYS_getpid, SYS_gettid, SYS_getppid, SYS_getpgrp };
	const char *names[] = { "getpid", "gettid", "getppid", "getpgrp" };
	for (int i = 0; i < 4; i++) {
		long s = syscall(nrs[i]), in = inline_call0(nrs[i]);
		line("%s %s", names[i], libc[i] == s && s == in ? "same" : "differ");
	}
	line("pid %ld", (long)getpid());
}

static void sem(key_t key)
{
	int id = (int)syscall(SYS_semget, key, 1, IPC_CREAT | 0600);
	if (id < 0) return (void)result(-1, "semget");
	line("setval %ld", syscall(SYS_semctl, id, 0, SETVAL, 5));
	line("getval raw %ld libc %d", syscall(SYS_semctl, id, 0, GETVAL, 0), semctl(id, 0, GETVAL));
	struct semid_ds ds;
	syscall(SYS_semctl, id, 0, IPC_STAT, &ds);
	line("key %s", ds.sem_perm.__key == key ? "same" : "differs");
	struct sembuf op = { 0, -2, 0 };
	line("semtimedop %ld", syscall(SYS_semtimedop, id, &op, 1, NULL));
	line("getval %d", semctl(id, 0, GETVAL));
	line("libc semget same id %s", semget(key, 1, 0) == id ? "yes" : "no");
	line("rmid %ld", syscall(SYS_semctl, id, 0, IPC_RMID, 0));
	errno = 0;
	result(syscall(SYS_semctl, id, 0, GETVAL, 0), "after rmid");
}

static void shm(key_t key)
{
	int id = (int)syscall(SYS_shmget, key, 4096, IPC_CREAT | 0600);
	if (id < 0) return (void)result(-1, "shmget");
	char *p = (char *)syscall(SYS_shmat, id, NULL, 0);
	if (p == (char *)-1) return (void)result(-1, "shmat");
	strcpy(p, "hello");
	char *q = shmat(id, NULL, SHM_RDONLY);
	line("read back %s", q == (char *)-1 ? "(libc shmat failed)" : q);
	struct shmid_ds ds;
	syscall(SYS_shmctl, id, IPC_STAT, &ds);
	line("nattch %lu cpid %s", (unsigned long)ds.shm_nattch, ds.shm_cpid == getpid() ? "self" : "other");
	line("shmdt %ld %d", syscall(SYS_shmdt, p), q == (char *)-1 ? -1 : shmdt(q));
	line("rmid %ld", syscall(SYS_shmctl, id, IPC_RMID, NULL));
}

static void msg(key_t key)
{
	int id = (int)syscall(SYS_msgget, key, IPC_CREAT | 0600);
	if (id < 0) return (void)result(-1, "msgget");
	struct {
		long type;
		char text[16];
	} m = { 3, "raw" }, r;
	line("msgsnd %ld", syscall(SYS_msgsnd, id, &m, 4, 0));
	struct msqid_ds ds;
	syscall(SYS_msgctl, id, IPC_STAT, &ds);
	line("qnum %lu lspid %s", (unsigned long)ds.msg_qnum, ds.msg_lspid == getpid() ? "self" : "other");
	line("msgrcv %ld %s", syscall(SYS_msgrcv, id, &r, sizeof r.text, 0, 0), r.text);
	line("libc msgget same id %s", msgget(key, 0) == id ? "yes" : "no");
	line("rmid %ld", syscall(SYS_msgctl, id, IPC_RMID, NULL));
}

static void killer(void)
{
	pid_t c = fork();
	if (c == 0) {
		pause();
		_exit(0);
	}
	line("kill %ld", syscall(SYS_kill, c, SIGTERM));
	int st = 0;
	long w = syscall(SYS_wait4, c, &st, 0, NULL);
	line("wait4 %s status %d", w == c ? "child" : "other", status_of(st));
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void semwait(key_t key)
{
	int id = semget(key, 1, IPC_CREAT | 0600);
	pid_t c = fork();
	if (c == 0) {
		struct sembuf op = { 0, -1, 0 };
		long t0 = now_ms();
		long r = syscall(SYS_semtimedop, id, &op, 1, NULL);
		long waited = now_ms() - t0;
		line("woke %ld after %s", r, waited >= 90 && waited < 5000 ? "the post" : "no wait");
		_exit(0);
	}
	struct timespec d = { 0, 100 * 1000000 };
	nanosleep(&d, NULL);
	struct sembuf post = { 0, 1, 0 };
	semop(id, &post, 1);
	int st;
	waitpid(c, &st, 0);
	semctl(id, 0, IPC_RMID);
	line("child status %d", status_of(st));
}

/* nr SYS_fork (trapped: the shim's fork) or SYS_clone with only SIGCHLD
 * (not trapped: the shim learns of the child at its first call into it;
 * clone's answer is the kernel's PID, so its child is waited for as any). */
static void rawfork(long nr)
{
	pid_t parent = getpid();
	long p = nr == SYS_clone ? syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) : syscall(SYS_fork);
	if (p == 0) {
		line("rawchild getpid %s raw, %s parent", getpid() == syscall(SYS_getpid) ? "equals" : "differs from",
		     getpid() == parent ? "same as" : "differs from");
		_exit(0);
	}
	int st;
	pid_t w = waitpid(nr == SYS_clone ? -1 : (pid_t)p, &st, 0);
	line("waitpid %s", w > 0 && (nr == SYS_clone || w == p) ? "child" : "other");
}

static volatile sig_atomic_t caught;
static void on_usr1(int sig) { caught++; }
static void *idle(void *arg)
{
	for (;;) pause();
	return arg;
}

static void raising(void)
{
	signal(SIGUSR1, on_usr1);
	line("raise %d caught %d", raise(SIGUSR1), (int)caught);
	pthread_t t;
	pthread_create(&t, NULL, idle, NULL);
	line("pthread_kill %d", pthread_kill(t, SIGUSR1));
	while (caught < 2) usleep(1000);
	line("caught %d", (int)caught);
	union sigval v = { .sival_int = 1 };
	line("pthread_sigqueue %d", pthread_sigqueue(t, SIGUSR1, v));
	while (caught < 3) usleep(1000);
	line("caught %d", (int)caught);
}

static void *blocked_in_pause(void *arg)
{
	for (;;) pause();
	return arg;
}

static void *blocked_in_msgrcv(void *arg)
{
	struct {
		long type;
		char text[8];
	} m;
	msgrcv(*(int *)arg, &m, sizeof m.text, 0, 0);
	return NULL;
}

static void cancel(void)
{
	pthread_t t;
	void *r;
	pthread_create(&t, NULL, blocked_in_pause, NULL);
	usleep(10000);
	line("cancel %d", pthread_cancel(t));
	int j = pthread_join(t, &r);
	line("join %d %s", j, r == PTHREAD_CANCELED ? "canceled" : "not canceled");
	int q = msgget(IPC_PRIVATE, 0600);
	pthread_create(&t, NULL, blocked_in_msgrcv, &q);
	usleep(10000);
	line("cancel in msgrcv %d", pthread_cancel(t));
	j = pthread_join(t, &r);
	line("join %d %s", j, r == PTHREAD_CANCELED ? "canceled" : "not canceled");
	msgctl(q, IPC_RMID, NULL);
}

static void logging(void)
{
	openlog("rawtool", LOG_PID | LOG_PERROR, LOG_USER);
	fprintf(stderr, "pid %d\n", getpid());
	syslog(LOG_INFO, "hello");
	closelog();
}

static void spawning(void)
{
	posix_spawnattr_t a;
	posix_spawnattr_init(&a);
	posix_spawnattr_setflags(&a, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&a, 0);
	char *argv[] = { "sh", "-c", "exit 5", NULL };
	pid_t c;
	int e = posix_spawn(&c, "/bin/sh", NULL, &a, argv, environ);
	int st = 0;
	if (e == 0) waitpid(c, &st, 0);
	line("spawn %d status %d", e, status_of(st));
}

static void *all_blocked(void *arg)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	*(long *)arg = syscall(SYS_getpid);
	return NULL;
}

static void blockall(void)
{
	pthread_t t;
	long p = 0;
	pthread_create(&t, NULL, all_blocked, &p);
	pthread_join(t, NULL);
	line("blocked thread getpid %s", p == getpid() ? "same" : "differs");
}

static volatile sig_atomic_t sys_caught;
static void on_sys(int sig, siginfo_t *si, void *ctx) { sys_caught = si->si_code == SI_TKILL ? 1 : 2; }

static void sigsys(void)
{
	struct sigaction a = { .sa_sigaction = on_sys, .sa_flags = SA_SIGINFO }, old;
	sigemptyset(&a.sa_mask);
	sigaction(SIGSYS, &a, NULL);
	sigaction(SIGSYS, NULL, &old);
	line("shows own handler %s", old.sa_sigaction == on_sys ? "yes" : "no");
	raise(SIGSYS);
	line("caught %d", (int)sys_caught);
	line("getpid %s", getpid() == syscall(SYS_getpid) ? "same" : "differs");
	signal(SIGSYS, SIG_DFL);
}

struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static void rawsigaction(void)
{
	struct sigaction libc_set;
	sigaction(SIGUSR2, NULL, &libc_set); /* any restorer will do: the handler returns through libc's */
	sys_caught = 0;
	struct kernel_sigaction k = { (void *)on_sys, SA_SIGINFO | 0x04000000 /* SA_RESTORER */, (void *)libc_set.sa_restorer, 0 }, old;
	if (!libc_set.sa_restorer) {
		struct sigaction tmp = { .sa_handler = SIG_IGN };
		sigaction(SIGUSR2, &tmp, NULL);
		sigaction(SIGUSR2, NULL, &libc_set);
		k.restorer = (void *)libc_set.sa_restorer;
	}
	line("raw rt_sigaction %ld", syscall(SYS_rt_sigaction, SIGSYS, &k, NULL, 8));
	syscall(SYS_rt_sigaction, SIGSYS, NULL, &old, 8);
	struct sigaction seen;
	sigaction(SIGSYS, NULL, &seen);
	line("shows it raw %s libc %s", old.handler == (void *)on_sys ? "yes" : "no", seen.sa_sigaction == on_sys ? "yes" : "no");
	line("getpid %s", getpid() == syscall(SYS_getpid) ? "same" : "differs");
	syscall(SYS_tgkill, syscall(SYS_getpid), syscall(SYS_gettid), SIGSYS);
	line("caught %d", (int)sys_caught);
}

static void mask(void)
{
	sigset_t s, cur;
	sigemptyset(&s);
	sigaddset(&s, SIGSYS);
	sigprocmask(SIG_BLOCK, &s, NULL);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	line("sigsys blocked %d", sigismember(&cur, SIGSYS));
	line("getpid %s", getpid() == syscall(SYS_getpid) ? "same" : "differs");
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	line("sigsys blocked %d", sigismember(&cur, SIGSYS));
	/* A successful call leaves errno as it was (PostgreSQL reads select's
	 * EINTR after its sigprocmask): with every signal, glibc's own too. */
	sigset_t all;
	sigfillset(&all);
	errno = EINTR;
	sigprocmask(SIG_SETMASK, &all, &cur);
	int e1 = errno;
	pthread_sigmask(SIG_SETMASK, &cur, NULL);
	line("errno kept %d", e1 == EINTR && errno == EINTR);
}

/* The shim's executable segment, [at[0], at[1]). */
static int shim_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t *at = arg;
	if (!strstr(info->dlpi_name, "libappshot.so")) return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			at[0] = info->dlpi_addr + ph->p_vaddr;
			at[1] = at[0] + ph->p_memsz;
		}
	}
	return 1;
}

static void ancestor(void)
{
	uintptr_t at[2] = { 0, 0 };
	dl_iterate_phdr(shim_text, at);
	if (!at[1] || (at[1] - 1) >> 32 != at[0] >> 32) {
		line(at[1] ? "shim text crosses 4 GiB" : "no shim");
		return;
	}
#define IP_LO offsetof(struct seccomp_data, instruction_pointer)
	struct sock_filter insn[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kill, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_semget, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_semctl, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, IP_LO + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(at[0] >> 32), 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, IP_LO),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)at[1], 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)at[0], 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP | 0x5a7), /* the shim's mark */
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof insn / sizeof insn[0], insn };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		line("seccomp: %s", strerror(errno));
		return;
	}
	line("kill %d", kill(getpid(), 0));
	int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	line("semget %s", id >= 0 ? "ok" : strerror(errno));
	int set = semctl(id, 0, SETVAL, 3);
	line("setval %d getval %d", set, semctl(id, 0, GETVAL));
	line("rmid %d", semctl(id, 0, IPC_RMID));
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		if (!strcmp(c, "pids")) pids();
		else if (!strcmp(c, "sem")) sem((key_t)num(argv[++i]));
		else if (!strcmp(c, "shm")) shm((key_t)num(argv[++i]));
		else if (!strcmp(c, "msg")) msg((key_t)num(argv[++i]));
		else if (!strcmp(c, "kill")) killer();
		else if (!strcmp(c, "semwait")) semwait((key_t)num(argv[++i]));
		else if (!strcmp(c, "rawfork")) rawfork(SYS_fork);
		else if (!strcmp(c, "rawclone")) rawfork(SYS_clone);
		else if (!strcmp(c, "raise")) raising();
		else if (!strcmp(c, "cancel")) cancel();
		else if (!strcmp(c, "abort")) abort();
		else if (!strcmp(c, "assert")) assert(argc < 0);
		else if (!strcmp(c, "syslog")) logging();
		else if (!strcmp(c, "system")) line("system status %d", status_of(system("exit 7")));
		else if (!strcmp(c, "spawn")) spawning();
		else if (!strcmp(c, "blockall")) blockall();
		else if (!strcmp(c, "sigsys")) sigsys();
		else if (!strcmp(c, "mask")) mask();
		else if (!strcmp(c, "rawsigaction")) rawsigaction();
		else if (!strcmp(c, "ancestor")) ancestor();
		else {
			fprintf(stderr, "rawtool: unknown command %s\n", c);
			return 2;
		}
	}
	return 0;
}
