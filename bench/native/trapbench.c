/*
 * trapbench: what a trapped call costs. The same system calls made raw
 * (syscall(), past libc's wrappers, which the shim's seccomp filter traps
 * and its SIGSYS handler completes) and through libc (the shim's wrappers,
 * no trap); and a system call the filter does not trap, which must cost
 * what it does natively. bench/run.ts and bench/trap.ts run it natively
 * and under `appshot run`. Prints one JSON object.
 *
 *   trapbench KEY
 *
 * KEY: a semaphore set is made on it and removed at the end.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

static volatile long sink;

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: trapbench KEY\n");
		return 2;
	}
	key_t key = (key_t)strtol(argv[1], NULL, 0);
	int id = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0) {
		perror("trapbench: semget");
		return 1;
	}
	/* Waiting for zero on a zero semaphore: returns at once, changes nothing. */
	struct sembuf zero = { 0, 0, IPC_NOWAIT };
	int first = 1;
	printf("{");
	PER_CALL("raw_getpid", 200000, sink = syscall(SYS_getpid));
	PER_CALL("libc_getpid", 500000, sink = getpid());
	PER_CALL("raw_semop", 200000, sink = syscall(SYS_semop, id, &zero, 1));
	PER_CALL("libc_semop", 500000, sink = semop(id, &zero, 1));
	PER_CALL("raw_kill_self_0", 200000, sink = syscall(SYS_kill, getpid(), 0));
	PER_CALL("untrapped_getuid", 500000, sink = syscall(SYS_getuid));
	printf("}\n");
	semctl(id, 0, IPC_RMID);
	return 0;
}
