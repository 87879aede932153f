/* The shim's side of the published-port pool (core/pool.h): registering
 * a listening socket with the pool daemon of its public port, the channel
 * (a datagram socket under an abstract name) that takes its place, and the
 * connections the daemon hands over through it. Everything here talks to
 * the daemon or reads a channel; translating ports is port.c's. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"
#include "poolclient.h"
#include "../core/pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

_Atomic uint64_t known_channels[KNOWN_FDS / 64];

int channel_address(int fd, struct sockaddr_storage *out, socklen_t *outlen)
{
	struct sockaddr_un un;
	socklen_t len = sizeof un;
	int saved = errno, ok = 0;
	const size_t plen = sizeof POOL_LISTENER_PREFIX - 1;
	if (REAL(getsockname)(fd, (struct sockaddr *)&un, &len) || un.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path) + 1 + plen || un.sun_path[0] != 0 ||
	    memcmp(un.sun_path + 1, POOL_LISTENER_PREFIX, plen))
		goto out;
	char name[sizeof un.sun_path], host[INET6_ADDRSTRLEN];
	size_t n = len - offsetof(struct sockaddr_un, sun_path) - 1 - plen;
	memcpy(name, un.sun_path + 1 + plen, n);
	name[n] = 0;
	unsigned fam, port;
	if (sscanf(name, "%u/%45[^/]/%u/", &fam, host, &port) != 3) goto out;
	memset(out, 0, sizeof *out);
	if (fam == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		ok = inet_pton(AF_INET, host, &a->sin_addr) == 1;
		*outlen = sizeof *a;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		ok = inet_pton(AF_INET6, host, &a->sin6_addr) == 1;
		*outlen = sizeof *a;
	}
out:
	errno = saved;
	return ok;
}

int is_channel(int fd)
{
	struct sockaddr_storage a;
	socklen_t l;
	int is = channel_address(fd, &a, &l);
	mark_channel(fd, is);
	return is;
}

/* The channel's own name: the listening address, virtual port included,
 * then 128 random bits, so that no one can bind it before us. */
static socklen_t channel_name(struct sockaddr_un *un, const struct sockaddr *addr, uint16_t vport)
{
	char host[INET6_ADDRSTRLEN] = "";
	unsigned char r[16];
	const void *raw = addr->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
						     : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
	inet_ntop(addr->sa_family, raw, host, sizeof host);
	if (getrandom(r, sizeof r, 0) != sizeof r) return 0;
	memset(un, 0, sizeof *un);
	un->sun_family = AF_UNIX;
	int n = snprintf(un->sun_path + 1, POOL_NAME_MAX + 1, POOL_LISTENER_PREFIX "%d/%s/%u/", addr->sa_family == AF_INET ? 4 : 6,
			 host, vport);
	for (size_t i = 0; i < sizeof r; i++) n += snprintf(un->sun_path + 1 + n, POOL_NAME_MAX + 1 - n, "%02x", r[i]);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* The channel: a datagram socket bound to a fresh name, told the sender's
 * credentials with each datagram; its name and inode go into reg. */
static int channel_socket(const struct sockaddr *addr, uint16_t vport, struct pool_register *reg)
{
	struct sockaddr_un self;
	struct stat st;
	int one = 1, ch = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ch < 0) return -1;
	socklen_t len = 0;
	for (int tries = 0; tries < 4; tries++)
		if ((len = channel_name(&self, addr, vport)) && REAL(bind)(ch, (struct sockaddr *)&self, len) == 0) break;
		else len = 0;
	if (!len || setsockopt(ch, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) || fstat(ch, &st)) {
		int err = errno;
		close(ch);
		errno = err;
		return -1;
	}
	memcpy(reg->name, self.sun_path + 1, len - offsetof(struct sockaddr_un, sun_path) - 1);
	reg->ino = st.st_ino;
	return ch;
}

#define POOL_ANSWER_S 5

/* One message to the daemon listening at daemon (msg, with the socket fd
 * attached unless fd < 0) and its answer into reply: NULL, or why not (in
 * why). The daemon must be of our own user: anyone who could put a socket
 * there would get our listening socket and our clients. */
static const char *daemon_call(const struct sockaddr_un *daemon, const char *home, uint16_t pub, const void *msg, size_t mlen,
			       int fd, void *reply, size_t rlen, char *why, size_t cap)
{
	struct ucred cr = { 0 };
	socklen_t crlen = sizeof cr;
	struct timeval tmo = { POOL_ANSWER_S, 0 };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { (void *)msg, mlen };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = fd >= 0 ? cbuf : NULL, .msg_controllen = fd >= 0 ? sizeof cbuf : 0 };
	if (fd >= 0) {
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		*c = (struct cmsghdr){ .cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	int r = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (r < 0) return snprintf(why, cap, "socket: %s", strerror(errno)), why;
	setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
	setsockopt(r, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
	if (REAL(connect)(r, (const struct sockaddr *)daemon, sizeof *daemon))
		snprintf(why, cap, "%s", strerror(errno));
	else if (REAL(getsockopt)(r, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.uid != geteuid())
		snprintf(why, cap, "it is served by pid %d of uid %u, not by a daemon of uid %u: another user can put sockets in %s/" POOL_DIR "; make the home and its folders yours alone (chmod 700)",
			 (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid(), home);
	else if (REAL(sendmsg)(r, &m, MSG_NOSIGNAL) < 0 || (errno = ECONNRESET, REAL(recvfrom)(r, reply, rlen, 0, NULL, NULL)) != (ssize_t)rlen) {
		if (errno == EAGAIN)
			snprintf(why, cap, "its daemon, pid %d, does not answer within %d s; see %s/" POOL_DIR "/%u.log", (int)cr.pid,
				 POOL_ANSWER_S, home, pub);
		else
			snprintf(why, cap, "%s", strerror(errno));
	} else
		why = NULL;
	close(r);
	return why;
}

/* The path of the daemon socket of public port pub: 0, or -1 when it does not fit. */
static int daemon_path(struct sockaddr_un *daemon, const char *home, uint16_t pub)
{
	*daemon = (struct sockaddr_un){ .sun_family = AF_UNIX };
	return snprintf(daemon->sun_path, sizeof daemon->sun_path, "%s/" POOL_DIR "/%u.sock", home, pub) < (int)sizeof daemon->sun_path ? 0 : -1;
}

/* Registers reg, with the listening socket fd: NULL, or why not. */
static const char *pool_register(const struct sockaddr_un *daemon, const char *home, uint16_t pub,
				 struct pool_register *reg, int fd, char *why, size_t cap)
{
	struct pool_reply reply = { -1 };
	if (daemon_call(daemon, home, pub, reg, sizeof *reg, fd, &reply, sizeof reply, why, cap)) return why;
	if (reply.status) return snprintf(why, cap, "%s", strerror(reply.status)), why;
	return NULL;
}

int pool_sockopt(int ch, uint16_t pub, int set, int level, int name, void *value, socklen_t *len)
{
	struct sockaddr_un daemon, self;
	socklen_t slen = sizeof self;
	struct pool_sockopt o = { POOL_MAGIC_OPT, (uint32_t)set, level, name, *len, "", { 0 } };
	struct pool_optreply r = { -1, 0, { 0 } };
	char why[PATH_MAX + 256];
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	if (*len > POOL_OPT_MAX || daemon_path(&daemon, shim_home(), pub) ||
	    REAL(getsockname)(ch, (struct sockaddr *)&self, &slen) || slen <= off || slen - off > POOL_NAME_MAX)
		return -2;
	memcpy(o.name, self.sun_path + 1, slen - off);
	if (set) memcpy(o.value, value, *len);
	if (daemon_call(&daemon, shim_home(), pub, &o, sizeof o, -1, &r, sizeof r, why, sizeof why)) {
		static int told;
		if (!told++) shim_warn("cannot reach the pool daemon of published port %u for a socket option (%s); the option stays on the channel only", pub, why);
		return -2;
	}
	if (r.status == ENOENT) return -2; /* a daemon that does not know the instance */
	if (r.status) return shim_fail(r.status);
	if (!set) {
		memcpy(value, r.value, r.len < *len ? r.len : *len);
		*len = r.len;
	}
	return 0;
}

void pool_join(int fd, const struct sockaddr *addr, uint16_t vport, uint16_t sport, uint16_t pub)
{
	struct sockaddr_un daemon;
	const char *home = shim_home(), *why;
	char buf[PATH_MAX + 256];
	if (daemon_path(&daemon, home, pub)) {
		shim_warn("the pool socket path under %s is too long; port %u is not published", home, vport);
		return;
	}
	struct pool_register reg = { POOL_MAGIC, vport, sport, (uint32_t)shim_pid, "", "", 0 };
	snprintf(reg.aid, sizeof reg.aid, "%s", shim_tables()->aid);
	int fdflags = REAL(fcntl)(fd, F_GETFD), flflags = REAL(fcntl)(fd, F_GETFL);
	int ch = channel_socket(addr, vport, &reg);
	if (ch < 0) snprintf(buf, sizeof buf, "its socket: %s", strerror(errno)), why = buf;
	else why = pool_register(&daemon, home, pub, &reg, fd, buf, sizeof buf);
	if (why) {
		shim_warn("cannot join the pool of published port %u at %s (%s); virtual port %u is reachable from inside the application only",
			  pub, daemon.sun_path, why, vport);
		if (ch >= 0) close(ch);
		return;
	}
	REAL(dup3)(ch, fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	if (flflags >= 0 && (flflags & O_NONBLOCK)) REAL(fcntl)(fd, F_SETFL, O_NONBLOCK);
	close(ch);
	mark_channel(fd, 1);
}

/* To the daemon's socket the handoff came from (a new daemon has another). */
static void ack(int ch, const struct sockaddr_un *to, socklen_t tolen, uint64_t seq, int taken)
{
	struct pool_ack a = { seq, (uint32_t)taken, 0 };
	ssize_t w = REAL(sendto)(ch, &a, sizeof a, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)to, tolen);
	(void)w;
}

/* One datagram on a channel: 1 and the connection it carries in *conn (-1
 * if none fit); 0 for a datagram not from a daemon of our own user (anyone
 * may send to an abstract name), dropped with what it carried; -1 for no
 * datagram at all (the program shut the socket down). */
static int take_handoff(struct msghdr *m, ssize_t n, int *conn)
{
	struct ucred cr;
	int creds = 0, nfd = 0;
	*conn = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET) continue;
		if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof cr)) memcpy(&cr, CMSG_DATA(c), sizeof cr), creds = 1;
		for (size_t off = 0; c->cmsg_type == SCM_RIGHTS && CMSG_LEN(off + sizeof(int)) <= c->cmsg_len; off += sizeof(int), nfd++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + off, sizeof fd);
			if (nfd) close(fd);
			else *conn = fd;
		}
	}
	if (creds && cr.uid == geteuid() && n == sizeof(struct pool_handoff) && nfd <= 1 && !(m->msg_flags & MSG_TRUNC)) return 1;
	if (!creds && !nfd && n == 0) return -1; /* every datagram carries its sender's credentials */
	static int told;
	if (!told++)
		shim_warn("dropped a message to the pool socket of a published port from pid %d, uid %u: not the pool daemon",
			  creds ? (int)cr.pid : 0, creds ? (unsigned)cr.uid : 0);
	if (*conn >= 0) close(*conn);
	return 0;
}

int pool_accept(int ch, int flags)
{
	struct pool_handoff h;
	struct sockaddr_un from;
	union { char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } cbuf;
	struct iovec iov = { &h, sizeof h };
	struct msghdr m;
	ssize_t n;
	int conn, took;
	do {
		m = (struct msghdr){ .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf.buf, .msg_controllen = sizeof cbuf.buf };
		if ((n = REAL(recvmsg)(ch, &m, flags & SOCK_CLOEXEC ? MSG_CMSG_CLOEXEC : 0)) < 0) return -1;
	} while (!(took = take_handoff(&m, n, &conn)));
	if (took < 0) return shim_fail(EINVAL); /* as accept on a listener shut down */
	if (conn < 0) {
		ack(ch, &from, m.msg_namelen, h.seq, 0); /* no room for the descriptor: the pool hands it to another */
		return shim_fail(EMFILE);
	}
	ack(ch, &from, m.msg_namelen, h.seq, 1);
	if (flags & SOCK_NONBLOCK) REAL(fcntl)(conn, F_SETFL, REAL(fcntl)(conn, F_GETFL) | O_NONBLOCK);
	return conn;
}
