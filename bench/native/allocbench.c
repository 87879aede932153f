/*
 * allocbench: allocation rate, PROCS processes creating semaphore sets
 * (semget(IPC_PRIVATE)) at once, as fast as they can. The same binary runs
 * natively and under `appshot run` (all processes in one application).
 *
 *   allocbench PROCS SECONDS LIVE [--hold]
 *
 * Creates only are counted and timed. The kernel holds at most SEMMNI sets
 * host-wide (32000 by default, shared with everything else on the host),
 * so the processes work in waves: together they create LIVE sets (LIVE /
 * PROCS each), all of them timed from the common start to the last one's
 * end; then, untimed, each removes its own; until SECONDS of creating have
 * passed. The last wave is left alive and checked: every ID returned is
 * distinct, and each process finds its own mark (SETVAL) in each of its
 * sets, so no two processes were handed one ID. With --hold the program
 * then prints its figures and waits for a line (or EOF) on stdin before
 * removing the last wave, so the tables can be checked with the sets live.
 * Prints one JSON object: procs, allocations, seconds, per_second, waves,
 * live, and problems (a list; empty when all is well). Exit 1 if any.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_PROCS 256

/* In memory shared by the coordinator (the parent) and the workers. */
struct shared {
	pthread_barrier_t barrier; /* PROCS workers and the coordinator */
	int stop, failed_errno;
	double start[MAX_PROCS], end[MAX_PROCS];
	long made[MAX_PROCS], foreign[MAX_PROCS], lost[MAX_PROCS];
	int n[MAX_PROCS]; /* how many of its IDs each worker holds */
	int ids[];        /* the IDs held: PER places each */
};

static struct shared *sh;
static int procs, per;

static void sync_all(void) { pthread_barrier_wait(&sh->barrier); }

static void remove_all(int *ids, int n, int me)
{
	for (int k = 0; k < n; k++)
		if (semctl(ids[k], 0, IPC_RMID) != 0) sh->lost[me]++;
}

/* Creates this worker's share of a wave; a failure (the kernel out of
 * sets, say) ends the run after this wave. */
static int create_wave(int *ids, int me)
{
	int n = 0;
	sh->start[me] = now_ns();
	while (n < per && (ids[n] = semget(IPC_PRIVATE, 1, 0600)) >= 0) n++;
	sh->end[me] = now_ns();
	if (n < per) sh->failed_errno = errno;
	sh->made[me] += n;
	sh->n[me] = n;
	return n;
}

/* Marks each set of the live wave with the worker's number, waits until
 * every worker has, then reads the marks back: a set handed to two
 * workers carries the mark of only one of them. */
static void check_marks(int *ids, int n, int me)
{
	for (int k = 0; k < n; k++) semctl(ids[k], 0, SETVAL, me + 1);
	sync_all();
	for (int k = 0; k < n; k++)
		if (semctl(ids[k], 0, GETVAL) != me + 1) sh->foreign[me]++;
}

static void worker(int me)
{
	int *ids = sh->ids + (size_t)me * per, n;
	/* Untimed: under the shim a fork child opens its own table handle at
	 * its first write. */
	if ((ids[0] = semget(IPC_PRIVATE, 1, 0600)) >= 0) remove_all(ids, 1, me);
	for (;;) {
		sync_all(); /* the wave starts */
		n = create_wave(ids, me);
		sync_all(); /* the wave is done; the coordinator decides */
		sync_all();
		if (sh->stop) break;
		remove_all(ids, n, me);
	}
	check_marks(ids, n, me);
	sync_all(); /* marks checked */
	sync_all(); /* the coordinator lets go */
	remove_all(ids, n, me);
	_exit(0);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

/* IDs handed out twice among the live wave's. */
static long duplicates(long live)
{
	int *sorted = malloc((live + 1) * sizeof *sorted);
	long dup = 0, at = 0;
	for (int i = 0; i < procs; i++)
		for (int k = 0; k < sh->n[i]; k++) sorted[at++] = sh->ids[(size_t)i * per + k];
	qsort(sorted, live, sizeof *sorted, cmp_int);
	for (long k = 1; k < live; k++) dup += sorted[k] == sorted[k - 1];
	free(sorted);
	return dup;
}

static long sum(const long *x)
{
	long s = 0;
	for (int i = 0; i < procs; i++) s += x[i];
	return s;
}

/* The wave's time: from the first worker's start to the last one's end. */
static double wave_seconds(void)
{
	double first = sh->start[0], last = sh->end[0];
	for (int i = 1; i < procs; i++) {
		if (sh->start[i] < first) first = sh->start[i];
		if (sh->end[i] > last) last = sh->end[i];
	}
	return (last - first) / 1e9;
}

int main(int argc, char **argv)
{
	int hold = argc == 5 && !strcmp(argv[4], "--hold");
	if (argc != 4 && !hold) {
		fprintf(stderr, "usage: allocbench PROCS SECONDS LIVE [--hold]\n");
		return 2;
	}
	procs = atoi(argv[1]);
	double seconds = atof(argv[2]);
	per = atoi(argv[3]) / (procs > 0 ? procs : 1);
	if (procs < 1 || procs > MAX_PROCS || per < 1 || !(seconds > 0)) {
		fprintf(stderr, "allocbench: need 1..%d processes, SECONDS > 0 and LIVE >= PROCS\n", MAX_PROCS);
		return 2;
	}
	size_t size = sizeof *sh + (size_t)procs * per * sizeof(int);
	sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_barrierattr_t attr;
	pthread_barrierattr_init(&attr);
	pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->barrier, &attr, procs + 1);
	fflush(stdout);
	static pid_t pids[MAX_PROCS];
	for (int i = 0; i < procs; i++) {
		if ((pids[i] = fork()) == 0) worker(i);
		if (pids[i] < 0) {
			perror("allocbench: fork");
			while (i--) kill(pids[i], SIGKILL); /* they wait for the others */
			return 1;
		}
	}
	double busy = 0;
	long waves = 0;
	for (;;) {
		sync_all();
		sync_all();
		busy += wave_seconds();
		waves++;
		sh->stop = busy >= seconds || sh->failed_errno;
		sync_all();
		if (sh->stop) break;
	}
	sync_all(); /* marks set */
	sync_all(); /* marks checked */
	long live = 0, made = sum(sh->made);
	for (int i = 0; i < procs; i++) live += sh->n[i];
	long dup = duplicates(live), foreign = sum(sh->foreign);
	printf("{\"procs\": %d, \"allocations\": %ld, \"seconds\": %.3f, \"per_second\": %.0f, \"waves\": %ld, "
	       "\"live\": %ld, \"problems\": [",
	       procs, made, busy, made / busy, waves, live);
	const char *sep = "";
	if (sh->failed_errno) printf("%s\"semget: %s\"", sep, strerror(sh->failed_errno)), sep = ", ";
	if (dup) printf("%s\"%ld IDs handed out twice\"", sep, dup), sep = ", ";
	if (foreign) printf("%s\"%ld sets carried another process's mark\"", sep, foreign), sep = ", ";
	printf("]}\n");
	fflush(stdout);
	if (hold) {
		char line[16];
		if (!fgets(line, sizeof line, stdin)) line[0] = 0;
	}
	sync_all(); /* let go: the workers remove the last wave */
	int bad = sh->failed_errno || dup || foreign;
	for (int i = 0; i < procs; i++) wait(NULL);
	if (sum(sh->lost)) {
		fprintf(stderr, "allocbench: %ld sets could not be removed\n", sum(sh->lost));
		bad = 1;
	}
	return bad;
}
