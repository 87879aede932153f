/*
 * The published-port pool: what the shim (shim/poolclient.c), the pool daemon
 * (pool/pool.c) and the harness (ts/pool.ts) agree on.
 *
 * One daemon per published (public) TCP port holds the system listener on
 * that port. Each instance (a listening socket of an application that
 * publishes the port) registers with the daemon over a short SEQPACKET
 * connection to pools/<public>.sock, handing it its own listening socket,
 * and keeps in its place, under the same descriptor number, a datagram
 * socket bound to an abstract name no one can guess. The daemon accepts a
 * connection, picks an instance and sends the accepted socket itself to
 * that name (SCM_RIGHTS); the instance's accept() receives it there. Bytes
 * never pass through the daemon.
 *
 * The instance's socket is connected to no one, so the daemon's death
 * leaves it as it was: a blocked accept() stays blocked, poll and epoll
 * stay quiet, handoffs already queued are still received. A new daemon
 * (started by a harness whose lifeline ended) reads pools/<public>.state,
 * which each daemon keeps, and sends to the same names again.
 *
 * Every pool socket checks its peer: the daemon talks only to processes of
 * its own user (SO_PEERCRED), the shim and the harness only to a daemon of
 * their own user (SO_PEERCRED on the registration and control connections,
 * SCM_CREDENTIALS on each handoff, since anyone may send to an abstract
 * name).
 *
 * The control socket speaks lines. "publish AID POLICY" makes the
 * connection a lifeline of AID (the daemon lives while one is open or an
 * instance is registered); "status" gets the pool as one line of JSON.
 * "scale NAME CONNS" makes it the pool's one *scaler* (`appshot template
 * serve NAME`), a lifeline too, to which the daemon pushes what the serving
 * command decides on, one line each:
 *   need held=N oldest=MS  connections wait that no instance can take now
 *                          (none registered, each at CONNS open connections,
 *                          draining, or not accepting): pushed at once for the
 *                          first held connection, then each tick while some
 *                          wait; also while the oldest connection handed to an
 *                          instance has waited POOL_BUSY_MS unaccepted
 *   joined AID             an instance of AID registered (it listens)
 *   gone AID               an instance of AID left the pool (it ended)
 * and from which it takes "drain AID" (hand AID's instances nothing more:
 * it is about to be retired) and "undrain AID". CONNS > 0 is the most open
 * connections the daemon gives one instance; further ones wait, held. A
 * scaler makes the daemon listen at once (on the address --publish named,
 * or on every address, as docker -p does): with no instance yet the first
 * connection must be taken and held, not left to the kernel's retries. The
 * scaler's end undoes its drains and its CONNS.
 *
 * Files, under APPSHOT_HOME:
 *   pools/<public>.sock   SOCK_SEQPACKET: instances register here
 *   pools/<public>.ctl    SOCK_STREAM: harness lifelines and status queries
 *   pools/<public>.state  the registered instances, for a successor daemon
 *   pools/<public>.lock   flock'ed by a harness while it finds or starts the daemon
 *   pools/<public>.log    the daemon's stderr once it is running
 */
#ifndef APPSHOT_POOL_H
#define APPSHOT_POOL_H

#include <stdint.h>

#define POOL_DIR "pools"
#define POOL_MAGIC 0x61707031u /* "app1" */

/* A connection waiting this long (held, or handed and not yet accepted)
 * means the pool is busy: the scaler is told (need). */
#define POOL_BUSY_MS 100

/* An instance's socket is bound to an abstract name beginning with this
 * prefix and carrying the listening address the program bound,
 * "<prefix><family>/<address>/<virtual port>/<32 random hex digits>", so
 * that getsockname and getsockopt on the descriptor answer what the program
 * expects, in any process that inherits it, across exec too. The random
 * part makes the name impossible to take first. */
#define POOL_LISTENER_PREFIX "appshot-listener/"
#define POOL_NAME_MAX 107 /* sun_path less the leading NUL of an abstract name */

/* Instance -> daemon, the one message of a registration, with the
 * instance's listening socket attached (SCM_RIGHTS). */
struct pool_register {
	uint32_t magic;
	uint32_t vport;   /* the virtual port the program listens on */
	uint32_t sport;   /* the system port its socket is bound to */
	uint32_t spid;    /* the registering process */
	char aid[64];     /* NUL-terminated */
	char name[POOL_NAME_MAX + 1]; /* the instance socket's abstract name, NUL-terminated */
	uint64_t ino;     /* and its inode, which a successor checks before sending */
	uint32_t flags;   /* POOL_REG_MEMBER */
	uint32_t fdnum;   /* with POOL_REG_MEMBER: the descriptor the member takes, in spid,
			   * where a daemon taking over finds it (pidfd_getfd) */
};

/* The registrant can take a member socket in place of a channel (the
 * shim can; the supervisor and the restorer read channels only). A daemon
 * that steers in the kernel (pool/steer.h, the default where it may load
 * eBPF) then answers with a listening socket of the public port's
 * SO_REUSEPORT group attached (pool_reply's member = 1) if the program bound
 * the group's address: it takes the program's descriptor, and the kernel
 * puts the connections the daemon's program picks for it in its accept
 * queue. The channel protocol below is then unused for that instance. A
 * channel in a pool steered in the kernel gets its turns all the same: the
 * daemon's own member in a slot takes them and the daemon hands them down
 * the channel. */
#define POOL_REG_MEMBER 1u

/* Instance -> daemon, the one message of a connection of its own: a
 * socket option the program sets on, or asks of, the listening socket its
 * channel stands for (Apache's TCP_DEFER_ACCEPT, SO_RCVBUF...). The daemon
 * sets it on the instance's own listener and on the public one, whose
 * accepted connections inherit it, and answers with the instance's
 * listener's answer (pool_optreply). */
#define POOL_MAGIC_OPT 0x61706f31u /* "apo1" */
#define POOL_OPT_MAX 128
struct pool_sockopt {
	uint32_t magic;
	uint32_t set;     /* 1 setsockopt, 0 getsockopt */
	int32_t level, optname;
	uint32_t len;     /* of value: what is set, or the room asked for */
	char name[POOL_NAME_MAX + 1]; /* the instance socket's abstract name */
	unsigned char value[POOL_OPT_MAX];
};

struct pool_optreply {
	int32_t status;   /* 0, or the errno of the instance's listener */
	uint32_t len;
	unsigned char value[POOL_OPT_MAX];
};

/* Daemon -> instance, the answer to pool_register: 0, or an errno; and
 * whether a member socket is attached (SCM_RIGHTS) in place of a channel. */
struct pool_reply {
	int32_t status;
	int32_t member;
};

/* Daemon -> instance: one accepted connection, attached (SCM_RIGHTS), a
 * datagram to the instance's name from a socket of the daemon's own. */
struct pool_handoff {
	uint64_t seq;
};

/* Instance -> daemon, sent back to the address the handoff came from, once
 * accept() has the connection (taken = 1) or could not install it
 * (taken = 0: the daemon hands it to someone else). Until taken, the daemon
 * keeps its own copy, so a connection queued at an instance that dies is
 * handed to another one. */
struct pool_ack {
	uint64_t seq;
	uint32_t taken;
	uint32_t pad;
};

#endif
