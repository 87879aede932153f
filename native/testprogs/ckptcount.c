/*
 * ckptcount: a process for the checkpoint engine's tests. It counts in a
 * global, in a heap block and in a stack variable, and prints one line per
 * tick: "tick PID GLOBAL HEAP STACK". Restored, it goes on from the saved
 * counts under a new kernel pid.
 *   ckptcount [INTERVAL_MS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long global_count;

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 20;
	long *heap = malloc(4096 * sizeof *heap);
	volatile long stack_count = 0;
	if (!heap) return 1;
	heap[2048] = 0;
	for (;;) {
		global_count++, heap[2048]++, stack_count++;
		printf("tick %d %ld %ld %ld\n", (int)getpid(), global_count, heap[2048], (long)stack_count);
		fflush(stdout);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}
