/*
 * ckptsysv: a SysV shared memory attachment for the checkpoint engine's
 * tests. It makes a private segment, attaches it, and per tick adds one to
 * a counter in it and prints "tick PID SHMID ADDRESS COUNT". The segment
 * outlives the process (no IPC_RMID): the test removes it.
 *   ckptsysv [INTERVAL_MS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 10;
	int id = shmget(IPC_PRIVATE, 4096, 0600);
	volatile long *seg = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
	if (seg == (void *)-1) return 1;
	for (;;) {
		seg[0]++;
		printf("tick %d %d %p %ld\n", (int)getpid(), id, (void *)seg, seg[0]);
		fflush(stdout);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}
