/*
 * ckptmem: memory for the checkpoint engine's tests and measurements. It
 * fills MB megabytes of anonymous memory with a pattern, then prints per
 * tick "tick PID N SUM", SUM adding up one word of every page (so every
 * page restored wrong shows), N counting ticks.
 *   ckptmem MB [INTERVAL_MS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 16, words = mb << 17;
	long ms = argc > 2 ? atol(argv[2]) : 20;
	uint64_t *mem = mmap(NULL, mb << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) return 1;
	for (size_t i = 0; i < words; i++) mem[i] = i * 2654435761u;
	for (long n = 1;; n++) {
		uint64_t sum = 0;
		for (size_t i = 0; i < words; i += 512) sum += mem[i];
		mem[(size_t)n * 512 % words] += 1; /* keeps changing: a restore must bring the last state */
		printf("tick %d %ld %llu\n", (int)getpid(), n, (unsigned long long)sum);
		fflush(stdout);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}
