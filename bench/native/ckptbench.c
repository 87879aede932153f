/* The application of the whole-process checkpoint benchmark
 * (bench/checkpoint.ts): writes every page of MIB MiB of private anonymous
 * memory (the state a snapshot must carry and a cold start must build),
 * prints "ready BUILD_MS" (how long building it took inside the process),
 * then wakes every millisecond and appends "gap MS" to LOG whenever the
 * time since its last wake-up exceeds 5 ms: the pause a snapshot makes the
 * program see, and, after a restore, its first line says it runs again. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ckptbench MIB LOG\n");
		return 2;
	}
	size_t bytes = (size_t)atol(argv[1]) << 20;
	int log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log < 0) return perror("ckptbench: log"), 1;
	double t0 = now_ns();
	unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return perror("ckptbench: mmap"), 1;
	/* Not zeros: an image may leave zero pages out. */
	for (size_t i = 0; i < bytes; i += 4096) memset(p + i, (int)(i >> 12) | 1, 4096);
	printf("ready %.1f\n", (now_ns() - t0) / 1e6);
	fflush(stdout);
	const struct timespec ms = { 0, 1000000 };
	double last = now_ns();
	for (;;) {
		nanosleep(&ms, NULL);
		double now = now_ns(), gap = (now - last) / 1e6;
		last = now;
		if (gap > 5) {
			char line[64];
			int n = snprintf(line, sizeof line, "gap %.1f\n", gap);
			if (write(log, line, (size_t)n) != n) return 1;
		}
	}
}
