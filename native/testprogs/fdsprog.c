/*
 * Descriptors for the descriptor snapshot's tests (test/checkpoint-fds.test.ts).
 *
 *   fdsprog setup SCENARIO DIR [PORT]   makes the scenario's descriptors (and
 *                                       processes), prints "ready PID..." and waits
 *   fdsprog check SCENARIO DIR [PORT] INDEX
 *                                       run by fdsdriver in the INDEX-th process's
 *                                       restored descriptors: prints what it sees,
 *                                       one "INDEX name value" line each
 *
 * Descriptor numbers are fixed (dup2 onto them) so setup and check agree.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int idx;
/* "sockets" has a Unix listener too; "netsockets" not (a copy restored
 * beside its running original could not listen at the same path). */
static int with_unix_listener;
static char out[65536];
static size_t outlen;

static void say(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *name, const char *fmt, ...)
{
	va_list ap;
	outlen += (size_t)snprintf(out + outlen, sizeof out - outlen, "%d %s ", idx, name);
	va_start(ap, fmt);
	outlen += (size_t)vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
	va_end(ap);
	outlen += (size_t)snprintf(out + outlen, sizeof out - outlen, "\n");
}

/* One write: the processes' reports do not interleave within a line. */
static void flush_out(void)
{
	if (write(1, out, outlen) < 0) _exit(1);
	outlen = 0;
}

static void die(const char *what)
{
	fprintf(stderr, "fdsprog: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* fd moved to number at (close-on-exec as asked). */
static void place(int fd, int at, int cloexec)
{
	if (fd < 0) die("make");
	if (fd != at) {
		if (dup3(fd, at, cloexec ? O_CLOEXEC : 0) < 0) die("dup3");
		close(fd);
	} else {
		fcntl(at, F_SETFD, cloexec ? FD_CLOEXEC : 0);
	}
}

static void put(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

/* What a nonblocking read of fd gives: the bytes, "EOF", or the errno. */
static const char *drain(int fd)
{
	static char buf[4096];
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0) return strerrorname_np(errno);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	fcntl(fd, F_SETFL, fl);
	if (n < 0) return strerrorname_np(errno);
	if (n == 0) return "EOF";
	buf[n] = 0;
	return buf;
}

static const char *link_of(int fd)
{
	static char buf[4096];
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, buf, sizeof buf - 1);
	if (n < 0) return strerrorname_np(errno);
	buf[n] = 0;
	return buf;
}

static const char *flags_of(int fd)
{
	static char buf[64];
	int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
	if (fl < 0) return strerrorname_np(errno);
	snprintf(buf, sizeof buf, "%s%s%s%s", (fl & O_ACCMODE) == O_RDONLY ? "r" : (fl & O_ACCMODE) == O_WRONLY ? "w" : "rw",
		 fl & O_APPEND ? "+append" : "", fl & O_NONBLOCK ? "+nonblock" : "", fdf & FD_CLOEXEC ? "+cloexec" : "");
	return buf;
}

/* A child of setup ends with its parent (the harness ends the root). */
static pid_t fork_child(void)
{
	pid_t kid = fork();
	if (kid == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
	return kid;
}

static void wait_forever(void)
{
	for (;;) pause();
}

/* --- files: regular files, dup, directories, /dev/null, pipes ----------- */

static void files_setup(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/data", dir);
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	put(f, "0123456789abcdef");
	lseek(f, 5, SEEK_SET);
	place(f, 3, 0);
	place(dup(3), 4, 0);                              /* the same ofd: shared offset */
	int g = open(path, O_RDONLY);
	lseek(g, 2, SEEK_SET);
	place(g, 5, 0);                                   /* another ofd of the same file */
	place(open("/dev/null", O_WRONLY), 6, 1);         /* close-on-exec: gone after exec */
	place(open(dir, O_RDONLY | O_DIRECTORY), 7, 0);
	int a[2], b[2], c[2];
	if (pipe(a) || pipe(b) || pipe(c)) die("pipe");
	place(a[0], 8, 0), place(a[1], 9, 0);             /* parent -> child */
	place(b[0], 10, 0), place(b[1], 11, 0);           /* child -> parent */
	place(c[0], 12, 0), place(c[1], 13, 0);           /* the parent's own */
	fcntl(12, F_SETFL, O_NONBLOCK);
	put(9, "hello-from-parent");
	put(13, "self");
	place(open(path, O_WRONLY | O_APPEND), 14, 0);
	place(open("/dev/null", O_RDWR), 15, 0);
	/* A FIFO, both ends here, bytes in it. */
	snprintf(path, sizeof path, "%s/fifo", dir);
	if (mkfifo(path, 0600)) die("mkfifo");
	place(open(path, O_RDONLY | O_NONBLOCK), 16, 0);
	place(open(path, O_WRONLY), 17, 0);
	put(17, "fifo-bytes");
	/* A pipe whose writer is outside the application. */
	int e[2];
	if (pipe(e)) die("pipe");
	put(e[1], "from-outside");
	pid_t outsider = fork_child();
	if (outsider == 0) {
		close(16), close(17); /* the FIFO is the application's alone */
		wait_forever();
	}
	close(e[1]);
	place(e[0], 18, 0);
	place(open("/dev/urandom", O_RDONLY), 19, 0);
	snprintf(path, sizeof path, "%s/fifo", dir);
	place(open(path, O_PATH), 20, 0); /* names the FIFO, opens nothing */
	pid_t kid = fork_child();
	if (kid == 0) {
		close(9), close(10), close(12), close(13), close(14), close(16), close(17), close(18), close(19), close(20);
		put(11, "child-bytes");
		wait_forever();
	}
	close(8), close(11);
	usleep(1000);
	printf("ready %d %d outsider %d\n", getpid(), kid, outsider);
	fflush(stdout);
	wait_forever();
}

static void files_check(const char *dir)
{
	char path[4096];
	if (idx == 0) {
		say("off3", "%lld", (long long)lseek(3, 0, SEEK_CUR));
		char ch;
		say("read4", "%zd", read(4, &ch, 1));
		say("off3after", "%lld", (long long)lseek(3, 0, SEEK_CUR)); /* shared with 4 */
		say("off5", "%lld", (long long)lseek(5, 0, SEEK_CUR));
		say("flags5", "%s", flags_of(5));
		say("fd6", "%s", flags_of(6));
		say("fd7", "%s", link_of(7));
		say("fd9", "%s", flags_of(9));
		say("pipe10", "%s", drain(10));
		say("flags12", "%s", flags_of(12));
		say("pipe12", "%s", drain(12));
		say("flags14", "%s", flags_of(14));
		say("fd15", "%s", link_of(15));
		snprintf(path, sizeof path, "%s/data", dir);
		say("fd3", "%s", strcmp(link_of(3), path) ? link_of(3) : "data");
		say("fd8", "%s", flags_of(8));
		snprintf(path, sizeof path, "%s/fifo", dir);
		say("fd16", "%s", strcmp(link_of(16), path) ? link_of(16) : "fifo");
		say("fifo16", "%s", drain(16));
		say("flags17", "%s", flags_of(17));
		say("pipe18", "%s", drain(18));
		say("pipe18-again", "%s", drain(18)); /* the writer is gone */
		say("fd19", "%s", link_of(19));
		say("fd20", "%s", fcntl(20, F_GETFL) & O_PATH ? "O_PATH" : "opened");
		put(9, "go"); /* the child looks at the shared offset now */
	} else {
		char buf[32] = "";
		ssize_t n = read(8, buf, 17);
		say("pipe8", "%.*s", (int)(n > 0 ? n : 0), buf);
		say("fd9", "%s", flags_of(9));
		say("fd11", "%s", flags_of(11));
		n = read(8, buf, 2);
		say("off3", "%lld after %.*s", (long long)lseek(3, 0, SEEK_CUR), (int)(n > 0 ? n : 0), buf);
	}
}


/* --- anon: eventfd, timerfd, signalfd, epoll --------------------------- */

static void anon_setup(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	place(eventfd(5, EFD_NONBLOCK), 3, 0);
	place(eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK), 4, 0);
	uint64_t three = 3;
	if (write(4, &three, 8) != 8) die("eventfd");
	struct itimerspec long_one = { .it_interval = { 7, 0 }, .it_value = { 100, 0 } }, short_one = { .it_value = { 0, 1000000 } };
	place(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 5, 0);
	place(timerfd_create(CLOCK_MONOTONIC, 0), 6, 0);
	if (timerfd_settime(5, 0, &long_one, NULL) || timerfd_settime(6, 0, &short_one, NULL)) die("timerfd");
	place(signalfd(-1, &set, SFD_NONBLOCK), 7, 0);
	place(epoll_create1(0), 8, 0);
	int a[2], b[2];
	if (pipe(a) || pipe(b)) die("pipe");
	place(a[0], 9, 0), place(a[1], 10, 0), place(b[0], 11, 0), place(b[1], 12, 0);
	put(10, "x");
	place(eventfd(1, 0), 13, 0);
	struct epoll_event e1 = { .events = EPOLLIN, .data.u64 = 0x1122334455667788ull }, e2 = { .events = EPOLLIN | EPOLLET, .data.u64 = 9 },
			   e3 = { .events = EPOLLIN, .data.u64 = 11 }, e4 = { .events = EPOLLIN, .data.u64 = 13 };
	if (epoll_ctl(8, EPOLL_CTL_ADD, 3, &e1) || epoll_ctl(8, EPOLL_CTL_ADD, 9, &e2) || epoll_ctl(8, EPOLL_CTL_ADD, 11, &e3) ||
	    epoll_ctl(8, EPOLL_CTL_ADD, 13, &e4))
		die("epoll_ctl");
	/* The file registered as 13 lives on as 14 only: its entry keeps 13. */
	place(dup(13), 14, 0);
	close(13);
	/* Two files registered under one number, 16. */
	struct epoll_event ea = { .events = EPOLLIN, .data.u64 = 0xa1 }, eb = { .events = EPOLLIN, .data.u64 = 0xb2 };
	place(eventfd(1, 0), 16, 0);
	if (epoll_ctl(8, EPOLL_CTL_ADD, 16, &ea)) die("epoll_ctl 16");
	place(dup(16), 17, 0);
	place(eventfd(1, 0), 16, 0);
	if (epoll_ctl(8, EPOLL_CTL_ADD, 16, &eb)) die("epoll_ctl 16 again");
	/* A wall-clock timer set for a date, cancelled if the clock is set. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec at = { .it_value = { now.tv_sec + 200, 0 } };
	place(timerfd_create(CLOCK_REALTIME, 0), 15, 0);
	if (timerfd_settime(15, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &at, NULL)) die("timerfd abs");
	usleep(20000); /* the short timer expires: one tick unread */
	pid_t kid = fork_child();
	if (kid == 0) wait_forever(); /* shares the epoll: its list comes back once */
	printf("ready %d %d\n", getpid(), kid);
	fflush(stdout);
	wait_forever();
}

static void anon_check(void)
{
	uint64_t v;
	char buf[256];
	if (idx == 1) {
		say("fd8", "%s", link_of(8));
		return;
	}
	struct epoll_event ev[16];
	int n = epoll_wait(8, ev, 16, 0);
	unsigned long long datas[16];
	for (int i = 0; i < n; i++) datas[i] = ev[i].data.u64;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (datas[j] < datas[i]) v = datas[i], datas[i] = datas[j], datas[j] = v;
	size_t l = 0;
	buf[0] = 0;
	for (int i = 0; i < n; i++) l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%llx", i ? "," : "", datas[i]);
	say("epoll", "%s", n < 0 ? strerrorname_np(errno) : buf);
	/* Edge-triggered: reported once. */
	n = epoll_wait(8, ev, 16, 0);
	int et = 0;
	for (int i = 0; i < n; i++) et += ev[i].data.u64 == 9;
	say("epoll-et-again", "%d", et);
	say("eventfd3", "%lld", read(3, &v, 8) == 8 ? (long long)v : -1LL);
	say("flags3", "%s", flags_of(3));
	l = 0;
	for (int i = 0; i < 4; i++) {
		ssize_t r = read(4, &v, 8);
		l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%s", i ? "," : "", r == 8 ? (v == 1 ? "1" : "?") : strerrorname_np(errno));
	}
	say("semaphore4", "%s", buf);
	struct itimerspec its;
	timerfd_gettime(5, &its);
	say("timer5", "%s interval %ld", its.it_value.tv_sec > 80 && its.it_value.tv_sec <= 100 ? "armed" : "wrong", (long)its.it_interval.tv_sec);
	say("flags5", "%s", flags_of(5));
	timerfd_gettime(15, &its);
	char fdinfo[1024] = "";
	int fi = open("/proc/self/fdinfo/15", O_RDONLY);
	if (fi >= 0 && read(fi, fdinfo, sizeof fdinfo - 1) < 0) fdinfo[0] = 0;
	char *sf = strstr(fdinfo, "settime flags:");
	say("timer15", "%s flags %.*s", its.it_value.tv_sec > 180 && its.it_value.tv_sec <= 200 ? "armed" : "wrong", sf ? (int)strcspn(sf + 15, "\n") : 0, sf ? sf + 15 : "");
	struct pollfd pf = { .fd = 6, .events = POLLIN };
	say("ticks6", "%lld", poll(&pf, 1, 0) == 1 && read(6, &v, 8) == 8 ? (long long)v : -1LL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR1);
	struct signalfd_siginfo si;
	say("signalfd7", "%d", read(7, &si, sizeof si) == sizeof si ? (int)si.ssi_signo : -1);
	say("flags7", "%s", flags_of(7));
	/* The entry registered as 13: that number again names it. */
	dup2(14, 13);
	say("del13", "%s", epoll_ctl(8, EPOLL_CTL_DEL, 13, NULL) ? strerrorname_np(errno) : "ok");
	say("del14", "%s", epoll_ctl(8, EPOLL_CTL_DEL, 14, NULL) ? strerrorname_np(errno) : "ok");
}


/* --- sockets ------------------------------------------------------------ */

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	return a;
}

static int port_of_fd(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	return getsockname(fd, (struct sockaddr *)&a, &l) ? -1 : ntohs(a.sin_port);
}

static void sockets_setup(const char *dir, int port)
{
	/* The outsider: a peer outside the application, which accepts one
	 * connection and writes to it. */
	int ol = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in oa = loopback(0);
	socklen_t olen = sizeof oa;
	if (bind(ol, (struct sockaddr *)&oa, sizeof oa) || listen(ol, 4) || getsockname(ol, (struct sockaddr *)&oa, &olen)) die("outsider");
	pid_t outsider = fork_child();
	if (outsider == 0) {
		int c = accept(ol, NULL, NULL);
		put(c, "never-read");
		wait_forever();
	}
	close(ol);
	struct sockaddr_in a = loopback(port);
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16)) die("listen");
	place(l, 3, 0);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(u, (struct sockaddr *)&a, sizeof a)) die("udp bind");
	place(u, 4, 0);
	int sp[2], dg[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg)) die("socketpair");
	place(sp[0], 5, 0), place(sp[1], 6, 0), place(dg[0], 7, 0), place(dg[1], 8, 0);
	put(8, "m1");
	put(8, "m2");
	int o = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(o, (struct sockaddr *)&oa, sizeof oa)) die("connect outsider");
	place(o, 9, 0);
	struct sockaddr_un ua = { .sun_family = AF_UNIX };
	snprintf(ua.sun_path, sizeof ua.sun_path, "%s/sock", dir);
	if (with_unix_listener) {
		int ul = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(ul, (struct sockaddr *)&ua, sizeof ua) || listen(ul, 4) || chmod(ua.sun_path, 0640)) die("unix listen");
		place(ul, 12, 0);
	}
	pid_t kid = fork_child();
	if (kid == 0) {
		close(5), close(7), close(8), close(9), close(12);
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&a, sizeof a)) die("connect");
		place(c, 10, 0);
		if (with_unix_listener) {
			int uc = socket(AF_UNIX, SOCK_STREAM, 0);
			if (connect(uc, (struct sockaddr *)&ua, sizeof ua)) die("unix connect");
			place(uc, 14, 0);
			put(14, "via-listener");
		}
		put(6, "to-parent");
		put(10, "tcp-hello");
		wait_forever();
	}
	close(6);
	place(accept(3, NULL, NULL), 11, 0);
	if (with_unix_listener) place(accept(12, NULL, NULL), 13, 0);
	put(5, "to-child");
	put(11, "tcp-back");
	usleep(20000);
	printf("ready %d %d outsider %d\n", getpid(), kid, outsider);
	fflush(stdout);
	wait_forever();
}

static const char *recv_one(int fd)
{
	static char buf[256];
	ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
	if (n < 0) return strerrorname_np(errno);
	if (n == 0) return "EOF";
	buf[n] = 0;
	return buf;
}

static void unix_listener_check(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/sock", dir);
	int uc = socket(AF_UNIX, SOCK_STREAM, 0);
	int uok = connect(uc, (struct sockaddr *)&sa, sizeof sa) == 0 && accept(12, NULL, NULL) >= 0;
	say("accept12", "%s", uok ? "ok" : strerrorname_np(errno));
	say("mode12", "%o", stat(sa.sun_path, &st) ? 0 : st.st_mode & 0777);
	char buf[64] = "";
	ssize_t n = read(13, buf, 12); /* "via-listener", buffered */
	say("unix13", "%.*s", (int)(n > 0 ? n : 0), buf);
	put(13, "ping");
}

static void sockets_check(const char *dir)
{
	if (idx == 1) {
		say("unix6", "%s", recv_one(6));
		say("tcp10", "%s", recv_one(10));
		struct sockaddr_in pa;
		socklen_t pl = sizeof pa;
		say("peer10", "%d", getpeername(10, (struct sockaddr *)&pa, &pl) ? -1 : ntohs(pa.sin_port));
		if (with_unix_listener) { /* the parent's 13 writes to it */
			struct pollfd pf = { .fd = 14, .events = POLLIN };
			poll(&pf, 1, 5000);
			say("unix14", "%s", recv_one(14));
		}
		return;
	}
	if (with_unix_listener) unix_listener_check(dir);

	int port = port_of_fd(3);
	say("port3", "%d", port);
	struct sockaddr_in a = loopback(port);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	int ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0 && accept(3, NULL, NULL) >= 0;
	say("accept3", "%s", ok ? "ok" : strerrorname_np(errno));
	int up = port_of_fd(4);
	say("port4", "%d", up);
	struct sockaddr_in ua = loopback(up);
	int us = socket(AF_INET, SOCK_DGRAM, 0);
	sendto(us, "dgram", 5, 0, (struct sockaddr *)&ua, sizeof ua);
	usleep(1000);
	say("udp4", "%s", recv_one(4));
	say("unix5", "%s", recv_one(5));
	char m1[8], m2[8];
	snprintf(m1, sizeof m1, "%s", recv_one(7));
	snprintf(m2, sizeof m2, "%s", recv_one(7));
	say("dgram7", "%s,%s,%s", m1, m2, recv_one(7));
	say("tcp9", "%s", recv_one(9));
	say("tcp9-again", "%s", recv_one(9));
	say("tcp11", "%s", recv_one(11));
	say("port11", "%s", port_of_fd(11) == port ? "the listener's" : "another");
}

/* --- many: N pipes with bytes, N eventfds, N files (for timing) -------- */

static void many_setup(const char *dir, int n)
{
	char path[4096];
	for (int i = 0; i < n; i++) {
		int p[2];
		if (pipe(p)) die("pipe");
		put(p[1], "bytes");
		if (eventfd((unsigned)i, 0) < 0) die("eventfd");
		snprintf(path, sizeof path, "%s/f%d", dir, i % 16);
		if (open(path, O_RDWR | O_CREAT, 0600) < 0) die("open");
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	wait_forever();
}

static void many_check(int n)
{
	int open_fds = 0;
	for (int fd = 3; fd < 3 + 4 * n; fd++) open_fds += fcntl(fd, F_GETFD) >= 0;
	say("open", "%d", open_fds);
}

/* --- bigepoll: one epoll with N entries (its fdinfo is long) ---------- */

static void bigepoll_setup(int n)
{
	place(epoll_create1(0), 3, 0);
	for (int i = 0; i < n; i++) {
		int e = eventfd(i % 2 == 0, 0); /* the even ones ready */
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
		if (e < 0 || epoll_ctl(3, EPOLL_CTL_ADD, e, &ev)) die("epoll entry");
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	wait_forever();
}

static void bigepoll_check(int n)
{
	struct epoll_event *ev = calloc((size_t)n, sizeof *ev);
	int got = epoll_wait(3, ev, n, 0);
	long long sum = 0;
	for (int i = 0; i < got; i++) sum += (long long)ev[i].data.u64;
	say("ready", "%d sum %lld", got, sum);
}

/* --- refuse: a descriptor no snapshot captures ------------------------- */

static void refuse_setup(void)
{
	place(inotify_init1(0), 3, 0);
	printf("ready %d\n", getpid());
	fflush(stdout);
	wait_forever();
}

/* A file deleted while open: nothing to open again. */
static void deleted_setup(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/gone", dir);
	place(open(path, O_RDWR | O_CREAT, 0600), 3, 0);
	unlink(path);
	printf("ready %d\n", getpid());
	fflush(stdout);
	wait_forever();
}

static void refuse_check(void)
{
	say("fd3", "%s", link_of(3));
}

/* --- tty: a terminal the application uses (its master outside) ---------- */

static void tty_setup(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) die("pty");
	place(m, 20, 0);
	m = 20;
	place(open(ptsname(m), O_RDWR | O_NOCTTY), 3, 0);
	pid_t outsider = fork_child();
	if (outsider == 0) wait_forever(); /* holds the master */
	close(m);
	printf("ready %d outsider %d\n", getpid(), outsider);
	fflush(stdout);
	wait_forever();
}

static void tty_check(void)
{
	const char *t3 = isatty(3) ? ttyname(3) : NULL;
	char mine[256] = "";
	for (int i = 0; i < 3 && !mine[0]; i++)
		if (isatty(i)) snprintf(mine, sizeof mine, "%s", ttyname(i));
	say("fd3", "%s", t3 ? (mine[0] && !strcmp(t3, mine) ? "the restorer's terminal" : t3) : link_of(3));
	say("flags3", "%s", flags_of(3));
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fdsprog setup|check SCENARIO DIR [PORT] [INDEX]\n");
		return 2;
	}
	const char *scen = argv[2], *dir = argv[3];
	int check = !strcmp(argv[1], "check");
	if (check) idx = atoi(argv[argc - 1]);
	int port = argc > (check ? 5 : 4) ? atoi(argv[4]) : 0;
	if (!strcmp(scen, "files")) check ? files_check(dir) : files_setup(dir);
	else if (!strcmp(scen, "anon")) check ? anon_check() : anon_setup();
	else if (!strcmp(scen, "sockets") || !strcmp(scen, "netsockets")) {
		with_unix_listener = !strcmp(scen, "sockets");
		check ? sockets_check(dir) : sockets_setup(dir, port);
	}
	else if (!strcmp(scen, "tty")) check ? tty_check() : tty_setup();
	else if (!strcmp(scen, "refuse")) check ? refuse_check() : refuse_setup();
	else if (!strcmp(scen, "many")) check ? many_check(port) : many_setup(dir, port);
	else if (!strcmp(scen, "bigepoll")) check ? bigepoll_check(port) : bigepoll_setup(port);
	else if (!strcmp(scen, "deleted")) check ? refuse_check() : deleted_setup(dir);
	else {
		fprintf(stderr, "fdsprog: unknown scenario %s\n", scen);
		return 2;
	}
	flush_out();
	return 0;
}
