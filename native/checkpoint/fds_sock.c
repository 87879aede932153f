/*
 * Sockets (fds_int.h). The dumper takes a copy of each socket (pidfd_getfd)
 * and asks it: its domain, type, addresses, whether it listens, and (Unix)
 * its peer by inode through sock_diag.
 *
 * - Unix socket pairs inside the application (socketpair, or a connection
 *   both of whose ends the application holds): made again with socketpair,
 *   each end's unread bytes (stream) or messages (datagram, seqpacket)
 *   written back into it from the other end. They are read with MSG_PEEK
 *   at a peek offset (SO_PEEK_OFF), which takes nothing; a queue that
 *   carries descriptors (SCM_RIGHTS) is refused. A Unix socket whose peer
 *   is outside: at 0-2 the restorer's own descriptor ("inherit"), elsewhere
 *   a socket whose peer has closed (its bytes, then end of file).
 * - TCP and UDP sockets with a port: bound again at the same *virtual*
 *   port; in an application with tables, through the same policy as the
 *   shim's bind (the port's row if the application has one, else identity
 *   first, else the first free port of the range, recorded in the tables).
 *   A TCP listener listens again (connections not yet accepted are lost:
 *   their clients see a reset). UDP datagrams queued are lost.
 * - A TCP connection to a peer outside the application: a TCP socket
 *   whose peer reset the connection (made on loopback: a connection
 *   accepted and closed with SO_LINGER 0), so the program's next read
 *   fails with ECONNRESET, as when the peer's host restarts.
 * - A TCP connection both ends of which the application holds: a new
 *   loopback connection, each end's unread bytes written back into it.
 *
 * - A listening Unix socket: listening again at its name (a socket file a
 *   program no longer listens on is replaced; not one a program still
 *   listens on). Connections it had not accepted are lost.
 *
 * - A published port's channel (core/pool.h: the datagram socket bound to
 *   an abstract name that the shim put at the number of a program's
 *   listening socket when it handed that socket to the pool daemon): a TCP
 *   listener at the same virtual port, handed to the pool of the port the
 *   restored application publishes, and a new channel in its place; a
 *   plain listener when it publishes none. Connections the daemon had
 *   handed over and the program had not accepted go back to the daemon
 *   when the old channel goes, which gives them to another instance.
 *
 * Anything else (netlink, packet, a named Unix socket that is not
 * connected, ...) is refused.
 */
#define _GNU_SOURCE
#include "../core/portpolicy.h"
#include "fds_int.h"
#include "../core/tabledb.h"
#include "../core/poolreg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* What fds_capture keeps of each socket to pair them once all are seen. */
struct fds_sock {
	int ofd;       /* index into ofds */
	int family, type;
	ino_t peer;    /* Unix: the peer's inode, 0 for none */
	struct sockaddr_storage local, remote;
	socklen_t llen, rlen;
	int outq; /* TCP: bytes sent and not yet acknowledged */
};

static int refuse(struct fds_proc *p, int fd, const char *what, char *err, size_t errlen)
{
	fds_err(err, errlen, "process %u (%s): descriptor %d is %s, which a snapshot cannot capture; close it before the snapshot, or use --ipc-only",
		p->vpid, p->comm, fd, what);
	return -1;
}

/* --- Unix sockets --------------------------------------------------------- */

/* The peer inode of Unix socket ino, its name (sun_path's bytes, *named
 * long; an abstract one starts with a NUL) and whether it listens, from
 * sock_diag: 0, or -1. */
static int unix_diag(ino_t ino, ino_t *peer, char name[sizeof(((struct sockaddr_un *)0)->sun_path)], int *named, int *listening)
{
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0) return -1;
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req r;
	} req = {
		.nlh = { .nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST },
		.r = { .sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (uint32_t)ino,
		       .udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME, .udiag_cookie = { ~0u, ~0u } },
	};
	char buf[8192];
	ssize_t n = -1;
	if (send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req) n = recv(nl, buf, sizeof buf, 0);
	close(nl);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (n < (ssize_t)sizeof *h || !NLMSG_OK(h, (size_t)n) || h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -1;
	struct unix_diag_msg *m = NLMSG_DATA(h);
	*peer = 0;
	*named = 0;
	*listening = m->udiag_state == 10; /* TCP_LISTEN */
	int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
	for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
		if (a->rta_type == UNIX_DIAG_PEER) *peer = *(uint32_t *)RTA_DATA(a);
		if (a->rta_type == UNIX_DIAG_NAME) {
			size_t len = RTA_PAYLOAD(a) < sizeof(((struct sockaddr_un *)0)->sun_path) ? RTA_PAYLOAD(a) : sizeof(((struct sockaddr_un *)0)->sun_path);
			memcpy(name, RTA_DATA(a), len);
			*named = (int)len;
		}
	}
	return 0;
}

/* The unread bytes (stream) or messages (else) of sfd's receive queue into
 * o's JSON, taken with MSG_PEEK at a moving peek offset: the queue stays. */
static int peek_queue(int sfd, int type, cJSON *o, const char **why)
{
	int old = -1, zero = 0;
	socklen_t ol = sizeof old;
	getsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, &ol);
	if (setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero)) return *why = "its queue cannot be read without taking it", -1;
	size_t cap = 1 << 16, len = 0;
	unsigned char *all = malloc(cap), chunk[65536];
	cJSON *msgs = type == SOCK_STREAM ? NULL : cJSON_AddArrayToObject(o, "msgs");
	int rc = 0;
	for (;;) {
		char ctl[CMSG_SPACE(sizeof(int) * 64)];
		struct iovec iov = { chunk, sizeof chunk };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
		ssize_t n = recvmsg(sfd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) break; /* EAGAIN: the end of the queue */
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(cm);
				for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) close(fds[k]);
				rc = -1;
				*why = "its queue carries descriptors in flight (SCM_RIGHTS)";
			}
		if (rc || (mh.msg_flags & MSG_CTRUNC)) {
			rc = -1;
			if (!*why) *why = "its queue carries more control data than a snapshot can read";
			break;
		}
		if (n == 0 && type == SOCK_STREAM) break;
		if (msgs) {
			char *b = fds_b64_encode(chunk, (size_t)n);
			cJSON_AddItemToArray(msgs, cJSON_CreateString(b ? b : ""));
			free(b);
			if (mh.msg_flags & MSG_TRUNC) {
				rc = -1;
				*why = "it has a message queued larger than 64 KiB";
				break;
			}
			continue;
		}
		if (len + (size_t)n > cap) {
			unsigned char *m = all ? realloc(all, cap = 2 * (len + (size_t)n)) : NULL;
			if (!m) break;
			all = m;
		}
		if (all) memcpy(all + len, chunk, (size_t)n);
		len += (size_t)n;
	}
	setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, sizeof old);
	if (!msgs) {
		char *b = fds_b64_encode(all ? all : (const unsigned char *)"", all ? len : 0);
		cJSON_AddStringToObject(o, "data", b ? b : "");
		free(b);
	}
	free(all);
	return rc;
}

static struct fds_sock *new_sock(struct fds_capture *c)
{
	if (c->nsocks == c->capsocks) {
		int cap = c->capsocks ? 2 * c->capsocks : 16;
		struct fds_sock *m = realloc(c->socks, (size_t)cap * sizeof *m);
		if (!m) return NULL;
		c->socks = m;
		c->capsocks = cap;
	}
	struct fds_sock *s = &c->socks[c->nsocks++];
	memset(s, 0, sizeof *s);
	return s;
}

/* A listening Unix socket: its name (a path, or an abstract name) and,
 * for a path, the socket file's mode. Connections not yet accepted are
 * not kept: their clients see the peer gone. */
static int describe_unix_listener(struct fds_capture *c, struct fds_proc *p, int fd, int type, const struct stat *st, int flags,
				  const char *name, int named, char *err, size_t errlen)
{
	if (!named)
		return refuse(p, fd, "a listening Unix socket without a name", err, errlen);
	struct ofd *o = fds_new_ofd(c, p, fd, st, "unix-listen", flags);
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	cJSON_AddNumberToObject(o->json, "type", type);
	if (name[0]) {
		char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
		struct stat fst;
		snprintf(path, sizeof path, "%.*s", named, name);
		cJSON_AddStringToObject(o->json, "path", path);
		if (!stat(path, &fst) && S_ISSOCK(fst.st_mode)) cJSON_AddNumberToObject(o->json, "mode", fst.st_mode & 07777);
	} else {
		char *b = fds_b64_encode((const unsigned char *)name + 1, (size_t)named - 1);
		cJSON_AddStringToObject(o->json, "abstract", b ? b : "");
		free(b);
	}
	return 0;
}

static int describe_pool_channel(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
				 const struct sockaddr_storage *listening, char *err, size_t errlen);

static int describe_unix(struct fds_capture *c, struct fds_proc *p, int fd, int sfd, int type, const struct stat *st, int flags,
			 char *err, size_t errlen)
{
	ino_t peer;
	int named, listening;
	char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
	if (unix_diag(st->st_ino, &peer, name, &named, &listening))
		return fds_err(err, errlen, "process %u (%s): cannot ask the kernel about the Unix socket at descriptor %d (sock_diag)", p->vpid, p->comm, fd), -1;
	if (listening) return describe_unix_listener(c, p, fd, type, st, flags, name, named, err, errlen);
	struct sockaddr_storage lis;
	socklen_t llen;
	if (named > 1 && !name[0] && type == SOCK_DGRAM && pool_name_address(name + 1, (size_t)named - 1, &lis, &llen))
		return describe_pool_channel(c, p, fd, st, flags, &lis, err, errlen);
	if (named && !peer) return refuse(p, fd, "a Unix socket bound to a name and not connected", err, errlen);
	struct fds_sock *s = new_sock(c);
	struct ofd *o = s ? fds_new_ofd(c, p, fd, st, "unix", flags) : NULL;
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	s->ofd = c->n - 1;
	s->family = AF_UNIX;
	s->type = type;
	s->peer = peer;
	cJSON_AddNumberToObject(o->json, "type", type);
	const char *why = NULL;
	if (peek_queue(sfd, type, o->json, &why)) {
		char what[160];
		snprintf(what, sizeof what, "a Unix socket whose state cannot be captured (%s)", why ? why : "?");
		cJSON_Delete(o->json);
		c->n--;
		c->nsocks--;
		return refuse(p, fd, what, err, errlen);
	}
	return 0;
}

/* --- TCP and UDP ------------------------------------------------------ */

static int same_addr(const struct sockaddr_storage *a, socklen_t al, const struct sockaddr_storage *b, socklen_t bl)
{
	return al && al == bl && !memcmp(a, b, al);
}

static uint16_t port_in(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void set_port_in(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(port);
	else ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void put_addr(cJSON *o, const char *name, const struct sockaddr_storage *ss)
{
	char a[INET6_ADDRSTRLEN] = "";
	if (ss->ss_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a, sizeof a);
	else inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a, sizeof a);
	cJSON_AddStringToObject(o, name, a);
}

/* Whether row publishes a virtual TCP port at public port *arg: then *arg
 * becomes that virtual port (tabledb_each). */
static int publishes_at(void *arg, uint32_t vrid, const struct fwd_val *row)
{
	uint16_t *port = arg;
	if (row->srid != port_id(PORT_PROTO_TCP, *port)) return 0;
	*port = port_of(vrid);
	return 1;
}

/* The virtual port of the application's system port sport: its row in the
 * tables (the shim made one at bind), else sport itself. */
static uint16_t virtual_port(const struct ckpt_ctx *ctx, uint32_t proto, uint16_t sport, int *known)
{
	struct tabledb *t = ctx ? ctx->tables : NULL;
	MDB_txn *txn;
	uint32_t vrid;
	*known = !t;
	if (!t || mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn)) return sport;
	if (tabledb_rev(t, txn, RT_PORT, port_id(proto, sport), &vrid) == REV_MINE) {
		*known = 1;
		sport = port_of(vrid);
	}
	mdb_txn_abort(txn);
	return sport;
}

/* A TCP listener at a public port of the application is the member the
 * pool daemon gave it in place of its listener (a pool steered in the
 * kernel, pool/steer.h): the virtual port published there, or 0. */
static uint16_t member_vport(const struct ckpt_ctx *ctx, uint16_t sport)
{
	struct tabledb *t = ctx ? ctx->tables : NULL;
	MDB_txn *txn;
	uint32_t vrid;
	uint16_t port = sport;
	if (!t || mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn)) return 0;
	if (tabledb_rev(t, txn, RT_PORT, port_id(PORT_PROTO_TCP, sport), &vrid) == REV_MINE || tabledb_each(t, txn, RT_PUBLISH, publishes_at, &port) != 1)
		port = 0;
	mdb_txn_abort(txn);
	return port;
}

static int describe_pool_channel(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
				 const struct sockaddr_storage *listening, char *err, size_t errlen);

static int sockopt_int(int sfd, int level, int name)
{
	int v = 0;
	socklen_t l = sizeof v;
	return getsockopt(sfd, level, name, &v, &l) ? 0 : v;
}

static int describe_inet(struct fds_capture *c, struct fds_proc *p, int fd, int sfd, int family, int type, int protocol,
			 const struct stat *st, int flags, char *err, size_t errlen)
{
	uint32_t proto = type == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP) ? PORT_PROTO_TCP
			 : type == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP) ? PORT_PROTO_UDP : 0;
	if (!proto) return refuse(p, fd, "an IP socket that is neither TCP nor UDP", err, errlen);
	struct sockaddr_storage member;
	socklen_t mlen = sizeof member;
	uint16_t mvport;
	/* A member stands for the program's listener as a channel does: the
	 * same record, restored the same way (make_pool_listener). */
	if (proto == PORT_PROTO_TCP && sockopt_int(sfd, SOL_SOCKET, SO_ACCEPTCONN) && !getsockname(sfd, (struct sockaddr *)&member, &mlen) &&
	    (mvport = member_vport(c->ctx, port_in(&member)))) {
		set_port_in(&member, mvport);
		return describe_pool_channel(c, p, fd, st, flags, &member, err, errlen);
	}
	struct fds_sock *s = new_sock(c);
	if (!s) return fds_err(err, errlen, "out of memory"), -1;
	s->family = family;
	s->type = type;
	s->llen = sizeof s->local;
	s->rlen = sizeof s->remote;
	getsockname(sfd, (struct sockaddr *)&s->local, &s->llen);
	if (getpeername(sfd, (struct sockaddr *)&s->remote, &s->rlen)) s->rlen = 0;
	int listening = sockopt_int(sfd, SOL_SOCKET, SO_ACCEPTCONN);
	struct tcp_info ti = { 0 };
	socklen_t tl = sizeof ti;
	/* A connect under way (no peer name yet) is one the restore resets. */
	int connecting = proto == PORT_PROTO_TCP && !getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &tl) && ti.tcpi_state == TCP_SYN_SENT;
	const char *kind = proto == PORT_PROTO_UDP ? "udp" : listening ? "tcp-listen" : s->rlen || connecting ? "tcp-reset" : "tcp";
	struct ofd *o = fds_new_ofd(c, p, fd, st, kind, flags);
	if (!o) return c->nsocks--, fds_err(err, errlen, "out of memory"), -1;
	s->ofd = c->n - 1;
	cJSON_AddNumberToObject(o->json, "family", family);
	cJSON_AddNumberToObject(o->json, "vpid", p->vpid);
	uint16_t sport = port_in(&s->local);
	if (sport) {
		int known;
		uint16_t vport = virtual_port(c->ctx, proto, sport, &known);
		put_addr(o->json, "addr", &s->local);
		cJSON_AddNumberToObject(o->json, "port", vport);
		/* A port the application's tables do not know (port 0, the
		 * kernel's choice): the same system port again if free. */
		if (!known) cJSON_AddBoolToObject(o->json, "ephemeral", 1);
	}
	if (s->rlen) {
		put_addr(o->json, "peer", &s->remote);
		cJSON_AddNumberToObject(o->json, "peer_port", port_in(&s->remote));
	}
	cJSON_AddBoolToObject(o->json, "reuseaddr", sockopt_int(sfd, SOL_SOCKET, SO_REUSEADDR));
	cJSON_AddBoolToObject(o->json, "reuseport", sockopt_int(sfd, SOL_SOCKET, SO_REUSEPORT));
	if (family == AF_INET6) cJSON_AddBoolToObject(o->json, "v6only", sockopt_int(sfd, IPPROTO_IPV6, IPV6_V6ONLY));
	if (proto == PORT_PROTO_TCP) cJSON_AddBoolToObject(o->json, "nodelay", sockopt_int(sfd, IPPROTO_TCP, TCP_NODELAY));
	if (!strcmp(kind, "tcp-reset")) {
		/* The unread bytes, kept in case the peer is the application's
		 * (fds_socks_finish then makes the pair again). Bytes its kernel
		 * has not handed to the peer's yet (the send queue) cannot be
		 * read: with the peer the application's, they would be lost. */
		const char *why = NULL;
		ioctl(sfd, SIOCOUTQ, &s->outq);
		for (int j = 0; j < c->nsocks - 1 && !why; j++) {
			struct fds_sock *t = &c->socks[j];
			if (t->family == family && t->rlen && same_addr(&s->local, s->llen, &t->remote, t->rlen) &&
			    same_addr(&s->remote, s->rlen, &t->local, t->llen) && (s->outq || t->outq))
				why = "a TCP connection inside the application with bytes in flight (sent, not yet received); try the snapshot again";
		}
		if (why || peek_queue(sfd, SOCK_STREAM, o->json, &why)) {
			cJSON_Delete(o->json);
			c->n--;
			c->nsocks--;
			return refuse(p, fd, why, err, errlen);
		}
	}
	return 0;
}

/* A published port's channel: the listening address and virtual port its
 * name carries, as a TCP listener's ("pool-listen": no accepted connection
 * is "via" it, the daemon's listener accepted them). */
static int describe_pool_channel(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
				 const struct sockaddr_storage *listening, char *err, size_t errlen)
{
	struct ofd *o = fds_new_ofd(c, p, fd, st, "pool-listen", flags);
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	cJSON_AddNumberToObject(o->json, "family", listening->ss_family);
	cJSON_AddNumberToObject(o->json, "vpid", p->vpid);
	put_addr(o->json, "addr", listening);
	cJSON_AddNumberToObject(o->json, "port", port_in(listening));
	return 0;
}

int fds_describe_socket(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
			const char *fdinfo, char *err, size_t errlen)
{
	(void)fdinfo;
	int sfd = fds_pidfd_getfd(p->spid, fd);
	if (sfd < 0)
		return fds_err(err, errlen, "process %u (%s): cannot take a copy of its socket at descriptor %d (pidfd_getfd): %s",
			       p->vpid, p->comm, fd, strerror(errno)), -1;
	int family = sockopt_int(sfd, SOL_SOCKET, SO_DOMAIN), type = sockopt_int(sfd, SOL_SOCKET, SO_TYPE),
	    protocol = sockopt_int(sfd, SOL_SOCKET, SO_PROTOCOL), rc;
	char what[64];
	if (family == AF_UNIX) rc = describe_unix(c, p, fd, sfd, type, st, flags, err, errlen);
	else if (family == AF_INET || family == AF_INET6) rc = describe_inet(c, p, fd, sfd, family, type, protocol, st, flags, err, errlen);
	else {
		snprintf(what, sizeof what, "a socket of address family %d (%s)", family, family == AF_NETLINK ? "netlink" : family == AF_PACKET ? "packet" : "not Unix or IP");
		rc = refuse(p, fd, what, err, errlen);
	}
	close(sfd);
	return rc;
}


void fds_socks_drop(struct fds_capture *c, int first_ofd)
{
	while (c->nsocks && c->socks[c->nsocks - 1].ofd >= first_ofd) c->nsocks--;
}

/* A TCP end that one of the application's listeners accepted (its local
 * address is the listener's): "via" the listener's ofd id, so that the
 * restore makes it by a connection to that listener and the program finds
 * the listener's port as its own again. */
static void mark_accepted(struct fds_capture *c, const struct fds_sock *s, struct ofd *o)
{
	for (int j = 0; j < c->nsocks; j++) {
		const struct fds_sock *l = &c->socks[j];
		const char *kind = json_str(c->ofds[l->ofd].json, "kind");
		if (!kind || strcmp(kind, "tcp-listen") || l->family != s->family || port_in(&l->local) != port_in(&s->local)) continue;
		struct sockaddr_storage any = l->local;
		if (l->family == AF_INET) ((struct sockaddr_in *)&any)->sin_addr.s_addr = htonl(INADDR_ANY);
		else ((struct sockaddr_in6 *)&any)->sin6_addr = in6addr_any;
		struct sockaddr_storage mine = s->local;
		set_port_in(&mine, port_in(&l->local));
		/* The listener's address itself, or any address when it listens on all. */
		if (same_addr(&l->local, l->llen, &mine, s->llen) || same_addr(&l->local, l->llen, &any, l->llen)) {
			cJSON_AddNumberToObject(o->json, "via", c->ofds[l->ofd].id);
			return;
		}
	}
}

/* Once every process is described: Unix ends whose peer is the
 * application's are paired ("pair": k, "side": 0/1); a TCP connection
 * whose other end is the application's becomes a pair too ("tcp-pair");
 * an end to the outside at 0-2 becomes the restorer's. */
void fds_socks_finish(struct fds_capture *c)
{
	int pairs = 0;
	for (int i = 0; i < c->nsocks; i++) {
		struct fds_sock *s = &c->socks[i];
		struct ofd *o = &c->ofds[s->ofd];
		if (cJSON_GetObjectItemCaseSensitive(o->json, "pair")) continue;
		int mate = -1;
		for (int j = i + 1; j < c->nsocks && mate < 0; j++) {
			struct fds_sock *t = &c->socks[j];
			if (s->family == AF_UNIX && t->family == AF_UNIX && s->peer && s->peer == c->ofds[t->ofd].ino && t->peer == o->ino) mate = j;
			if (s->family != AF_UNIX && s->rlen && t->family == s->family && same_addr(&s->local, s->llen, &t->remote, t->rlen) &&
			    same_addr(&s->remote, s->rlen, &t->local, t->llen))
				mate = j;
		}
		if (mate >= 0) {
			struct ofd *m = &c->ofds[c->socks[mate].ofd];
			if (s->family != AF_UNIX) {
				cJSON_ReplaceItemInObjectCaseSensitive(o->json, "kind", cJSON_CreateString("tcp-pair"));
				cJSON_ReplaceItemInObjectCaseSensitive(m->json, "kind", cJSON_CreateString("tcp-pair"));
				mark_accepted(c, s, o);
				mark_accepted(c, &c->socks[mate], m);
			}
			cJSON_AddNumberToObject(o->json, "pair", pairs);
			cJSON_AddNumberToObject(o->json, "side", 0);
			cJSON_AddNumberToObject(m->json, "pair", pairs);
			cJSON_AddNumberToObject(m->json, "side", 1);
			pairs++;
		} else if (o->minfd <= 2 && (s->family == AF_UNIX || s->rlen)) {
			cJSON_ReplaceItemInObjectCaseSensitive(o->json, "kind", cJSON_CreateString("inherit"));
			cJSON_AddNumberToObject(o->json, "from", o->minfd);
		}
	}
}


/* --- restore ------------------------------------------------------------ */

static int send_all(int fd, const unsigned char *p, size_t n, int msg)
{
	size_t put = 0;
	while (put < n || (msg && n == 0 && put == 0)) {
		ssize_t k = send(fd, p + put, n - put, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0) return -1;
		put += (size_t)k;
		if (msg) break;
	}
	return 0;
}

/* The saved queue of o ("data" or "msgs") sent from `from`, so that the
 * socket at the other end holds it unread. */
static int refill(int from, const cJSON *o)
{
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "msgs"), *m;
	size_t n;
	if (msgs) {
		cJSON_ArrayForEach(m, msgs) {
			unsigned char *b = cJSON_IsString(m) ? fds_b64_decode(m->valuestring, &n) : NULL;
			int rc = b ? send_all(from, b, n, 1) : -1;
			free(b);
			if (rc) return -1;
		}
		return 0;
	}
	const char *d = json_str(o, "data");
	unsigned char *b = fds_b64_decode(d ? d : "", &n);
	int rc = b ? send_all(from, b, n, 0) : -1;
	free(b);
	return rc;
}

/* The other ofd of pair k (not i), or -1. */
static int pair_mate(struct fds_restore *r, int i, int k)
{
	for (int j = 0; j < r->n; j++)
		if (j != i && cJSON_GetObjectItemCaseSensitive(r->ofd[j], "pair") && (int)fds_get_num(r->ofd[j], "pair", -1) == k) return j;
	return -1;
}

/* A connected TCP pair on loopback of the family (IPv4 if IPv6 has none):
 * sv[0] the connecting end, sv[1] the accepted one. */
static int tcp_loopback_pair(int family, int sv[2])
{
	for (int fam = family; ; fam = AF_INET) {
		struct sockaddr_storage ss = { .ss_family = (sa_family_t)fam };
		socklen_t len = fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
		if (fam == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
		else ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int l = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
		sv[0] = sv[1] = -1;
		if (l >= 0 && !bind(l, (struct sockaddr *)&ss, len) && !listen(l, 1) && !getsockname(l, (struct sockaddr *)&ss, &len) &&
		    (sv[0] = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 && !connect(sv[0], (struct sockaddr *)&ss, len) &&
		    (sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			ok = 1;
		if (l >= 0) close(l);
		if (ok) return 0;
		if (sv[0] >= 0) close(sv[0]);
		if (fam == AF_INET) return -1;
	}
}

static void set_nodelay(int fd, const cJSON *o)
{
	int one = 1;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "nodelay"))) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int fds_make_sock(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen);

/* An accepted connection made again through its restored listener (made
 * now if it is not yet): sv[0] the accepted end (server), sv[1] the
 * connecting one, a socket of the client's family. */
static int tcp_via_listener(struct fds_restore *r, const cJSON *server, const cJSON *client, int sv[2], char *err, size_t errlen)
{
	int l = (int)fds_get_num(server, "via", 0) - 1;
	if (l < 0 || l >= r->n) return fds_err(err, errlen, "the image's files section is damaged: a connection's listener %d", l + 1), -1;
	if (r->fd[l] < 0 && (r->fd[l] = fds_make_sock(r, l, "tcp-listen", r->ofd[l], err, errlen)) < 0) return -1;
	struct sockaddr_storage a;
	socklen_t len = sizeof a;
	int family = (int)fds_get_num(client, "family", AF_INET);
	if (getsockname(r->fd[l], (struct sockaddr *)&a, &len)) return fds_err(err, errlen, "cannot read a restored listener's address: %s", strerror(errno)), -1;
	uint16_t port = port_in(&a);
	/* A listener on every address, or of the other family: its loopback. */
	int any = a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_addr.s_addr == htonl(INADDR_ANY)
					 : IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&a)->sin6_addr);
	if (any || a.ss_family != family) {
		memset(&a, 0, sizeof a);
		a.ss_family = (sa_family_t)family;
		if (family == AF_INET) ((struct sockaddr_in *)&a)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else ((struct sockaddr_in6 *)&a)->sin6_addr = in6addr_loopback;
		set_port_in(&a, port);
		len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	}
	sv[0] = -1;
	sv[1] = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_storage me, peer;
	socklen_t mel = sizeof me, pl;
	if (sv[1] >= 0 && connect(sv[1], (struct sockaddr *)&a, len) == 0 && getsockname(sv[1], (struct sockaddr *)&me, &mel) == 0) {
		/* The listener is live: a client from outside may have come first.
		 * Ours is the one whose peer is our end; the others are closed
		 * (they see a reset, as a connection to a restarting server may). */
		struct pollfd pf = { .fd = r->fd[l], .events = POLLIN };
		for (int tries = 0; sv[0] < 0 && tries < 64 && poll(&pf, 1, 1000) == 1; tries++) {
			int got = accept4(r->fd[l], (struct sockaddr *)&peer, (pl = sizeof peer, &pl), SOCK_CLOEXEC);
			if (got < 0) break;
			if (same_addr(&peer, pl, &me, mel)) sv[0] = got;
			else close(got);
		}
	}
	if (sv[0] >= 0) return 0;
	fds_err(err, errlen, "cannot connect to the restored listener on port %u again: %s", port, strerror(errno));
	if (sv[1] >= 0) close(sv[1]);
	return -1;
}

/* A TCP socket whose peer reset the connection: the next read fails with
 * ECONNRESET. */
static int make_reset(int family)
{
	int sv[2];
	if (tcp_loopback_pair(family, sv)) return -1;
	struct linger lg = { 1, 0 };
	setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(sv[1]); /* sends the reset; on loopback it has arrived when close returns */
	return sv[0];
}

/* The pair both of whose ends are ofds i and its mate: both made at once,
 * each filled with its saved queue; r->fd[mate] is set here. */
static int make_pair(struct fds_restore *r, int i, const cJSON *o, int tcp, char *err, size_t errlen)
{
	int k = (int)fds_get_num(o, "pair", -1), j = pair_mate(r, i, k), sv[2];
	if (j < 0) return fds_err(err, errlen, "the image's files section is damaged: socket pair %d has one end", k), -1;
	int rc;
	if (tcp && (cJSON_GetObjectItemCaseSensitive(o, "via") || cJSON_GetObjectItemCaseSensitive(r->ofd[j], "via"))) {
		int server_is_i = cJSON_GetObjectItemCaseSensitive(o, "via") != NULL;
		rc = tcp_via_listener(r, server_is_i ? o : r->ofd[j], server_is_i ? r->ofd[j] : o, sv, err, errlen);
		if (rc) return -1;
		if (!server_is_i) { /* sv: {accepted, client}; i is the client */
			int t = sv[0];
			sv[0] = sv[1], sv[1] = t;
		}
	} else if (tcp ? tcp_loopback_pair((int)fds_get_num(o, "family", AF_INET), sv)
		       : socketpair(AF_UNIX, (int)fds_get_num(o, "type", SOCK_STREAM) | SOCK_CLOEXEC, 0, sv))
		return fds_err(err, errlen, "cannot make a socket pair again: %s", strerror(errno)), -1;
	if (tcp) {
		set_nodelay(sv[0], o);
		set_nodelay(sv[1], r->ofd[j]);
	}
	if (refill(sv[1], o) || refill(sv[0], r->ofd[j])) {
		fds_err(err, errlen, "cannot put a socket pair's unread bytes back: %s", strerror(errno));
		close(sv[0]), close(sv[1]);
		return -1;
	}
	r->fd[j] = sv[1];
	return sv[0];
}

/* A Unix socket whose peer is gone: its unread bytes, then end of file. */
static int make_unix_alone(const cJSON *o)
{
	int sv[2];
	if (socketpair(AF_UNIX, (int)fds_get_num(o, "type", SOCK_STREAM) | SOCK_CLOEXEC, 0, sv)) return -1;
	int rc = refill(sv[1], o);
	close(sv[1]);
	if (rc) {
		close(sv[0]);
		return -1;
	}
	return sv[0];
}

static int parse_addr(const cJSON *o, int family, struct sockaddr_storage *ss, socklen_t *len)
{
	const char *a = json_str(o, "addr");
	memset(ss, 0, sizeof *ss);
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET) {
		*len = sizeof(struct sockaddr_in);
		return a && inet_pton(AF_INET, a, &((struct sockaddr_in *)ss)->sin_addr) == 1 ? 0 : -1;
	}
	*len = sizeof(struct sockaddr_in6);
	return a && inet_pton(AF_INET6, a, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1 ? 0 : -1;
}

/* The application's port range (APPSHOT_PORT_RANGE, as the shim reads it). */
static void port_range(uint16_t *lo, uint16_t *hi)
{
	*lo = PORT_RANGE_DEFAULT_LO;
	*hi = PORT_RANGE_DEFAULT_HI;
	if (port_range_parse(getenv("APPSHOT_PORT_RANGE"), lo, hi)) *lo = PORT_RANGE_DEFAULT_LO, *hi = PORT_RANGE_DEFAULT_HI;
}


/* Binds fd at virtual port vport as the shim's bind would: the
 * application's row if it has one, else identity first (unless the
 * application never gets its own numbers), else the range; recorded. */
static int bind_virtual(const struct ckpt_ctx *ctx, int fd, struct sockaddr_storage *ss, socklen_t len, uint32_t proto, uint16_t vport,
			uint32_t creator, char *err, size_t errlen)
{
	struct tabledb *t = ctx->tables;
	MDB_txn *txn;
	struct fwd_val row;
	uint32_t vid = port_id(proto, vport);
	int rc = tabledb_fds_ok(t) ? tabledb_write_lock(t) : EBADF;
	if (rc) return fds_err(err, errlen, "cannot lock the tables at %s: %s", t->path, strerror(rc)), -1;
	if ((rc = mdb_txn_begin(t->env, NULL, 0, &txn)) == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(t->env, 0);
		rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	}
	if (rc) {
		tabledb_write_unlock(t);
		return fds_err(err, errlen, "cannot write the tables at %s: %s", t->path, mdb_strerror(rc)), -1;
	}
	if (tabledb_fwd(t, txn, RT_PORT, vid, &row) == 0) {
		mdb_txn_abort(txn);
		tabledb_write_unlock(t);
		set_port_in(ss, port_of(row.srid));
		if (bind(fd, (struct sockaddr *)ss, len) == 0) return 0;
		return fds_err(err, errlen, "cannot bind virtual port %u again at its system port %u: %s", vport, port_of(row.srid), strerror(errno)), -1;
	}
	uint16_t lo, hi, sport = 0;
	port_range(&lo, &hi);
	struct port_bind_plain b = { fd, ss, len };
	int e = port_bind_first(t, txn, proto, vport, ctx->identity, lo, hi, creator, port_bind_plain, &b, &sport);
	if (e < 0) e = EIO;
	if (e) {
		mdb_txn_abort(txn);
		tabledb_write_unlock(t);
		return fds_err(err, errlen, "cannot bind virtual port %u/%s of application '%s' again: %s", vport, proto == PORT_PROTO_TCP ? "tcp" : "udp",
			       t->aid, e == EADDRINUSE ? "every port of its range is taken" : strerror(e)), -1;
	}
	rc = mdb_txn_commit(txn);
	tabledb_write_unlock(t);
	if (rc && rc != MDB_EMPTY_TXN) return fds_err(err, errlen, "cannot record port %u in %s: %s", vport, t->path, mdb_strerror(rc)), -1;
	return 0;
}

/* A TCP or UDP socket made again: options, its port, listening. */
static int make_inet(struct fds_restore *r, const char *kind, const cJSON *o, char *err, size_t errlen)
{
	int family = (int)fds_get_num(o, "family", AF_INET), udp = !strcmp(kind, "udp");
	uint32_t proto = udp ? PORT_PROTO_UDP : PORT_PROTO_TCP;
	int fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0) return fds_err(err, errlen, "cannot make a %s socket again: %s", kind, strerror(errno)), -1;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "reuseaddr"))) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "reuseport"))) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "v6only"))) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "nodelay"))) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	uint16_t vport = (uint16_t)fds_get_num(o, "port", 0);
	struct sockaddr_storage ss;
	socklen_t len;
	if (vport) {
		if (parse_addr(o, family, &ss, &len)) {
			close(fd);
			return fds_err(err, errlen, "the image's files section is damaged: a socket's address"), -1;
		}
		int ephemeral = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ephemeral")), rc = 0;
		if (r->ctx && r->ctx->tables && !ephemeral) {
			rc = bind_virtual(r->ctx, fd, &ss, len, proto, vport, (uint32_t)fds_get_num(o, "vpid", 0), err, errlen);
		} else {
			set_port_in(&ss, vport);
			rc = bind(fd, (struct sockaddr *)&ss, len);
			if (rc && ephemeral) set_port_in(&ss, 0), rc = bind(fd, (struct sockaddr *)&ss, len);
			if (rc) fds_err(err, errlen, "cannot bind port %u again: %s", vport, strerror(errno));
		}
		if (rc) {
			close(fd);
			return -1;
		}
	}
	/* A connected UDP socket: connected again (its datagrams are lost). */
	const char *peer = json_str(o, "peer");
	if (udp && peer) {
		struct sockaddr_storage ps = { .ss_family = (sa_family_t)family };
		socklen_t plen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		if (inet_pton(family, peer, family == AF_INET ? (void *)&((struct sockaddr_in *)&ps)->sin_addr : (void *)&((struct sockaddr_in6 *)&ps)->sin6_addr) == 1) {
			set_port_in(&ps, (uint16_t)fds_get_num(o, "peer_port", 0));
			connect(fd, (struct sockaddr *)&ps, plen);
		}
	}
	if (!strcmp(kind, "tcp-listen") && listen(fd, SOMAXCONN)) {
		fds_err(err, errlen, "cannot listen on port %u again: %s", vport, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A listening Unix socket at its name again. A socket file left at the
 * path by a program that is gone (connect refused) is replaced; one a
 * program still listens on (the original application, still running) is
 * not taken from it. */
static int make_unix_listener(const cJSON *o, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	const char *path = json_str(o, "path"), *abs = json_str(o, "abstract");
	socklen_t len;
	if (path && strlen(path) < sizeof a.sun_path) {
		memcpy(a.sun_path, path, strlen(path));
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	} else {
		size_t n;
		unsigned char *b = abs ? fds_b64_decode(abs, &n) : NULL;
		if (!b || n + 1 > sizeof a.sun_path) {
			free(b);
			return fds_err(err, errlen, "the image's files section is damaged: a listening Unix socket without a name"), -1;
		}
		memcpy(a.sun_path + 1, b, n);
		free(b);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	}
	int type = (int)fds_get_num(o, "type", SOCK_STREAM), fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0) return fds_err(err, errlen, "cannot make a Unix socket: %s", strerror(errno)), -1;
	int rc = bind(fd, (struct sockaddr *)&a, len);
	if (rc && errno == EADDRINUSE && path) {
		int probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		int live = probe >= 0 && (connect(probe, (struct sockaddr *)&a, len) == 0 || errno != ECONNREFUSED);
		if (probe >= 0) close(probe);
		struct stat st;
		if (!live && !lstat(path, &st) && S_ISSOCK(st.st_mode) && !unlink(path)) rc = bind(fd, (struct sockaddr *)&a, len);
		else errno = EADDRINUSE;
	}
	if (rc || listen(fd, SOMAXCONN)) {
		fds_err(err, errlen, "cannot listen on the Unix socket %s%s again: %s%s", path ? path : "@", path ? "" : "(abstract)", strerror(errno),
			errno == EADDRINUSE ? " (a program listens there: the original application, still running?)" : "");
		close(fd);
		return -1;
	}
	if (path && cJSON_GetObjectItemCaseSensitive(o, "mode")) chmod(path, (mode_t)fds_get_num(o, "mode", 0600));
	return fd;
}

/* The public port at which the restored application publishes virtual
 * TCP port vport (its RT_PUBLISH row, written by the harness's restore
 * from the snapshot's publications): 0 for none. */
static uint16_t published_port(const struct ckpt_ctx *ctx, uint16_t vport)
{
	struct tabledb *t = ctx ? ctx->tables : NULL;
	struct fwd_val row;
	MDB_txn *txn;
	uint16_t pub = 0;
	if (!t || !ctx->home || !ctx->aid || mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn)) return 0;
	if (tabledb_fwd(t, txn, RT_PUBLISH, port_id(PORT_PROTO_TCP, vport), &row) == 0) pub = port_of(row.srid);
	mdb_txn_abort(txn);
	return pub;
}

/* A published port's listener made again: listening at its virtual port
 * as any TCP listener, then handed to the pool daemon of the port the
 * restored application publishes (the harness started it before the
 * restore), the channel taking its place as the shim's listen() does it
 * (core/poolreg.c). The restored shim still knows the number as a channel
 * (its memory): accept() takes the daemon's handoffs from the first call,
 * with nothing to renew. A pool that cannot be reached leaves the plain
 * listener, reachable from inside the application only, as in the shim. */
static int make_pool_listener(struct fds_restore *r, const cJSON *o, char *err, size_t errlen)
{
	int l = make_inet(r, "tcp-listen", o, err, errlen);
	uint16_t vport = (uint16_t)fds_get_num(o, "port", 0), pub = l >= 0 ? published_port(r->ctx, vport) : 0;
	struct sockaddr_storage a;
	socklen_t alen = sizeof a;
	if (!pub || getsockname(l, (struct sockaddr *)&a, &alen)) return l;
	char why[512];
	uint16_t sport = port_in(&a);
	set_port_in(&a, vport); /* the channel's name carries the program's address */
	int ch = pool_channel_join(r->ctx->home, pub, r->ctx->aid, (uint32_t)getpid(), l, (struct sockaddr *)&a, vport, sport, why, sizeof why);
	if (ch < 0) {
		fprintf(stderr, "appshot: cannot join the pool of published port %u again for virtual port %u of '%s' (%s); it is reachable from inside the application only\n",
			pub, vport, r->ctx->aid, why);
		return l;
	}
	close(l);
	return ch;
}

int fds_make_sock(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen)
{
	int fd;
	if (r->fd[i] >= 0) return r->fd[i]; /* made with its pair's other end */
	if (!strcmp(kind, "unix")) {
		if (cJSON_GetObjectItemCaseSensitive(o, "pair")) return make_pair(r, i, o, 0, err, errlen);
		fd = make_unix_alone(o);
	} else if (!strcmp(kind, "unix-listen")) {
		return make_unix_listener(o, err, errlen);
	} else if (!strcmp(kind, "pool-listen") ||
		   (!strcmp(kind, "tcp-listen") && published_port(r->ctx, (uint16_t)fds_get_num(o, "port", 0)))) {
		/* A plain listener at a port the restored application publishes
		 * (a clone served behind a pool) is handed to the pool as well:
		 * the shim finds the channel in its place on the first accept,
		 * getsockname or socket option the kernel answers for it. */
		return make_pool_listener(r, o, err, errlen);
	} else if (!strcmp(kind, "tcp-pair")) {
		return make_pair(r, i, o, 1, err, errlen);
	} else if (!strcmp(kind, "tcp-reset")) {
		fd = make_reset((int)fds_get_num(o, "family", AF_INET));
	} else if (!strcmp(kind, "tcp-listen") || !strcmp(kind, "tcp") || !strcmp(kind, "udp")) {
		return make_inet(r, kind, o, err, errlen);
	} else {
		return fds_err(err, errlen, "descriptor %d of the image is of a kind this restore does not know (%s)", i + 1, kind), -1;
	}
	if (fd < 0) fds_err(err, errlen, "cannot make the %s socket of descriptor %d again: %s", kind, i + 1, strerror(errno));
	return fd;
}
