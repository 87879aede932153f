/* Privilege changes and fork children starting at once (test/privs.test.ts,
 * test/forkopen.test.ts). Prints what the program sees, so a run under
 * appshot can be compared with a native one.
 *
 *   privtool sem-child MODE UID [exec]
 *     makes a private set of one semaphore with MODE; a fork child changes
 *     to UID (setgroups, setgid, setuid) and does semctl(GETVAL) and
 *     semop(+1) on it, in the same program or (exec) after running
 *     "privtool sem-use ID"; the parent reports the child's end, the value
 *     and removes the set.
 *   privtool sem-use ID        semctl(GETVAL) and semop(+1) on set ID.
 *   privtool fork-shm N [GO]   N fork children attach one segment and
 *     pause; once every child sleeps the parent prints shm_nattch, then
 *     wakes them with SIGUSR1 and reaps them (an alarm ends a hang). With
 *     GO, it prints "ready" after making the segment and forks once the
 *     file GO exists.
 *   privtool fds [raw]         closefrom(3) (raw: the close_range system
 *     call, past libc), closes a descriptor of its own, then makes and
 *     removes a semaphore set: the shim's descriptors survive a program
 *     closing everything, or are opened again.
 */
#define _GNU_SOURCE
#include "tool.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>

static void sem_use(int id)
{
	result(semctl(id, 0, GETVAL), "val");
	struct sembuf up = { 0, 1, 0 };
	result(semop(id, &up, 1), "op");
}

static int become(uid_t uid)
{
	gid_t gid = (gid_t)uid;
	if (setgroups(1, &gid) || setgid(gid) || setuid(uid)) {
		printf("err setuid %s\n", strerrorname_np(errno));
		return -1;
	}
	return 0;
}

static int sem_child(int mode, uid_t uid, int exec_it, const char *self)
{
	int id = semget(IPC_PRIVATE, 1, IPC_CREAT | mode);
	if (id < 0) return result(id, "id"), 1;
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		if (become(uid)) _exit(2);
		if (exec_it) {
			char arg[32];
			snprintf(arg, sizeof arg, "%d", id);
			fflush(stdout);
			execl(self, self, "sem-use", arg, (char *)NULL);
			printf("err exec %s\n", strerrorname_np(errno));
			_exit(3);
		}
		sem_use(id);
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	if (WIFEXITED(status)) printf("child exit %d\n", WEXITSTATUS(status));
	else printf("child signal %d\n", WTERMSIG(status));
	result(semctl(id, 0, GETVAL), "val");
	result(semctl(id, 0, IPC_RMID), "rmid");
	return 0;
}

static volatile sig_atomic_t woken;
static void on_usr1(int sig) { (void)sig; woken = 1; }
static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "hung\n";
	ssize_t w = write(1, msg, sizeof msg - 1);
	(void)w;
	_exit(4);
}

/* The state letter of /proc/PID/stat, '?' if unreadable. */
static char state_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0) return '?';
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return '?';
	buf[n] = 0;
	char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : '?';
}

static int fork_shm(int n, const char *go)
{
	int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	if (id < 0) return result(id, "id"), 1;
	if (go) {
		printf("ready\n");
		fflush(stdout);
		while (access(go, F_OK) != 0) usleep(2000);
	}
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGALRM, on_alarm);
	alarm(10);
	pid_t kids[256];
	if (n > 256) n = 256;
	for (int i = 0; i < n; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			if (shmat(id, NULL, 0) == (void *)-1) _exit(1);
			pause();
			_exit(woken ? 0 : 5);
		}
	}
	for (int i = 0; i < n; i++)
		while (state_of(kids[i]) != 'S') usleep(1000);
	struct shmid_ds ds;
	if (result(shmctl(id, IPC_STAT, &ds), "stat") >= 0) printf("nattch %lu\n", (unsigned long)ds.shm_nattch);
	fflush(stdout);
	int bad = 0;
	for (int i = 0; i < n; i++) kill(kids[i], SIGUSR1);
	for (int i = 0; i < n; i++) {
		int status;
		if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status)) bad++;
	}
	printf("children failed %d\n", bad);
	result(shmctl(id, IPC_RMID, NULL), "rmid");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "sem-child"))
		return sem_child((int)num(argv[2]), (uid_t)num(argv[3]), argc > 4 && !strcmp(argv[4], "exec"), argv[0]);
	if (argc == 3 && !strcmp(argv[1], "sem-use")) return sem_use((int)num(argv[2])), 0;
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "fork-shm")) return fork_shm((int)num(argv[2]), argc == 4 ? argv[3] : NULL);
	if ((argc == 2 || argc == 3) && !strcmp(argv[1], "fds")) {
		/* raw: past libc, as a program's own system call would. */
		if (argc == 3) syscall(SYS_close_range, 3u, ~0u, 0);
		else closefrom(3);
		int mine = fcntl(0, F_DUPFD, 100);
		result(close(mine), "close");
		int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
		result(id, "created");
		result(semctl(id, 0, IPC_RMID), "rmid");
		return 0;
	}
	fprintf(stderr, "usage: privtool sem-child MODE UID [exec] | sem-use ID | fork-shm N [GO] | fds [raw]\n");
	return 2;
}
