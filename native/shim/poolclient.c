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
#include "../core/poolreg.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
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
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	if (!REAL(getsockname)(fd, (struct sockaddr *)&un, &len) && un.sun_family == AF_UNIX && len > off && un.sun_path[0] == 0)
		ok = pool_name_address(un.sun_path + 1, len - off, out, outlen);
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

int pool_sockopt(int ch, uint16_t pub, int set, int level, int name, void *value, socklen_t *len)
{
	struct sockaddr_un daemon, self;
	socklen_t slen = sizeof self;
	struct pool_sockopt o = { POOL_MAGIC_OPT, (uint32_t)set, level, name, *len, "", { 0 } };
	struct pool_optreply r = { -1, 0, { 0 } };
	char why[PATH_MAX + 256];
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	if (*len > POOL_OPT_MAX || pool_daemon_path(&daemon, shim_home(), pub) ||
	    REAL(getsockname)(ch, (struct sockaddr *)&self, &slen) || slen <= off || slen - off > POOL_NAME_MAX)
		return -2;
	memcpy(o.name, self.sun_path + 1, slen - off);
	if (set) memcpy(o.value, value, *len);
	if (pool_daemon_call(&daemon, shim_home(), pub, &o, sizeof o, -1, &r, sizeof r, why, sizeof why)) {
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
	const char *home = shim_home();
	char why[PATH_MAX + 256];
	if (pool_daemon_path(&daemon, home, pub)) {
		shim_warn("the pool socket path under %s is too long; port %u is not published", home, vport);
		return;
	}
	int fdflags = REAL(fcntl)(fd, F_GETFD), flflags = REAL(fcntl)(fd, F_GETFL);
	int ch = pool_channel_join(home, pub, shim_tables()->aid, (uint32_t)shim_pid, fd, addr, vport, sport, why, sizeof why);
	if (ch < 0) {
		shim_warn("cannot join the pool of published port %u at %s (%s); virtual port %u is reachable from inside the application only",
			  pub, daemon.sun_path, why, vport);
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
