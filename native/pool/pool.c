/*
 * appshot-pool: the daemon of one published TCP port (see core/pool.h).
 * It holds the public listener, accepts each connection and passes the
 * accepted socket to one instance over that instance's SEQPACKET channel.
 * It keeps its own copy until the instance acks, so a connection that sat
 * in the channel of an instance that died is handed to another one: no
 * connection the daemon accepted is lost while an instance remains.
 * Connections to an instance's own listening socket (handed over at
 * registration) go to that instance only.
 *
 * Only processes of the daemon's own user may register or talk on the
 * control socket (SO_PEERCRED); others are refused and logged. The
 * instances it knows are written to pools/<PUBLIC>.state, so that a daemon
 * started after this one died (by a harness whose lifeline ended) serves
 * the same instances at once: their sockets do not depend on our life.
 *
 * The public listener takes the address the program bound (its family, its
 * interface: a server bound to 127.0.0.1 stays reachable from this host
 * only), read from the first instance's registration, unless the harness
 * names one (--publish HOST:PUBLIC:VIRTUAL). Until the first instance
 * comes, a reserve listener on every address holds the port (see
 * hold_public), so that a port in use is found at start.
 *
 * Where it may load its eBPF programs (root, or CAP_BPF), the daemon steers
 * in the kernel (steer.h), unless APPSHOT_POOL_STEER=user asks for the
 * hand-off above: each instance that can take one (the shim's, bound to the
 * group's address) gets a listening socket of the public port's
 * SO_REUSEPORT group in place of the channel, an eBPF program picks each
 * connection's member, and the daemon is on no connection's path; it keeps
 * policy (slots, counts for lc and ACTIVE), the end of members (their
 * closed sockets), members that stop accepting, and takeover (their
 * descriptors, from whichever process holds them). An instance that can
 * only take a channel (a static or Go program under the supervisor, a
 * restored one) takes its turns through a relay, a member of ours whose
 * connections we hand down its channel (join_relay). template serve starts
 * its daemon on the hand-off (held connections, --conns); a scaler that
 * comes to a pool with no member yet turns it back to the hand-off.
 *
 * Usage: appshot-pool HOME PUBLIC POLICY [HOST]   (POLICY: rr or lc)
 * Prints "ready" once its sockets are bound, then runs detached, logging to
 * pools/<PUBLIC>.log. Exit status: 0 normal end, 1 start-up failure, 2 bad
 * arguments, 3 the public port is in use.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/pool.h"
#include "steer.h"

#define TICK_MS 100
#define STALE_MS 250     /* an unacked handoff this old: the instance is not accepting */
#define MAX_UNACKED 64
#define HELD_CAP 4096
#define GRACE_MS 5000    /* how long to wait for a first lifeline */
#define REGISTER_MS 1000 /* how long a new channel may take to register */
#define LINE_MAX_LEN 256
#define FD_RESERVE 16    /* descriptors kept for instances and the harness */
#define PROBE_MS 1000    /* how often an idle instance is checked for life */
#define RECOUNT_MS 3     /* at the scaler's limit, open connections counted again this soon */
#define OUT_MS 20        /* a member taken out (not accepting) looked at again this soon */
#define RELAY_UNACKED 1  /* a channel's connections in flight from its relay (see dispatch_relay) */

enum kind { W_PUBLIC, W_CHANNELS, W_CTL, W_TIMER, W_SIGNAL, W_CHAN, W_LISTENER, W_CLIENT, W_RECOUNT, W_RELAY };

/* What epoll reports on; owner is the instance or the client. */
struct watch {
	enum kind kind;
	int fd;
	bool paused;
	void *owner;
};

struct conn {
	struct conn *next;
	int fd;
	bool direct; /* from the instance's own listener, not the public one */
	uint64_t seq, handed_ms, accepted_ms;
};

struct queue {
	struct conn *head, *tail;
	int n;
};

/* A connection an instance took, as the kernel's socket table keys it
 * (local address and port, the peer's; network order), and its inode. */
struct tuple {
	struct inet_diag_sockid id;
	uint8_t family;
	unsigned long ino;
};

struct opens {
	struct tuple *v;
	size_t n, cap;
};

/* chan is the registration connection until the instance registers, then
 * our datagram socket connected to the instance's name: connected, so that
 * a successor of the instance's name (a socket bound to it after the
 * instance is gone) is never sent to, and only the instance can ack. */
struct instance {
	struct watch chan, lis;
	bool registered, dead, blocked;
	bool draining;             /* the scaler is retiring it: nothing more for it */
	uint64_t since_ms, handed; /* handed: handed and taken */
	uint64_t busy_ms;          /* when it last had a connection open, or was given one */
	struct pool_register reg;
	struct queue unacked, direct;
	struct opens open;         /* its pool connections still open, for lc and the scaler */
	bool kernel;               /* a member of the steered group (steer.h), in slot */
	bool relayed;              /* a channel whose turns the kernel gives relay, our member in slot */
	struct watch relay;
	uint32_t slot;
	uint64_t handed_base;      /* the slot's count when it came */
	uint64_t member_ino;       /* its member's inode, which a successor checks */
	bool out, out_logged;      /* taken out: not accepting (check_members) */
	uint64_t stall_ms, accepted;
};

struct client {
	struct watch w;
	char line[LINE_MAX_LEN + 2];
	size_t len;
	bool lifeline, scaler;
	char aid[64]; /* a scaler's: the template it serves */
};

static struct {
	int public, ep, fd_limit;
	int reserve;      /* holds the port until the public listener exists */
	const char *host; /* the address named by --publish, or NULL */
	bool lc, detached, ever_lifeline, starve_logged, overflow_logged;
	const char *policy;
	struct watch pub, chans, ctl, timer, sig;
	char sock_path[PATH_MAX], ctl_path[PATH_MAX], state_path[PATH_MAX];
	uid_t uid;
	uint64_t refused, refused_ms, probe_ms;
	struct stat sock_st, ctl_st;
	struct instance **inst; /* in registration order */
	int ninst, rr;
	struct client **clients;
	int nclients, nlifelines;
	struct client *scaler; /* the serving command, if one is connected */
	int conns;             /* its limit of open connections per instance; 0 none */
	struct watch recount;  /* a one-shot timer: see recount_in */
	int diag;              /* NETLINK_SOCK_DIAG: which taken connections are open */
	uint32_t diag_seq;
	struct queue held;
	uint64_t seq, start_ms, refresh_ms;
	/* The public listener's address when it names one interface (not a
	 * wildcard): the local address of every connection it accepts, which
	 * then needs no getsockname each. Family 0 otherwise. */
	struct sockaddr_storage pub_local;
	/* Kernel steering (steer.h): the public port is a SO_REUSEPORT group
	 * of listening sockets on pub_addr, one per instance and pub.fd, our
	 * holding member, which we never accept from. */
	bool kernel, direct; /* direct: the instances' own ports are steered too */
	struct sockaddr_storage pub_addr;
	socklen_t pub_len;
	int pub_v6only;
} g;

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void logmsg(const char *fmt, ...)
{
	char ts[32];
	time_t t = time(NULL);
	struct tm tm;
	strftime(ts, sizeof ts, "%F %T", localtime_r(&t, &tm));
	if (g.detached) fprintf(stderr, "%s appshot-pool %d: ", ts, g.public);
	else fputs("appshot-pool: ", stderr);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A later daemon may have replaced our files: unlink them only if ours. */
static void unlink_ours(void)
{
	struct stat st;
	if (g.sock_st.st_ino && !stat(g.sock_path, &st) && st.st_ino == g.sock_st.st_ino && st.st_dev == g.sock_st.st_dev)
		unlink(g.sock_path);
	if (g.ctl_st.st_ino && !stat(g.ctl_path, &st) && st.st_ino == g.ctl_st.st_ino && st.st_dev == g.ctl_st.st_dev)
		unlink(g.ctl_path);
}

#define fail(code, ...) (logmsg(__VA_ARGS__), unlink_ours(), exit(code))

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n))) logmsg("out of memory"), abort();
	return p;
}

static void *xcalloc(size_t n)
{
	return memset(xrealloc(NULL, n), 0, n);
}

static void push_open(struct opens *s, const struct tuple *t)
{
	if (s->n == s->cap) s->v = xrealloc(s->v, (s->cap = s->cap ? 2 * s->cap : 64) * sizeof *s->v);
	s->v[s->n++] = *t;
}

/* Held and unacked connections close with us. The public port goes first,
 * so that a successor can bind it as soon as our files are gone. The state
 * file stays while instances live, for the daemon a harness starts next. */
static void clean_exit(const char *why)
{
	if (g.pub.fd >= 0) close(g.pub.fd);
	if (g.reserve >= 0) close(g.reserve);
	unlink_ours();
	if (!g.ninst) unlink(g.state_path);
	logmsg("exiting: %s", why);
	exit(0);
}

static void maybe_exit(void)
{
	if (!g.nlifelines && !g.ninst && (g.ever_lifeline || monotonic_ms() - g.start_ms >= GRACE_MS))
		clean_exit("no lifeline and no instance left");
}

/* ---- connections and their queues ---- */

static void q_push(struct queue *q, struct conn *c, bool front)
{
	c->next = front ? q->head : NULL;
	if (front) q->head = c;
	else *(q->tail ? &q->tail->next : &q->head) = c;
	if (!front || !q->tail) q->tail = c;
	q->n++;
}

static struct conn *q_pop(struct queue *q)
{
	struct conn *c = q->head;
	if (c && !(q->head = c->next)) q->tail = NULL;
	if (c) q->n--;
	return c;
}

static struct conn *q_take(struct queue *q, uint64_t seq)
{
	for (struct conn **p = &q->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
		struct conn *c = *p;
		if (c->seq != seq) continue;
		if (!(*p = c->next)) q->tail = prev;
		q->n--;
		return c;
	}
	return NULL;
}

static struct conn *new_conn(int fd, bool direct)
{
	struct conn *c = xcalloc(sizeof *c);
	c->fd = fd;
	c->direct = direct;
	c->accepted_ms = monotonic_ms();
	return c;
}

static void drop_conn(struct conn *c)
{
	close(c->fd);
	free(c);
}

/* ---- epoll and accepting ---- */

static bool watch_add(struct watch *w, enum kind kind, int fd, void *owner)
{
	*w = (struct watch){ .kind = kind, .fd = fd, .owner = owner };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) == 0) return true;
	logmsg("epoll_ctl: %s", strerror(errno));
	return false;
}

/* A paused descriptor leaves the epoll set, so that not even a hang-up or
 * an error on it can wake us in a loop. */
static void set_paused(struct watch *w, bool paused)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
	if (w->fd >= 0 && w->paused != paused && !epoll_ctl(g.ep, paused ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, w->fd, &ev))
		w->paused = paused;
}

/* Delete before closing: the instance's processes may share the open
 * file, which would keep it in the epoll set. */
static void watch_close(struct watch *w)
{
	if (w->fd < 0) return;
	if (!w->paused) epoll_ctl(g.ep, EPOLL_CTL_DEL, w->fd, NULL);
	close(w->fd);
	w->fd = -1;
}

/* TCP listeners stay paused while descriptors are short (see accept_one). */
static void resume(struct watch *w)
{
	int lowest = w->paused ? fcntl(g.ep, F_DUPFD_CLOEXEC, 0) : -1;
	if (lowest >= 0) close(lowest);
	if (lowest >= 0 && ((w->kind != W_PUBLIC && w->kind != W_LISTENER && w->kind != W_RELAY) || lowest < g.fd_limit - FD_RESERVE))
		set_paused(w, false);
}

static void starve(struct watch *w, const char *why)
{
	if (!g.starve_logged) logmsg("accept: %s; pausing until the next tick", why);
	g.starve_logged = true;
	set_paused(w, true);
}

/* One connection from a listener, or -1 when there is none to take now. */
static int accept_one(struct watch *w, int flags)
{
	while (!w->paused) {
		int fd = accept4(w->fd, NULL, NULL, flags | SOCK_CLOEXEC);
		if (fd >= 0) {
			/* Held connections must not take the last descriptors: an
			 * instance needs some to register, and it is what frees them. */
			if (!flags && fd >= g.fd_limit - FD_RESERVE) starve(w, "descriptors nearly all used");
			else g.starve_logged = false;
			return fd;
		}
		switch (errno) {
		case EAGAIN: return -1;
		case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
		case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case ENETUNREACH: case EPERM:
			continue; /* that connection is gone; the next may be fine */
		default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM: do not spin on it */
			starve(w, strerror(errno));
		}
	}
	return -1;
}

/* Whether the peer of a connection to one of our sockets is of our own
 * user; if not, the connection is closed and the refusal logged (at most
 * once a second, with the count since). */
static bool peer_ours(int fd, const char *path)
{
	struct ucred cr = { 0 };
	socklen_t len = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == g.uid) return true;
	g.refused++;
	uint64_t now = monotonic_ms();
	if (now - g.refused_ms >= 1000) {
		logmsg("refused a connection to %s from pid %d, uid %u: only uid %u may use this pool (%llu refused so far)",
		       path, (int)cr.pid, (unsigned)cr.uid, (unsigned)g.uid, (unsigned long long)g.refused);
		g.refused_ms = now;
	}
	close(fd);
	return false;
}

/* ---- choosing an instance and handing off ---- */

/* Whether the kernel gives it turns: its member, or our relay for its
 * channel, is in a slot of the steered group. */
static bool in_group(const struct instance *in)
{
	return in->kernel || in->relayed;
}

/* Its open connections: for one in the group, as counted from the
 * kernel's socket table by the slot the program gave each client
 * (kernel_recount), plus, under lc, the program's picks since. */
static int active(const struct instance *in)
{
	if (in_group(in)) return (int)steer_conns(in->slot);
	return in->open.n + in->unacked.n;
}

static void take_acks(struct instance *in);
static void end_scaler(void);
static socklen_t inet_address(const char *host, int port, struct sockaddr_storage *ss);
static int listen_public(const struct sockaddr_storage *addr, socklen_t len, int v6only);
static int join_member(struct instance *in, const struct pool_register *reg);
static void release_held(void);
static bool user_steering(void);
static void publish_slots(void);
static void kernel_recount(void);
static void check_members(uint64_t now);
static socklen_t program_address(const struct pool_register *reg, int port, struct sockaddr_storage *ss, char host[INET6_ADDRSTRLEN]);
static bool send_reply(int fd, const struct pool_reply *reply, int mfd);
static bool join_relay(struct instance *in);
static void dispatch_relay(struct instance *in);

/* Whether a choice needs IN's acks read now, beyond those read when they
 * woke us (on_channel): lc and the scaler's limit count open connections,
 * and an ack that came since this wake-up may say one is over already.
 * Round robin chooses by no count. */
static bool acks_due(const struct instance *in)
{
	return in->registered && !in->dead && in->unacked.n && (g.lc || g.conns || g.scaler);
}

static bool eligible(struct instance *in, uint64_t now)
{
	if (acks_due(in)) take_acks(in);
	if (in->kernel || !in->registered || in->dead || in->blocked || in->unacked.n >= MAX_UNACKED) return false;
	return !in->unacked.head || now - in->unacked.head->handed_ms <= STALE_MS;
}

/* Whether it may be given a connection of the public port: the scaler's
 * limits apply to those, not to its own programs' direct ones. */
static bool takes_pooled(struct instance *in, uint64_t now)
{
	return eligible(in, now) && !in->draining && !(g.conns && active(in) >= g.conns);
}

/* Round robin from the cursor; lc takes the least active, the first in
 * round-robin order among equals. */
static struct instance *pick(uint64_t now)
{
	int best = -1;
	for (int k = 0; k < g.ninst; k++) {
		int i = (g.rr + k) % g.ninst;
		if (!takes_pooled(g.inst[i], now) || (best >= 0 && active(g.inst[i]) >= active(g.inst[best]))) continue;
		best = i;
		if (!g.lc) break;
	}
	if (best < 0) return NULL;
	g.rr = (best + 1) % g.ninst;
	return g.inst[best];
}

/* Pass C down IN's channel; false if it could not go (C is still ours). */
static bool hand(struct instance *in, struct conn *c)
{
	struct pool_handoff h = { .seq = g.seq + 1 };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl = { 0 };
	struct iovec iov = { &h, sizeof h };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	*cm = (struct cmsghdr){ .cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
	memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
	while (sendmsg(in->chan.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		if (errno == EINTR) continue;
		if (errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM || errno == ETOOMANYREFS)
			in->blocked = true; /* until it acks (which wakes us), or the next tick */
		else
			in->dead = true; /* ECONNREFUSED: its socket is closed */
		return false;
	}
	c->seq = ++g.seq;
	c->handed_ms = in->busy_ms = monotonic_ms();
	q_push(&in->unacked, c, false);
	return true;
}

/* ---- the scaler: what the serving command is told ---- */

/* One event line to the scaler, if one is connected. Never blocks: a
 * serving command that does not read loses events, not the pool its
 * progress; it reads the status too. */
static void tell_scaler(const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	va_list ap;
	if (!g.scaler) return;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof line && send(g.scaler->w.fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
		logmsg("scaler of %s: an event was not sent: %s", g.scaler->aid, strerror(errno));
}

/* How long the connection that has waited longest has waited: held by us,
 * or handed to an instance that has not accepted it yet. */
static uint64_t oldest_wait(uint64_t now)
{
	uint64_t oldest = 0;
	for (struct conn *c = g.held.head; c; c = c->next)
		if (now - c->accepted_ms > oldest) oldest = now - c->accepted_ms;
	for (int i = 0; i < g.ninst; i++)
		for (struct conn *c = g.inst[i]->unacked.head; c; c = c->next)
			if (!c->direct && now - c->accepted_ms > oldest) oldest = now - c->accepted_ms;
	return oldest;
}

/* need: at once for the first held connection (an instance must be made:
 * the first byte's latency starts here), then at most once a tick. */
static bool need_told;
static void tell_need(bool tick)
{
	uint64_t oldest = oldest_wait(monotonic_ms());
	if (!g.scaler || (!tick && need_told) || (!g.held.n && oldest < POOL_BUSY_MS)) return;
	need_told = true;
	tell_scaler("need held=%d oldest=%llu\n", g.held.n, (unsigned long long)oldest);
}

static void refresh_active(void);

/* Held connections at the scaler's limit wait for an instance to close
 * one, which nothing signals: the count is taken again in RECOUNT_MS (a
 * one-shot timer), not at the next tick. A member taken out is looked at
 * again in OUT_MS the same way (check_members). */
static void recount_in(long ms)
{
	struct itimerspec once = { { 0, 0 }, { 0, ms * 1000000L } };
	struct itimerspec cur;
	if (g.recount.fd >= 0 && !timerfd_gettime(g.recount.fd, &cur) && !cur.it_value.tv_sec && !cur.it_value.tv_nsec)
		timerfd_settime(g.recount.fd, 0, &once, NULL);
}

static void dispatch_held(void)
{
	uint64_t now = monotonic_ms();
	struct instance *in;
	bool refreshed = false;
	while (g.held.head) {
		if (!(in = pick(now))) {
			/* At the scaler's limit, as last counted: connections closed
			 * since are found now, not at the next tick, or a client that
			 * opens one connection after another would look like many;
			 * and while they wait, counted again soon (recount_in). */
			if (refreshed || !g.conns) break;
			refresh_active();
			refreshed = true;
			continue;
		}
		struct conn *c = q_pop(&g.held);
		if (!hand(in, c)) q_push(&g.held, c, true);
	}
	if (g.held.n && g.conns) recount_in(RECOUNT_MS);
	if (!g.held.n) g.overflow_logged = false;
}

/* While a direct connection waits here the instance's listener is paused,
 * so that further ones wait in the kernel's backlog, as without us. */
static void dispatch_direct(struct instance *in)
{
	uint64_t now = monotonic_ms();
	while (in->direct.head && eligible(in, now)) {
		struct conn *c = q_pop(&in->direct);
		if (!hand(in, c)) {
			q_push(&in->direct, c, true);
			break;
		}
	}
	if (in->direct.n) set_paused(&in->lis, true);
	else if (!in->dead) resume(&in->lis);
}

static void on_public(void)
{
	int fd;
	while ((fd = accept_one(&g.pub, 0)) >= 0) {
		if (g.held.n < HELD_CAP) {
			q_push(&g.held, new_conn(fd, false), false);
			dispatch_held();
			if (g.held.n) tell_need(false);
			continue;
		}
		if (!g.overflow_logged) logmsg("%d connections held, none taken: closing new ones", HELD_CAP);
		g.overflow_logged = true;
		close(fd);
	}
}

static void on_listener(struct instance *in)
{
	int fd;
	while (!in->dead && !in->direct.n && (fd = accept_one(&in->lis, 0)) >= 0) {
		q_push(&in->direct, new_conn(fd, true), false);
		dispatch_direct(in);
	}
}

/* ---- instances ---- */

static struct instance *new_instance(void)
{
	struct instance *in = xcalloc(sizeof *in);
	in->since_ms = in->busy_ms = monotonic_ms(); /* idle from now */
	in->lis.fd = in->relay.fd = -1;
	g.inst = xrealloc(g.inst, (g.ninst + 1) * sizeof *g.inst);
	g.inst[g.ninst++] = in;
	return in;
}

/* The registered instances, one line each, for a successor: replaced
 * whole, so that a daemon killed while writing leaves the last one. */
static void write_state(void)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s.tmp", g.state_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0) close(fd);
		logmsg("%s: %s", tmp, strerror(errno));
		return;
	}
	for (int i = 0; i < g.ninst; i++) {
		struct instance *in = g.inst[i];
		if (in->registered && !in->dead && in->kernel) /* see recover_member */
			fprintf(f, "member\t%s\t%u\t%u\t%u\t%llu\t%u\n", in->reg.aid, in->reg.vport, in->reg.sport, in->reg.spid,
				(unsigned long long)in->member_ino, in->reg.fdnum);
		else if (in->registered && !in->dead)
			fprintf(f, "%s\t%s\t%u\t%u\t%u\t%llu\n", in->reg.name, in->reg.aid, in->reg.vport, in->reg.sport,
				in->reg.spid, (unsigned long long)in->reg.ino);
	}
	if (fclose(f) || rename(tmp, g.state_path)) logmsg("%s: %s", g.state_path, strerror(errno)), unlink(tmp);
}

static void on_channels(void)
{
	int fd;
	while ((fd = accept_one(&g.chans, SOCK_NONBLOCK)) >= 0) {
		if (!peer_ours(fd, g.sock_path)) continue;
		struct instance *in = new_instance();
		in->dead = !watch_add(&in->chan, W_CHAN, fd, in);
	}
}

/* Our datagram socket to an instance's abstract name: -1 with errno when
 * no socket is bound to the name (the instance is gone). Bound to an
 * address of its own (autobind), which the instance acks to. */
static int connect_instance(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	memcpy(a.sun_path + 1, name, n);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(sa_family_t)) == 0 &&
	    connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0)
		return fd;
	int err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* A registered instance wakes us with its acks, and by an error on our
 * socket to it; its end is found when a send fails or a tick's probe says
 * so. Each ack is read when it comes: our copy of the connection closes
 * then, and only then can the connection end when the program closes it
 * (a server that answers and closes, HTTP/1.0 without a length, sends its
 * FIN at its close, as without us, not at our next wake-up). Under load one
 * wake-up reads the acks of many connections (epoll returns them together
 * with the public listener's), so this costs little more than reading
 * them at the next choice did. */
static bool watch_instance(struct instance *in, int fd)
{
	if (!watch_add(&in->chan, W_CHAN, fd, in)) return close(fd), false;
	in->registered = true;
	return true;
}

static int listen_as(const struct pool_register *reg, int lfd);
static bool at_group_address(const struct pool_register *reg);

static bool name_valid(struct pool_register *reg)
{
	reg->aid[sizeof reg->aid - 1] = 0;
	return memchr(reg->name, 0, sizeof reg->name) &&
	       !strncmp(reg->name, POOL_LISTENER_PREFIX, sizeof POOL_LISTENER_PREFIX - 1);
}

/* A socket option for the listener of the instance of that name (see
 * pool_sockopt): set on its own listener and on the public one, answered
 * from its own. The asking connection closes after the reply. */
static void take_sockopt(struct instance *asker, struct pool_sockopt *o)
{
	struct pool_optreply r = { .status = ENOENT };
	struct instance *in = NULL;
	o->name[POOL_NAME_MAX] = 0;
	for (int i = 0; i < g.ninst && !in; i++)
		if (g.inst[i]->registered && !g.inst[i]->dead && !strcmp(g.inst[i]->reg.name, o->name)) in = g.inst[i];
	if (o->len > POOL_OPT_MAX) r.status = EINVAL;
	else if (in && in->lis.fd < 0) r.status = EBADF;
	else if (in && o->set) {
		r.status = setsockopt(in->lis.fd, o->level, o->optname, o->value, o->len) ? errno : 0;
		if (!r.status && g.pub.fd >= 0 && setsockopt(g.pub.fd, o->level, o->optname, o->value, o->len))
			logmsg("option %d/%d of instance of %s not set on the public listener: %s", o->level, o->optname, in->reg.aid, strerror(errno));
	} else if (in) {
		socklen_t len = o->len;
		r.status = getsockopt(in->lis.fd, o->level, o->optname, r.value, &len) ? errno : 0;
		r.len = len;
	}
	if (send(asker->chan.fd, &r, sizeof r, MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof r) logmsg("option reply: %s", strerror(errno));
	watch_close(&asker->chan);
	asker->dead = true;
}

/* The answer to a registration, with the member socket attached when
 * there is one. */
static bool send_reply(int fd, const struct pool_reply *reply, int mfd)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl = { 0 };
	struct iovec iov = { (void *)reply, sizeof *reply };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = mfd >= 0 ? ctl.buf : NULL, .msg_controllen = mfd >= 0 ? sizeof ctl.buf : 0 };
	if (mfd >= 0) {
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		*cm = (struct cmsghdr){ .cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
		memcpy(CMSG_DATA(cm), &mfd, sizeof mfd);
	}
	return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) == sizeof *reply;
}

/* The one message of a registration: pool_register with exactly one
 * listening socket (or a socket option, take_sockopt). The registration
 * connection closes after the reply. */
static void take_register(struct instance *in)
{
	union { struct pool_register reg; struct pool_sockopt opt; } u;
	struct pool_register reg;
	union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } ctl;
	struct iovec iov = { &u, sizeof u };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	ssize_t n = recvmsg(in->chan.fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
	int lfd = -1, nfd = 0, ifd = -1;
	for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; cm; cm = CMSG_NXTHDR(&m, cm)) {
		bool rights = cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS;
		for (size_t off = 0; rights && CMSG_LEN(off + sizeof(int)) <= cm->cmsg_len; off += sizeof(int), nfd++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + off, sizeof fd);
			if (nfd) close(fd);
			else lfd = fd;
		}
	}
	if (n == sizeof u.opt && u.opt.magic == POOL_MAGIC_OPT && !nfd) {
		take_sockopt(in, &u.opt);
		return;
	}
	memcpy(&reg, &u, sizeof reg);
	struct pool_reply reply = { 0, 0 };
	int mfd = -1;
	errno = 0;
	if (n != sizeof reg || reg.magic != POOL_MAGIC || nfd != 1 || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !name_valid(&reg))
		reply.status = EPROTO;
	else if (g.kernel && (reg.flags & POOL_REG_MEMBER) && !(reply.status = listen_as(&reg, lfd)) && at_group_address(&reg)) {
		/* Its own listener gave the group its address; now it closes:
		 * the member is the instance's listener from now on. */
		if ((mfd = join_member(in, &reg)) < 0) reply.status = errno;
		close(lfd);
		lfd = -1;
		reply.member = mfd >= 0;
	} else if (reply.status) {
		/* no public listener: refused below */
	} else if ((ifd = connect_instance(reg.name)) < 0 || fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0 ||
		 !watch_add(&in->lis, W_LISTENER, lfd, in))
		reply.status = errno ? errno : EINVAL;
	else if (!(reply.status = listen_as(&reg, lfd)) && g.kernel)
		join_relay(in); /* without a slot it is reached at its own port only (logged below) */
	if (reply.status && n > 0) {
		if (ifd >= 0) close(ifd);
		if (lfd >= 0 && in->lis.fd != lfd) close(lfd);
		watch_close(&in->lis);
		logmsg("registration refused: %s", strerror(reply.status));
	}
	bool sent = n > 0 && send_reply(in->chan.fd, &reply, mfd);
	watch_close(&in->chan);
	if (mfd >= 0) {
		close(mfd); /* the instance's now; if it never got it, its slot empties */
		if ((in->dead = !sent || reply.status)) return;
		in->registered = true;
	} else if ((in->dead = !sent || reply.status || !watch_instance(in, ifd))) {
		if (!sent && !reply.status && ifd >= 0) close(ifd);
		return;
	}
	in->reg = reg;
	in->busy_ms = monotonic_ms(); /* idle from now */
	write_state();
	if (in->kernel) logmsg("instance of %s registered: port %u, pid %u, member of the steered group in slot %u", reg.aid, reg.vport, reg.spid, in->slot);
	else if (in->relayed)
		logmsg("instance of %s registered: port %u on %u, pid %u, through a channel (a static or restored program): its turns are "
		       "taken by the daemon's member in slot %u and handed over", reg.aid, reg.vport, reg.sport, reg.spid, in->slot);
	else if (g.kernel)
		logmsg("instance of %s registered: port %u on %u, pid %u, through a channel, with no slot free: the kernel steers "
		       "none of the public port's connections to it, only those to its own port", reg.aid, reg.vport, reg.sport, reg.spid);
	else logmsg("instance of %s registered: port %u on %u, pid %u", reg.aid, reg.vport, reg.sport, reg.spid);
	tell_scaler("joined %s\n", reg.aid);
}

/* The connection's addresses and inode, read before our copy of it
 * closes; false for one already closed, which is not counted (nor asked
 * about by every refresh after). getpeername comes first: under load most
 * connections are over by the time they are acked, and cost one call. */
static bool tuple_of(int fd, struct tuple *t)
{
	struct sockaddr_storage l = g.pub_local, p;
	socklen_t ll = sizeof l, pl = sizeof p;
	struct stat st;
	if (getpeername(fd, (struct sockaddr *)&p, &pl) || (!l.ss_family && getsockname(fd, (struct sockaddr *)&l, &ll)) ||
	    l.ss_family != p.ss_family || fstat(fd, &st))
		return false;
	memset(t, 0, sizeof *t);
	t->family = l.ss_family;
	t->ino = st.st_ino;
	t->id.idiag_cookie[0] = t->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (l.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&l, *b = (const void *)&p;
		t->id.idiag_sport = a->sin_port;
		t->id.idiag_dport = b->sin_port;
		memcpy(t->id.idiag_src, &a->sin_addr, sizeof a->sin_addr);
		memcpy(t->id.idiag_dst, &b->sin_addr, sizeof b->sin_addr);
		return true;
	}
	if (l.ss_family != AF_INET6) return false;
	const struct sockaddr_in6 *a = (const void *)&l, *b = (const void *)&p;
	t->id.idiag_sport = a->sin6_port;
	t->id.idiag_dport = b->sin6_port;
	memcpy(t->id.idiag_src, &a->sin6_addr, sizeof a->sin6_addr);
	memcpy(t->id.idiag_dst, &b->sin6_addr, sizeof b->sin6_addr);
	return true;
}

static void take_ack(struct instance *in, const struct pool_ack *ack)
{
	struct conn *c = ack ? q_take(&in->unacked, ack->seq) : NULL;
	in->blocked = false;
	if (c && ack->taken) {
		in->handed++;
		struct tuple t;
		if (!c->direct && !in->relayed && tuple_of(c->fd, &t)) push_open(&in->open, &t);
		drop_conn(c);
	} else if (c) {
		/* It could not install it: hand it again, but not to this
		 * instance before the next tick, or the two might ping-pong. */
		in->blocked = true;
		q_push(c->direct ? &in->direct : &g.held, c, true);
	}
}

static void take_acks(struct instance *in)
{
	struct pool_ack acks[16];
	struct mmsghdr mm[16];
	struct iovec iov[16];
	for (;;) {
		for (int i = 0; i < 16; i++) {
			iov[i] = (struct iovec){ &acks[i], sizeof acks[i] };
			mm[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int n = recvmmsg(in->chan.fd, mm, 16, MSG_DONTWAIT, NULL);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) return; /* none, or a pending error: its end is found by sending or probing */
		for (int i = 0; i < n; i++) take_ack(in, mm[i].msg_len == sizeof acks[i] ? &acks[i] : NULL);
		if (n < 16) return;
	}
}

/* Whether an instance's socket still holds its name: binding the name
 * ourselves succeeds only once it is free. A datagram socket has no
 * hang-up to tell us. */
static bool instance_alive(const struct instance *in)
{
	if (in->kernel) return in->out || steer_live(in->slot); /* see join_member; one out: check_members */
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(in->reg.name);
	memcpy(a.sun_path + 1, in->reg.name, n);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return true;
	bool free_name = bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0;
	close(fd);
	return !free_name;
}

/* Before registering, events are the registration connection's; after,
 * its acks, or an error on our socket to the instance.
 * Acks are read before its end is believed, so that a connection taken
 * just before the end is not handed out twice. */
static void on_channel(struct instance *in, uint32_t events)
{
	if (!in->registered) {
		take_register(in);
		if (!in->registered && (events & (EPOLLHUP | EPOLLERR))) in->dead = true;
	} else {
		take_acks(in);
		if (events & EPOLLERR) {
			int err;
			socklen_t len = sizeof err;
			getsockopt(in->chan.fd, SOL_SOCKET, SO_ERROR, &err, &len); /* cleared, or it would wake us again */
			if (!instance_alive(in)) in->dead = true;
		}
	}
	if (in->dead) return;
	dispatch_direct(in);
	dispatch_held();
	dispatch_relay(in);
}

/* Its pool connections not yet taken go back to the front of the held
 * queue, in order, for another instance; its direct ones have nobody else. */
static void remove_instance(int i)
{
	struct instance *in = g.inst[i];
	struct queue back = { 0 };
	struct conn *c;
	while ((c = q_pop(&in->unacked))) {
		if (c->direct) drop_conn(c);
		else q_push(&back, c, false);
	}
	while ((c = q_pop(&in->direct))) drop_conn(c);
	if (in->registered) {
		logmsg("instance of %s (pid %u, port %u) gone, %d connection(s) back to the pool",
		       in->reg.aid, in->reg.spid, in->reg.sport, back.n);
		tell_scaler("gone %s\n", in->reg.aid);
	}
	while ((c = q_pop(&g.held))) q_push(&back, c, false);
	g.held = back;
	watch_close(&in->chan);
	watch_close(&in->lis);
	watch_close(&in->relay); /* what waits in its queue the kernel moves to another member */
	free(in->open.v);
	free(in);
	memmove(g.inst + i, g.inst + i + 1, (g.ninst - i - 1) * sizeof *g.inst);
	g.ninst--;
	if (g.rr > i) g.rr--;
	if (g.rr >= g.ninst) g.rr = 0;
	if (g.kernel) publish_slots();
}

/* Steering in the kernel, connections come back here only from a channel
 * that ended before taking them (see dispatch_relay): with no channel
 * left to take them, they are closed; a member cannot be given one. */
static void drop_orphans(void)
{
	int n = 0;
	if (!g.kernel || !g.held.n) return;
	for (int i = 0; i < g.ninst; i++)
		if (g.inst[i]->registered && !g.inst[i]->dead && !g.inst[i]->kernel) return;
	for (struct conn *c; (c = q_pop(&g.held)); n++) drop_conn(c);
	logmsg("%d connection(s) handed to a channel that ended closed: no other channel is left to take them", n);
}

/* Instances are freed only here, after an epoll batch, since one batch may
 * hold events for both of an instance's descriptors. */
static void reap(void)
{
	bool any = false;
	for (bool removed = true; removed;) {
		removed = false;
		for (int i = g.ninst - 1; i >= 0; i--)
			if (g.inst[i]->dead) any |= g.inst[i]->registered, remove_instance(i), removed = true;
		if (removed) dispatch_held(), maybe_exit(); /* which may find another dead */
	}
	if (any) write_state();
	drop_orphans();
}

/* ---- least connections: which taken connections are still open ---- */

/* Whether a taken connection is still open in some process: the kernel's
 * socket of its addresses, found by one sock_diag request (a hash lookup;
 * /proc/net/tcp walks every socket of the host, 5 ms and more on a busy
 * one), still has its inode (one every process has closed has none). When
 * the kernel cannot say, it counts as open. */
static bool still_open(const struct tuple *t)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req = {
		.nh = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = ++g.diag_seq },
		.r = { .sdiag_family = t->family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u, .id = t->id },
	};
	union { char buf[1024]; struct nlmsghdr align; } u;
	if (g.diag < 0 || send(g.diag, &req, sizeof req, 0) != (ssize_t)sizeof req) return true;
	for (;;) {
		ssize_t n = recv(g.diag, u.buf, sizeof u.buf, 0); /* answered at once; SO_RCVTIMEO bounds it */
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) return true;
		for (struct nlmsghdr *h = &u.align; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != g.diag_seq) continue; /* a late answer to an earlier request */
			if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error != -ENOENT;
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) return ((struct inet_diag_msg *)NLMSG_DATA(h))->idiag_inode == t->ino;
		}
	}
}

static void open_diag(void)
{
	struct timeval tv = { 0, 100000 };
	g.diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (g.diag >= 0 && setsockopt(g.diag, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) close(g.diag), g.diag = -1;
	if (g.diag < 0) logmsg("sock_diag: %s; taken connections count as open until they are closed and the daemon restarts", strerror(errno));
}

static void refresh_active(void)
{
	uint64_t now = monotonic_ms();
	for (int i = 0; i < g.ninst; i++) {
		struct opens *s = &g.inst[i]->open;
		size_t k = 0;
		for (size_t j = 0; j < s->n; j++)
			if (still_open(&s->v[j])) s->v[k++] = s->v[j];
		s->n = k;
		if (k) g.inst[i]->busy_ms = now; /* busy until now at least */
	}
}

static void on_tick(void)
{
	uint64_t expirations, now = monotonic_ms();
	if (read(g.timer.fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
		logmsg("timerfd: %s", strerror(errno));
	resume(&g.pub);
	resume(&g.chans);
	resume(&g.ctl);
	bool probe = now - g.probe_ms >= PROBE_MS;
	if (probe) g.probe_ms = now;
	if (g.kernel) check_members(now);
	for (int i = 0; i < g.ninst; i++) {
		struct instance *in = g.inst[i];
		if (!in->registered && now - in->since_ms > REGISTER_MS) in->dead = true;
		if (in->registered && !in->dead && !in->kernel) take_acks(in);
		/* One that holds connections is looked at each tick, so that they
		 * go to another soon after its end; a member costs one map lookup. */
		if (in->registered && !in->dead && !in->kernel && (probe || in->unacked.n) && !instance_alive(in)) in->dead = true;
		in->blocked = false;
		dispatch_direct(in);
		dispatch_relay(in);
	}
	/* rr needs no counts, only status reports them: refresh less often;
	 * lc and a scaler's limit and idle times need them each tick. */
	if (now - g.refresh_ms >= (g.lc || g.scaler ? TICK_MS : 10 * TICK_MS)) {
		refresh_active();
		/* Under round robin the program chooses by no count: the status
		 * counts again when asked (send_status), the ticks do not. */
		if (g.lc) kernel_recount();
		g.refresh_ms = now;
	}
	dispatch_held(); /* after the counts: slots under the limit may be free */
	release_held();
	tell_need(true);
	need_told = false;
	maybe_exit();
}

static void on_recount(void)
{
	uint64_t expirations;
	if (read(g.recount.fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) logmsg("timerfd: %s", strerror(errno));
	if (g.kernel) check_members(monotonic_ms());
	dispatch_held();
}

/* ---- the control socket: lifelines and status ---- */

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		if (w >= 0) p += w, n -= w;
		else if (errno != EINTR && (errno != EAGAIN || poll(&pfd, 1, 1000) <= 0)) return false;
	}
	return true;
}

static void json_str(FILE *f, const char *sep, const char *s)
{
	fprintf(f, "%s\"", sep);
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
		else if (c < 0x20) fprintf(f, "\\u%04x", c);
		else fputc(c, f);
	}
	fputc('"', f);
}

/* Connections given to it: taken from its channel, or picked for its
 * member by the program (counted in the kernel). */
static uint64_t handed(const struct instance *in)
{
	return in_group(in) ? steer_handed(in->slot) - in->handed_base : in->handed;
}

static void send_status(int fd)
{
	char *buf = NULL;
	size_t len = 0;
	for (int i = 0; i < g.ninst; i++) /* acks that came since this wake-up: the waits are counted now */
		if (g.inst[i]->registered && !g.inst[i]->dead && !g.inst[i]->kernel) take_acks(g.inst[i]);
	refresh_active(); /* rr refreshes only each second; a status is read now */
	kernel_recount();
	FILE *f = open_memstream(&buf, &len);
	if (!f) return;
	uint64_t now = monotonic_ms();
	fprintf(f, "{\"public\":%d,\"policy\":\"%s\",\"steer\":\"%s\",\"pid\":%d,\"held\":%d,\"oldest_ms\":%llu,\"conns\":%d,\"scaler\":",
		g.public, g.policy, g.kernel ? "kernel" : "user", (int)getpid(), g.held.n, (unsigned long long)oldest_wait(now), g.conns);
	if (g.scaler) json_str(f, "", g.scaler->aid);
	else fputs("null", f);
	fputs(",\"lifelines\":[", f);
	const char *sep = "";
	for (int i = 0; i < g.nclients; i++)
		if (g.clients[i]->lifeline) json_str(f, sep, g.clients[i]->aid), sep = ",";
	fputs("],\"instances\":[", f);
	sep = "{\"aid\":";
	for (int i = 0; i < g.ninst; i++) {
		struct instance *in = g.inst[i];
		if (!in->registered || in->dead) continue;
		json_str(f, sep, in->reg.aid);
		fprintf(f, ",\"vport\":%u,\"sport\":%u,\"spid\":%u,\"unacked\":%d,\"active\":%d,\"handed\":%llu,\"idle_ms\":%llu,\"draining\":%s}",
			in->reg.vport, in->reg.sport, in->reg.spid, in->unacked.n, active(in),
			(unsigned long long)handed(in), (unsigned long long)(active(in) ? 0 : now - in->busy_ms),
			in->draining ? "true" : "false");
		sep = ",{\"aid\":";
	}
	fputs("]}\n", f);
	fclose(f);
	send_all(fd, buf, len);
	free(buf);
}

static void drop_client(struct client *cl)
{
	watch_close(&cl->w);
	for (int i = 0; i < g.nclients; i++)
		if (g.clients[i] == cl) g.clients[i] = g.clients[--g.nclients];
	if (cl->lifeline) g.nlifelines--, logmsg("lifeline of %s ended", cl->aid);
	if (cl == g.scaler) end_scaler();
	free(cl);
	/* A harness lets go of its lifeline once its application has ended: with
	 * the last one gone, the instances are looked at now, not at the next
	 * probe, so the public port is free for the next application at once. */
	if (!g.nlifelines)
		for (int i = 0; i < g.ninst; i++)
			if (g.inst[i]->registered && !g.inst[i]->dead && !instance_alive(g.inst[i])) g.inst[i]->dead = true;
	maybe_exit();
}

static void on_ctl(void)
{
	int fd;
	while ((fd = accept_one(&g.ctl, SOCK_NONBLOCK)) >= 0) {
		if (!peer_ours(fd, g.ctl_path)) continue;
		struct client *cl = xcalloc(sizeof *cl);
		g.clients = xrealloc(g.clients, (g.nclients + 1) * sizeof *g.clients);
		g.clients[g.nclients++] = cl;
		if (!watch_add(&cl->w, W_CLIENT, fd, cl)) drop_client(cl);
	}
}

/* The scaler's drain or undrain of every instance of an application. */
static void set_draining(const char *aid, bool on)
{
	int n = 0;
	for (int i = 0; i < g.ninst; i++)
		if (g.inst[i]->registered && !strcmp(g.inst[i]->reg.aid, aid)) g.inst[i]->draining = on, n++;
	logmsg("scaler of %s: %s %s (%d instance(s))", g.scaler->aid, on ? "draining" : "undraining", aid, n);
	if (!on) dispatch_held();
}

/* A scaler's line after scale: drain or undrain; false for anything else. */
static bool scaler_line(struct client *cl)
{
	char *save, *verb = strtok_r(cl->line, " \t\r", &save), *aid = strtok_r(NULL, " \t\r", &save);
	if (!verb || !aid || strtok_r(NULL, " \t\r", &save) || (strcmp(verb, "drain") && strcmp(verb, "undrain"))) {
		logmsg("scaler of %s: unknown request '%s': closing it", cl->aid, verb ? verb : "");
		return false;
	}
	set_draining(aid, !strcmp(verb, "drain"));
	return true;
}

/* The public listener for a scaler: with no instance yet the first
 * connection must be accepted and held, so the reserve, which drops
 * packets, gives way to a listener on every address (IPv6 taking IPv4
 * too, or IPv4 alone), docker -p's reading of a port without an address. */
static int listen_everywhere(void)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_address("::", g.public, &ss);
	int err = listen_public(&ss, len, 0);
	if (err == EAFNOSUPPORT) err = listen_public(&ss, inet_address("0.0.0.0", g.public, &ss), -1);
	return err;
}

/* "scale NAME CONNS": cl becomes the pool's scaler. */
static bool take_scaler(struct client *cl, const char *name, const char *conns)
{
	char *end, reply[96];
	long n = strtol(conns, &end, 10);
	if (g.scaler) {
		snprintf(reply, sizeof reply, "serving %s\n", g.scaler->aid);
		return send_all(cl->w.fd, reply, strlen(reply)), false;
	}
	if (!*conns || *end || n < 0 || n > 1000000 || strlen(name) >= sizeof cl->aid)
		return send_all(cl->w.fd, "error bad scale request\n", 24), false;
	if (!user_steering())
	{
		const char *no = "error this pool steers in the kernel; template serve needs the user-space hand-off: publish its port with APPSHOT_POOL_STEER=user\n";
		return send_all(cl->w.fd, no, strlen(no)), false;
	}
	int err = g.pub.fd < 0 ? listen_everywhere() : 0;
	if (err) {
		snprintf(reply, sizeof reply, "error cannot listen on port %d: %s\n", g.public, strerror(err));
		return send_all(cl->w.fd, reply, strlen(reply)), false;
	}
	snprintf(reply, sizeof reply, "ok %s %s\n", g.policy, g.host ? g.host : "*");
	if (!send_all(cl->w.fd, reply, strlen(reply))) return false;
	strcpy(cl->aid, name);
	cl->lifeline = cl->scaler = g.ever_lifeline = true;
	g.nlifelines++;
	g.scaler = cl;
	g.conns = (int)n;
	logmsg("scaler of template %s, at most %d connection(s) per instance%s", name, g.conns, g.conns ? "" : " (no limit)");
	tell_need(true); /* connections that came before it */
	return true;
}

/* Without its serving command the pool serves with what it has: no
 * limit, no instance left out. */
static void end_scaler(void)
{
	logmsg("scaler of %s ended: the pool goes on with its %d instance(s)", g.scaler->aid, g.ninst);
	g.scaler = NULL;
	g.conns = 0;
	for (int i = 0; i < g.ninst; i++) g.inst[i]->draining = false;
	dispatch_held();
}

/* One request line; false when the connection is to be closed. */
static bool client_line(struct client *cl)
{
	if (cl->scaler) return scaler_line(cl);
	char *save, *verb = strtok_r(cl->line, " \t\r", &save);
	char *aid = strtok_r(NULL, " \t\r", &save), *policy = strtok_r(NULL, " \t\r", &save);
	char reply[96];
	if (verb && !strcmp(verb, "status") && !aid) {
		send_status(cl->w.fd);
		return false;
	}
	if (verb && !strcmp(verb, "scale") && aid && policy && !strtok_r(NULL, " \t\r", &save)) return take_scaler(cl, aid, policy);
	if (!verb || strcmp(verb, "publish") || !policy || strtok_r(NULL, " \t\r", &save) ||
	    strlen(aid) >= sizeof cl->aid) {
		send_all(cl->w.fd, "error unknown request\n", 22);
		return false;
	}
	/* The address the public port is on: the one --publish named, or "*",
	 * the one the first instance's program binds. */
	snprintf(reply, sizeof reply, "ok %s %s\n", g.policy, g.host ? g.host : "*");
	if (!send_all(cl->w.fd, reply, strlen(reply))) return false;
	strcpy(cl->aid, aid);
	cl->lifeline = g.ever_lifeline = true;
	g.nlifelines++;
	logmsg("lifeline of %s", cl->aid);
	return true;
}

/* The complete lines read so far, each taken in turn; false when the
 * connection is to be closed (a request said so, or a line is overlong). */
static bool client_lines(struct client *cl)
{
	char *nl;
	while ((nl = memchr(cl->line, '\n', cl->len))) {
		size_t used = nl + 1 - cl->line;
		*nl = 0;
		if (!client_line(cl)) return false;
		memmove(cl->line, cl->line + used, cl->len - used);
		cl->len -= used;
		if (cl->lifeline && !cl->scaler) cl->len = 0;
	}
	return cl->len < sizeof cl->line - 1;
}

/* After publish the connection matters only by its end: input is dropped.
 * A scaler's lines are requests (scaler_line). */
static void on_client(struct client *cl)
{
	for (;;) {
		ssize_t n = read(cl->w.fd, cl->line + cl->len, sizeof cl->line - 1 - cl->len);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && errno == EAGAIN) return;
		if (n <= 0) break;
		if (cl->lifeline && !cl->scaler) continue;
		cl->len += n;
		if (!client_lines(cl)) break;
	}
	drop_client(cl);
}

/* ---- start-up ---- */

/* An IPv4 or IPv6 address text and a port as a socket address: its
 * length, or 0 when the text is neither. */
static socklen_t inet_address(const char *host, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		return sizeof *a4;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		return sizeof *a6;
	}
	return 0;
}

/* A TCP socket bound to addr with SO_REUSEADDR and SO_REUSEPORT (so that
 * the public listener can be bound beside the reserve, both ours), v6only
 * as given (-1 for the system's default), listening: or -1 with errno. */
static int listening_socket(const struct sockaddr_storage *addr, socklen_t len, int v6only, int backlog)
{
	int one = 1, fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
	    (addr->ss_family == AF_INET6 && v6only >= 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only)) ||
	    bind(fd, (const struct sockaddr *)addr, len) || listen(fd, backlog)) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

static bool is_wildcard(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET) return ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_ANY);
	return addr->ss_family != AF_INET6 || IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr);
}

/* ---- kernel steering (steer.h) ---- */

/* Our own member of the group: where connections wait, unaccepted, while
 * no instance is in it (the program picks it then). Kept SO_REUSEPORT:
 * the instances' members join its group (only sockets of our own user
 * can: the kernel checks). 0, or an errno. */
static int hold_member(int fd)
{
	int err = steer_attach(fd);
	return err ? err : steer_put(STEER_HOLD, fd);
}

/* The slots in use are [0, highest used + 1): the program takes turns
 * over them. A slot a dead member left empty is skipped by the program
 * until an instance that comes later takes it. */
static void publish_slots(void)
{
	uint32_t n = 0;
	bool used[STEER_SLOTS] = { false };
	for (int i = 0; i < g.ninst; i++)
		if (in_group(g.inst[i]) && !g.inst[i]->dead) {
			used[g.inst[i]->slot] = true;
			if (g.inst[i]->slot + 1 > n) n = g.inst[i]->slot + 1;
		}
	for (uint32_t s = 0; s < STEER_SLOTS; s++)
		if (!used[s]) steer_set_conns(s, STEER_NO_MEMBER);
	steer_set_nslots(n);
}

/* The client of a connection to the public port, as the program keys it. */
static void client_tuple(const struct inet_diag_msg *d, struct steer_tuple *t)
{
	memset(t, 0, sizeof *t);
	t->family = d->idiag_family;
	t->port = d->id.idiag_dport;
	memcpy(t->addr, d->id.idiag_dst, d->idiag_family == AF_INET ? 4 : 16);
	if (d->idiag_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)t->addr)) {
		t->family = AF_INET;
		memmove(t->addr, t->addr + 12, 4);
		memset(t->addr + 4, 0, 12);
	}
}

/* One dump of the kernel's TCP sockets of family in states (a mask of
 * 1 << TCP_*) whose local port is the public one, each given to fn: true
 * when the kernel answered whole. */
static bool diag_dump(int family, uint32_t states, void (*fn)(const struct inet_diag_msg *d, void *arg), void *arg)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req = {
		.nh = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = ++g.diag_seq },
		.r = { .sdiag_family = (uint8_t)family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = states },
	};
	union { char buf[32768]; struct nlmsghdr align; } u;
	if (g.diag < 0 || send(g.diag, &req, sizeof req, 0) != (ssize_t)sizeof req) return false;
	for (;;) {
		ssize_t n = recv(g.diag, u.buf, sizeof u.buf, 0);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) return false;
		for (struct nlmsghdr *h = &u.align; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != g.diag_seq) continue;
			if (h->nlmsg_type == NLMSG_DONE) return true;
			if (h->nlmsg_type == NLMSG_ERROR) return false;
			const struct inet_diag_msg *d = NLMSG_DATA(h);
			if (ntohs(d->id.idiag_sport) == g.public) fn(d, arg);
		}
	}
}

/* A connection to the public port still open, counted into counts by the
 * slot the program gave its client: established ones (accepted or waiting
 * in a member's queue) and, past that, only those a process still holds
 * (an inode). */
static void count_conn(const struct inet_diag_msg *d, void *counts)
{
	struct steer_tuple t;
	uint32_t slot;
	if (d->idiag_state != TCP_ESTABLISHED && d->idiag_state != TCP_SYN_RECV && !d->idiag_inode) return;
	client_tuple(d, &t);
	if (steer_tuple_slot(&t, &slot) && slot < STEER_SLOTS) ((uint64_t *)counts)[slot]++;
}

static void count_family(int family, uint64_t *counts)
{
	diag_dump(family, ~((1u << TCP_LISTEN) | (1u << TCP_TIME_WAIT) | (1u << TCP_CLOSE)), count_conn, counts);
}

/* ---- members that stop accepting ---- */

/* The public port's listening sockets, by inode, with their accept
 * queues' lengths. */
struct listeners {
	size_t n;
	struct { uint64_t ino; uint32_t queued; } v[STEER_SLOTS + 8];
};

static void note_listener(const struct inet_diag_msg *d, void *arg)
{
	struct listeners *l = arg;
	if (l->n < sizeof l->v / sizeof l->v[0]) l->v[l->n].ino = d->idiag_inode, l->v[l->n++].queued = d->idiag_rqueue;
}

/* Descriptor fdnum of process pid as a new descriptor of ours, if it is
 * the socket of inode ino: or -1. */
static int fd_of(uint32_t pid, uint32_t fdnum, uint64_t ino)
{
	struct stat st;
	int fd = -1, pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd >= 0) fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)fdnum, 0);
	if (pidfd >= 0) close(pidfd);
	if (fd >= 0 && (fstat(fd, &st) || st.st_ino != ino)) close(fd), fd = -1;
	return fd;
}

/* The socket of inode ino, held by some process other than us: first as
 * descriptor *fdnum of *pid (where it was registered), else found by a walk
 * of /proc (the registering process ended and forked workers hold it, or
 * it moved the socket to another number), and *pid, *fdnum then say where.
 * The walk reads a link per descriptor on the host: made only when the
 * first try fails, at a takeover or a put-back, never per connection.
 * A new descriptor of ours, or -1. */
static int grab_socket(uint64_t ino, uint32_t *pid, uint32_t *fdnum)
{
	char want[48], path[64], link[48];
	int fd = fd_of(*pid, *fdnum, ino);
	DIR *procs = fd < 0 ? opendir("/proc") : NULL;
	struct dirent *p, *e;
	snprintf(want, sizeof want, "socket:[%llu]", (unsigned long long)ino);
	while (procs && fd < 0 && (p = readdir(procs))) {
		char *end;
		unsigned long pn = strtoul(p->d_name, &end, 10);
		if (*end || !pn || pn == (unsigned long)getpid()) continue;
		snprintf(path, sizeof path, "/proc/%lu/fd", pn);
		DIR *fds = opendir(path);
		while (fds && fd < 0 && (e = readdir(fds))) {
			unsigned long fn = strtoul(e->d_name, &end, 10);
			if (*end || e->d_name[0] == '.') continue;
			snprintf(path, sizeof path, "/proc/%lu/fd/%lu", pn, fn);
			ssize_t n = readlink(path, link, sizeof link - 1);
			if (n <= 0 || (size_t)n != strlen(want) || memcmp(link, want, (size_t)n)) continue;
			if ((fd = fd_of((uint32_t)pn, (uint32_t)fn, ino)) >= 0) *pid = (uint32_t)pn, *fdnum = (uint32_t)fn;
		}
		if (fds) closedir(fds);
	}
	if (procs) closedir(procs);
	return fd;
}

/* Its member as a new descriptor of ours: our relay's, or the instance's
 * socket taken from whichever of its processes holds it (where it was
 * found is remembered for the next daemon: write_state). Or -1. */
static int fetch_member(struct instance *in)
{
	if (in->relayed) return fcntl(in->relay.fd, F_DUPFD_CLOEXEC, 0);
	uint32_t pid = in->reg.spid, fdnum = in->reg.fdnum;
	int fd = grab_socket(in->member_ino, &pid, &fdnum);
	if (fd >= 0 && (pid != in->reg.spid || fdnum != in->reg.fdnum)) {
		logmsg("instance of %s: its member is now descriptor %u of pid %u", in->reg.aid, fdnum, pid);
		in->reg.spid = pid;
		in->reg.fdnum = fdnum;
		write_state();
	}
	return fd;
}

/* Taken out, its slot empty: the program passes it by (its queue waits
 * for it, as a stopped server's backlog does); connections to its own
 * port still reach it. Back in once its queue is empty again. */
static void take_out(struct instance *in, bool out)
{
	int fd = out ? -1 : fetch_member(in), err = out ? 0 : fd < 0 ? ESRCH : steer_put(in->slot, fd);
	if (fd >= 0) close(fd);
	if (err) {
		if (!in->out_logged) logmsg("instance of %s (pid %u) accepts again but cannot be put back: %s", in->reg.aid, in->reg.spid, strerror(err));
		in->out_logged = true;
		return;
	}
	if (out) steer_clear(in->slot);
	steer_set_conns(in->slot, out ? STEER_NO_MEMBER : 0);
	in->out = out;
	in->out_logged = false;
	logmsg("instance of %s (pid %u) %s", in->reg.aid, in->reg.spid, out ? "is not accepting: taken out of the pool" : "accepts again: back in the pool");
}

/* Each tick: a member no longer listening has ended (its slot may already
 * be empty: see join_member); one whose queue has held connections for
 * STALE_MS with none accepted (the program's count less the queue did not
 * move) is taken out, and put back once its queue is empty. */
static void check_members(uint64_t now)
{
	struct listeners l = { 0 };
	uint32_t listen = 1u << TCP_LISTEN;
	bool whole = diag_dump(AF_INET, listen, note_listener, &l) && diag_dump(AF_INET6, listen, note_listener, &l);
	for (int i = 0; i < g.ninst; i++) {
		struct instance *in = g.inst[i];
		size_t k = 0;
		if (!in_group(in) || in->dead) continue;
		while (k < l.n && l.v[k].ino != in->member_ino) k++;
		/* A relay is ours: its channel says when the instance ends. */
		if (!whole) {
			in->dead = in->kernel && !in->out && !steer_live(in->slot);
			continue;
		}
		if (k == l.n) {
			in->dead = in->kernel;
			continue;
		}
		uint64_t accepted = steer_handed(in->slot) - l.v[k].queued;
		if (!l.v[k].queued) {
			in->stall_ms = 0;
			if (in->out) take_out(in, false);
		} else if (accepted != in->accepted || !in->stall_ms) {
			in->stall_ms = now;
		} else if (!in->out && now - in->stall_ms > STALE_MS) {
			take_out(in, true);
		}
		in->accepted = accepted;
		/* One out is looked at again soon, not at the next tick: it is put
		 * back as soon as it has taken what waited for it. */
		if (in->out) recount_in(OUT_MS);
	}
}

/* Least connections in the kernel: each member's open connections counted
 * again, for the program to choose by (steer.h). What it picked since the
 * dump began counts from the next one. */
static void kernel_recount(void)
{
	uint64_t counts[STEER_SLOTS] = { 0 };
	if (!g.kernel) return;
	count_family(AF_INET, counts);
	count_family(AF_INET6, counts);
	for (int i = 0; i < g.ninst; i++)
		if (in_group(g.inst[i]) && !g.inst[i]->dead && !g.inst[i]->out) steer_set_conns(g.inst[i]->slot, counts[g.inst[i]->slot]);
}

static int free_slot(void)
{
	for (uint32_t s = 0; s < STEER_SLOTS; s++) {
		bool used = false;
		for (int i = 0; i < g.ninst && !used; i++) used = in_group(g.inst[i]) && g.inst[i]->slot == s;
		if (!used && !steer_live(s)) return (int)s;
	}
	return -1;
}

/* Connections that waited at our holding member while no instance was
 * in the group go to the instances now: a new holding member takes the
 * slot, and the old one closes, which makes the kernel move its queue to
 * the members the program picks (SELECT_OR_MIGRATE). */
static void release_held(void)
{
	struct pollfd p = { .fd = g.pub.fd, .events = POLLIN };
	if (!g.kernel || g.pub.fd < 0 || poll(&p, 1, 0) <= 0) return;
	int fd = listening_socket(&g.pub_addr, g.pub_len, g.pub_v6only, 4096), err = fd < 0 ? errno : hold_member(fd);
	if (err) {
		logmsg("cannot renew the holding listener: %s; connections that waited stay there", strerror(err));
		if (fd >= 0) close(fd);
		return;
	}
	close(g.pub.fd);
	g.pub.fd = fd;
}

/* A member of the group for an instance, in a free slot, which takes the
 * connections to the instance's own port too, at the address its program
 * bound (steer_direct): its
 * listening socket, which the instance takes as the program's descriptor,
 * or -1 with errno. We keep no copy: its close by the instance's last process
 * empties its slot (how we learn of the end, steer_live) and moves what
 * waits in its queue to another member. */
static int join_member(struct instance *in, const struct pool_register *reg)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_storage own;
	int slot = free_slot(), fd = -1, err = EBUSY;
	if (!program_address(reg, reg->sport, &own, host)) return errno = EINVAL, -1;
	if (slot < 0 || (fd = listening_socket(&g.pub_addr, g.pub_len, g.pub_v6only, SOMAXCONN)) < 0 || (err = steer_attach(fd)) ||
	    (g.direct && (err = steer_direct_put(reg->sport, &own, fd, (uint32_t)slot))) || (err = steer_put((uint32_t)slot, fd))) {
		if (fd >= 0) err = err ? err : errno, close(fd);
		return errno = err, -1;
	}
	struct stat st;
	in->kernel = true;
	in->slot = (uint32_t)slot;
	in->handed_base = steer_handed(in->slot);
	in->member_ino = fstat(fd, &st) ? 0 : st.st_ino;
	steer_set_conns(in->slot, 0);
	publish_slots();
	release_held();
	return fd;
}

/* A channel (a static or restored program, which cannot take a member)
 * gets its turns all the same: a member of our own, the relay, takes the
 * slot, and we hand what the program picks for it down the channel
 * (dispatch_relay), so that round robin and lc stay exact over every
 * instance. false when no slot is free or the relay cannot be made: the
 * instance is then reached at its own port only. */
static bool join_relay(struct instance *in)
{
	int slot = free_slot(), fd = -1, err = EBUSY;
	struct stat st;
	if (slot < 0 || (fd = listening_socket(&g.pub_addr, g.pub_len, g.pub_v6only, SOMAXCONN)) < 0 || (err = steer_attach(fd)) ||
	    (err = steer_put((uint32_t)slot, fd)) || fstat(fd, &st) || !watch_add(&in->relay, W_RELAY, fd, in)) {
		logmsg("instance of %s: no member for its channel: %s", in->reg.aid, strerror(err ? err : errno));
		if (fd >= 0) steer_clear((uint32_t)slot), close(fd);
		return false;
	}
	in->relayed = true;
	in->slot = (uint32_t)slot;
	in->handed_base = steer_handed(in->slot);
	in->member_ino = st.st_ino;
	steer_set_conns(in->slot, 0);
	publish_slots();
	release_held();
	return true;
}

/* The relay's connections down the channel, one in flight at a time (the
 * program's ack, sent as it accepts, brings the next while it serves): the
 * rest wait in the relay's queue, where the kernel moves them to another
 * member if the instance ends (the one in the channel would be lost then,
 * with no other channel to take it: drop_orphans), and where a stopped
 * instance's backlog shows (check_members takes it out). Paused while the
 * instance may take no more. */
static void dispatch_relay(struct instance *in)
{
	uint64_t now = monotonic_ms();
	int fd;
	if (!in->relayed || in->dead || in->relay.fd < 0) return;
	while (in->unacked.n < RELAY_UNACKED && eligible(in, now)) {
		resume(&in->relay);
		if ((fd = accept_one(&in->relay, 0)) < 0) return;
		struct conn *c = new_conn(fd, false);
		if (!hand(in, c)) {
			q_push(&g.held, c, true); /* for another channel, or this one once it takes again */
			break;
		}
	}
	set_paused(&in->relay, true);
}

/* Kernel steering wherever the programs load (root, or CAP_BPF), unless
 * APPSHOT_POOL_STEER=user asks for the hand-off. Said once in the log. */
static char steer_note[1200] = "steering in user space, as APPSHOT_POOL_STEER=user asks: each connection is accepted here and handed over";

static void choose_steering(void)
{
	const char *want = getenv("APPSHOT_POOL_STEER");
	char why[512];
	if (want && !strcmp(want, "user")) return;
	if (!steer_load(g.lc, why, sizeof why)) snprintf(steer_note, sizeof steer_note, "steering in user space: the kernel steering program %s", why);
	else {
		g.kernel = true;
		size_t n = (size_t)snprintf(steer_note, sizeof steer_note, "steering in the kernel: an eBPF program picks the instance of each connection");
		if (!(g.direct = steer_direct(why, sizeof why)))
			snprintf(steer_note + n, sizeof steer_note - n, "; the instances' own ports are not served: the lookup program %s", why);
	}
}

/* A scaler needs held connections, --conns and the need events, which
 * only the user-space hand-off gives: a pool with no member yet goes back
 * to it (our holding member becomes the public listener); false when
 * members are in the group already. */
static bool user_steering(void)
{
	int zero = 0;
	for (int i = 0; i < g.ninst; i++)
		if (g.inst[i]->kernel && !g.inst[i]->dead) return false;
	if (!g.kernel) return true;
	/* Channels' relays close once no slot is in use, so that what waits
	 * in their queues moves to our holding member, the public listener. */
	for (int i = 0; i < g.ninst; i++) g.inst[i]->relayed = false;
	publish_slots();
	for (int i = 0; i < g.ninst; i++) watch_close(&g.inst[i]->relay);
	g.kernel = false;
	if (g.pub.fd >= 0) {
		steer_clear(STEER_HOLD);
		setsockopt(g.pub.fd, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof zero);
		if (!watch_add(&g.pub, W_PUBLIC, g.pub.fd, NULL)) logmsg("cannot watch the public listener");
	}
	logmsg("steering in user space from now on: a serving command needs it");
	return true;
}

/* The public listener on addr: 0, or an errno. Once it listens, the
 * reserve lets go of the port (a client that came meanwhile is reset) and
 * no one else may join the port (SO_REUSEPORT off: a later bind by another
 * program conflicts, as with any listener). */
static int listen_public(const struct sockaddr_storage *addr, socklen_t len, int v6only)
{
	int zero = 0, fd = listening_socket(addr, len, v6only, 4096), err;
	if (fd < 0) return errno;
	g.pub.fd = fd;
	memcpy(&g.pub_addr, addr, len);
	g.pub_len = len;
	g.pub_v6only = v6only;
	if (g.kernel && (err = hold_member(fd))) return close(fd), g.pub.fd = -1, err;
	if (!g.kernel && g.ep > 0 && !watch_add(&g.pub, W_PUBLIC, fd, NULL)) return close(fd), g.pub.fd = -1, EINVAL;
	if (g.reserve >= 0) close(g.reserve);
	g.reserve = -1;
	if (!g.kernel) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof zero);
	if (!is_wildcard(addr)) memcpy(&g.pub_local, addr, len);
	return 0;
}

/* The address the instance's program bound, as its channel's name carries
 * it, with port: its length (host its text), or 0. */
static socklen_t program_address(const struct pool_register *reg, int port, struct sockaddr_storage *ss, char host[INET6_ADDRSTRLEN])
{
	unsigned fam, vport;
	if (sscanf(reg->name + sizeof POOL_LISTENER_PREFIX - 1, "%u/%45[^/]/%u/", &fam, host, &vport) != 3) return 0;
	return inet_address(host, port, ss);
}

/* Whether the instance's program bound the address the public port's
 * group listens on: only then can a member stand for its listener
 * (getsockname on it answers the group's address). One bound elsewhere
 * (--publish named another) keeps its channel, whose name answers for it,
 * and takes its turns through a relay (join_relay). */
static bool at_group_address(const struct pool_register *reg)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	if (!program_address(reg, g.public, &ss, host) || ss.ss_family != g.pub_addr.ss_family) return false;
	if (ss.ss_family == AF_INET)
		return ((struct sockaddr_in *)&ss)->sin_addr.s_addr == ((struct sockaddr_in *)&g.pub_addr)->sin_addr.s_addr;
	return !memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &((struct sockaddr_in6 *)&g.pub_addr)->sin6_addr, sizeof(struct in6_addr));
}

/* The first instance's listening socket lfd gives the public listener its
 * address (and, for IPv6, whether it takes IPv4 clients too): 0, or why
 * not as an errno. */
static int listen_as(const struct pool_register *reg, int lfd)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t len, olen = sizeof(int);
	int v6only = -1, err;
	if (g.pub.fd >= 0) return 0;
	if (!(len = program_address(reg, g.public, &ss, host))) return EINVAL;
	if (ss.ss_family == AF_INET6 && lfd >= 0) getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen);
	if ((err = listen_public(&ss, len, v6only)))
		logmsg("cannot listen on %s port %d as instance of %s asks: %s", host, g.public, reg->aid, strerror(err));
	else
		logmsg("public listener on %s port %d, as instance of %s listens", host, g.public, reg->aid);
	return err;
}

/* The port, held: by the public listener at once when --publish named its
 * address, else by the reserve, a listener on every address (IPv6 taking
 * IPv4 too, or IPv4 alone where there is no IPv6) that is never accepted
 * from, until the first instance says which address to take. It listens
 * so that no program can bind the port meanwhile (a bound socket that
 * does not listen lets any SO_REUSEADDR bind in, the application's own
 * server under identity among them). */
static void hold_public(int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int err;
	g.pub.fd = g.reserve = -1;
	if (g.host) {
		if (!(len = inet_address(g.host, port, &ss))) fail(2, "%s: not an IPv4 or IPv6 address", g.host);
		if ((err = listen_public(&ss, len, -1)) == EADDRINUSE) fail(3, "port %d is in use by another program", port);
		if (err) fail(1, "listen on %s port %d: %s", g.host, port, strerror(err));
		return;
	}
	len = inet_address("::", port, &ss);
	g.reserve = listening_socket(&ss, len, 0, 1);
	if (g.reserve < 0 && errno == EAFNOSUPPORT) g.reserve = listening_socket(&ss, inet_address("0.0.0.0", port, &ss), -1, 1);
	if (g.reserve < 0 && errno == EADDRINUSE) fail(3, "port %d is in use by another program", port);
	if (g.reserve < 0) fail(1, "bind port %d: %s", port, strerror(errno));
	/* It drops every packet: no client completes a handshake with it (not
	 * even from the network, for a server that will listen on loopback);
	 * a client's SYN is sent again and finds the public listener. */
	struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = { 1, &drop };
	if (setsockopt(g.reserve, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog))
		logmsg("cannot make the reserve of port %d drop connections: %s", port, strerror(errno));
}

static int bind_unix(const char *path, int type, struct stat *st)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path) fail(1, "%s: path too long for a unix socket", path);
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) fail(1, "socket: %s", strerror(errno));
	if (unlink(path) && errno != ENOENT) fail(1, "unlink %s: %s", path, strerror(errno));
	if (bind(fd, (struct sockaddr *)&a, sizeof a)) fail(1, "bind %s: %s", path, strerror(errno));
	if (stat(path, st) || chmod(path, 0600) || listen(fd, SOMAXCONN)) fail(1, "%s: %s", path, strerror(errno));
	return fd;
}

static void make_path(char *buf, const char *home, const char *suffix)
{
	if (snprintf(buf, PATH_MAX, "%s/" POOL_DIR "/%d%s", home, g.public, suffix) >= PATH_MAX)
		fail(1, "%s: path too long", home);
}

/* Our wake-ups (a connection, an instance's ack) do not preempt the
 * process running where they land (SCHED_BATCH): under load an instance
 * sends its ack and goes on serving, and we read the acks and connections
 * that came meanwhile together when a CPU is free, instead of a switch
 * there and back for each ack. On an idle CPU we run at once, as before. */
static void batch_wakeups(void)
{
	struct sched_param none = { 0 };
	if (sched_setscheduler(0, SCHED_BATCH, &none)) logmsg("SCHED_BATCH: %s", strerror(errno));
}

/* Held connections cost a descriptor each: take all the kernel allows. */
static void raise_nofile(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r)) r.rlim_cur = r.rlim_max = 1024;
	struct rlimit want = { r.rlim_max, r.rlim_max };
	if (r.rlim_cur < r.rlim_max && setrlimit(RLIMIT_NOFILE, &want) == 0) r = want;
	g.fd_limit = r.rlim_cur > INT_MAX ? INT_MAX : (int)r.rlim_cur;
}

static void setup_events(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	struct itimerspec tick = { { 0, TICK_MS * 1000000L }, { 0, TICK_MS * 1000000L } };
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int rfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || sfd < 0 || tfd < 0 || rfd < 0 || timerfd_settime(tfd, 0, &tick, NULL))
		fail(1, "epoll/signalfd/timerfd: %s", strerror(errno));
	if ((g.pub.fd >= 0 && !g.kernel && !watch_add(&g.pub, W_PUBLIC, g.pub.fd, NULL)) || !watch_add(&g.chans, W_CHANNELS, g.chans.fd, NULL) ||
	    !watch_add(&g.ctl, W_CTL, g.ctl.fd, NULL) || !watch_add(&g.timer, W_TIMER, tfd, NULL) ||
	    !watch_add(&g.recount, W_RECOUNT, rfd, NULL) ||
	    !watch_add(&g.sig, W_SIGNAL, sfd, NULL))
		fail(1, "cannot watch descriptors");
}

/* ---- taking over from a daemon that died ---- */

/* The inode of the datagram socket bound to an abstract name, from
 * /proc/net/unix, or 0 when none is. (Sockets of other types may hold the
 * same name: the kernel keeps one namespace per type.) */
static unsigned long bound_inode(const char *name)
{
	FILE *f = fopen("/proc/net/unix", "re");
	char line[512], path[256];
	unsigned type;
	unsigned long ino, found = 0;
	while (f && !found && fgets(line, sizeof line, f))
		if (sscanf(line, "%*s %*s %*s %*s %x %*s %lu %255s", &type, &ino, path) == 3 && type == SOCK_DGRAM && path[0] == '@' &&
		    !strcmp(path + 1, name))
			found = ino;
	if (f) fclose(f);
	return found;
}

/* The instance's own listening socket went with the daemon that held it:
 * a new one on the same address and system port (the application's lease),
 * so that its programs reach it again. */
static int relisten(const struct pool_register *reg)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t len;
	if (!(len = program_address(reg, reg->sport, &ss, host))) return -1;
	int one = 1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && !setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) && !bind(fd, (struct sockaddr *)&ss, len) &&
	    !listen(fd, SOMAXCONN))
		return fd;
	logmsg("instance of %s (pid %u): cannot listen on %s port %u again: %s; its own programs cannot reach it there",
	       reg->aid, reg->spid, host, reg->sport, strerror(errno));
	if (fd >= 0) close(fd);
	return -1;
}

/* A member of a kernel-steered pool, from a state line "member AID VPORT
 * SPORT SPID INODE FD": taken from its process (pidfd_getfd: our own
 * user's, or root) as descriptor FD if that is still the member (its
 * inode), put in a slot of our program, and its own port steered to it
 * again; then our copy closes, as at a registration. Our program replaces
 * the dead daemon's on the group when our holding member joins it, after
 * every member found is in place (recover). A member not found this way
 * (its process ended, a forked worker holds it) is not served any more. */
static void recover_member(const char *line)
{
	struct pool_register reg = { .magic = POOL_MAGIC, .flags = POOL_REG_MEMBER };
	unsigned long long ino;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss, olen = sizeof(int);
	int v6only = -1, fd = -1;
	if (sscanf(line, "member %63s %u %u %u %llu %u", reg.aid, &reg.vport, &reg.sport, &reg.spid, &ino, &reg.fdnum) != 6) return;
	if (!g.kernel) {
		logmsg("instance of %s (pid %u) was steered in the kernel; this daemon steers in user space and cannot serve it", reg.aid, reg.spid);
		return;
	}
	uint32_t spid = reg.spid;
	if ((fd = grab_socket(ino, &reg.spid, &reg.fdnum)) < 0 || getsockname(fd, (struct sockaddr *)&ss, &len)) {
		logmsg("instance of %s (pid %u): no process holds its member any more; not served", reg.aid, spid);
		if (fd >= 0) close(fd);
		return;
	}
	if (spid != reg.spid) logmsg("instance of %s: its member is held by pid %u now (descriptor %u)", reg.aid, reg.spid, reg.fdnum);
	if (ss.ss_family == AF_INET6) getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen);
	if (!g.pub_len) memcpy(&g.pub_addr, &ss, len), g.pub_len = len, g.pub_v6only = v6only;
	struct instance *in = new_instance();
	int slot = free_slot(), err = slot < 0 ? EBUSY : 0;
	in->reg = reg;
	in->registered = true;
	if (!err && g.direct) err = steer_direct_put((uint16_t)reg.sport, &ss, fd, (uint32_t)slot); /* its address: the member's */
	if (!err) err = steer_put((uint32_t)slot, fd);
	if (err) {
		logmsg("instance of %s (pid %u): cannot steer to its member: %s", reg.aid, reg.spid, strerror(err));
		in->dead = true;
	} else {
		in->kernel = true;
		in->slot = (uint32_t)slot;
		in->member_ino = ino;
		steer_set_conns(in->slot, 0);
		publish_slots();
		logmsg("instance of %s taken over: port %u, pid %u, member in slot %u", reg.aid, reg.vport, reg.spid, in->slot);
	}
	close(fd);
}

/* One line of the state file: the instance is served again if its socket
 * still holds its name. Connected first, then checked by inode, so that a
 * socket someone bound to the name after the instance ended gets nothing. */
static void recover_instance(char *line)
{
	if (!strncmp(line, "member\t", 7)) {
		recover_member(line);
		return;
	}
	struct pool_register reg = { .magic = POOL_MAGIC };
	unsigned long long ino;
	char name[POOL_NAME_MAX + 1], aid[sizeof reg.aid];
	if (sscanf(line, "%107s %63s %u %u %u %llu", name, aid, &reg.vport, &reg.sport, &reg.spid, &ino) != 6) return;
	strcpy(reg.name, name);
	strcpy(reg.aid, aid);
	reg.ino = ino;
	if (!name_valid(&reg)) return;
	int fd = connect_instance(reg.name);
	if (fd >= 0 && bound_inode(reg.name) != reg.ino) {
		logmsg("instance of %s (pid %u): its name is held by another socket now; not sending to it", reg.aid, reg.spid);
		close(fd);
		return;
	}
	if (fd < 0) {
		logmsg("instance of %s (pid %u) ended while no daemon ran", reg.aid, reg.spid);
		return;
	}
	struct instance *in = new_instance();
	in->reg = reg;
	if (!watch_instance(in, fd)) {
		in->dead = true;
		return;
	}
	int lfd = relisten(&reg);
	if (!listen_as(&reg, lfd) && g.kernel) join_relay(in);
	if (lfd >= 0 && !watch_add(&in->lis, W_LISTENER, lfd, in)) watch_close(&in->lis);
	logmsg("instance of %s taken over: port %u on %u, pid %u%s", reg.aid, reg.vport, reg.sport, reg.spid,
	       in->relayed ? ", through the daemon's member" : "");
}

static void recover(void)
{
	int fd = open(g.state_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	char line[512];
	if (!f) {
		if (fd >= 0) close(fd);
		return;
	}
	logmsg("taking over the instances of %s", g.state_path);
	while (fgets(line, sizeof line, f)) recover_instance(line);
	fclose(f);
	/* Members taken over: our holding member joins their group, which
	 * puts our program in place of the dead daemon's. */
	if (g.kernel && g.pub_len && g.pub.fd < 0) {
		int err = listen_public(&g.pub_addr, g.pub_len, g.pub_v6only);
		if (err) logmsg("cannot steer the members taken over: %s", strerror(err));
	}
	reap();
	write_state();
}

static void daemonize(const char *log)
{
	if (write(STDOUT_FILENO, "ready\n", 6) != 6) fail(1, "write: %s", strerror(errno));
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (null < 0 || lfd < 0) fail(1, "%s: %s", null < 0 ? "/dev/null" : log, strerror(errno));
	dup2(null, STDOUT_FILENO);
	dup2(lfd, STDERR_FILENO);
	close(null);
	close(lfd);
	setsid();
	g.detached = true;
}

int main(int argc, char **argv)
{
	struct stat st;
	char *end, dir[PATH_MAX], log[PATH_MAX];
	if (argc != 4 && argc != 5) fail(2, "usage: appshot-pool HOME PUBLIC POLICY [HOST]");
	g.host = argc == 5 ? argv[4] : NULL;
	if (stat(argv[1], &st) || !S_ISDIR(st.st_mode)) fail(2, "%s: not a directory", argv[1]);
	long port = strtol(argv[2], &end, 10);
	if (!*argv[2] || *end || port < 1 || port > 65535) fail(2, "%s: not a TCP port", argv[2]);
	if (strcmp(argv[3], "rr") && strcmp(argv[3], "lc")) fail(2, "%s: the policy is rr or lc", argv[3]);
	g.public = (int)port;
	g.policy = argv[3];
	g.lc = !strcmp(argv[3], "lc");
	g.start_ms = g.refresh_ms = monotonic_ms();
	umask(077);
	raise_nofile();
	batch_wakeups();
	choose_steering(); /* before the port is held: a steered one is held by a member */
	open_diag();

	g.uid = geteuid();
	hold_public(g.public);
	make_path(g.sock_path, argv[1], ".sock");
	make_path(g.ctl_path, argv[1], ".ctl");
	make_path(g.state_path, argv[1], ".state");
	make_path(log, argv[1], ".log");
	snprintf(dir, sizeof dir, "%s/" POOL_DIR, argv[1]); /* fits: the paths above did */
	if (mkdir(dir, 0700) && errno != EEXIST) fail(1, "mkdir %s: %s", dir, strerror(errno));
	g.chans.fd = bind_unix(g.sock_path, SOCK_SEQPACKET, &g.sock_st);
	g.ctl.fd = bind_unix(g.ctl_path, SOCK_STREAM, &g.ctl_st);
	setup_events();
	daemonize(log);
	recover(); /* logged; clients that come meanwhile wait in the backlogs */
	logmsg("started, policy %s, %d instance(s) taken over; %s", g.policy, g.ninst, steer_note);

	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(g.ep, evs, 64, -1);
		if (n < 0 && errno != EINTR) logmsg("epoll_wait: %s", strerror(errno)), clean_exit("epoll failed");
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;
			switch (w->kind) {
			case W_PUBLIC: on_public(); break;
			case W_CHANNELS: on_channels(); break;
			case W_CTL: on_ctl(); break;
			case W_TIMER: on_tick(); break;
			case W_SIGNAL: clean_exit("signal"); break;
			case W_CHAN: on_channel(w->owner, evs[i].events); break;
			case W_LISTENER: on_listener(w->owner); break;
			case W_CLIENT: on_client(w->owner); break;
			case W_RECOUNT: on_recount(); break;
			case W_RELAY: dispatch_relay(w->owner); break;
			}
		}
		reap();
	}
}
