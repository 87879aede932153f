/* The application of the template benchmark: a segment of SHARED_MIB MiB
 * (key 0x5eb900) loaded once and then attached read-only, as a table a
 * server only reads, so a template shares it; a segment of DUP_MIB MiB
 * (key 0x5eb901) attached writable, so each clone gets its own copy; and
 * a semaphore set (key 0x5eb902). Prints "ready" and waits.
 *
 *   templatebench SHARED_MIB DUP_MIB */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

static void *segment(key_t key, size_t bytes, int readonly)
{
	int id = shmget(key, bytes, IPC_CREAT | 0600);
	unsigned char *p = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
	if (p == (void *)-1) {
		perror("templatebench: shmget");
		exit(1);
	}
	for (size_t i = 0; i < bytes; i += 4096) memset(p + i, (int)(i >> 12), 4096);
	if (!readonly) return p;
	shmdt(p);
	return shmat(id, NULL, SHM_RDONLY);
}

int main(int argc, char **argv)
{
	size_t shared = (size_t)(argc > 1 ? atoi(argv[1]) : 256) << 20;
	size_t dup = (size_t)(argc > 2 ? atoi(argv[2]) : 16) << 20;
	if (segment(0x5eb900, shared, 1) == (void *)-1 || semget(0x5eb902, 1, IPC_CREAT | 0600) < 0) {
		perror("templatebench");
		return 1;
	}
	segment(0x5eb901, dup, 0);
	printf("ready\n");
	fflush(stdout);
	for (;;) pause();
}
