/*
 * chdirfork DIR N: one thread moves between DIR and DIR/sub (chdir in a
 * loop) while the main thread forks N times; each child stats a relative
 * path and exits. Under `appshot run --redir`, a child forked while the
 * other thread was recording its chdir must still resolve relative paths.
 * Prints "forked N" when every child has exited, or "child K stuck" (and
 * exits 1) for a child that has not exited 10 s after it was forked.
 */
#define _GNU_SOURCE
#include "tool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

static const char *dir;
static char sub[4096];
static atomic_int stop;

static void *mover(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		if (chdir(dir) != 0 || chdir(sub) != 0) {
			perror("chdirfork: chdir");
			exit(1);
		}
	return NULL;
}

static void on_alarm(int sig) { (void)sig; }

/* The child's status, or -1 when it has not exited within 10 s. */
static int wait_child(pid_t p)
{
	int st;
	alarm(10);
	pid_t r = waitpid(p, &st, 0);
	alarm(0);
	return r == p ? status_of(st) : -1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: chdirfork DIR N\n");
		return 2;
	}
	dir = argv[1];
	long n = num(argv[2]);
	snprintf(sub, sizeof sub, "%s/sub", dir);
	if (mkdir(sub, 0700) != 0 && errno != EEXIST) {
		perror("chdirfork: mkdir");
		return 1;
	}
	/* No SA_RESTART: the alarm ends a wait for a stuck child. */
	struct sigaction sa = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &sa, NULL);
	/* The alarm must reach this thread, not the mover. */
	sigset_t alrm;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, NULL);
	pthread_t th;
	pthread_create(&th, NULL, mover, NULL);
	pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
	for (long k = 0; k < n; k++) {
		pid_t p = fork();
		if (p < 0) {
			perror("chdirfork: fork");
			return 1;
		}
		if (p == 0) {
			struct stat st;
			_exit(stat(".", &st) == 0 ? 0 : 3);
		}
		int status = wait_child(p);
		if (status != 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
			printf(status < 0 ? "child %ld stuck\n" : "child %ld failed\n", k);
			return 1;
		}
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	printf("forked %ld\n", n);
	return 0;
}
