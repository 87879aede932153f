/*
 * countloop: a counter kept in memory only, for the whole-process snapshot
 * tests (test/checkpoint-harness.test.ts). Prints "count N pid P" every
 * 20 ms, P being getpid() as the program sees it (its vpid under appshot):
 * a restored process continues from its N, with its P, where a restarted
 * one would begin at 0 again.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct timespec tick = { 0, 20 * 1000 * 1000 };
	for (unsigned long n = 0;; n++) {
		printf("count %lu pid %d\n", n, (int)getpid());
		nanosleep(&tick, NULL);
	}
}
