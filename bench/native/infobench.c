/*
 * infobench: per-call cost of IPC_INFO, SEM_INFO, SHM_INFO and MSG_INFO
 * with many objects of each family in the application (issue 21: the
 * answers must cost the same whatever the number of objects). The same
 * binary runs natively and under `appshot run`; bench/run.ts pairs the
 * two. Prints one JSON object.
 *
 *   infobench KEY [OBJECTS]
 *
 * KEY is taken like the other drivers' and ignored: every object is
 * IPC_PRIVATE. OBJECTS (default 1000) of each family are made first: a
 * set of 2 semaphores, a segment of one page, a queue holding one message.
 * Each call is timed twice: again and again with nothing changing between
 * calls (the best mean of five rounds), and right after an object of its
 * family was made and removed (the median of single calls), which under
 * the shim is a commit to the tables that every process sees.
 * Every object it creates is removed before it exits, on error paths too.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include "bench.h"

static int *sems, *shms, *msgs;
static int nobjects, made;
static pid_t owner;
static int under_shim;

static void remove_objects(void)
{
	if (getpid() != owner) return;
	for (int i = 0; i < made; i++) {
		if (sems[i] >= 0) semctl(sems[i], 0, IPC_RMID);
		if (shms[i] >= 0) shmctl(shms[i], IPC_RMID, NULL);
		if (msgs[i] >= 0) msgctl(msgs[i], IPC_RMID, NULL);
	}
	made = 0;
}

/* Natively, an interrupted run removes its objects here; under the shim
 * the harness removes an application's objects when it ends (the
 * interrupted call may hold the shim's locks). */
static void on_signal(int sig)
{
	if (!under_shim) remove_objects();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static void make_objects(void)
{
	struct {
		long type;
		char text[16];
	} m = { 1, "infobench" };
	sems = calloc((size_t)nobjects, sizeof *sems);
	shms = calloc((size_t)nobjects, sizeof *shms);
	msgs = calloc((size_t)nobjects, sizeof *msgs);
	if (!sems || !shms || !msgs) fail("infobench: calloc");
	for (int i = 0; i < nobjects; i++) {
		sems[i] = shms[i] = msgs[i] = -1;
		made = i + 1;
		if ((sems[i] = semget(IPC_PRIVATE, 2, 0600)) < 0) fail("infobench: semget");
		if ((shms[i] = shmget(IPC_PRIVATE, 4096, 0600)) < 0) fail("infobench: shmget");
		if ((msgs[i] = msgget(IPC_PRIVATE, 0600)) < 0) fail("infobench: msgget");
		if (msgsnd(msgs[i], &m, sizeof m.text, 0) != 0) fail("infobench: msgsnd");
	}
}

/* The best mean of five rounds of one call, each round about 20 ms (a
 * slow call is timed a few times, a fast one many), sized by ten calls
 * after a first one (which, under the shim, may read the rows). */
#define INFO_CALL(label, call)                                                   \
	do {                                                                     \
		if ((call) < 0) fail("infobench: " label);                       \
		double t0 = now_ns();                                            \
		for (int k = 0; k < 10; k++)                                     \
			if ((call) < 0) fail("infobench: " label);               \
		double once = (now_ns() - t0) / 10;                              \
		long iters = once > 0 ? (long)(20e6 / once) : 100000;            \
		if (iters < 3) iters = 3;                                        \
		if (iters > 200000) iters = 200000;                              \
		PER_CALL(label, iters, (call));                                  \
	} while (0)

/* The median of single calls of `call`, each right after `change`. */
#define AFTER_CHANGE(label, change, call)                                          \
	do {                                                                       \
		enum { N = 101 };                                                  \
		uint64_t d[N];                                                     \
		for (int k = 0; k < N; k++) {                                      \
			change;                                                    \
			uint64_t a = tsc_fenced();                                 \
			if ((call) < 0) fail("infobench: " label);                 \
			uint64_t b = tsc_fenced();                                 \
			d[k] = b - a > empty ? b - a - empty : 0;                  \
		}                                                                  \
		qsort(d, N, sizeof d[0], cmp_u64);                                 \
		printf(", \"%s\": %.1f", label, d[N / 2] / per_ns);               \
	} while (0)

static void change_sem(void)
{
	int id = semget(IPC_PRIVATE, 1, 0600);
	if (id < 0 || semctl(id, 0, IPC_RMID) != 0) fail("infobench: semget + IPC_RMID");
}

static void change_shm(void)
{
	int id = shmget(IPC_PRIVATE, 4096, 0600);
	if (id < 0 || shmctl(id, IPC_RMID, NULL) != 0) fail("infobench: shmget + IPC_RMID");
}

static void change_msg(void)
{
	int id = msgget(IPC_PRIVATE, 0600);
	if (id < 0 || msgctl(id, IPC_RMID, NULL) != 0) fail("infobench: msgget + IPC_RMID");
}

int main(int argc, char **argv)
{
	nobjects = argc > 2 ? atoi(argv[2]) : 1000;
	if (nobjects < 1) nobjects = 1;
	int first = 1;
	owner = getpid();
	under_shim = dlsym(RTLD_DEFAULT, "appshot_vr_to_sr") != NULL;
	atexit(remove_objects);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	make_objects();

	struct seminfo si;
	struct shm_info shi;
	struct shminfo shl;
	struct msginfo mi;
	printf("{");
	INFO_CALL("sem_info", semctl(0, 0, SEM_INFO, &si));
	INFO_CALL("sem_ipc_info", semctl(0, 0, IPC_INFO, &si));
	INFO_CALL("shm_info", shmctl(0, SHM_INFO, (struct shmid_ds *)&shi));
	INFO_CALL("shm_ipc_info", shmctl(0, IPC_INFO, (struct shmid_ds *)&shl));
	INFO_CALL("msg_info", msgctl(0, MSG_INFO, (struct msqid_ds *)&mi));
	INFO_CALL("msg_ipc_info", msgctl(0, IPC_INFO, (struct msqid_ds *)&mi));
	double per_ns = tsc_per_ns();
	uint64_t empty = tsc_overhead();
	AFTER_CHANGE("sem_info_after_change", change_sem(), semctl(0, 0, SEM_INFO, &si));
	AFTER_CHANGE("shm_info_after_change", change_shm(), shmctl(0, SHM_INFO, (struct shmid_ds *)&shi));
	AFTER_CHANGE("msg_info_after_change", change_msg(), msgctl(0, MSG_INFO, (struct msqid_ds *)&mi));
	printf("}\n");
	remove_objects();
	return 0;
}
