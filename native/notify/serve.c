/* The supervisor's serving thread (notify.h): one epoll over its socket
 * (loaders handing over listeners), the listeners, and a pidfd per process
 * seen (to forget it when it exits). Every call is answered in this
 * thread, without blocking: a call that would block is made by the
 * program itself (answered "continue": accept on a blocking socket), or by
 * a worker thread of its own (port.c: a translated blocking connect). */
#define _GNU_SOURCE
#include "notify_int.h"
#include "../core/portpolicy.h"
#include "../core/procinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

uint16_t notify_range_lo = PORT_RANGE_DEFAULT_LO, notify_range_hi = PORT_RANGE_DEFAULT_HI;

/* --------------------------------------------------------------- tables */

static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tabledb tables;
static int tables_state; /* 0 not opened yet, 1 open, -1 unusable */

struct tabledb *notify_tables_lock(void)
{
	pthread_mutex_lock(&tables_lock);
	/* Checked once: nothing in the supervisor closes descriptors behind
	 * its back (a program's daemon may, which is why the shim checks
	 * before every write; here that would be six fstat per call). */
	if (tables_state == 0) {
		const char *home = getenv("APPSHOT_HOME"), *aid = getenv("APPSHOT_AID");
		char err[512];
		tables_state = home && aid && tabledb_open(&tables, home, aid, err, sizeof err) == 0 && tabledb_fds_ok(&tables) ? 1 : -1;
	}
	if (tables_state > 0) return &tables;
	pthread_mutex_unlock(&tables_lock);
	return NULL;
}

void notify_tables_unlock(void) { pthread_mutex_unlock(&tables_lock); }

/* The supervisor keeps the tables open only while it answers a static
 * program's calls: a write at the application's end (forget_reaped) opens
 * them anew, which checks LMDB's lock file first (core/lockcheck.h), so a
 * lock file a program's stray write damaged meanwhile is refused, never
 * handed to LMDB (glibc aborts on a garbage lock). */
void notify_tables_close(void)
{
	pthread_mutex_lock(&tables_lock);
	if (tables_state > 0) tabledb_close(&tables);
	tables_state = 0;
	pthread_mutex_unlock(&tables_lock);
}

/* ------------------------------------------------------------- answers */

void notify_answer(const struct call *c, long val, int err)
{
	struct seccomp_notif_resp r = { .id = c->req->id, .val = err ? 0 : val, .error = err ? -err : 0 };
	ioctl(c->listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

struct later {
	struct seccomp_notif req;
	struct call c;
	notify_later_fn *run;
	void (*done)(void *arg);
	void *arg;
};

static void *later_thread(void *p)
{
	struct later *l = p;
	long val = 0;
	int err = l->run(&l->c, l->arg, &val);
	if (err != NOTIFY_ANSWERED) notify_answer(&l->c, val, err);
	close(l->c.listener);
	l->done(l->arg);
	free(l);
	return NULL;
}

int notify_answer_later(const struct call *c, notify_later_fn *run, void (*done)(void *arg), void *arg)
{
	struct later *l = calloc(1, sizeof *l);
	if (!l) return ENOMEM;
	l->req = *c->req; /* its id, pid and arguments */
	/* Its own copy: the loop may forget the caller's listener meanwhile. */
	l->c = (struct call){ fcntl(c->listener, F_DUPFD_CLOEXEC, 0), &l->req, NULL }; /* its proc may be forgotten meanwhile */
	l->run = run, l->done = done, l->arg = arg;
	pthread_t th;
	if (l->c.listener >= 0 && pthread_create(&th, NULL, later_thread, l) == 0) {
		pthread_detach(th);
		return 0;
	}
	if (l->c.listener >= 0) close(l->c.listener);
	free(l);
	return ENOMEM;
}

void notify_continue(const struct call *c)
{
	struct seccomp_notif_resp r = { .id = c->req->id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE };
	ioctl(c->listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

int notify_valid(const struct call *c)
{
	uint64_t id = c->req->id;
	return ioctl(c->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

int notify_read(const struct call *c, uint64_t addr, void *buf, size_t n)
{
	struct iovec local = { buf, n }, remote = { (void *)addr, n };
	if (process_vm_readv(c->req->pid, &local, 1, &remote, 1, 0) != (ssize_t)n) return -1;
	return notify_valid(c) ? 0 : -1;
}

int notify_write(const struct call *c, uint64_t addr, const void *buf, size_t n)
{
	return notify_write2(c, addr, buf, n, 0, NULL, 0);
}

int notify_write2(const struct call *c, uint64_t addr, const void *buf, size_t n, uint64_t addr2, const void *buf2, size_t n2)
{
	struct iovec local[2] = { { (void *)buf, n }, { (void *)buf2, n2 } }, remote[2] = { { (void *)addr, n }, { (void *)addr2, n2 } };
	unsigned k = n2 ? 2 : 1;
	if (!notify_valid(c)) return -1;
	return process_vm_writev(c->req->pid, local, k, remote, k, 0) == (ssize_t)(n + n2) ? 0 : -1;
}

int notify_getfd(const struct call *c, int fd)
{
	return c->proc->pidfd >= 0 ? (int)syscall(SYS_pidfd_getfd, c->proc->pidfd, fd, 0) : -1;
}

void notify_warn(const struct call *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	if (n > (int)sizeof msg - 2) n = (int)sizeof msg - 2;
	msg[n++] = '\n';
	int err = notify_getfd(c, 2);
	if (err < 0) return;
	const char *pre = "appshot: ";
	struct iovec v[2] = { { (void *)pre, strlen(pre) }, { msg, (size_t)n } };
	ssize_t w = writev(err, v, 2);
	(void)w;
	close(err);
}

/* ------------------------------------------------------------ processes */

#define MAX_PROCS 8192
#define TID_SLOTS 1024
static struct proc procs[MAX_PROCS];
static struct {
	pid_t tid, tgid;
} tids[TID_SLOTS];
static int epfd;
static char shim_base[256]; /* "/libappshot.so": a process that maps it has the shim */

/* epoll data: what a ready descriptor is. */
enum { EV_SOCKET = 1, EV_LISTENER = 2, EV_PIDFD = 3 };
#define EV(kind, fd) (((uint64_t)(kind) << 32) | (uint32_t)(fd))

static pid_t read_tgid(pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return -1;
	buf[n] = 0;
	char *t = strstr(buf, "\nTgid:");
	return t ? (pid_t)atoi(t + 6) : -1;
}

/* Whether the process maps the shim: then it translates itself. */
static enum proc_kind kind_of(pid_t tgid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)tgid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return KIND_UNKNOWN;
	static char buf[1 << 16];
	size_t keep = 0, blen = strlen(shim_base);
	enum proc_kind kind = KIND_NOTIFIED;
	for (;;) {
		ssize_t n = read(fd, buf + keep, sizeof buf - 1 - keep);
		if (n <= 0) break;
		buf[keep + (size_t)n] = 0;
		if (strstr(buf, shim_base)) {
			kind = KIND_SHIM;
			break;
		}
		/* a name cut at the end of this read is whole in the next */
		size_t have = keep + (size_t)n;
		keep = have > blen ? blen : have;
		memmove(buf, buf + have - keep, keep);
	}
	close(fd);
	return kind;
}

enum proc_kind notify_kind(struct proc *p)
{
	if (p->kind == KIND_UNKNOWN) p->kind = kind_of(p->tgid);
	return p->kind;
}

static void forget_proc(struct proc *p)
{
	for (unsigned i = 0; i < TID_SLOTS; i++)
		if (tids[i].tgid == p->tgid) tids[i].tid = 0;
	if (p->pidfd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
		close(p->pidfd);
	}
	memset(p, 0, sizeof *p);
}

struct proc *notify_proc_find(pid_t tgid)
{
	for (unsigned i = 0; i < MAX_PROCS; i++)
		if (procs[i].tgid == tgid) return &procs[i];
	return NULL;
}

static struct proc *proc_new(pid_t tgid)
{
	uint64_t ticks;
	if (proc_start_ticks(tgid, &ticks)) return NULL;
	struct proc *p = notify_proc_find(tgid);
	if (p && p->ticks != ticks) forget_proc(p), p = NULL; /* an earlier process with its number */
	if (p) return p;
	for (unsigned i = 0; i < MAX_PROCS && !p; i++)
		if (!procs[i].tgid) p = &procs[i];
	if (!p) return NULL;
	*p = (struct proc){ .tgid = tgid, .ticks = ticks, .pidfd = (int)syscall(SYS_pidfd_open, tgid, 0) };
	if (p->pidfd >= 0) {
		fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_PIDFD, p->pidfd) };
		epoll_ctl(epfd, EPOLL_CTL_ADD, p->pidfd, &ev);
	}
	return p;
}

/* The process of thread tid, seen before or now. A thread other than the
 * main one is checked to be still its process's: its number may have gone
 * to another process since. */
static struct proc *proc_of(pid_t tid)
{
	unsigned slot = (unsigned)tid % TID_SLOTS;
	if (tids[slot].tid == tid) {
		pid_t tgid = tids[slot].tgid;
		char path[64];
		struct stat st;
		snprintf(path, sizeof path, "/proc/%d/task/%d", (int)tgid, (int)tid);
		struct proc *p = notify_proc_find(tgid);
		if (p && (tid == tgid || stat(path, &st) == 0)) return p;
	}
	pid_t tgid = read_tgid(tid);
	struct proc *p = tgid > 0 ? proc_new(tgid) : NULL;
	if (p) tids[slot].tid = tid, tids[slot].tgid = tgid;
	return p;
}

static void proc_exited(int pidfd)
{
	for (unsigned i = 0; i < MAX_PROCS; i++)
		if (procs[i].tgid && procs[i].pidfd == pidfd) forget_proc(&procs[i]);
}

/* ------------------------------------------------------------- serving */

static struct seccomp_notif_sizes sizes;
unsigned notify_what; /* NOTIFY_*: what loaders install */

static void serve_call(int listener)
{
	char buf[sizes.seccomp_notif > 256 ? sizes.seccomp_notif : 256] __attribute__((aligned(8)));
	struct seccomp_notif *req = (struct seccomp_notif *)buf;
	memset(buf, 0, sizes.seccomp_notif);
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) return; /* ENOENT: it was interrupted meanwhile */
	struct call c = { listener, req, NULL };
	c.proc = proc_of((pid_t)req->pid);
	if (!c.proc || !notify_valid(&c)) {
		notify_continue(&c); /* gone: the kernel has nothing to answer */
		return;
	}
	int nr = req->data.nr;
	if (nr == SYS_execve || nr == SYS_execveat) {
		/* A process that runs a program under the filter has a row from
		 * then on (its vpid), as the shim records itself at start: its
		 * children's getppid names it. */
		if (notify_kind(c.proc) != KIND_SHIM) notify_vpid(&c);
		c.proc->kind = KIND_UNKNOWN; /* another program from now on */
		notify_continue(&c);
		return;
	}
	if (notify_kind(c.proc) == KIND_SHIM || !(port_call(&c) || pid_call(&c) || ipc_call(&c))) notify_continue(&c);
}

/* Whether fd is a seccomp listener: anything else (a pipe with data, from
 * a process of our user that is not a loader) would keep the loop busy. */
static int is_listener(int fd)
{
	char path[64], target[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof target - 1);
	if (n <= 0) return 0;
	target[n] = 0;
	return !strcmp(target, "anon_inode:seccomp notify");
}

/* A loader hands over its filter's listener: check that it is our user's,
 * tell it what to notify, take the listener, say so. */
static void take_listener(int sock)
{
	int s = accept4(sock, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) return;
	struct ucred cred;
	socklen_t clen = sizeof cred;
	struct timeval tv = { 2, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || cred.uid != geteuid()) {
		close(s);
		return;
	}
	unsigned char w = (unsigned char)notify_what;
	char byte, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
	int fd = -1;
	if (send(s, &w, 1, MSG_NOSIGNAL) == 1 && recvmsg(s, &m, MSG_CMSG_CLOEXEC) == 1) {
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_LISTENER, fd) };
	/* The caller and this thread hand over to each other on one CPU (kernel
	 * 6.6; without it before): a notified call then costs a switch each
	 * way rather than two wake-ups across CPUs. */
	if (fd >= 0) ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (__u64)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
	if (fd >= 0 && is_listener(fd) && epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 && send(s, "k", 1, MSG_NOSIGNAL) == 1) {
		close(s);
		return;
	}
	if (fd >= 0) close(fd);
	close(s);
}

static void *serve(void *arg)
{
	int sock = (int)(intptr_t)arg;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_SOCKET, sock) }, ready[32];
	epoll_ctl(epfd, EPOLL_CTL_ADD, sock, &ev);
	for (;;) {
		int n = epoll_wait(epfd, ready, 32, -1);
		/* Exits first: a process that took an exited one's number must
		 * not be taken for it. */
		for (int i = 0; i < n; i++)
			if (ready[i].data.u64 >> 32 == EV_PIDFD) proc_exited((int)(uint32_t)ready[i].data.u64);
		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)ready[i].data.u64;
			switch (ready[i].data.u64 >> 32) {
			case EV_SOCKET: take_listener(fd); break;
			case EV_LISTENER:
				if (ready[i].events & EPOLLIN) serve_call(fd);
				else if (ready[i].events & (EPOLLHUP | EPOLLERR)) { /* every process of the filter is gone */
					epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
					close(fd);
				}
				break;
			}
		}
	}
	return NULL;
}

int notify_start(const char *shim)
{
	const char *base = strrchr(shim, '/');
	snprintf(shim_base, sizeof shim_base, "/%s", base ? base + 1 : shim);
	if (port_range_parse(getenv("APPSHOT_PORT_RANGE"), &notify_range_lo, &notify_range_hi)) {
		fprintf(stderr, "appshot: supervisor: APPSHOT_PORT_RANGE is '%s', not LO-HI\n", getenv("APPSHOT_PORT_RANGE"));
		return -1;
	}
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) return -1; /* no user notification here */
	struct tabledb *t = notify_tables_lock();
	if (!t) return -1;
	notify_what = t->app_flags & APP_FLAG_NO_IDENTITY ? NOTIFY_PIDS : 0;
	notify_what |= NOTIFY_IPC;
	if (getenv("APPSHOT_PUBLISH")) notify_what |= NOTIFY_LISTEN;
	notify_tables_unlock();
	notify_tables_close(); /* opened again when a static program first needs them */
	/* An abstract name with 64 random bits: nothing on disk to clean up. */
	uint64_t r = 0;
	if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL);
	char name[64];
	snprintf(name, sizeof name, "@appshot-notify-%d-%016llx", (int)getpid(), (unsigned long long)r);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	memcpy(a.sun_path + 1, name + 1, n - 1);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || bind(sock, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) || listen(sock, 64)) {
		fprintf(stderr, "appshot: supervisor: cannot make its socket for static programs: %s\n", strerror(errno));
		if (sock >= 0) close(sock);
		return -1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t th;
	int rc = pthread_create(&th, NULL, serve, (void *)(intptr_t)sock);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) return -1;
	pthread_detach(th);
	setenv(NOTIFY_ENV, name, 1);
	return 0;
}
