/*
 * ckptapp: the first real program of issue 18's whole-process snapshot, with
 * every kind of state a restore must bring back continuing:
 *
 *   - three threads adding to one counter in memory (each about 1000 times
 *     a second, sleeping between, so it costs no CPU to speak of);
 *   - a child process it talks to over two pipes: a request "ping N" on
 *     every timer tick, the child's answer "pong N" read back;
 *   - an epoll loop over an eventfd (the counting threads post to it every
 *     100 additions), a timerfd (100 ms), the answer pipe and a listening
 *     TCP socket on 127.0.0.1:PORT (a virtual port under appshot);
 *   - a line on stdout at every tick: "tick T counter C answer pong N
 *     events E", so a test sees it continue after a restore;
 *   - a client that connects to PORT gets one line, "counter C answer pong
 *     N", and the connection is closed.
 *
 *   ckptapp serve PORT       the program (until killed)
 *   ckptapp connect PORT     a client: prints the line the server sends
 *
 * It starts by printing "listening PORT" (getsockname's port) and "child
 * VPID". The child ends when its request pipe closes (the parent is gone).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint64_t counter;
static int event_fd;

static void die(const char *what)
{
	fprintf(stderr, "ckptapp: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *count(void *arg)
{
	(void)arg;
	const struct timespec ms = { 0, 1000000 };
	for (uint64_t n = 1;; n++) {
		atomic_fetch_add(&counter, 1);
		if (n % 100 == 0) {
			uint64_t one = 1;
			if (write(event_fd, &one, sizeof one) < 0 && errno != EAGAIN) die("eventfd write");
		}
		nanosleep(&ms, NULL);
	}
	return NULL;
}

/* The child: answers each "ping N" line with "pong N" until EOF. */
static void child(int req, int ans)
{
	char buf[256];
	FILE *in = fdopen(req, "r");
	while (in && fgets(buf, sizeof buf, in)) {
		unsigned long n;
		if (sscanf(buf, "ping %lu", &n) != 1) continue;
		int len = snprintf(buf, sizeof buf, "pong %lu\n", n);
		if (write(ans, buf, (size_t)len) != len) break;
	}
	_exit(0);
}

static int listen_on(int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) die("socket");
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof a)) die("bind");
	if (listen(s, 16)) die("listen");
	socklen_t len = sizeof a;
	if (getsockname(s, (struct sockaddr *)&a, &len)) die("getsockname");
	printf("listening %d\n", ntohs(a.sin_port));
	return s;
}

static void watch(int ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) die("epoll_ctl");
}

/* The latest answer from the child, as read from its pipe (one or more
 * whole lines; the last is kept). */
static void read_answer(int ans, char *answer, size_t len)
{
	char buf[512];
	ssize_t n = read(ans, buf, sizeof buf - 1);
	if (n <= 0) {
		fprintf(stderr, "ckptapp: the child is gone\n");
		exit(1);
	}
	buf[n] = 0;
	if (buf[n - 1] == '\n') buf[--n] = 0;
	char *last = strrchr(buf, '\n');
	snprintf(answer, len, "%.120s", last ? last + 1 : buf);
}

__attribute__((noreturn)) static void serve(int port)
{
	int req[2], ans[2];
	if (pipe2(req, O_CLOEXEC) || pipe2(ans, O_CLOEXEC)) die("pipe");
	pid_t pid = fork();
	if (pid < 0) die("fork");
	if (pid == 0) {
		close(req[1]);
		close(ans[0]);
		child(req[0], ans[1]);
	}
	close(req[0]);
	close(ans[1]);
	printf("child %d\n", (int)pid);

	event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (event_fd < 0 || tfd < 0) die("eventfd/timerfd");
	struct itimerspec every = { { 0, 100000000 }, { 0, 100000000 } };
	if (timerfd_settime(tfd, 0, &every, NULL)) die("timerfd_settime");
	int ls = listen_on(port);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) die("epoll_create1");
	watch(ep, event_fd);
	watch(ep, tfd);
	watch(ep, ans[0]);
	watch(ep, ls);
	fflush(stdout);

	pthread_t t;
	for (int i = 0; i < 3; i++)
		if (pthread_create(&t, NULL, count, NULL)) die("pthread_create");

	char answer[128] = "none";
	uint64_t ticks = 0, events = 0;
	for (;;) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, -1);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) die("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			uint64_t v;
			if (fd == event_fd && read(event_fd, &v, sizeof v) == sizeof v) {
				events += v;
			} else if (fd == tfd && read(tfd, &v, sizeof v) == sizeof v) {
				ticks += v;
				uint64_t c = atomic_load(&counter);
				printf("tick %llu counter %llu answer %s events %llu\n", (unsigned long long)ticks,
				       (unsigned long long)c, answer, (unsigned long long)events);
				fflush(stdout);
				char msg[64];
				int len = snprintf(msg, sizeof msg, "ping %llu\n", (unsigned long long)ticks);
				if (write(req[1], msg, (size_t)len) != len) die("write to the child");
			} else if (fd == ans[0]) {
				read_answer(ans[0], answer, sizeof answer);
			} else if (fd == ls) {
				int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0) continue;
				char line[192];
				int len = snprintf(line, sizeof line, "counter %llu answer %s\n",
						   (unsigned long long)atomic_load(&counter), answer);
				(void)!write(c, line, (size_t)len);
				close(c);
			}
		}
	}
}

static int connect_to(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) die("socket");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof a)) die("connect");
	char buf[256];
	ssize_t n;
	while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
	return n < 0;
}

int main(int argc, char **argv)
{
	int port = argc == 3 ? atoi(argv[2]) : 0;
	if (argc != 3 || port <= 0 || port > 65535 || (strcmp(argv[1], "serve") && strcmp(argv[1], "connect"))) {
		fprintf(stderr, "usage: ckptapp serve PORT | ckptapp connect PORT\n");
		return 2;
	}
	if (!strcmp(argv[1], "serve")) serve(port);
	return connect_to(port);
}
