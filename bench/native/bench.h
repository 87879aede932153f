/* What the benchmark drivers share: a monotonic clock and the per-call
 * timing loop (best mean of five rounds, printed as one JSON field). */
#ifndef APPSHOT_BENCH_H
#define APPSHOT_BENCH_H

#include <stdio.h>
#include <time.h>

static inline double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define PER_CALL(label, iters, body)                                  \
	do {                                                          \
		double best = 1e18;                                   \
		for (int round = 0; round < 5; round++) {             \
			double t0 = now_ns();                         \
			for (long i = 0; i < (iters); i++) { body; }  \
			double ns = (now_ns() - t0) / (iters);        \
			if (ns < best) best = ns;                     \
		}                                                     \
		printf("%s\"%s\": %.1f", first ? "" : ", ", label, best); \
		first = 0;                                            \
	} while (0)

#endif
