/* The port policy (portpolicy.h). */
#define _GNU_SOURCE
#include "portpolicy.h"
#include "rawcall.h"
#include "text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int port_range_parse(const char *s, uint16_t *lo, uint16_t *hi)
{
	uint64_t l, h;
	if (!s) return 0;
	/* Every program's start reads it: no sscanf (text.h). */
	const char *p = text_decimal(s, 65535, &l);
	if (!p || *p != '-' || !(p = text_decimal(p + 1, 65535, &h)) || *p || l == 0 || l > h) return -1;
	*lo = (uint16_t)l;
	*hi = (uint16_t)h;
	return 0;
}

int port_published_parse(const char *list, struct port_published *out, int max)
{
	char buf[96], *v, *pb;
	int n = 0;
	while (list && *list && n < max) {
		size_t len = strcspn(list, ",");
		if (len < sizeof buf) {
			memcpy(buf, list, len);
			buf[len] = 0;
			/* The last two fields: a host before them may hold colons. */
			if ((v = strrchr(buf, ':'))) {
				*v++ = 0;
				pb = strrchr(buf, ':');
				unsigned long pub = strtoul(pb ? pb + 1 : buf, NULL, 10), vport = strtoul(v, NULL, 10);
				if (pub && pub < 65536 && vport && vport < 65536) out[n++] = (struct port_published){ (uint16_t)pub, (uint16_t)vport };
			}
		}
		list += len + (list[len] == ',');
	}
	return n;
}

/* Raw system calls: in the shim these numbers are trapped from libc. */
static int start = -1;
static int unprivileged_start(void)
{
	char buf[16] = "";
	if (start >= 0) return start;
	int fd = (int)raw_call(SYS_openat, AT_FDCWD, "/proc/sys/net/ipv4/ip_unprivileged_port_start", O_RDONLY | O_CLOEXEC);
	long n = fd >= 0 ? raw_call(SYS_read, fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0) raw_call(SYS_close, fd);
	return start = n > 0 ? atoi(buf) : 1024;
}

int port_bind_refused(pid_t pid, uint16_t vport)
{
	if (vport >= unprivileged_start()) return 0;
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, pid };
	struct __user_cap_data_struct d[2] = { 0 };
	if (raw_call(SYS_capget, &h, d)) return 0;
	return !(d[CAP_NET_BIND_SERVICE / 32].effective & (1u << (CAP_NET_BIND_SERVICE % 32)));
}

/* Claims sport for vid host-wide and binds it: 0, or the errno that
 * stopped it (EADDRINUSE: try another), or a negative LMDB code. */
static int try_port(const struct tabledb *t, MDB_txn *txn, uint32_t vid, uint16_t sport, port_bind_fn *bind, void *arg)
{
	uint32_t sid = port_id(port_proto(vid), sport);
	int rc = tabledb_claim(t, txn, RT_PORT, vid, sid);
	if (rc == MDB_KEYEXIST) return EADDRINUSE; /* another application's lease */
	if (rc) return -rc;
	int err = bind(arg, sport);
	if (err) tabledb_release(t, txn, RT_PORT, sid);
	return err;
}

int port_bind_first(const struct tabledb *t, MDB_txn *txn, uint32_t proto, uint16_t vport, int identity, uint16_t lo, uint16_t hi,
		    uint32_t creator, port_bind_fn *bind, void *arg, uint16_t *sport)
{
	uint32_t vid = port_id(proto, vport);
	int err = EADDRINUSE;
	uint32_t got = 0;
	if (identity && (err = try_port(t, txn, vid, vport, bind, arg)) == 0) got = vport;
	/* Without identity the application never gets its own number, even from the range. */
	for (uint32_t p = lo; err == EADDRINUSE && p <= hi; p++)
		if (p != vport && (err = try_port(t, txn, vid, (uint16_t)p, bind, arg)) == 0) got = p;
	if (err) return err;
	struct fwd_val row = { .srid = port_id(proto, (uint16_t)got), .creator = creator, .created_ms = now_ms() };
	int rc = tabledb_put_fwd(t, txn, RT_PORT, vid, &row);
	if (rc) return -rc;
	*sport = (uint16_t)got;
	return 0;
}

int port_in_addr(const struct sockaddr *sa, socklen_t len, uint16_t *port)
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

void port_set_in_addr(struct sockaddr *sa, uint16_t port)
{
	if (sa->sa_family == AF_INET) ((struct sockaddr_in *)sa)->sin_port = htons(port);
	else ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

int port_bind_plain(void *arg, uint16_t sport)
{
	struct port_bind_plain *b = arg;
	port_set_in_addr((struct sockaddr *)b->ss, sport);
	return bind(b->fd, (struct sockaddr *)b->ss, b->len) == 0 ? 0 : errno;
}

struct in6_addr port_as_in6(const struct sockaddr *sa)
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
				ifs.a[ifs.n++] = port_as_in6(p->ifa_addr);
		freeifaddrs(list);
	}
	pthread_mutex_unlock(&ifs.lock);
	return found;
}

int port_addr_is_local(const struct sockaddr *sa)
{
	struct in6_addr a = port_as_in6(sa);
	if (IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_UNSPECIFIED(&a)) return 1;
	if (IN6_IS_ADDR_V4MAPPED(&a) && (a.s6_addr[12] == 127 || !memcmp(&a.s6_addr[12], "\0\0\0\0", 4))) return 1;
	return host_has(&a);
}

/* From a restored process's entry (no lock: the other threads are stopped):
 * the interfaces and the unprivileged port start are read again. */
void port_addr_forget(void)
{
	start = -1;
	ifs.n = 0;
	ifs.read_at = 0;
}
