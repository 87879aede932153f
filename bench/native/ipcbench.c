/*
 * ipcbench: per-call cost of the shared memory and message queue calls
 * appshot translates. The same binary runs natively and under `appshot
 * run`; bench/run.ts pairs the two. Prints one JSON object.
 *
 *   ipcbench KEY
 *
 * Every object it creates is removed before it exits, on error paths too:
 * natively nothing else would remove them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>

#include "bench.h"
#include <unistd.h>

#define SEGMENT_SIZE 4096
#define MSG_SIZE 64
#define PING 1 /* parent to echo child */
#define PONG 2 /* echo child to parent */

struct message {
	long type;
	char text[MSG_SIZE];
};

static int shmid = -1, msqid = -1;
static pid_t owner, echo_pid = -1;
static int under_shim;

/* Runs at every exit() of the creating process, so error paths clean up
 * too. Removing the queue is also what ends the echo child (EIDRM). */
static void remove_objects(void)
{
	if (getpid() != owner) return;
	if (msqid >= 0 && msgctl(msqid, IPC_RMID, NULL) != 0) perror("ipcbench: msgctl(IPC_RMID)");
	if (shmid >= 0 && shmctl(shmid, IPC_RMID, NULL) != 0) perror("ipcbench: shmctl(IPC_RMID)");
	msqid = shmid = -1;
	if (echo_pid > 0) waitpid(echo_pid, NULL, 0);
	echo_pid = -1;
}

/* Interrupted natively, the objects are removed here (two plain system
 * calls). Under the shim they are left to the harness, which removes an
 * application's objects when it ends: the interrupted call may hold the
 * shim's locks. */
static void on_signal(int sig)
{
	if (!under_shim && getpid() == owner) {
		if (msqid >= 0) msgctl(msqid, IPC_RMID, NULL);
		if (shmid >= 0) shmctl(shmid, IPC_RMID, NULL);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

/* The child side of the ping-pong: answers each PING with a PONG until the
 * parent removes the queue. It dies with the parent, so a killed run
 * never leaves it blocked (nor `appshot run` waiting for it). */
static void echo(pid_t parent)
{
	struct message m;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
	while (msgrcv(msqid, &m, MSG_SIZE, PING, 0) == MSG_SIZE) {
		m.type = PONG;
		if (msgsnd(msqid, &m, MSG_SIZE, 0) != 0) break;
	}
	_exit(0);
}

/* Both sides of the ping-pong share one CPU: the round trip is then two
 * context switches, steady from run to run. Across CPUs it is a cross-CPU
 * wake-up, which here took 45 to 75 us and moved with the host, and the
 * scheduler picks either from run to run, so no ratio would hold. */
static void pin_to_this_cpu(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();
	if (cpu < 0) fail("ipcbench: sched_getcpu");
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set) != 0) fail("ipcbench: sched_setaffinity");
}

/* Pinned before the fork, so the child inherits the CPU. */
static void start_echo(void)
{
	pid_t parent = getpid();
	pin_to_this_cpu();
	/* Nothing buffered may be printed twice. */
	fflush(stdout);
	echo_pid = fork();
	if (echo_pid < 0) fail("ipcbench: fork");
	if (echo_pid == 0) echo(parent);
}

/* One round trip: two sends and two receives, two wake-ups. */
static void round_trip(void)
{
	struct message m = { .type = PING };
	if (msgsnd(msqid, &m, MSG_SIZE, 0) != 0) fail("ipcbench: msgsnd");
	if (msgrcv(msqid, &m, MSG_SIZE, PONG, 0) != MSG_SIZE) fail("ipcbench: msgrcv");
}

static void attach_detach(void)
{
	void *addr = shmat(shmid, NULL, 0);
	if (addr == (void *)-1) fail("ipcbench: shmat");
	if (shmdt(addr) != 0) fail("ipcbench: shmdt");
}

/* A private segment made and removed at once (never attached). */
static void create_remove(void)
{
	int id = shmget(IPC_PRIVATE, SEGMENT_SIZE, 0600);
	if (id < 0) fail("ipcbench: shmget(IPC_PRIVATE)");
	if (shmctl(id, IPC_RMID, NULL) != 0) fail("ipcbench: shmctl(IPC_RMID)");
}

static void get_existing(key_t key)
{
	if (shmget(key, SEGMENT_SIZE, 0600) != shmid) fail("ipcbench: shmget");
}

int main(int argc, char **argv)
{
	key_t key = argc > 1 ? (key_t)strtol(argv[1], NULL, 0) : 0x1bc001;
	int first = 1;
	owner = getpid();
	under_shim = dlsym(RTLD_DEFAULT, "appshot_vr_to_sr") != NULL;
	atexit(remove_objects);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);

	/* Exclusive, so that a key left over from elsewhere fails loudly
	 * rather than being measured and then removed. */
	if ((shmid = shmget(key, SEGMENT_SIZE, IPC_CREAT | IPC_EXCL | 0600)) < 0) fail("ipcbench: shmget");
	if ((msqid = msgget(IPC_PRIVATE, 0600)) < 0) fail("ipcbench: msgget");

	printf("{");
	PER_CALL("shmat_shmdt", 50000, attach_detach());
	PER_CALL("shmget_existing", 1000000, get_existing(key));
	PER_CALL("shm_create_remove", 20000, create_remove());
	/* Last: it pins this process to one CPU. */
	start_echo();
	PER_CALL("msg_round_trip", 20000, round_trip());
	printf("}\n");
	remove_objects();
	return 0;
}
