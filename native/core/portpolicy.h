/* The port policy, one copy for every place that binds a virtual port: the
 * shim's bind (shim/port.c), the restorer's (checkpoint/fds_sock.c) and the
 * supervisor answering a static or Go program's bind (notify/port.c). Also
 * what "an address of this host" means when a virtual port is translated. */
#ifndef APPSHOT_PORTPOLICY_H
#define APPSHOT_PORTPOLICY_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include "tabledb.h"

/* APPSHOT_PORT_RANGE, "LO-HI" (set by the harness from --port-range): 0, or
 * -1 when it is not LO-HI with 1 <= LO <= HI <= 65535. NULL leaves the
 * defaults. */
int port_range_parse(const char *s, uint16_t *lo, uint16_t *hi);

/* The public ports an application publishes as the harness tells its
 * programs (APPSHOT_PUBLISH, "[HOST:]PUBLIC:VIRTUAL,..."): up to max pairs
 * into out; how many. A connection the pool handed over has the public
 * port as its own, which the program must see as the virtual one; each
 * pair is checked against the tables (RT_PUBLISH) before it is used. */
struct port_published {
	uint16_t pub, vport;
};
int port_published_parse(const char *list, struct port_published *out, int max);

/* Binds the socket at system port sport: 0, or the errno that stopped it. */
typedef int port_bind_fn(void *arg, uint16_t sport);

/* The port_bind_fn of a process that calls bind(2) itself (the restorer,
 * the supervisor; the shim binds through its own raw call): fd bound at
 * *ss, len bytes, its port set to each candidate in turn. */
struct port_bind_plain {
	int fd;
	struct sockaddr_storage *ss;
	socklen_t len;
};
int port_bind_plain(void *arg, uint16_t sport);

/* The first bind of virtual port vport in the application (FIG. 11), inside
 * the caller's write transaction: the port itself when identity is allowed
 * and it is free, else the first free port of [lo, hi]; each candidate is
 * claimed host-wide (its reverse row) and bound through bind, and the one
 * that bound is recorded with its forward row (creator: the binding spid).
 * 0 and *sport; EADDRINUSE when no port of the range is free; another errno
 * that bind gave; or a negative LMDB code. On failure the caller aborts. */
int port_bind_first(const struct tabledb *t, MDB_txn *txn, uint32_t proto, uint16_t vport, int identity, uint16_t lo, uint16_t hi,
		    uint32_t creator, port_bind_fn *bind, void *arg, uint16_t *sport);

/* Whether the kernel would refuse process pid (0: the caller) a bind of
 * vport: below net.ipv4.ip_unprivileged_port_start (read once) without
 * CAP_NET_BIND_SERVICE in its effective set. A remapped virtual port has a
 * system port the kernel would not refuse, so appshot answers as the
 * kernel would have. */
int port_bind_refused(pid_t pid, uint16_t vport);

/* sin_port or sin6_port of an IPv4 or IPv6 address of len bytes: 1, or 0
 * for any other address. */
int port_in_addr(const struct sockaddr *sa, socklen_t len, uint16_t *port);
void port_set_in_addr(struct sockaddr *sa, uint16_t port);
#include <netinet/in.h>
/* An IPv4 address as a v4-mapped IPv6 one, so one comparison serves both. */
struct in6_addr port_as_in6(const struct sockaddr *sa);
/* Whether an IPv4 or IPv6 address is this host: loopback, any, or one of
 * its interfaces' (read again at most once a second, only when needed). */
int port_addr_is_local(const struct sockaddr *sa);
/* Forgets the interfaces and the unprivileged start read (after a restore,
 * on another host perhaps). */
void port_addr_forget(void);

#endif
