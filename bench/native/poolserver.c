/* The server of the pool benchmark: a minimal HTTP/1.1 server on
 * 127.0.0.1:PORT answering every request with a fixed 2-byte body, on as
 * many connections one after another as clients open, keeping each alive
 * while the client does. WORKERS processes share the listening socket, as
 * pre-forked servers do. Prints "listening" once it accepts.
 * With "close" after WORKERS it speaks a close-delimited protocol instead:
 * HTTP/1.0 with no Content-Length, the end of the body its close(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char reply_close[] = "HTTP/1.0 200 OK\r\n\r\nok";
static int close_delimited;

/* Answers each request of one connection until the client closes it. */
static void serve(int c)
{
	char buf[4096];
	size_t have = 0;
	int one = 1;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	for (;;) {
		ssize_t n = read(c, buf + have, sizeof buf - have - 1);
		if (n <= 0) break;
		have += (size_t)n;
		buf[have] = 0;
		char *end;
		while ((end = strstr(buf, "\r\n\r\n"))) {
			if (close_delimited) {
				if (write(c, reply_close, sizeof reply_close - 1) < 0) {}
				goto out;
			}
			if (write(c, reply, sizeof reply - 1) < 0) goto out;
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, end + 4, have - used + 1);
			have -= used;
		}
	}
out:
	close(c);
}

int main(int argc, char **argv)
{
	unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 8080;
	int workers = argc > 2 ? atoi(argv[2]) : 1, one = 1;
	close_delimited = argc > 3 && !strcmp(argv[3], "close");
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1024)) {
		perror("poolserver: bind/listen");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	printf("listening\n");
	fflush(stdout);
	for (int i = 1; i < workers; i++)
		if (fork() == 0) break;
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c >= 0) serve(c);
	}
}
