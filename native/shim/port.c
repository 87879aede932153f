/* Ports (the port resource type). Every TCP or UDP port a program binds is
 * virtual per application: identity first, else a system port from the
 * application's range, leased for the application's lifetime so a server
 * that restarts finds its port again. Addresses the program passes
 * (bind, connect, sendto, sendmsg) carry virtual ports to system ones when
 * they name one of the application's own ports on this host; addresses the
 * kernel gives back (getsockname, getpeername, accept, recvfrom, recvmsg)
 * go the other way. Port 0 is the kernel's to choose.
 *
 * A listening socket on a published port joins its pool instead
 * (core/pool.h, through poolclient.c): the socket goes to the pool daemon
 * and the descriptor becomes a datagram socket (the channel) from which
 * accept() receives connections, one the daemon's death leaves untouched. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"
#include "pid.h"
#include "path.h"
#include "poolclient.h"
#include "../core/rawcall.h"
#include "../core/portpolicy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint16_t range_lo = PORT_RANGE_DEFAULT_LO, range_hi = PORT_RANGE_DEFAULT_HI;
/* Whether the application publishes any port (APPSHOT_PUBLISH, set by the
 * harness): without one, listen() asks nothing. Only a hint that saves
 * work; which port is published is the tables' to say. */
static int publishes;

/* The public ports the harness says this application publishes
 * (core/portpolicy.h), so that a connection the pool handed over, whose
 * local port is the public one, shows the virtual port. */
#define MAX_PUBLISHED 32
static struct port_published published[MAX_PUBLISHED];
static int npublished;

/* APPSHOT_PORT_RANGE, "LO-HI", set by the harness from --port-range. */
void port_init(void)
{
	const char *r = getenv("APPSHOT_PORT_RANGE");
	publishes = getenv("APPSHOT_PUBLISH") != NULL;
	npublished = port_published_parse(getenv("APPSHOT_PUBLISH"), published, MAX_PUBLISHED);
	if (port_range_parse(r, &range_lo, &range_hi))
		shim_fatal("APPSHOT_PORT_RANGE is '%s', not LO-HI with 1 <= LO <= HI <= 65535; start programs with 'appshot run'", r);
}

/* --- addresses ---------------------------------------------------------- */

/* --- the caller's memory ---------------------------------------------- */

/* Whether the kernel can read the caller's n bytes at p, asked without
 * faulting, so that a bad pointer gets the kernel's EFAULT and not a
 * SIGSEGV in the shim. The few kilobytes above our own stack pointer are
 * the callers' frames, always mapped (most programs pass addresses from
 * there): no system call. Elsewhere FUTEX_WAIT with a zero timeout reads
 * one word of each page the bytes touch and never sleeps: EFAULT means the
 * kernel cannot read it (about 0.9 us; process_vm_readv costs 4 us here). */
static int user_readable(const void *p, size_t n)
{
	char here;
	uintptr_t a = (uintptr_t)p, sp = (uintptr_t)&here;
	if (!p || a + n < a) return 0;
	if (a >= sp && a + n <= sp + 4096) return 1;
	static const struct timespec zero = { 0, 0 };
	for (uintptr_t page = a & ~(uintptr_t)4095; page < a + n; page += 4096) {
		uintptr_t word = (page < a ? a : page) & ~(uintptr_t)3;
		if (raw_call_kernel(SYS_futex, word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5a5a5a5a, &zero, 0, 0) == -EFAULT) return 0;
	}
	return 1;
}

/* An address the shim may read before the kernel: a length the kernel
 * takes (it refuses 0 and more than a sockaddr_storage itself, with its
 * own errno) over memory it can read. */
static int addr_readable(const struct sockaddr *addr, socklen_t len)
{
	return len >= sizeof(sa_family_t) && len <= sizeof(struct sockaddr_storage) && user_readable(addr, len);
}

/* The protocol of each socket this process made with socket() or got from
 * accept(), so bind and connect need not ask the kernel (a system call is
 * a tenth of a bind here): 0 unknown. Cleared when the number is closed or
 * reused (fd.c); after exec it starts empty and the kernel is asked. */
static _Atomic uint8_t fd_proto[KNOWN_FDS];
#define PROTO_NONE 0xff /* known: not TCP or UDP over IP */

static uint8_t proto_of(int domain, int type, int protocol)
{
	if (domain != AF_INET && domain != AF_INET6) return PROTO_NONE;
	type &= 0xf; /* without SOCK_NONBLOCK and SOCK_CLOEXEC */
	if (type == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP)) return PORT_PROTO_TCP;
	if (type == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP)) return PORT_PROTO_UDP;
	return PROTO_NONE;
}

static void remember_proto(int fd, uint8_t proto)
{
	if (fd >= 0 && fd < KNOWN_FDS) fd_proto[fd] = proto;
}

/* The IANA protocol of a socket: TCP for a stream, UDP for a datagram
 * socket, 0 for anything else (whose ports are not ours to translate). */
static uint32_t socket_proto(int fd)
{
	uint8_t known = fd >= 0 && fd < KNOWN_FDS ? fd_proto[fd] : 0;
	if (known) return known == PROTO_NONE ? 0 : known;
	int type = 0;
	socklen_t len = sizeof type;
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &len)) return 0;
	uint8_t p = proto_of(AF_INET, type, 0); /* asked only of inet addresses */
	remember_proto(fd, p);
	return p == PROTO_NONE ? 0 : p;
}

WRAPPER(socket)
{
	int fd = REAL(socket)(domain, type, protocol);
	if (fd >= 0) remember_proto(fd, proto_of(domain, type, protocol));
	return fd;
}

/* first..last closed or about to name something else (fd.c): what this
 * process knew of those numbers, protocol and channel, is forgotten. */
void port_fds_closed(unsigned first, unsigned last)
{
	for (unsigned fd = first; fd <= last && fd < KNOWN_FDS; fd++) {
		fd_proto[fd] = 0;
		if (known_channels[fd / 64]) mark_channel((int)fd, 0);
	}
}

/* --- translation -------------------------------------------------------- */

static int to_system_port(uint32_t proto, uint16_t vport, uint16_t *sport)
{
	uint32_t s;
	if (vr_to_sr(RT_PORT, port_id(proto, vport), &s)) return -1;
	*sport = port_of(s);
	return 0;
}

static int to_virtual_port(uint32_t proto, uint16_t sport, uint16_t *vport)
{
	uint32_t v;
	if (sr_to_vr(RT_PORT, port_id(proto, sport), &v)) return -1;
	*vport = port_of(v);
	return 0;
}

/* The protocol of fd when one of the application's rows would change port
 * (under TCP or UDP), else 0: two cache probes answer the common cases (not
 * ours, or ours under identity) without asking the socket its type. */
static uint32_t proto_to_translate(int fd, uint16_t port, int (*lookup)(uint32_t, uint16_t, uint16_t *))
{
	uint16_t t, u;
	int tcp = lookup(PORT_PROTO_TCP, port, &t) == 0 && t != port;
	int udp = lookup(PORT_PROTO_UDP, port, &u) == 0 && u != port;
	return tcp || udp ? socket_proto(fd) : 0;
}

/* The address a program passes, with its port made the system port when
 * it names one of the application's own ports on this host; else addr. */
static const struct sockaddr *to_system_addr(int fd, const struct sockaddr *addr, socklen_t len,
					     struct sockaddr_storage *buf)
{
	uint16_t vport, sport;
	uint32_t proto;
	if (!shim_active || !port_in_addr(addr, len, &vport) || vport == 0 || len > sizeof *buf) return addr;
	if (!(proto = proto_to_translate(fd, vport, to_system_port))) return addr;
	if (to_system_port(proto, vport, &sport) || sport == vport || !port_addr_is_local(addr)) return addr;
	memcpy(buf, addr, len);
	port_set_in_addr((struct sockaddr *)buf, sport);
	return (const struct sockaddr *)buf;
}

/* A connection the pool handed over has the public port as its own: the
 * program sees the virtual port it published there, as if its own listener
 * had accepted it. */
static int published_vport(int fd, uint16_t sport, uint16_t *vport)
{
	uint32_t pub;
	for (int i = 0; i < npublished; i++)
		if (published[i].pub == sport && published[i].pub != published[i].vport &&
		    vr_to_sr(RT_PUBLISH, port_id(PORT_PROTO_TCP, published[i].vport), &pub) == 0 && port_of(pub) == sport &&
		    socket_proto(fd) == PORT_PROTO_TCP) {
			*vport = published[i].vport;
			return 1;
		}
	return 0;
}

/* An address the kernel gave back (len bytes of it in the caller's
 * buffer), its port made virtual when it is one of the application's. A
 * socket's own address is local by definition (own = 1). */
static void to_virtual_addr(int fd, uint32_t proto, struct sockaddr *addr, socklen_t len, int own)
{
	uint16_t sport, vport;
	int saved = errno;
	if (!port_in_addr(addr, len, &sport)) return;
	if (own && npublished && published_vport(fd, sport, &vport)) {
		port_set_in_addr(addr, vport);
		goto out;
	}
	/* Only a port of the range can be a remapped one: the peers' ephemeral
	 * ports of every accept and recvfrom never reach the tables. */
	if (sport < range_lo || sport > range_hi) return;
	if (!proto && !(proto = proto_to_translate(fd, sport, to_virtual_port))) goto out;
	if (to_virtual_port(proto, sport, &vport) == 0 && vport != sport && (own || port_addr_is_local(addr))) port_set_in_addr(addr, vport);
out:
	errno = saved;
}

/* --- bind: allocation ----------------------------------------------------- */

static int bind_at(int fd, const struct sockaddr *addr, socklen_t len, uint16_t sport)
{
	struct sockaddr_storage b;
	memcpy(&b, addr, len);
	port_set_in_addr((struct sockaddr *)&b, sport);
	return raw_call(SYS_bind, fd, &b, len);
}

struct bind_args {
	int fd;
	const struct sockaddr *addr;
	socklen_t len;
};

static int bind_candidate(void *arg, uint16_t sport)
{
	struct bind_args *b = arg;
	return bind_at(b->fd, b->addr, b->len, sport) == 0 ? 0 : errno;
}

static const char *proto_name(uint32_t proto) { return proto == PORT_PROTO_TCP ? "tcp" : "udp"; }

/* The first bind of a virtual port in the application (core/portpolicy.h),
 * in the write transaction that holds every other allocator on the host
 * off. */
static int bind_new(int fd, const struct sockaddr *addr, socklen_t len, uint32_t proto, uint16_t vport)
{
	MDB_txn *txn = write_begin();
	struct tabledb *t = shim_tables();
	struct fwd_val row;
	if (tabledb_fwd(t, txn, RT_PORT, port_id(proto, vport), &row) == 0) {
		write_abort(txn); /* another process of the application was first */
		return bind_at(fd, addr, len, port_of(row.srid));
	}
	struct bind_args b = { fd, addr, len };
	uint16_t sport;
	int err = port_bind_first(t, txn, proto, vport, !(t->app_flags & APP_FLAG_NO_IDENTITY), range_lo, range_hi, (uint32_t)shim_pid,
				  bind_candidate, &b, &sport);
	if (err == EADDRINUSE) {
		write_abort(txn);
		shim_warn("no free system port for virtual port %u/%s of application '%s': every port of the range %u-%u is taken; end applications that hold ports there, or give this one a wider --port-range",
			  vport, proto_name(proto), t->aid, range_lo, range_hi);
		return shim_fail(EADDRINUSE);
	}
	if (err) {
		write_abort(txn);
		if (err > 0) return shim_fail(err);
		shim_warn("cannot record port %u/%s in %s: %s", vport, proto_name(proto), t->path, mdb_strerror(-err));
		return shim_fail(ENOBUFS);
	}
	write_commit(txn);
	return 0;
}

WRAPPER(bind)
{
	struct sockaddr_un un;
	/* A bad address or length: the kernel's answer. */
	if (!shim_active || !addr_readable(addr, len)) return raw_call(SYS_bind, fd, addr, len);
	if (unix_redirect(&addr, &len, &un)) return -1;
	uint16_t vport, sport;
	uint32_t proto;
	if (!port_in_addr(addr, len, &vport) || vport == 0 || !(proto = socket_proto(fd))) return raw_call(SYS_bind, fd, addr, len);
	if (port_bind_refused(0, vport)) return shim_fail(EACCES);
	if (to_system_port(proto, vport, &sport) == 0) return bind_at(fd, addr, len, sport);
	return bind_new(fd, addr, len, proto, vport);
}

/* --- listen and accept: the pool of a published port -------------------- */

static void publish_if_asked(int fd)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof a;
	uint16_t sport, vport;
	uint32_t pub;
	/* listen() succeeded on an inet socket: a TCP one. */
	if (REAL(getsockname)(fd, (struct sockaddr *)&a, &len) || !port_in_addr((struct sockaddr *)&a, len, &sport) ||
	    to_virtual_port(PORT_PROTO_TCP, sport, &vport) ||
	    vr_to_sr(RT_PUBLISH, port_id(PORT_PROTO_TCP, vport), &pub))
		return;
	pool_join(fd, (struct sockaddr *)&a, vport, sport, port_of(pub));
}

WRAPPER(listen)
{
	int rc = REAL(listen)(fd, backlog);
	if (rc == 0 && shim_active && publishes) {
		int saved = errno;
		publish_if_asked(fd);
		errno = saved;
	}
	return rc;
}

/* An address of len bytes in family fam, as a listener of that family
 * receives it: a v4 peer of an AF_INET6 listener v4-mapped, a v4-mapped
 * peer of an AF_INET listener plain IPv4 (a pool's public listener may be
 * of the other family than the program's). The new length. */
static socklen_t in_family(struct sockaddr_storage *ss, socklen_t len, int fam)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (fam == AF_INET6 && ss->ss_family == AF_INET && len >= sizeof *a4) {
		struct sockaddr_in6 m = { .sin6_family = AF_INET6, .sin6_port = a4->sin_port, .sin6_addr = port_as_in6((struct sockaddr *)a4) };
		*a6 = m;
		return sizeof m;
	}
	if (fam == AF_INET && ss->ss_family == AF_INET6 && len >= sizeof *a6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
		struct sockaddr_in p = { .sin_family = AF_INET, .sin_port = a6->sin6_port };
		memcpy(&p.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
		memset(ss, 0, sizeof *a6);
		*a4 = p;
		return sizeof p;
	}
	return len;
}

/* The address the kernel has just written to the caller's addr (cap bytes
 * of room; *len the address's full length), made virtual: in place when it
 * fit, else read again whole (nr: getsockname or getpeername), translated
 * (and put in family fam, 0 for as it is) and truncated again as the kernel
 * truncates. The kernel's write proved the caller's memory good. */
static void give_virtual(int fd, struct sockaddr *addr, socklen_t cap, socklen_t *len, int own, int fam, long nr)
{
	struct sockaddr_storage full;
	socklen_t flen = sizeof full;
	int saved = errno;
	if (cap >= *len && (!fam || addr->sa_family == fam)) {
		to_virtual_addr(fd, 0, addr, *len, own);
		return;
	}
	if (raw_call(nr, fd, &full, &flen) == 0) {
		if (fam) flen = in_family(&full, flen, fam);
		to_virtual_addr(fd, 0, (struct sockaddr *)&full, flen, own);
		memcpy(addr, &full, cap < flen ? cap : flen);
		*len = flen;
	}
	errno = saved;
}

/* A connection the pool handed over through channel ch (pool_accept), or
 * -1 as it failed: made to look as the kernel's accept on the program's
 * own listener would give it. The kernel writes the peer first
 * (getpeername), so that a bad buffer gets its EFAULT and costs the
 * connection, as natively. */
static int pool_accepted(int ch, int conn, struct sockaddr *addr, socklen_t *len, socklen_t cap)
{
	struct sockaddr_storage lis;
	socklen_t llen;
	if (conn < 0) return -1;
	remember_proto(conn, PORT_PROTO_TCP);
	if (!addr) return conn;
	if (raw_call(SYS_getpeername, conn, addr, len)) {
		int err = errno;
		close(conn);
		return shim_fail(err == ENOTCONN ? ECONNABORTED : err);
	}
	give_virtual(conn, addr, cap, len, 0, channel_address(ch, &lis, &llen) ? lis.ss_family : 0, SYS_getpeername);
	return conn;
}

static int accept_as_kernel(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	socklen_t cap = 0;
	if (!shim_active) return (int)raw_call(SYS_accept4, fd, addr, len, flags);
	/* Without a readable length the kernel answers EFAULT (a connection
	 * taken meanwhile is lost, as it would be). */
	if (addr && !user_readable(len, sizeof *len)) {
		if (!known_channel(fd)) return (int)raw_call(SYS_accept4, fd, addr, len, flags);
		int c = pool_accept(fd, flags);
		if (c < 0) return -1;
		close(c);
		return shim_fail(EFAULT);
	}
	if (addr) cap = *len;
	if (known_channel(fd)) {
		int c = pool_accepted(fd, pool_accept(fd, flags), addr, len, cap);
		/* ENOTSOCK, ENOTCONN, EINVAL...: the number is something else now
		 * (closed behind the shim's back, by fclose say): ask the kernel. */
		if (c >= 0 || errno == EAGAIN || errno == EINTR || errno == EMFILE || errno == EFAULT || errno == ECONNABORTED) return c;
		mark_channel(fd, 0);
	}
	int c = (int)raw_call(SYS_accept4, fd, addr, len, flags);
	if (c >= 0) {
		remember_proto(c, fd < KNOWN_FDS && fd_proto[fd] ? fd_proto[fd] : 0);
		if (addr) give_virtual(c, addr, cap, len, 0, 0, SYS_getpeername);
		return c;
	}
	if ((errno == EOPNOTSUPP || errno == EINVAL) && is_channel(fd)) return pool_accepted(fd, pool_accept(fd, flags), addr, len, cap);
	return -1;
}

WRAPPER(accept) { return accept_as_kernel(fd, addr, len, 0); }
WRAPPER(accept4) { return accept_as_kernel(fd, addr, len, flags); }

/* --- the other calls that pass or return addresses ----------------------- */

WRAPPER(connect)
{
	struct sockaddr_un un;
	struct sockaddr_storage b;
	/* A bad address or length: the kernel's answer. */
	if (!shim_active || !addr_readable(addr, len)) return raw_call(SYS_connect, fd, addr, len);
	if (unix_redirect(&addr, &len, &un)) return -1;
	return raw_call(SYS_connect, fd, to_system_addr(fd, addr, len, &b), len);
}

WRAPPER(getsockname)
{
	if (!shim_active || !user_readable(len, sizeof *len)) return raw_call(SYS_getsockname, fd, addr, len);
	socklen_t cap = *len;
	int rc = raw_call(SYS_getsockname, fd, addr, len);
	if (rc) return rc;
	struct sockaddr_storage listening;
	socklen_t llen;
	if (cap >= sizeof(sa_family_t) && addr->sa_family == AF_UNIX && channel_address(fd, &listening, &llen)) {
		memcpy(addr, &listening, cap < llen ? cap : llen);
		*len = llen;
	} else {
		give_virtual(fd, addr, cap, len, 1, 0, SYS_getsockname);
	}
	return 0;
}

WRAPPER(getpeername)
{
	if (!shim_active || !user_readable(len, sizeof *len)) return raw_call(SYS_getpeername, fd, addr, len);
	socklen_t cap = *len;
	int rc = raw_call(SYS_getpeername, fd, addr, len);
	if (rc) return rc;
	give_virtual(fd, addr, cap, len, 0, 0, SYS_getpeername);
	return 0;
}

/* sendto and recvfrom without an address are plain send and recv: as
 * they are, untouched. */
WRAPPER(sendto)
{
	struct sockaddr_storage b;
	if (!addr || !shim_active) return REAL(sendto)(fd, buf, n, flags, addr, alen);
	if (!addr_readable(addr, alen)) return raw_call(SYS_sendto, fd, buf, n, flags, addr, alen);
	return raw_call(SYS_sendto, fd, buf, n, flags, to_system_addr(fd, addr, alen, &b), alen);
}

/* The message header itself is read unchecked, as before: probing it
 * would cost every plain sendmsg a system call. Its address is checked. */
WRAPPER(sendmsg)
{
	struct sockaddr_storage b;
	if (!shim_active || !msg || !msg->msg_name || !addr_readable(msg->msg_name, msg->msg_namelen))
		return REAL(sendmsg)(fd, msg, flags);
	struct msghdr m = *msg;
	m.msg_name = (void *)to_system_addr(fd, msg->msg_name, msg->msg_namelen, &b);
	return REAL(sendmsg)(fd, &m, flags);
}

/* A datagram's source that did not fit the caller's buffer is left as the
 * kernel truncated it: the datagram is gone, it cannot be read again. */
WRAPPER(recvfrom)
{
	if (!addr || !shim_active) return REAL(recvfrom)(fd, buf, n, flags, addr, alen);
	if (!user_readable(alen, sizeof *alen)) return raw_call(SYS_recvfrom, fd, buf, n, flags, addr, alen);
	socklen_t cap = *alen;
	ssize_t r = raw_call(SYS_recvfrom, fd, buf, n, flags, addr, alen);
	if (r >= 0 && cap >= *alen) to_virtual_addr(fd, 0, addr, *alen, 0);
	return r;
}

WRAPPER(recvmsg)
{
	socklen_t cap = msg && msg->msg_name ? msg->msg_namelen : 0;
	ssize_t r = REAL(recvmsg)(fd, msg, flags);
	if (r >= 0 && cap && shim_active)
		to_virtual_addr(fd, 0, msg->msg_name, cap < msg->msg_namelen ? cap : msg->msg_namelen, 0);
	return r;
}

/* sendmmsg and recvmmsg: each message's address as sendmsg's and
 * recvmsg's, through a copy of the vector (the kernel writes each msg_len
 * back, and the caller's are set from it). At most this many at once, as
 * the kernel's own UIO_MAXIOV. */
#define MMSG_MAX 1024

WRAPPER(sendmmsg)
{
	if (!shim_active || !vec || vlen == 0 || !user_readable(vec, (size_t)(vlen > MMSG_MAX ? MMSG_MAX : vlen) * sizeof *vec))
		return REAL(sendmmsg)(fd, vec, vlen, flags);
	if (vlen > MMSG_MAX) vlen = MMSG_MAX;
	unsigned named = 0;
	for (unsigned i = 0; i < vlen; i++) named += vec[i].msg_hdr.msg_name != NULL;
	if (!named) return REAL(sendmmsg)(fd, vec, vlen, flags);
	struct mmsghdr *copy = malloc(vlen * sizeof *copy);
	struct sockaddr_storage *names = malloc(vlen * sizeof *names);
	if (!copy || !names) {
		free(copy);
		free(names);
		return shim_fail(ENOMEM);
	}
	for (unsigned i = 0; i < vlen; i++) {
		struct msghdr *h = &vec[i].msg_hdr;
		copy[i] = vec[i];
		if (h->msg_name && addr_readable(h->msg_name, h->msg_namelen))
			copy[i].msg_hdr.msg_name = (void *)to_system_addr(fd, h->msg_name, h->msg_namelen, &names[i]);
	}
	int r = REAL(sendmmsg)(fd, copy, vlen, flags);
	for (int i = 0; i < r; i++) vec[i].msg_len = copy[i].msg_len;
	int err = errno;
	free(copy);
	free(names);
	errno = err;
	return r;
}

WRAPPER(recvmmsg)
{
	if (!shim_active || !vec || vlen == 0 || !user_readable(vec, (size_t)(vlen > MMSG_MAX ? MMSG_MAX : vlen) * sizeof *vec))
		return REAL(recvmmsg)(fd, vec, vlen, flags, timeout);
	if (vlen > MMSG_MAX) vlen = MMSG_MAX;
	socklen_t *cap = malloc(vlen * sizeof *cap);
	if (!cap) return shim_fail(ENOMEM);
	for (unsigned i = 0; i < vlen; i++) cap[i] = vec[i].msg_hdr.msg_name ? vec[i].msg_hdr.msg_namelen : 0;
	int r = REAL(recvmmsg)(fd, vec, vlen, flags, timeout);
	for (int i = 0; i < r; i++)
		if (cap[i] && cap[i] >= vec[i].msg_hdr.msg_namelen) to_virtual_addr(fd, 0, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen, 0);
	int err = errno;
	free(cap);
	errno = err;
	return r;
}

/* The public port of the pool whose channel fd is: 0 for none. */
static uint16_t channel_public(int fd)
{
	struct sockaddr_storage a;
	socklen_t alen;
	uint16_t vport;
	uint32_t pub;
	if (!channel_address(fd, &a, &alen) || !port_in_addr((struct sockaddr *)&a, alen, &vport) ||
	    vr_to_sr(RT_PUBLISH, port_id(PORT_PROTO_TCP, vport), &pub))
		return 0;
	return port_of(pub);
}

/* A socket option on a channel is the listening socket's: the pool daemon
 * holds it and sets it there and on the public listener (TCP_DEFER_ACCEPT,
 * TCP_NODELAY, SO_RCVBUF... reach the connections as natively). The
 * channel keeps SO_RCVTIMEO, which times accept() out. Elsewhere: as is. */
WRAPPER(setsockopt)
{
	int r;
	uint16_t pub;
	socklen_t l = len;
	if (!shim_active || !known_channel(fd)) {
		r = REAL(setsockopt)(fd, level, name, value, len);
		if (r == 0 || !shim_active || (errno != EOPNOTSUPP && errno != ENOPROTOOPT) || !is_channel(fd)) return r;
	}
	if (!(pub = channel_public(fd)) || (len && !user_readable(value, len)) || (r = pool_sockopt(fd, pub, 1, level, name, (void *)value, &l)) == -2)
		return REAL(setsockopt)(fd, level, name, value, len);
	if (r == 0 && level == SOL_SOCKET && name == SO_RCVTIMEO) REAL(setsockopt)(fd, level, name, value, len);
	return r;
}

/* SO_PEERCRED's pid is a vpid; a pool channel answers as the listening
 * TCP socket it stands for: the daemon asks that socket, or, without a
 * daemon, the channel's own name says what it can. */
WRAPPER(getsockopt)
{
	uint16_t pub;
	int r;
	if (shim_active && known_channel(fd) && value && len && user_readable(len, sizeof *len) && user_readable(value, *len) &&
	    (pub = channel_public(fd)) &&
	    (r = pool_sockopt(fd, pub, 0, level, name, value, len)) != -2)
		return r;
	r = REAL(getsockopt)(fd, level, name, value, len);
	if (!shim_active || r != 0 || level != SOL_SOCKET || !value || !len) return r;
	if (name == SO_PEERCRED && *len >= sizeof(struct ucred)) {
		((struct ucred *)value)->pid = pid_to_virtual(((struct ucred *)value)->pid);
		return r;
	}
	struct sockaddr_storage a;
	socklen_t alen;
	int *v = value;
	if (*len < sizeof(int)) return r;
	if ((name == SO_TYPE && *v == SOCK_DGRAM) || (name == SO_DOMAIN && *v == AF_UNIX) ||
	    (name == SO_PROTOCOL && *v == 0) || (name == SO_ACCEPTCONN && *v == 0)) {
		if (!channel_address(fd, &a, &alen)) return r;
		*v = name == SO_TYPE ? SOCK_STREAM : name == SO_DOMAIN ? a.ss_family : name == SO_PROTOCOL ? IPPROTO_TCP : 1;
	}
	return r;
}

/* After a restore (from shim_restored_entry: no lock, no libc; the other
 * threads are stopped): what this process learned of the kernel it ran on
 * is asked again. The host's addresses and its unprivileged port start
 * may differ on the host restored on; the descriptors' protocols are the
 * restorer's to have kept, but a number it could not restore (a connection
 * to outside, closed) must not answer from memory. */
void port_restored_entry(void)
{
	for (unsigned i = 0; i < KNOWN_FDS; i++) atomic_store_explicit(&fd_proto[i], 0, memory_order_relaxed);
	port_addr_forget();
}
