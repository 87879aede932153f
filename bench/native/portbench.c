/* Per-call cost of the port calls: socket + bind + listen + close on one
 * port, and one loopback connection (connect + accept + close both), for
 * `npm run bench`, natively and under the shim. Prints one JSON object of
 * mean nanoseconds per iteration. The port is derived from the key the
 * runner passes, so the native and shim runs never share one. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench.h"

static struct sockaddr_in loopback(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int listener(unsigned port)
{
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = loopback(port);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 128)) {
		perror("bind/listen");
		exit(1);
	}
	return s;
}

/* Closes with a reset, so no TIME_WAIT piles up over thousands of rounds. */
static void close_now(int s)
{
	struct linger l = { 1, 0 };
	setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(s);
}

int main(int argc, char **argv)
{
	unsigned key = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 0;
	unsigned port = 41000 + (key & 0x3ff);
	int first = 1;
	printf("{");
	PER_CALL("bind_listen", 2000, close(listener(port)));
	int l = listener(port + 1);
	struct sockaddr_in a = loopback(port + 1);
	PER_CALL("connect_accept", 2000, {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
		int s = accept(l, NULL, NULL);
		close_now(c);
		close(s);
	});
	close(l);
	printf("}\n");
	return 0;
}
