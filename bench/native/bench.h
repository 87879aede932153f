/* What the benchmark drivers share: a monotonic clock, the per-call
 * timing loop (best mean of five rounds, printed as one JSON field), and
 * single-call timing with the TSC. */
#ifndef APPSHOT_BENCH_H
#define APPSHOT_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

static inline double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* The iterations each timing loop makes: as written (`npm run bench
 * --full`), or that times BENCH_ITER_SCALE (0.1 in the default run, so
 * that it fits in minutes; best-of-five keeps the figure stable), at least
 * 50. */
static inline long bench_iters(long iters)
{
	static double scale = -1;
	if (scale < 0) {
		const char *s = getenv("BENCH_ITER_SCALE");
		scale = s ? atof(s) : 1.0;
		if (!(scale > 0 && scale <= 1)) scale = 1.0;
	}
	long n = (long)(iters * scale);
	return n < 50 ? (iters < 50 ? iters : 50) : n;
}

/* The best of five rounds of iters calls of body, per call, by clock (a
 * function giving nanoseconds: now_ns, or a CPU clock), printed as a JSON
 * member. */
#define PER_CALL_BY(clock, label, iters, body)                        \
	do {                                                          \
		double best = 1e18;                                   \
		long n_ = bench_iters(iters);                         \
		for (int round = 0; round < 5; round++) {             \
			double t0 = clock();                          \
			for (long i = 0; i < n_; i++) { body; }       \
			double ns = (clock() - t0) / n_;              \
			if (ns < best) best = ns;                     \
		}                                                     \
		printf("%s\"%s\": %.1f", first ? "" : ", ", label, best); \
		first = 0;                                            \
	} while (0)

#define PER_CALL(label, iters, body) PER_CALL_BY(now_ns, label, iters, body)

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Cycles per nanosecond, for turning rdtsc deltas into time (the TSC is
 * constant-rate on every machine this runs on: constant_tsc). */
static inline double tsc_per_ns(void)
{
	double t0 = now_ns();
	uint64_t c0 = __rdtsc();
	while (now_ns() - t0 < 50e6)
		;
	return (double)(__rdtsc() - c0) / (now_ns() - t0);
}

/* A timestamp that waits for everything before it to finish (rdtscp) and
 * lets nothing after it start early (lfence), so a pair brackets exactly
 * the code between them. */
static inline uint64_t tsc_fenced(void)
{
	unsigned aux;
	uint64_t t = __rdtscp(&aux);
	_mm_lfence();
	return t;
}

/* The cost of an empty timing: the least of many, so that subtracting it
 * never makes a call look cheaper than it is. */
static inline uint64_t tsc_overhead(void)
{
	uint64_t least = UINT64_MAX;
	for (int i = 0; i < 10000; i++) {
		uint64_t a = tsc_fenced(), b = tsc_fenced();
		if (b - a < least) least = b - a;
	}
	return least;
}

#endif
