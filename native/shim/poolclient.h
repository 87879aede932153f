/* The shim's side of the published-port pool (core/pool.h), for port.c:
 * a listening socket handed to the pool daemon, the channel left in its
 * place, and the connections the daemon hands over through it. What an
 * address or a port means is port.c's to say; this only talks to the pool. */
#ifndef APPSHOT_SHIM_POOLCLIENT_H
#define APPSHOT_SHIM_POOLCLIENT_H

#include <stdint.h>
#include <sys/socket.h>

/* The descriptors below this number are the ones the shim remembers facts
 * about without asking the kernel: here, which are channels; in port.c,
 * each socket's protocol. */
#define KNOWN_FDS 1024

/* The descriptors this process knows to be pool channels, so that accept()
 * on one goes straight to the channel. Set by listen() and by an accept()
 * that found one; cleared when the number is closed or reused (fd.c). After
 * exec the set starts empty and accept() finds out again. Inline: accept()
 * and close() ask on every call. */
extern _Atomic uint64_t known_channels[KNOWN_FDS / 64];

static inline int known_channel(int fd)
{
	return fd >= 0 && fd < KNOWN_FDS && (known_channels[fd / 64] & (1ull << (fd % 64)));
}

static inline void mark_channel(int fd, int is)
{
	if (fd < 0 || fd >= KNOWN_FDS) return;
	if (is) known_channels[fd / 64] |= 1ull << (fd % 64);
	else known_channels[fd / 64] &= ~(1ull << (fd % 64));
}

/* Whether fd is a pool channel, and if so the listening address the
 * program bound, read back from the channel's own abstract name. */
int channel_address(int fd, struct sockaddr_storage *out, socklen_t *outlen);

/* Whether fd is a pool channel, asking the kernel; the answer is
 * remembered (mark_channel). */
int is_channel(int fd);

/* Hands the listening socket fd, bound to addr (system port sport, the
 * program's virtual port vport), to the pool of public port pub and puts
 * the channel in its place. A pool that cannot be reached leaves fd a plain
 * listening socket, reachable from inside the application only. */
void pool_join(int fd, const struct sockaddr *addr, uint16_t vport, uint16_t sport, uint16_t pub);

/* accept() on a channel: the next connection the pool hands this instance,
 * SOCK_NONBLOCK and SOCK_CLOEXEC of flags applied, or -1 with errno as
 * accept would set it. Blocking or not as the channel is. The connection's
 * addresses are port.c's to translate. */
int pool_accept(int ch, int flags);

/* A socket option set on (set = 1) or asked of the listening socket that
 * the channel ch stands for, through the daemon of public port pub, which
 * holds that socket: 0, -1 with the kernel's errno from that socket, or -2
 * when the daemon cannot answer (the caller falls back on the channel). */
int pool_sockopt(int ch, uint16_t pub, int set, int level, int name, void *value, socklen_t *len);

#endif
