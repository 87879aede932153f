/*
 * lookupbench: the shim's translation lookup (appshot_vr_to_sr) in an
 * application whose semaphore sets 1..1000 are rows made by
 * `tablefill HOME --aid AID 1000`, while the tables around it grow. Run
 * under `appshot run`. Prints "ready", then for each line "LABEL" read from
 * stdin measures and prints one JSON object:
 *
 *   {"mappings": "LABEL", "hot": {"p50", "p99", "mean"}, "cold": {"p50", "p99"},
 *    "timer_step": ...}
 *
 * in nanoseconds. Hot: lookups of a working set of 64 IDs the program
 * keeps using, so they are per-thread cache hits. Cold: a random one of the
 * 1000 right after a commit, which empties every cache, so it is an LMDB
 * read (a read transaction renewed, a B-tree descent, the transaction
 * reset). The TSC of some CPUs advances in steps (about 10 ns on the AMD
 * EPYC of this project's machine), so single-call percentiles are multiples
 * of timer_step; the hot mean, from a batch, is not.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>

#include "bench.h"

#define OWN 1000u     /* the application's rows: vrid 1..OWN */
#define WORKING 64u   /* hot working set: vrid 1..WORKING */
#define HOT_SAMPLES 200000
#define COLD_SAMPLES 10000
#define RT_SEM 1

typedef int (*lookup_fn)(uint8_t, uint32_t, uint32_t *);
static lookup_fn lookup;
static double per_ns;
static uint64_t overhead;

/* How far the TSC usually moves between two reads (the median: on the
 * EPYC it mostly moves 26 cycles at once, now and then 1): the resolution
 * of a timing. */
static double timer_step_ns(void)
{
	enum { N = 1001 };
	uint64_t d[N];
	for (int i = 0; i < N; i++) {
		uint64_t a = __rdtsc(), b;
		while ((b = __rdtsc()) == a)
			;
		d[i] = b - a;
	}
	qsort(d, N, sizeof d[0], cmp_u64);
	return d[N / 2] / per_ns;
}

static void check(uint32_t vrid)
{
	uint32_t srid;
	if (lookup(RT_SEM, vrid, &srid) != 0) {
		fprintf(stderr, "lookupbench: semaphore set %u is not mapped: fill with tablefill --aid first\n", vrid);
		exit(1);
	}
}

/* One call timed on its own: rdtscp/lfence around it, less the least cost
 * of an empty timing (bench.h), so the figure is the call and not the
 * timer; a call cheaper than the timer's jitter reads 0. */
static uint64_t timed(uint32_t vrid)
{
	uint32_t srid;
	uint64_t a = tsc_fenced();
	lookup(RT_SEM, vrid, &srid);
	uint64_t d = tsc_fenced() - a;
	return d > overhead ? d - overhead : 0;
}

static void percentiles(uint64_t *d, int n, double *p50, double *p99)
{
	qsort(d, n, sizeof d[0], cmp_u64);
	*p50 = d[n / 2] / per_ns;
	*p99 = d[n * 99 / 100] / per_ns;
}

/* Consecutive IDs, as an application's remapped IDs come: they fall in
 * distinct slots of the shim's direct-mapped cache, so once warm every
 * lookup is a hit. The mean comes from a batch of 1M timed as a whole,
 * with no timer inside, to check the single timings against. */
static void hot(double *p50, double *p99, double *mean)
{
	static uint64_t d[HOT_SAMPLES];
	uint32_t srid;
	for (uint32_t v = 1; v <= WORKING; v++) check(v);
	for (int i = 0; i < HOT_SAMPLES; i++) d[i] = timed(1 + i % WORKING);
	percentiles(d, HOT_SAMPLES, p50, p99);
	double t0 = now_ns();
	for (int i = 0; i < 1000000; i++) lookup(RT_SEM, 1 + i % WORKING, &srid);
	*mean = (now_ns() - t0) / 1e6;
}

/* A commit of this application's own: a set created, or the one created
 * before removed, through the shim. Each bumps the last committed txn id,
 * which empties the cache of every process on the host. */
static void commit_one(int *id)
{
	if (*id < 0) {
		if ((*id = semget(IPC_PRIVATE, 1, 0600)) < 0) {
			perror("lookupbench: semget");
			exit(1);
		}
		return;
	}
	if (semctl(*id, 0, IPC_RMID) != 0) {
		perror("lookupbench: semctl(IPC_RMID)");
		exit(1);
	}
	*id = -1;
}

static void cold(double *p50, double *p99)
{
	static uint64_t d[COLD_SAMPLES];
	int id = -1;
	srand(1);
	for (int i = 0; i < COLD_SAMPLES; i++) {
		commit_one(&id);
		d[i] = timed(1 + (uint32_t)rand() % OWN);
	}
	if (id >= 0) commit_one(&id);
	percentiles(d, COLD_SAMPLES, p50, p99);
}

int main(void)
{
	lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "appshot_vr_to_sr");
	if (!lookup) {
		fprintf(stderr, "lookupbench: no appshot_vr_to_sr: run it under 'appshot run'\n");
		return 1;
	}
	per_ns = tsc_per_ns();
	overhead = tsc_overhead();
	printf("ready\n");
	fflush(stdout);
	char label[64];
	while (fgets(label, sizeof label, stdin)) {
		label[strcspn(label, "\n")] = 0;
		for (uint32_t v = 1; v <= OWN; v++) check(v);
		double hp50, hp99, mean, cp50, cp99;
		hot(&hp50, &hp99, &mean);
		cold(&cp50, &cp99);
		printf("{\"mappings\": \"%s\", \"hot\": {\"p50\": %.1f, \"p99\": %.1f, \"mean\": %.1f}, "
		       "\"cold\": {\"p50\": %.1f, \"p99\": %.1f}, \"timer_step\": %.1f}\n",
		       label, hp50, hp99, mean, cp50, cp99, timer_step_ns());
		fflush(stdout);
	}
	return 0;
}
