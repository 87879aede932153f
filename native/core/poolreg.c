/* An instance's registration with the pool daemon of a published port:
 * see poolreg.h. Moved here from shim/poolclient.c so that a restored
 * program's listener joins its pool the same way. */
#define _GNU_SOURCE
#include "poolreg.h"
#include "pool.h"
#include "rawcall.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define POOL_ANSWER_S 5

int pool_name_address(const char *name, size_t n, struct sockaddr_storage *out, socklen_t *outlen)
{
	const size_t plen = sizeof POOL_LISTENER_PREFIX - 1;
	char rest[POOL_NAME_MAX + 1], host[INET6_ADDRSTRLEN];
	unsigned fam, port;
	if (n <= plen || n > POOL_NAME_MAX || memcmp(name, POOL_LISTENER_PREFIX, plen)) return 0;
	memcpy(rest, name + plen, n - plen);
	rest[n - plen] = 0;
	if (sscanf(rest, "%u/%45[^/]/%u/", &fam, host, &port) != 3 || port > 65535) return 0;
	memset(out, 0, sizeof *out);
	if (fam == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*outlen = sizeof *a;
		return inet_pton(AF_INET, host, &a->sin_addr) == 1;
	}
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons((uint16_t)port);
	*outlen = sizeof *a;
	return fam == 6 && inet_pton(AF_INET6, host, &a->sin6_addr) == 1;
}

int pool_daemon_path(struct sockaddr_un *daemon, const char *home, uint16_t pub)
{
	*daemon = (struct sockaddr_un){ .sun_family = AF_UNIX };
	return snprintf(daemon->sun_path, sizeof daemon->sun_path, "%s/" POOL_DIR "/%u.sock", home, pub) < (int)sizeof daemon->sun_path ? 0 : -1;
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
	if (raw_call(SYS_getrandom, r, sizeof r, 0) != sizeof r) return 0;
	memset(un, 0, sizeof *un);
	un->sun_family = AF_UNIX;
	int n = snprintf(un->sun_path + 1, POOL_NAME_MAX + 1, POOL_LISTENER_PREFIX "%d/%s/%u/", addr->sa_family == AF_INET ? 4 : 6,
			 host, vport);
	for (size_t i = 0; i < sizeof r; i++) n += snprintf(un->sun_path + 1 + n, POOL_NAME_MAX + 1 - n, "%02x", r[i]);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void close_keeping_errno(int fd)
{
	int err = errno;
	raw_call(SYS_close, fd);
	errno = err;
}

/* The channel: a datagram socket bound to a fresh name, told the sender's
 * credentials with each datagram; its name and inode go into reg. */
static int channel_socket(const struct sockaddr *addr, uint16_t vport, struct pool_register *reg)
{
	struct sockaddr_un self;
	struct stat st;
	int one = 1, ch = (int)raw_call(SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ch < 0) return -1;
	socklen_t len = 0;
	for (int tries = 0; tries < 4; tries++)
		if ((len = channel_name(&self, addr, vport)) && raw_call(SYS_bind, ch, &self, len) == 0) break;
		else len = 0;
	if (!len || raw_call(SYS_setsockopt, ch, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) || raw_call(SYS_fstat, ch, &st)) {
		close_keeping_errno(ch);
		return -1;
	}
	memcpy(reg->name, self.sun_path + 1, len - offsetof(struct sockaddr_un, sun_path) - 1);
	reg->ino = st.st_ino;
	return ch;
}

/* The descriptor a reply carried: *rfd, or closed when none was asked. */
static void reply_fd(struct msghdr *m, int *rfd)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
		for (size_t off = 0; c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && CMSG_LEN(off + sizeof(int)) <= c->cmsg_len;
		     off += sizeof(int)) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + off, sizeof fd);
			if (rfd && *rfd < 0) *rfd = fd;
			else raw_call(SYS_close, fd);
		}
}

const char *pool_daemon_call(const struct sockaddr_un *daemon, const char *home, uint16_t pub, const void *msg, size_t mlen, int fd,
			     void *reply, size_t rlen, int *rfd, char *why, size_t cap)
{
	union { char buf[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } rbuf;
	struct iovec riov = { reply, rlen };
	struct msghdr rm = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = rbuf.buf, .msg_controllen = sizeof rbuf.buf };
	long got;
	if (rfd) *rfd = -1;
	struct ucred cr = { 0 };
	socklen_t crlen = sizeof cr;
	struct timeval tmo = { POOL_ANSWER_S, 0 };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { (void *)msg, mlen };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = fd >= 0 ? cbuf : NULL, .msg_controllen = fd >= 0 ? sizeof cbuf : 0 };
	uid_t euid = (uid_t)raw_call(SYS_geteuid);
	if (fd >= 0) {
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		*c = (struct cmsghdr){ .cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	int r = (int)raw_call(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (r < 0) return snprintf(why, cap, "socket: %s", strerror(errno)), why;
	raw_call(SYS_setsockopt, r, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
	raw_call(SYS_setsockopt, r, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
	if (raw_call(SYS_connect, r, daemon, sizeof *daemon))
		snprintf(why, cap, "%s", strerror(errno));
	else if (raw_call(SYS_getsockopt, r, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.uid != euid)
		snprintf(why, cap, "it is served by pid %d of uid %u, not by a daemon of uid %u: another user can put sockets in %s/" POOL_DIR "; make the home and its folders yours alone (chmod 700)",
			 (int)cr.pid, (unsigned)cr.uid, (unsigned)euid, home);
	else if (raw_call(SYS_sendmsg, r, &m, MSG_NOSIGNAL) < 0 ||
		 (errno = ECONNRESET, got = raw_call(SYS_recvmsg, r, &rm, MSG_CMSG_CLOEXEC), got >= 0 ? reply_fd(&rm, rfd) : (void)0, got) != (long)rlen) {
		if (rfd && *rfd >= 0) raw_call(SYS_close, *rfd), *rfd = -1;
		if (errno == EAGAIN)
			snprintf(why, cap, "its daemon, pid %d, does not answer within %d s; see %s/" POOL_DIR "/%u.log", (int)cr.pid,
				 POOL_ANSWER_S, home, pub);
		else
			snprintf(why, cap, "%s", strerror(errno));
	} else
		why = NULL;
	close_keeping_errno(r);
	return why;
}

/* Our effective uid, asked once per process (a system call per handoff
 * otherwise): the daemon of that user is the one this process's channels
 * registered with (fixed at the registration, see pool_channel_join): a
 * server that drops privileges after binding still takes its handoffs. */
static uid_t own_uid(void)
{
	static _Atomic long uid = -1;
	if (uid < 0) uid = (long)raw_call(SYS_geteuid);
	return (uid_t)uid;
}

int pool_channel_join(const char *home, uint16_t pub, const char *aid, uint32_t spid, int listener, const struct sockaddr *addr,
		      uint16_t vport, uint16_t sport, char *why, size_t cap)
{
	return pool_instance_join(home, pub, aid, spid, listener, addr, vport, sport, NULL, why, cap);
}

int pool_instance_join(const char *home, uint16_t pub, const char *aid, uint32_t spid, int listener, const struct sockaddr *addr,
		       uint16_t vport, uint16_t sport, int *member, char *why, size_t cap)
{
	struct sockaddr_un daemon;
	struct pool_register reg = { POOL_MAGIC, vport, sport, spid, "", "", 0, member ? POOL_REG_MEMBER : 0, (uint32_t)listener };
	struct pool_reply reply = { -1, 0 };
	int mfd = -1;
	if (pool_daemon_path(&daemon, home, pub)) return snprintf(why, cap, "the pool socket path under %s is too long", home), -1;
	snprintf(reg.aid, sizeof reg.aid, "%s", aid);
	own_uid(); /* the user whose daemon the channel registers with, fixed now */
	int ch = channel_socket(addr, vport, &reg);
	if (ch < 0) return snprintf(why, cap, "its socket: %s", strerror(errno)), -1;
	const char *w = pool_daemon_call(&daemon, home, pub, &reg, sizeof reg, listener, &reply, sizeof reply, member ? &mfd : NULL, why, cap);
	if (!w && reply.status) w = why, snprintf(why, cap, "%s", strerror(reply.status));
	if (!w && reply.member && mfd < 0) w = why, snprintf(why, cap, "its daemon sent no socket with its answer");
	if (w && mfd >= 0) close_keeping_errno(mfd);
	if (w || mfd < 0) {
		if (w) close_keeping_errno(ch);
		return w ? -1 : ch;
	}
	/* Steered by the kernel: the member takes the listener's place, and
	 * the channel is of no use (the daemon never sends to it). */
	close_keeping_errno(ch);
	*member = 1;
	return mfd;
}

/* To the daemon's socket the handoff came from (a new daemon has another). */
static void ack(int ch, const struct sockaddr_un *to, socklen_t tolen, uint64_t seq, int taken)
{
	struct pool_ack a = { seq, (uint32_t)taken, 0 };
	raw_call(SYS_sendto, ch, &a, sizeof a, MSG_DONTWAIT | MSG_NOSIGNAL, to, tolen);
}

/* One datagram on a channel: 1 and the connection it carries in *conn (-1
 * if none fit); 0 for a datagram not from a daemon of our own user (anyone
 * may send to an abstract name), dropped with what it carried; -1 for no
 * datagram at all (the program shut the socket down). */
static int take_handoff(struct msghdr *m, ssize_t n, int *conn, void (*warn)(const char *msg))
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
			if (nfd) raw_call(SYS_close, fd);
			else *conn = fd;
		}
	}
	if (creds && cr.uid == own_uid() && n == sizeof(struct pool_handoff) && nfd <= 1 && !(m->msg_flags & MSG_TRUNC)) return 1;
	if (!creds && !nfd && n == 0) return -1; /* every datagram carries its sender's credentials */
	static int told;
	if (!told++) {
		char msg[160];
		snprintf(msg, sizeof msg, "dropped a message to the pool socket of a published port from pid %d, uid %u: not the pool daemon",
			 creds ? (int)cr.pid : 0, creds ? (unsigned)cr.uid : 0);
		warn(msg);
	}
	if (*conn >= 0) raw_call(SYS_close, *conn);
	return 0;
}

int pool_channel_accept(int ch, int flags, void (*warn)(const char *msg))
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
		if ((n = raw_call(SYS_recvmsg, ch, &m, flags & SOCK_CLOEXEC ? MSG_CMSG_CLOEXEC : 0)) < 0) return -1;
	} while (!(took = take_handoff(&m, n, &conn, warn)));
	if (took < 0) return errno = EINVAL, -1; /* as accept on a listener shut down */
	if (conn < 0) {
		ack(ch, &from, m.msg_namelen, h.seq, 0); /* no room for the descriptor: the pool hands it to another */
		return errno = EMFILE, -1;
	}
	ack(ch, &from, m.msg_namelen, h.seq, 1);
	/* The daemon accepts with no flags, so the file's status flags are
	 * O_RDWR alone (F_SETFL leaves the access mode as it is): no F_GETFL. */
	if (flags & SOCK_NONBLOCK) raw_call(SYS_fcntl, conn, F_SETFL, O_NONBLOCK);
	return conn;
}
