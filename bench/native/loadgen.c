/* The load generator of the pool benchmark: CONNS client threads on
 * loopback for SECONDS, each opening connections to the PORTS in turn
 * and sending REQS requests on each (1: a connection per request).
 * Prints {"requests": N, "rps": R, "errors": E, "cpu_us": C}, C its own
 * CPU time (user + system), so that the bench can add up the CPU a request
 * costs on every side: on a shared machine requests/s swing with the load. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench.h"

static unsigned ports[16];
static int nports, reqs;
static double until;
static atomic_long done, errors;

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/* Reads one fixed-size answer (headers and a 2-byte body). */
static int read_reply(int s)
{
	char buf[256];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(s, buf + have, sizeof buf - have - 1);
		if (n <= 0) return -1;
		have += (size_t)n;
		buf[have] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (end && have >= (size_t)(end + 4 - buf) + 2) return 0;
	}
}

static void *client(void *arg)
{
	unsigned next = (unsigned)(long)arg;
	while (now_ns() < until) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(ports[next++ % nports]) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(s, (struct sockaddr *)&a, sizeof a)) {
			errors++;
			close(s);
			continue;
		}
		for (int i = 0; i < reqs && now_ns() < until; i++) {
			if (write(s, request, sizeof request - 1) < 0 || read_reply(s)) {
				errors++;
				break;
			}
			done++;
		}
		struct linger l = { 1, 0 }; /* no TIME_WAIT pile-up */
		setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		close(s);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: loadgen PORT[,PORT...] CONNS SECONDS REQS\n");
		return 2;
	}
	for (char *p = strtok(argv[1], ","); p && nports < 16; p = strtok(NULL, ",")) ports[nports++] = (unsigned)atoi(p);
	int conns = atoi(argv[2]);
	double seconds = atof(argv[3]);
	reqs = atoi(argv[4]);
	double start = now_ns();
	until = start + seconds * 1e9;
	pthread_t t[256];
	for (long i = 0; i < conns && i < 256; i++) pthread_create(&t[i], NULL, client, (void *)i);
	for (int i = 0; i < conns && i < 256; i++) pthread_join(t[i], NULL);
	double secs = (now_ns() - start) / 1e9;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
	printf("{\"requests\": %ld, \"rps\": %.0f, \"errors\": %ld, \"cpu_us\": %ld}\n", (long)done, done / secs, (long)errors, cpu_us);
	return 0;
}
