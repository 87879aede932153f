/*
 * The published-port pool: what the shim (shim/port.c), the pool daemon
 * (pool/pool.c) and the harness (ts/pool.ts) agree on.
 *
 * One daemon per published (public) TCP port holds the system listener on
 * that port. Each instance (a listening socket of an application that
 * publishes the port) hands its own listening socket to the daemon and
 * keeps, in its place under the same descriptor number, one end of a
 * SOCK_SEQPACKET channel to the daemon. The daemon accepts a connection,
 * picks an instance and passes the accepted socket itself down that
 * channel (SCM_RIGHTS); the instance's accept() receives it there. Bytes
 * never pass through the daemon.
 *
 * Files, under APPSHOT_HOME:
 *   pools/<public>.sock  SOCK_SEQPACKET: instances' channels
 *   pools/<public>.ctl   SOCK_STREAM: harness lifelines and status queries
 *   pools/<public>.lock  flock'ed by a harness while it finds or starts the daemon
 *   pools/<public>.log   the daemon's stderr once it is running
 */
#ifndef APPSHOT_POOL_H
#define APPSHOT_POOL_H

#include <stdint.h>

#define POOL_DIR "pools"
#define POOL_MAGIC 0x61707031u /* "app1" */

/* A channel's instance end is bound to an abstract name beginning with
 * this prefix and carrying the listening address the program bound,
 * "<prefix><family>/<address>/<virtual port>/<spid>.<n>", so that
 * getsockname and getsockopt on the descriptor answer what the program
 * expects, in any process that inherits it, across exec too. */
#define POOL_LISTENER_PREFIX "appshot-listener/"

/* Instance -> daemon, the first message on a channel, with the instance's
 * listening socket attached (SCM_RIGHTS). */
struct pool_register {
	uint32_t magic;
	uint32_t vport;   /* the virtual port the program listens on */
	uint32_t sport;   /* the system port its socket is bound to */
	uint32_t spid;    /* the registering process */
	char aid[64];     /* NUL-terminated */
};

/* Daemon -> instance, the answer to pool_register: 0, or an errno. */
struct pool_reply {
	int32_t status;
};

/* Daemon -> instance: one accepted connection, attached (SCM_RIGHTS). */
struct pool_handoff {
	uint64_t seq;
};

/* Instance -> daemon, once accept() has the connection (taken = 1) or
 * could not install it (taken = 0: the daemon hands it to someone else).
 * Until taken, the daemon keeps its own copy, so a connection sitting in
 * the channel of an instance that dies is handed to another one. */
struct pool_ack {
	uint64_t seq;
	uint32_t taken;
	uint32_t pad;
};

#endif
