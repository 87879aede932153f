/*
 * sembench: per-call cost of the semaphore calls appshot translates. The
 * same binary runs natively and under `appshot run`; bench/run.ts pairs the
 * two. Prints one JSON object.
 *
 *   sembench KEY
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <time.h>

#include "bench.h"

typedef int (*lookup_fn)(uint8_t, uint32_t, uint32_t *);

/* Times single lookups with rdtscp, less the cost of an empty timing. */
static void lookup_percentiles(lookup_fn lookup, int *ids, int nids, int miss, key_t key, double per_ns, int first)
{
	enum { N = 20000 };
	static uint64_t d[N];
	unsigned aux;
	uint64_t empty = ~0ull;
	for (int i = 0; i < 1000; i++) {
		uint64_t a = __rdtscp(&aux), b = __rdtscp(&aux);
		if (b - a < empty) empty = b - a;
	}
	int samples = miss ? N / 10 : N;
	for (int i = 0; i < samples; i++) {
		uint32_t srid;
		if (miss) {
			/* A commit by anyone invalidates every cache; the next
			 * lookup reads LMDB. A keyed set's create is one (a
			 * private one's goes to the journal of new objects). */
			int s = semget(key, 1, IPC_CREAT | 0600);
			semctl(s, 0, IPC_RMID);
		}
		int id = ids[(i * 7) % nids];
		uint64_t a = __rdtscp(&aux);
		lookup(1, (uint32_t)id, &srid);
		uint64_t b = __rdtscp(&aux);
		d[i] = b - a > empty ? b - a - empty : 0;
	}
	qsort(d, samples, sizeof d[0], cmp_u64);
	printf("%s\"%s\": {\"p50\": %.1f, \"p99\": %.1f}", first ? "" : ", ", miss ? "lookup_after_commit" : "lookup",
	       d[samples / 2] / per_ns, d[samples * 99 / 100] / per_ns);
}

int main(int argc, char **argv)
{
	key_t key = argc > 1 ? (key_t)strtol(argv[1], NULL, 0) : 0x5eb001;
	int first = 1;
	int id = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0) {
		perror("sembench: semget");
		return 1;
	}
	struct sembuf up = { 0, 1, 0 }, down = { 0, -1, 0 };
	printf("{");
	PER_CALL("semop", 2000000, semop(id, (i & 1) ? &down : &up, 1));
	PER_CALL("semctl_getval", 2000000, semctl(id, 0, GETVAL));
	PER_CALL("semget_existing", 1000000, semget(key, 1, 0600));
	PER_CALL("create_remove", 20000, semctl(semget(IPC_PRIVATE, 1, 0600), 0, IPC_RMID));
	PER_CALL("create_remove_keyed", 20000, semctl(semget(key + 1, 1, IPC_CREAT | 0600), 0, IPC_RMID));
	lookup_fn lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "appshot_vr_to_sr");
	if (lookup) {
		int ids[64];
		for (int i = 0; i < 64; i++) ids[i] = semget(IPC_PRIVATE, 1, 0600);
		double per_ns = tsc_per_ns();
		uint32_t srid;
		PER_CALL("lookup_avg", 5000000, lookup(1, (uint32_t)ids[i & 63], &srid));
		lookup_percentiles(lookup, ids, 64, 0, key + 2, per_ns, 0);
		lookup_percentiles(lookup, ids, 64, 1, key + 2, per_ns, 0);
		for (int i = 0; i < 64; i++) semctl(ids[i], 0, IPC_RMID);
	}
	printf("}\n");
	semctl(id, 0, IPC_RMID);
	return 0;
}
