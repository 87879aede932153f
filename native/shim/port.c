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
 * (core/pool.h): the socket goes to the pool daemon and the descriptor
 * becomes a datagram socket (the channel) from which accept() receives
 * connections, one the daemon's death leaves untouched. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"
#include "pid.h"
#include "path.h"
#include "../core/pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint16_t range_lo = 20000, range_hi = 29999;
/* Whether the application publishes any port (APPSHOT_PUBLISH, set by the
 * harness): without one, listen() asks nothing. Only a hint that saves
 * work; which port is published is the tables' to say. */
static int publishes;

/* APPSHOT_PORT_RANGE, "LO-HI", set by the harness from --port-range. */
void port_init(void)
{
	const char *r = getenv("APPSHOT_PORT_RANGE");
	unsigned lo, hi;
	char end;
	publishes = getenv("APPSHOT_PUBLISH") != NULL;
	if (!r) return;
	if (sscanf(r, "%u-%u%c", &lo, &hi, &end) != 2 || lo == 0 || lo > hi || hi > 65535)
		shim_fatal("APPSHOT_PORT_RANGE is '%s', not LO-HI with 1 <= LO <= HI <= 65535; start programs with 'appshot run'", r);
	range_lo = (uint16_t)lo;
	range_hi = (uint16_t)hi;
}

/* --- addresses ---------------------------------------------------------- */

/* sin_port and sin6_port: the port of an IPv4 or IPv6 address of len bytes. */
static int inet_port(const struct sockaddr *sa, socklen_t len, uint16_t *port)
{
	if (!sa) return 0;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		*port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		*port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	else
		return 0;
	return 1;
}

static void set_port(struct sockaddr *sa, uint16_t port)
{
	if (sa->sa_family == AF_INET) ((struct sockaddr_in *)sa)->sin_port = htons(port);
	else ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

/* An IPv4 address as a v4-mapped IPv6 one, so one comparison serves both. */
static struct in6_addr as_in6(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6) return ((const struct sockaddr_in6 *)sa)->sin6_addr;
	struct in6_addr a = { 0 };
	a.s6_addr[10] = a.s6_addr[11] = 0xff;
	memcpy(&a.s6_addr[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
	return a;
}

/* This host's interface addresses, read again at most once a second and
 * only when an address is neither loopback nor any: the case is rare and
 * getifaddrs costs a netlink round trip. */
static struct {
	pthread_mutex_t lock;
	time_t read_at;
	int n;
	struct in6_addr a[32];
} ifs = { PTHREAD_MUTEX_INITIALIZER };

static int host_has(const struct in6_addr *want)
{
	pthread_mutex_lock(&ifs.lock);
	time_t now = time(NULL);
	int found = 0;
	for (int pass = 0; pass < 2 && !found; pass++) {
		for (int i = 0; i < ifs.n && !found; i++) found = !memcmp(&ifs.a[i], want, sizeof *want);
		if (found || now == ifs.read_at) break;
		struct ifaddrs *list, *p;
		ifs.read_at = now;
		ifs.n = 0;
		if (getifaddrs(&list)) break;
		for (p = list; p && ifs.n < 32; p = p->ifa_next)
			if (p->ifa_addr && (p->ifa_addr->sa_family == AF_INET || p->ifa_addr->sa_family == AF_INET6))
				ifs.a[ifs.n++] = as_in6(p->ifa_addr);
		freeifaddrs(list);
	}
	pthread_mutex_unlock(&ifs.lock);
	return found;
}

/* Whether an address is this host: loopback, any, or an interface's. */
static int is_local(const struct sockaddr *sa)
{
	struct in6_addr a = as_in6(sa);
	if (IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_UNSPECIFIED(&a)) return 1;
	if (IN6_IS_ADDR_V4MAPPED(&a) && (a.s6_addr[12] == 127 || !memcmp(&a.s6_addr[12], "\0\0\0\0", 4))) return 1;
	return host_has(&a);
}

#define KNOWN_FDS 1024

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
	if (!shim_active || !inet_port(addr, len, &vport) || vport == 0 || len > sizeof *buf) return addr;
	if (!(proto = proto_to_translate(fd, vport, to_system_port))) return addr;
	if (to_system_port(proto, vport, &sport) || sport == vport || !is_local(addr)) return addr;
	memcpy(buf, addr, len);
	set_port((struct sockaddr *)buf, sport);
	return (const struct sockaddr *)buf;
}

/* An address the kernel gave back (len bytes of it in the caller's
 * buffer), its port made virtual when it is one of the application's. A
 * socket's own address is local by definition (own = 1). */
static void to_virtual_addr(int fd, uint32_t proto, struct sockaddr *addr, socklen_t len, int own)
{
	uint16_t sport, vport;
	int saved = errno;
	/* Only a port of the range can be a remapped one: the peers' ephemeral
	 * ports of every accept and recvfrom never reach the tables. */
	if (!inet_port(addr, len, &sport) || sport < range_lo || sport > range_hi) return;
	if (!proto && !(proto = proto_to_translate(fd, sport, to_virtual_port))) goto out;
	if (to_virtual_port(proto, sport, &vport) == 0 && vport != sport && (own || is_local(addr))) set_port(addr, vport);
out:
	errno = saved;
}

/* --- bind: allocation ----------------------------------------------------- */

static int bind_at(int fd, const struct sockaddr *addr, socklen_t len, uint16_t sport)
{
	struct sockaddr_storage b;
	memcpy(&b, addr, len);
	set_port((struct sockaddr *)&b, sport);
	return REAL(bind)(fd, (struct sockaddr *)&b, len);
}

/* Claims sport for vid in the tables and binds it: 0, or the errno that
 * stopped it (EADDRINUSE: try another). */
static int try_port(MDB_txn *txn, int fd, const struct sockaddr *addr, socklen_t len, uint32_t vid, uint16_t sport)
{
	struct tabledb *t = shim_tables();
	uint32_t sid = port_id(port_proto(vid), sport);
	int rc = tabledb_claim(t, txn, RT_PORT, vid, sid);
	if (rc == MDB_KEYEXIST) return EADDRINUSE; /* another application's lease */
	if (rc) return -rc;
	if (bind_at(fd, addr, len, sport) == 0) return 0;
	int err = errno;
	tabledb_release(t, txn, RT_PORT, sid);
	return err;
}

static const char *proto_name(uint32_t proto) { return proto == PORT_PROTO_TCP ? "tcp" : "udp"; }

/* The first bind of a virtual port in the application (FIG. 11): the port
 * itself if the system port is free, else the first free one of the
 * range, recorded in the same write transaction that holds every other
 * allocator on the host off. */
static int bind_new(int fd, const struct sockaddr *addr, socklen_t len, uint32_t proto, uint16_t vport)
{
	MDB_txn *txn = write_begin();
	struct tabledb *t = shim_tables();
	uint32_t vid = port_id(proto, vport);
	struct fwd_val row;
	if (tabledb_fwd(t, txn, RT_PORT, vid, &row) == 0) {
		write_abort(txn); /* another process of the application was first */
		return bind_at(fd, addr, len, port_of(row.srid));
	}
	int err = EADDRINUSE;
	uint32_t sport = 0;
	if (!(t->app_flags & APP_FLAG_NO_IDENTITY) && (err = try_port(txn, fd, addr, len, vid, vport)) == 0) sport = vport;
	/* A no-identity application never gets its own number, even from the range. */
	for (uint32_t p = range_lo; err == EADDRINUSE && p <= range_hi; p++)
		if (p != vport && (err = try_port(txn, fd, addr, len, vid, (uint16_t)p)) == 0) sport = p;
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
	row = (struct fwd_val){ .srid = port_id(proto, (uint16_t)sport), .creator = (uint32_t)shim_pid, .created_ms = now_ms() };
	int rc = tabledb_put_fwd(t, txn, RT_PORT, vid, &row);
	if (rc) {
		write_abort(txn);
		shim_warn("cannot record port %u/%s in %s: %s", vport, proto_name(proto), t->path, mdb_strerror(rc));
		return shim_fail(ENOBUFS);
	}
	write_commit(txn);
	return 0;
}

/* --- AF_UNIX sockets at redirected paths ---------------------------------- */

static int unix_redirect_slow(const struct sockaddr **addr, socklen_t *len, struct sockaddr_un *b)
{
	const size_t off = offsetof(struct sockaddr_un, sun_path);
	const struct sockaddr_un *un = (const struct sockaddr_un *)*addr;
	/* Unnamed and abstract sockets have no path. */
	if (*len <= off || *len > sizeof *b || un->sun_path[0] == 0) return 0;
	char name[sizeof un->sun_path + 1], buf[PATH_MAX];
	size_t n = strnlen(un->sun_path, *len - off);
	memcpy(name, un->sun_path, n);
	name[n] = 0;
	const char *path = name;
	if (redirect_path(&path, buf)) return -1;
	if (path == name) return 0;
	n = strlen(path);
	if (n > sizeof b->sun_path) return shim_fail(ENAMETOOLONG);
	b->sun_family = AF_UNIX;
	memcpy(b->sun_path, path, n);
	if (n < sizeof b->sun_path) b->sun_path[n++] = 0;
	*addr = (const struct sockaddr *)b;
	*len = (socklen_t)(off + n);
	return 0;
}

/* A pathname AF_UNIX address under a redirection is rewritten into b (and
 * *len with it), so each instance of a program gets its own socket file.
 * -1 with errno set when the rewritten path does not fit in sun_path. */
static inline int unix_redirect(const struct sockaddr **addr, socklen_t *len, struct sockaddr_un *b)
{
	if (__builtin_expect(redirect_count == 0, 1) || !*addr || (*addr)->sa_family != AF_UNIX) return 0;
	return unix_redirect_slow(addr, len, b);
}

WRAPPER(bind)
{
	struct sockaddr_un un;
	if (unix_redirect(&addr, &len, &un)) return -1;
	uint16_t vport, sport;
	uint32_t proto;
	if (!shim_active || !inet_port(addr, len, &vport) || vport == 0 || len > sizeof(struct sockaddr_storage) ||
	    !(proto = socket_proto(fd)))
		return REAL(bind)(fd, addr, len);
	if (to_system_port(proto, vport, &sport) == 0) return bind_at(fd, addr, len, sport);
	return bind_new(fd, addr, len, proto, vport);
}

/* --- the pool channel of a published listening socket -------------------- */

/* Whether fd is a pool channel, and if so the listening address the
 * program bound, read back from the channel's own abstract name. */
static int channel_address(int fd, struct sockaddr_storage *out, socklen_t *outlen)
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

/* The descriptors this process knows to be pool channels, so that accept()
 * on one goes straight to the channel. Set by listen() and by an accept()
 * that found one; cleared when the number is closed or reused (fd.c). After
 * exec the set starts empty and accept() finds out again. */
static _Atomic uint64_t known_channels[KNOWN_FDS / 64];

static int known_channel(int fd)
{
	return fd >= 0 && fd < KNOWN_FDS && (known_channels[fd / 64] & (1ull << (fd % 64)));
}

static void mark_channel(int fd, int is)
{
	if (fd < 0 || fd >= KNOWN_FDS) return;
	if (is) known_channels[fd / 64] |= 1ull << (fd % 64);
	else known_channels[fd / 64] &= ~(1ull << (fd % 64));
}

void port_fds_closed(unsigned first, unsigned last)
{
	for (unsigned fd = first; fd <= last && fd < KNOWN_FDS; fd++) {
		fd_proto[fd] = 0;
		if (known_channels[fd / 64]) mark_channel((int)fd, 0);
	}
}

static int is_channel(int fd)
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

/* Registers reg, with the listening socket fd, with the daemon listening
 * at daemon: NULL, or why not (in why). The daemon must be of our own user: anyone who
 * could put a socket there would get our listening socket and our clients. */
static const char *pool_register(const struct sockaddr_un *daemon, const char *home, uint16_t pub,
				 struct pool_register *reg, int fd, char *why, size_t cap)
{
	struct ucred cr = { 0 };
	socklen_t crlen = sizeof cr;
	struct timeval tmo = { POOL_ANSWER_S, 0 };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { reg, sizeof *reg };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	struct pool_reply reply = { -1 };
	*c = (struct cmsghdr){ .cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	int r = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (r < 0) return snprintf(why, cap, "socket: %s", strerror(errno)), why;
	setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
	setsockopt(r, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
	if (REAL(connect)(r, (const struct sockaddr *)daemon, sizeof *daemon))
		snprintf(why, cap, "%s", strerror(errno));
	else if (REAL(getsockopt)(r, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.uid != geteuid())
		snprintf(why, cap, "it is served by pid %d of uid %u, not by a daemon of uid %u: another user can put sockets in %s/" POOL_DIR "; make the home and its folders yours alone (chmod 700)",
			 (int)cr.pid, (unsigned)cr.uid, (unsigned)geteuid(), home);
	else if (REAL(sendmsg)(r, &m, MSG_NOSIGNAL) < 0 || (errno = ECONNRESET, REAL(recvfrom)(r, &reply, sizeof reply, 0, NULL, NULL)) != sizeof reply) {
		if (errno == EAGAIN)
			snprintf(why, cap, "its daemon, pid %d, does not answer within %d s; see %s/" POOL_DIR "/%u.log", (int)cr.pid,
				 POOL_ANSWER_S, home, pub);
		else
			snprintf(why, cap, "%s", strerror(errno));
	} else if (reply.status)
		snprintf(why, cap, "%s", strerror(reply.status));
	else
		why = NULL;
	close(r);
	return why;
}

/* Hands the listening socket fd to the pool of public port pub and puts
 * the channel in its place. A pool that cannot be reached leaves fd a plain
 * listening socket, reachable from inside the application only. */
static void pool_join(int fd, const struct sockaddr *addr, uint16_t vport, uint16_t sport, uint16_t pub)
{
	struct sockaddr_un daemon = { .sun_family = AF_UNIX };
	const char *home = shim_home(), *why;
	char buf[PATH_MAX + 256];
	if (snprintf(daemon.sun_path, sizeof daemon.sun_path, "%s/" POOL_DIR "/%u.sock", home, pub) >= (int)sizeof daemon.sun_path) {
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

static void publish_if_asked(int fd)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof a;
	uint16_t sport, vport;
	uint32_t pub;
	/* listen() succeeded on an inet socket: a TCP one. */
	if (REAL(getsockname)(fd, (struct sockaddr *)&a, &len) || !inet_port((struct sockaddr *)&a, len, &sport) ||
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

/* accept() on a channel: the next connection the pool hands this instance,
 * as the kernel's accept would give it. Blocking or not as the descriptor is. */
static int pool_accept(int ch, struct sockaddr *addr, socklen_t *len, int flags)
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
	remember_proto(conn, PORT_PROTO_TCP);
	if (flags & SOCK_NONBLOCK) REAL(fcntl)(conn, F_SETFL, REAL(fcntl)(conn, F_GETFL) | O_NONBLOCK);
	if (addr && len) {
		socklen_t cap = *len;
		if (REAL(getpeername)(conn, addr, len) == 0) to_virtual_addr(conn, PORT_PROTO_TCP, addr, cap < *len ? cap : *len, 0);
	}
	return conn;
}

static int accept_as_kernel(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	socklen_t cap = addr && len ? *len : 0;
	if (shim_active && known_channel(fd)) {
		int c = pool_accept(fd, addr, len, flags);
		/* ENOTSOCK, ENOTCONN, EINVAL...: the number is something else now
		 * (closed behind the shim's back, by fclose say): ask the kernel. */
		if (c >= 0 || errno == EAGAIN || errno == EINTR || errno == EMFILE) return c;
		mark_channel(fd, 0);
	}
	int c = REAL(accept4)(fd, addr, len, flags);
	if (!shim_active) return c;
	if (c >= 0) {
		remember_proto(c, fd < KNOWN_FDS && fd_proto[fd] ? fd_proto[fd] : 0);
		if (cap) to_virtual_addr(c, PORT_PROTO_TCP, addr, cap < *len ? cap : *len, 0);
		return c;
	}
	if ((errno == EOPNOTSUPP || errno == EINVAL) && is_channel(fd)) return pool_accept(fd, addr, len, flags);
	return -1;
}

WRAPPER(accept) { return accept_as_kernel(fd, addr, len, 0); }
WRAPPER(accept4) { return accept_as_kernel(fd, addr, len, flags); }

/* --- the other calls that pass or return addresses ----------------------- */

WRAPPER(connect)
{
	struct sockaddr_un un;
	if (unix_redirect(&addr, &len, &un)) return -1;
	struct sockaddr_storage b;
	return REAL(connect)(fd, to_system_addr(fd, addr, len, &b), len);
}

WRAPPER(getsockname)
{
	socklen_t cap = len ? *len : 0;
	int rc = REAL(getsockname)(fd, addr, len);
	if (rc || !shim_active) return rc;
	struct sockaddr_storage listening;
	socklen_t llen;
	if (cap >= sizeof(sa_family_t) && addr->sa_family == AF_UNIX && channel_address(fd, &listening, &llen)) {
		memcpy(addr, &listening, cap < llen ? cap : llen);
		*len = llen;
	} else {
		to_virtual_addr(fd, 0, addr, cap < *len ? cap : *len, 1);
	}
	return 0;
}

WRAPPER(getpeername)
{
	socklen_t cap = len ? *len : 0;
	int rc = REAL(getpeername)(fd, addr, len);
	if (rc || !shim_active) return rc;
	if (cap >= sizeof(sa_family_t) && addr->sa_family == AF_UNIX && is_channel(fd))
		return shim_fail(ENOTCONN); /* a listening socket has no peer */
	to_virtual_addr(fd, 0, addr, cap < *len ? cap : *len, 0);
	return 0;
}

WRAPPER(sendto)
{
	struct sockaddr_storage b;
	return REAL(sendto)(fd, buf, n, flags, addr ? to_system_addr(fd, addr, alen, &b) : addr, alen);
}

WRAPPER(sendmsg)
{
	struct sockaddr_storage b;
	if (!shim_active || !msg || !msg->msg_name) return REAL(sendmsg)(fd, msg, flags);
	struct msghdr m = *msg;
	m.msg_name = (void *)to_system_addr(fd, msg->msg_name, msg->msg_namelen, &b);
	return REAL(sendmsg)(fd, &m, flags);
}

WRAPPER(recvfrom)
{
	socklen_t cap = addr && alen ? *alen : 0;
	ssize_t r = REAL(recvfrom)(fd, buf, n, flags, addr, alen);
	if (r >= 0 && cap && shim_active) to_virtual_addr(fd, 0, addr, cap < *alen ? cap : *alen, 0);
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

/* SO_PEERCRED's pid is a vpid; a pool channel answers as the listening
 * TCP socket it stands for. */
WRAPPER(getsockopt)
{
	int r = REAL(getsockopt)(fd, level, name, value, len);
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
