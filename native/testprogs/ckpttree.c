/*
 * ckpttree: a process tree for the checkpoint engine's tests. The parent
 * starts a session, forks a child that leads its own process group, and
 * each tick sends the child a number down one pipe; the child answers up
 * another with twice the number, its pid, and whether it still leads its
 * group inside its parent's session. The parent prints
 * "tick PARENT CHILD N ANSWER GROUPOK".
 *   ckpttree [INTERVAL_MS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct answer {
	long twice;
	int pid, group_ok;
};

static void child(int down, int up)
{
	setpgid(0, 0);
	long n;
	while (read(down, &n, sizeof n) == sizeof n) {
		struct answer a = {2 * n, (int)getpid(), getpgid(0) == getpid() && getsid(0) == getppid()};
		if (write(up, &a, sizeof a) != sizeof a) break;
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 10;
	int down[2], up[2];
	setsid();
	if (pipe(down) || pipe(up)) return 1;
	pid_t pid = fork();
	if (pid < 0) return 1;
	if (pid == 0) {
		close(down[1]), close(up[0]);
		child(down[0], up[1]);
	}
	close(down[0]), close(up[1]);
	for (long n = 1;; n++) {
		struct answer a;
		if (write(down[1], &n, sizeof n) != sizeof n || read(up[0], &a, sizeof a) != sizeof a) return 2;
		printf("tick %d %d %ld %ld %d\n", (int)getpid(), a.pid, n, a.twice, a.group_ok);
		fflush(stdout);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}
