/* Ports for a program the shim does not reach (notify.h): the calls that
 * pass or give back a port, made from the supervisor on the program's own
 * socket (a copy of its descriptor, pidfd_getfd: one socket, two numbers),
 * with the same policy and the same rows as the shim's (core/portpolicy.h).
 *
 * What blocks stays the program's own call, so it wakes and is interrupted
 * by signals as natively: accept on a blocking socket is answered
 * "continue" (the kernel's accept in the program, whose peer address is
 * then the kernel's: translated only for a peer bound to one of the
 * application's own ports, a rare client). accept on a non-blocking socket
 * (Go's, any epoll server's) is made here and the connection installed in
 * the program (SECCOMP_IOCTL_NOTIF_ADDFD). A translated connect on a
 * blocking socket is made by a worker thread, so the serving thread never
 * waits; one that needs no translation is the program's own.
 *
 * In an application that publishes a port, listen on a published virtual
 * port hands the listening socket to the port's pool daemon and puts the
 * channel in its place in the program (SECCOMP_ADDFD_FLAG_SETFD), as the
 * shim's listen does (core/poolreg.h); accept on the channel takes the
 * next connection the daemon hands over, and getsockname gives the
 * address the program bound.
 *
 * sendto with an address (a UDP datagram to one of the application's
 * ports) is translated like connect; the source a recvfrom or recvmsg
 * gives back is not (see do_sendto). */
#define _GNU_SOURCE
#include "notify_int.h"
#include "../core/portpolicy.h"
#include "../core/poolreg.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SECCOMP_ADDFD_FLAG_SETFD
#define SECCOMP_ADDFD_FLAG_SETFD (1UL << 0)
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif

/* TCP or UDP over IP: the protocol whose ports are ours; else 0. */
static uint32_t sock_proto(int s)
{
	int dom = 0, type = 0, proto = 0;
	socklen_t l = sizeof dom;
	if (getsockopt(s, SOL_SOCKET, SO_DOMAIN, &dom, &l) || (dom != AF_INET && dom != AF_INET6)) return 0;
	l = sizeof type;
	if (getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &l)) return 0;
	l = sizeof proto;
	if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &proto, &l)) return 0;
	if (type == SOCK_STREAM && proto == IPPROTO_TCP) return PORT_PROTO_TCP;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP) return PORT_PROTO_UDP;
	return 0;
}

/* The application's system port for (proto, vport): 0 and *sport, or -1. */
static int to_system(uint32_t proto, uint16_t vport, uint16_t *sport)
{
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	struct fwd_val row;
	int found = -1;
	if (!t) return -1;
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (tabledb_fwd(t, txn, RT_PORT, port_id(proto, vport), &row) == 0) *sport = port_of(row.srid), found = 0;
		mdb_txn_abort(txn);
	}
	notify_tables_unlock();
	return found;
}

/* A connection the pool handed over has the public port as its own: the
 * virtual port published there (core/portpolicy.h), checked against the
 * tables, as the shim's getsockname gives it. */
static int published_vport(uint16_t sport, uint16_t *vport)
{
	static struct port_published published[32];
	static int n = -1;
	if (n < 0) n = port_published_parse(getenv("APPSHOT_PUBLISH"), published, 32);
	for (int i = 0; i < n; i++) {
		if (published[i].pub != sport || published[i].pub == published[i].vport) continue;
		struct tabledb *t = notify_tables_lock();
		MDB_txn *txn;
		struct fwd_val row;
		int ok = 0;
		if (!t) return 0;
		if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
			ok = tabledb_fwd(t, txn, RT_PUBLISH, port_id(PORT_PROTO_TCP, published[i].vport), &row) == 0 && port_of(row.srid) == sport;
			mdb_txn_abort(txn);
		}
		notify_tables_unlock();
		if (ok) return *vport = published[i].vport, 1;
	}
	return 0;
}

/* An address the kernel gave back, its port made virtual when it is one of
 * the application's remapped ports (a socket's own address is local by
 * definition: own), or, for a socket's own address, the public port of a
 * connection the pool handed over. 1 when it changed. */
static int to_virtual(int s, struct sockaddr *sa, socklen_t len, int own)
{
	uint16_t sport, vport;
	uint32_t proto, vrid = 0;
	if (!port_in_addr(sa, len, &sport)) return 0;
	if (own && (notify_what & NOTIFY_LISTEN) && published_vport(sport, &vport) && sock_proto(s) == PORT_PROTO_TCP) {
		port_set_in_addr(sa, vport);
		return 1;
	}
	if (sport < notify_range_lo || sport > notify_range_hi || !(proto = sock_proto(s))) return 0;
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	int mine = 0;
	if (!t) return 0;
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		mine = tabledb_rev(t, txn, RT_PORT, port_id(proto, sport), &vrid) == REV_MINE;
		mdb_txn_abort(txn);
	}
	notify_tables_unlock();
	if (!mine || port_of(vrid) == sport || !(own || port_addr_is_local(sa))) return 0;
	port_set_in_addr(sa, port_of(vrid));
	return 1;
}

/* The caller's address argument (addr, len): 0, or -1 to let the kernel
 * judge it (a bad pointer or length, not an IP address, port 0). */
static int read_inet(struct call *c, __u64 addr, __u64 len, struct sockaddr_storage *ss, uint16_t *vport)
{
	if (len < sizeof(sa_family_t) || len > sizeof *ss || notify_read(c, addr, ss, (size_t)len)) return -1;
	return port_in_addr((struct sockaddr *)ss, (socklen_t)len, vport) && *vport ? 0 : -1;
}

/* Whether s is a pool channel (core/poolreg.h): 1 and the listening
 * address the program bound, virtual port included. */
static int channel_address(int s, struct sockaddr_storage *out, socklen_t *outlen)
{
	struct sockaddr_un un;
	socklen_t len = sizeof un;
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	return getsockname(s, (struct sockaddr *)&un, &len) == 0 && un.sun_family == AF_UNIX && len > off && un.sun_path[0] == 0 &&
	       pool_name_address(un.sun_path + 1, len - off, out, outlen);
}

/* --- bind ---------------------------------------------------------------- */

static int bind_first(struct call *c, struct port_bind_plain *b, uint32_t proto, uint16_t vport)
{
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	struct fwd_val row;
	uint16_t sport;
	const char *pname = proto == PORT_PROTO_TCP ? "tcp" : "udp";
	if (!t) return ENOBUFS;
	if (tabledb_write_lock(t)) {
		notify_tables_unlock();
		return ENOBUFS;
	}
	int rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(t->env, 0);
		rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	}
	int err = rc ? ENOBUFS : 0;
	if (!rc && tabledb_fwd(t, txn, RT_PORT, port_id(proto, vport), &row) == 0) {
		mdb_txn_abort(txn); /* another process of the application was first */
		err = port_bind_plain(b, port_of(row.srid));
	} else if (!rc) {
		err = port_bind_first(t, txn, proto, vport, !(t->app_flags & APP_FLAG_NO_IDENTITY), notify_range_lo, notify_range_hi,
				      (uint32_t)c->proc->tgid, port_bind_plain, b, &sport);
		if (err) mdb_txn_abort(txn);
		else if ((rc = mdb_txn_commit(txn)) && rc != MDB_EMPTY_TXN) err = -rc;
	}
	tabledb_write_unlock(t);
	notify_tables_unlock();
	if (err == EADDRINUSE && rc == 0)
		notify_warn(c, "no free system port for virtual port %u/%s of application '%s': every port of the range %u-%u is taken; end applications that hold ports there, or give this one a wider --port-range",
			    vport, pname, t->aid, notify_range_lo, notify_range_hi);
	if (err < 0) {
		notify_warn(c, "cannot record port %u/%s in %s: %s", vport, pname, t->path, mdb_strerror(-err));
		err = ENOBUFS;
	}
	return err;
}

static void do_bind(struct call *c)
{
	const __u64 *a = c->req->data.args;
	struct sockaddr_storage ss;
	uint16_t vport, sport;
	uint32_t proto;
	int s;
	if (read_inet(c, a[1], a[2], &ss, &vport) || (s = notify_getfd(c, (int)a[0])) < 0) return notify_continue(c);
	if (!(proto = sock_proto(s))) {
		close(s);
		return notify_continue(c);
	}
	struct port_bind_plain b = { s, &ss, (socklen_t)a[2] };
	int err;
	if (port_bind_refused(c->req->pid, vport)) err = EACCES;
	else if (to_system(proto, vport, &sport) == 0) err = port_bind_plain(&b, sport);
	else err = bind_first(c, &b, proto, vport);
	close(s);
	notify_answer(c, 0, err);
}

/* --- connect ------------------------------------------------------------- */

/* A connect or sendto that waits: made in a thread (notify_answer_later). */
struct pending {
	int s, flags;
	struct sockaddr_storage ss;
	socklen_t alen;
	size_t len;
	char data[]; /* sendto's bytes */
};

static void pending_done(void *arg)
{
	struct pending *p = arg;
	close(p->s);
	free(p);
}

static int connect_run(struct call *c, void *arg, long *val)
{
	struct pending *p = arg;
	(void)c, (void)val;
	return connect(p->s, (struct sockaddr *)&p->ss, p->alen) ? errno : 0;
}

static void do_connect(struct call *c)
{
	const __u64 *a = c->req->data.args;
	struct sockaddr_storage ss;
	uint16_t vport, sport;
	uint32_t proto;
	int s;
	if (read_inet(c, a[1], a[2], &ss, &vport) || (s = notify_getfd(c, (int)a[0])) < 0) return notify_continue(c);
	if (!(proto = sock_proto(s)) || to_system(proto, vport, &sport) || sport == vport || !port_addr_is_local((struct sockaddr *)&ss)) {
		close(s);
		return notify_continue(c); /* not one of the application's remapped ports: as it is */
	}
	port_set_in_addr((struct sockaddr *)&ss, sport);
	if (fcntl(s, F_GETFL) & O_NONBLOCK) {
		int r = connect(s, (struct sockaddr *)&ss, (socklen_t)a[2]);
		int err = r ? errno : 0;
		close(s);
		return notify_answer(c, 0, err);
	}
	struct pending *p = malloc(sizeof *p);
	if (p) *p = (struct pending){ .s = s, .ss = ss, .alen = (socklen_t)a[2] };
	if (!p || notify_answer_later(c, connect_run, pending_done, p)) {
		free(p);
		close(s);
		return notify_answer(c, 0, ENOBUFS);
	}
}

/* --- sendto with an address ---------------------------------------------- */

static int sendto_run(struct call *c, void *arg, long *val)
{
	struct pending *p = arg;
	(void)c;
	ssize_t n = sendto(p->s, p->data, p->len, p->flags, (struct sockaddr *)&p->ss, p->alen);
	if (n < 0) return errno;
	*val = n;
	return 0;
}

/* A datagram to one of the application's remapped ports on this host: sent
 * here, its bytes copied from the caller, to the system port. Anything else
 * (TCP, whose address sendto ignores once connected; another port) is the
 * program's own call. One that would block waits in a worker thread. */
static void do_sendto(struct call *c)
{
	const __u64 *a = c->req->data.args;
	struct sockaddr_storage ss;
	uint16_t vport, sport;
	int s;
	if (read_inet(c, a[4], a[5], &ss, &vport) || (s = notify_getfd(c, (int)a[0])) < 0) return notify_continue(c);
	if (sock_proto(s) != PORT_PROTO_UDP || to_system(PORT_PROTO_UDP, vport, &sport) || sport == vport ||
	    !port_addr_is_local((struct sockaddr *)&ss) || a[2] > 65536) {
		close(s);
		return notify_continue(c);
	}
	port_set_in_addr((struct sockaddr *)&ss, sport);
	struct pending *p = malloc(sizeof *p + (size_t)a[2]);
	if (!p || (a[2] && notify_read(c, a[1], p->data, (size_t)a[2]))) {
		free(p);
		close(s);
		return notify_answer(c, 0, p ? EFAULT : ENOMEM);
	}
	p->s = s, p->flags = (int)a[3], p->ss = ss, p->alen = (socklen_t)a[5], p->len = (size_t)a[2];
	ssize_t n = sendto(s, p->data, p->len, p->flags | MSG_DONTWAIT, (struct sockaddr *)&ss, p->alen);
	int err = n < 0 ? errno : 0;
	int waits = (err == EAGAIN || err == EWOULDBLOCK) && !(p->flags & MSG_DONTWAIT) && !(fcntl(s, F_GETFL) & O_NONBLOCK);
	if (waits && notify_answer_later(c, sendto_run, pending_done, p) == 0) return;
	pending_done(p);
	notify_answer(c, n < 0 ? 0 : n, waits ? ENOMEM : err);
}

/* --- addresses given back ------------------------------------------------ */

/* Writes a translated address of flen bytes to the caller's addr (cap
 * bytes of room, truncated as the kernel truncates) and its full length
 * to *lenp: 0, or -1 (EFAULT). */
static int give_address(struct call *c, __u64 addr, __u64 lenp, socklen_t cap, const struct sockaddr_storage *full, socklen_t flen)
{
	return notify_write2(c, addr, full, cap < flen ? cap : flen, lenp, &flen, sizeof flen);
}

/* getsockname and getpeername: the kernel's answer, translated; "continue"
 * when there is nothing to translate (the kernel writes it itself). */
static void do_name(struct call *c, int own)
{
	const __u64 *a = c->req->data.args;
	socklen_t cap;
	struct sockaddr_storage full;
	socklen_t flen = sizeof full;
	int s;
	if (!a[1] || notify_read(c, a[2], &cap, sizeof cap) || (s = notify_getfd(c, (int)a[0])) < 0) return notify_continue(c);
	int r = own ? getsockname(s, (struct sockaddr *)&full, &flen) : getpeername(s, (struct sockaddr *)&full, &flen);
	int changed = r == 0 && to_virtual(s, (struct sockaddr *)&full, flen, own);
	if (own && r == 0 && full.ss_family == AF_UNIX && (notify_what & NOTIFY_LISTEN)) changed = channel_address(s, &full, &flen);
	close(s);
	if (!changed) return notify_continue(c);
	notify_answer(c, 0, give_address(c, a[1], a[2], cap, &full, flen) ? EFAULT : 0);
}

/* --- a published port's channel ------------------------------------------ */

static void warn_nowhere(const char *msg) { (void)msg; } /* a stranger's datagram: dropped */

/* The connection conn, taken from a channel for the call whose id and
 * pid req holds: its peer written to the caller (if it asked), then
 * installed and answered in one step. */
static void give_connection(const struct call *c, int conn, int flags)
{
	const __u64 *a = c->req->data.args;
	socklen_t cap;
	if (a[1]) {
		struct sockaddr_storage full;
		socklen_t flen = sizeof full;
		if (notify_read(c, a[2], &cap, sizeof cap) || getpeername(conn, (struct sockaddr *)&full, &flen) ||
		    (to_virtual(conn, (struct sockaddr *)&full, flen, 0), give_address((struct call *)c, a[1], a[2], cap, &full, flen))) {
			close(conn);
			return notify_answer(c, 0, EFAULT);
		}
	}
	struct seccomp_notif_addfd add = { .id = c->req->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (uint32_t)conn,
					   .newfd_flags = flags & SOCK_CLOEXEC ? O_CLOEXEC : 0 };
	if (ioctl(c->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0 && errno != EINPROGRESS) notify_answer(c, 0, errno == EBADF ? EMFILE : errno);
	close(conn);
}

static int accept_run(struct call *c, void *arg, long *val)
{
	struct pending *p = arg;
	(void)val;
	int conn = pool_channel_accept(p->s, SOCK_CLOEXEC | (p->flags & SOCK_NONBLOCK), warn_nowhere);
	if (conn < 0) return errno;
	give_connection(c, conn, p->flags);
	return NOTIFY_ANSWERED;
}

/* accept on a channel: the next connection the pool daemon hands over. A
 * blocking channel with nothing waiting is waited on by a worker thread. */
static void accept_channel(struct call *c, int s, int flags)
{
	struct pollfd pf = { s, POLLIN, 0 };
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		close(s);
		return notify_answer(c, 0, EINVAL);
	}
	if ((fcntl(s, F_GETFL) & O_NONBLOCK) || poll(&pf, 1, 0) == 1) {
		int conn = pool_channel_accept(s, SOCK_CLOEXEC | (flags & SOCK_NONBLOCK), warn_nowhere);
		close(s);
		if (conn < 0) return notify_answer(c, 0, errno);
		return give_connection(c, conn, flags);
	}
	struct pending *p = malloc(sizeof *p);
	if (p) *p = (struct pending){ .s = s, .flags = flags };
	if (!p || notify_answer_later(c, accept_run, pending_done, p)) {
		free(p);
		close(s);
		return notify_answer(c, 0, ENOMEM);
	}
}

/* Whether the socket's own address is a published virtual port of the
 * application's: its vport and public port. */
static int published(int s, const struct sockaddr_storage *ss, socklen_t len, uint16_t *vport, uint16_t *pub)
{
	uint16_t sport;
	uint32_t vrid = 0, psrid = 0;
	struct fwd_val row;
	if (sock_proto(s) != PORT_PROTO_TCP || !port_in_addr((const struct sockaddr *)ss, len, &sport)) return 0;
	struct tabledb *t = notify_tables_lock();
	MDB_txn *txn;
	int found = 0;
	if (!t) return 0;
	if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) == 0) {
		found = tabledb_rev(t, txn, RT_PORT, port_id(PORT_PROTO_TCP, sport), &vrid) == REV_MINE &&
			tabledb_fwd(t, txn, RT_PUBLISH, port_id(PORT_PROTO_TCP, port_of(vrid)), &row) == 0;
		psrid = row.srid;
		mdb_txn_abort(txn);
	}
	notify_tables_unlock();
	if (found) *vport = port_of(vrid), *pub = port_of(psrid);
	return found;
}

/* Whether the caller's descriptor fd is close-on-exec (its fdinfo). */
static int cloexec_of(const struct call *c, int fd)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)c->proc->tgid, fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
	if (f >= 0) close(f);
	if (n <= 0) return 0;
	buf[n] = 0;
	char *flags = strstr(buf, "flags:");
	return flags && (strtoul(flags + 6, NULL, 8) & O_CLOEXEC);
}

/* listen: the program's own call, made on its socket here; on a published
 * virtual port the socket then goes to the pool, a channel in its place. */
static void do_listen(struct call *c)
{
	const __u64 *a = c->req->data.args;
	int fd = (int)a[0], s = notify_getfd(c, fd);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	uint16_t vport, pub;
	if (s < 0) return notify_continue(c);
	if (listen(s, (int)a[1])) {
		int err = errno;
		close(s);
		return notify_answer(c, 0, err);
	}
	if (getsockname(s, (struct sockaddr *)&ss, &len) == 0 && published(s, &ss, len, &vport, &pub)) {
		char why[512];
		struct tabledb *t = notify_tables_lock();
		char aid[sizeof t->aid] = "";
		if (t) snprintf(aid, sizeof aid, "%s", t->aid), notify_tables_unlock();
		uint16_t sport = 0;
		port_in_addr((struct sockaddr *)&ss, len, &sport);
		/* Read before the daemon has the socket: it makes its copy non-blocking. */
		int flflags = fcntl(s, F_GETFL);
		int ch = pool_channel_join(getenv("APPSHOT_HOME"), pub, aid, (uint32_t)c->proc->tgid, s, (struct sockaddr *)&ss, vport, sport, why, sizeof why);
		if (ch < 0) {
			notify_warn(c, "cannot join the pool of published port %u (%s); virtual port %u is reachable from inside the application only", pub, why, vport);
		} else {
			if (flflags >= 0 && (flflags & O_NONBLOCK)) fcntl(ch, F_SETFL, O_NONBLOCK);
			struct seccomp_notif_addfd add = { .id = c->req->id, .flags = SECCOMP_ADDFD_FLAG_SETFD, .srcfd = (uint32_t)ch,
							   .newfd = (uint32_t)fd, .newfd_flags = cloexec_of(c, fd) ? O_CLOEXEC : 0 };
			if (ioctl(c->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0)
				notify_warn(c, "cannot put the channel of published port %u in place: %s", pub, strerror(errno));
			close(ch);
		}
	}
	close(s);
	notify_answer(c, 0, 0);
}

static void do_accept(struct call *c, int flags)
{
	const __u64 *a = c->req->data.args;
	socklen_t cap;
	int s;
	if ((notify_what & NOTIFY_LISTEN) && (s = notify_getfd(c, (int)a[0])) >= 0) {
		struct sockaddr_storage lis;
		socklen_t llen;
		if (channel_address(s, &lis, &llen)) return accept_channel(c, s, flags);
		close(s);
	}
	if (!a[1] || (s = notify_getfd(c, (int)a[0])) < 0) return notify_continue(c);
	if (!(fcntl(s, F_GETFL) & O_NONBLOCK) || notify_read(c, a[2], &cap, sizeof cap)) {
		close(s);
		return notify_continue(c); /* blocking: the program's own accept */
	}
	struct sockaddr_storage full;
	socklen_t flen = sizeof full;
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		close(s);
		return notify_answer(c, 0, EINVAL);
	}
	int conn = accept4(s, (struct sockaddr *)&full, &flen, SOCK_CLOEXEC | (flags & SOCK_NONBLOCK));
	int err = conn < 0 ? errno : 0;
	if (conn >= 0) {
		to_virtual(s, (struct sockaddr *)&full, flen, 0);
		if (give_address(c, a[1], a[2], cap, &full, flen)) err = EFAULT; /* the connection is lost, as natively */
	}
	close(s);
	if (err) {
		if (conn >= 0) close(conn);
		return notify_answer(c, 0, err);
	}
	/* Installs it and answers with its number, in one step. */
	struct seccomp_notif_addfd add = { .id = c->req->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (uint32_t)conn,
					   .newfd_flags = flags & SOCK_CLOEXEC ? O_CLOEXEC : 0 };
	if (ioctl(c->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0 && errno != EINPROGRESS) notify_answer(c, 0, errno == EBADF ? EMFILE : errno);
	close(conn);
}

int port_call(struct call *c)
{
	switch (c->req->data.nr) {
	case SYS_bind: do_bind(c); return 1;
	case SYS_connect: do_connect(c); return 1;
	case SYS_getsockname: do_name(c, 1); return 1;
	case SYS_getpeername: do_name(c, 0); return 1;
	case SYS_listen: do_listen(c); return 1;
	case SYS_sendto: do_sendto(c); return 1;
	case SYS_accept: do_accept(c, 0); return 1;
	case SYS_accept4: do_accept(c, (int)c->req->data.args[3]); return 1;
	}
	return 0;
}
