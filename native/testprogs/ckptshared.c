/*
 * ckptshared: shared anonymous memory between a parent and its child, for
 * the checkpoint engine's tests. The child adds one to a counter in a
 * MAP_SHARED|MAP_ANONYMOUS page per tick; the parent prints per tick
 * "tick PID CHILD N SHARED", N its own count, SHARED what it reads of the
 * child's counter. Restored, both go on and the page is still shared.
 *   ckptshared [INTERVAL_MS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 10;
	volatile long *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) return 1;
	pid_t child = fork();
	if (child < 0) return 1;
	if (child == 0)
		for (;;) page[1] = getpid(), page[0]++, nap(ms);
	for (long n = 1;; n++) {
		printf("tick %d %ld %ld %ld\n", (int)getpid(), page[1], n, page[0]);
		fflush(stdout);
		nap(ms);
	}
}
