/* The application of the snapshot benchmark: NSETS semaphore sets of one
 * semaphore each and one shared memory segment of MIB MiB (key 0x5eb800),
 * every page written, so a snapshot has real bytes to copy. Prints
 * "ready" and waits to be snapshotted. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int nsets = argc > 1 ? atoi(argv[1]) : 10000;
	size_t bytes = (size_t)(argc > 2 ? atoi(argv[2]) : 1024) << 20;
	for (int i = 0; i < nsets; i++) {
		int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
		if (id < 0 || semctl(id, 0, SETVAL, i % 100) < 0) {
			perror("snapbench: semget");
			return 1;
		}
	}
	int shmid = shmget(0x5eb800, bytes, IPC_CREAT | 0600);
	unsigned char *p = shmid < 0 ? (void *)-1 : shmat(shmid, NULL, 0);
	if (p == (void *)-1) {
		perror("snapbench: shmget");
		return 1;
	}
	for (size_t i = 0; i < bytes; i += 4096) memset(p + i, (int)(i >> 12), 4096);
	shmdt(p);
	printf("ready\n");
	fflush(stdout);
	for (;;) pause();
}
