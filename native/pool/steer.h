/*
 * Kernel steering of a published port (pool.c's kernel mode): the public
 * port is a SO_REUSEPORT group of listening sockets, one member per
 * instance, and an SK_REUSEPORT eBPF program picks the member of each new
 * connection in the kernel, so that the daemon is off the per-connection
 * path. Needs CAP_BPF (root here: unprivileged BPF is off on most hosts);
 * steer_load says why not, and the daemon then hands connections over in
 * user space as before.
 *
 * The program chooses round robin, exactly: an atomic counter modulo the
 * number of slots in use; a turn that falls on a slot left empty (a member
 * that closed: the kernel empties its slot at the close; or one the daemon
 * took out) is used up and the next taken. Or least connections (see
 * steer_tuple). Its slots
 * are those of a SOCKMAP (not a REUSEPORT_SOCKARRAY: a member is in the
 * SOCKHASH of steer_direct too, and a socket in a sockarray can be in no
 * sockmap, EBUSY). With no slot in use it picks
 * STEER_HOLD, the daemon's own member, where connections wait unaccepted
 * until an instance comes. It is loaded as SELECT_OR_MIGRATE: when a member
 * closes (its instance died), the connections queued at it are moved by
 * the kernel to the member the program picks, so none is lost while one
 * instance remains, with no daemon in the way. Each pick counts in the
 * chosen slot's counter (steer_handed).
 */
#ifndef APPSHOT_POOL_STEER_H
#define APPSHOT_POOL_STEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STEER_SLOTS 64            /* instances at once in kernel mode */
#define STEER_HOLD STEER_SLOTS    /* the daemon's holding member */

/* Makes the maps and loads the program, round robin or (lc) least
 * connections: true, or false with why. */
bool steer_load(bool lc, char *why, size_t cap);

/* The program attached to the group of listening socket fd (bound with
 * SO_REUSEPORT): the whole group is steered by it. 0, or an errno. */
int steer_attach(int fd);

/* Listening socket fd (a member of the group) into slot; slots in use
 * [0, nslots) are what the program chooses among. 0, or an errno. */
int steer_put(uint32_t slot, int fd);
void steer_clear(uint32_t slot);
void steer_set_nslots(uint32_t n);

/* Whether slot still holds a member: the kernel empties it when the
 * member's last descriptor closes. */
bool steer_live(uint32_t slot);

/* The instances' own (system) ports: a connection to one goes to that
 * instance's member, whose listener it stands for (an SK_LOOKUP program
 * on our network namespace, attached for as long as we live). true, or
 * false with why. */
bool steer_direct(char *why, size_t cap);

/* Connections to TCP port of this namespace, at address addr (or any
 * address, for a wildcard), go to listening socket fd until it closes,
 * counted as handed to slot: 0, or an errno. */
struct sockaddr_storage;
int steer_direct_put(uint16_t port, const struct sockaddr_storage *addr, int fd, uint32_t slot);

/* Least connections. The program picks the slot of fewest connections
 * as last counted (steer_set_conns, by the daemon from the kernel's socket
 * table) plus those it picked since, and records the client's address and
 * port with the slot it gave them; a connection the daemon finds open is
 * counted for the slot steer_tuple_slot says. A slot no member holds is
 * given a count no member reaches, so that it is never the fewest. */
struct steer_tuple {
	uint32_t family; /* AF_INET or AF_INET6 (a v4-mapped client: AF_INET) */
	uint16_t port;   /* the client's, network order */
	uint16_t pad;
	uint8_t addr[16]; /* the client's: 4 bytes for AF_INET, the rest 0 */
};
#define STEER_NO_MEMBER (UINT64_MAX / 2)
void steer_set_conns(uint32_t slot, uint64_t n);
uint64_t steer_conns(uint32_t slot);
bool steer_tuple_slot(const struct steer_tuple *t, uint32_t *slot);

/* How many connections the program has given slot so far. */
uint64_t steer_handed(uint32_t slot);

#endif
