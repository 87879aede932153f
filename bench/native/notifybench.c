/*
 * notifybench: what a call answered by the supervisor costs (issue 20). The
 * same calls on a remapped port, semaphore set and PID, timed in one
 * program that bench/notify.ts runs three ways: linked statically and run
 * natively; linked statically under `appshot run --no-identity` (each call
 * a seccomp user notification the supervisor answers); and linked
 * dynamically under the same (the shim's in-process path: getpid from
 * memory, a raw getpid through the shim's SIGSYS trap). Prints one JSON
 * object.
 *
 *   notifybench KEY PORT
 *
 * KEY: a semaphore set is made on it and removed at the end; PORT: a free
 * TCP port, bound on 127.0.0.1 (its virtual port under appshot).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

static volatile long sink;

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: notifybench KEY PORT\n");
		return 2;
	}
	key_t key = (key_t)strtol(argv[1], NULL, 0);
	int port = atoi(argv[2]), one = 1;
	int id = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) }, got;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (id < 0 || bind(s, (struct sockaddr *)&a, sizeof a)) {
		perror("notifybench: semget or bind");
		return 1;
	}
	socklen_t len;
	int first = 1;
	printf("{");
	PER_CALL("getpid", 20000, sink = getpid());
	PER_CALL("raw_getpid", 20000, sink = syscall(SYS_getpid));
	PER_CALL("kill_self_0", 20000, sink = kill(getpid(), 0));
	PER_CALL("semctl_getval", 20000, sink = semctl(id, 0, GETVAL));
	PER_CALL("getsockname", 20000, (len = sizeof got, sink = getsockname(s, (struct sockaddr *)&got, &len)));
	PER_CALL("socket_bind_close", 5000, ({
		int b = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		sink = bind(b, (struct sockaddr *)&a, sizeof a); /* the leased port again */
		close(b);
	}));
	printf("}\n");
	close(s);
	semctl(id, 0, IPC_RMID);
	return 0;
}
