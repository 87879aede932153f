/*
 * semloop: creates and removes semaphore sets in a loop until killed, in
 * WORKERS processes (default 2), alternating keyed (KEY+worker) and private
 * sets. Prints "ready" once every worker has started.
 *   semloop KEY [WORKERS]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

static void loop(key_t key)
{
	for (unsigned long i = 0;; i++) {
		int id = semget(i & 1 ? IPC_PRIVATE : key, 1, IPC_CREAT | 0600);
		if (id >= 0) semctl(id, 0, IPC_RMID);
	}
}

int main(int argc, char **argv)
{
	key_t key = argc > 1 ? (key_t)strtol(argv[1], NULL, 0) : 0x5e0100;
	int workers = argc > 2 ? atoi(argv[2]) : 2;
	for (int w = 1; w < workers; w++)
		if (fork() == 0) loop(key + w);
	printf("ready\n");
	fflush(stdout);
	loop(key);
}
