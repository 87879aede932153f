/* An instance's registration with the pool daemon of a published port
 * (core/pool.h), shared by the shim (a program's listen() on a published
 * virtual port, shim/poolclient.c) and appshot-checkpoint (a restored
 * program's listener handed to the restored application's pool,
 * checkpoint/fds_sock.c). Every kernel call is made with raw_call: inside
 * the shim it is neither wrapped nor trapped again. */
#ifndef APPSHOT_POOLREG_H
#define APPSHOT_POOLREG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The listening address (with the virtual port) a channel's abstract
 * name carries: name is the name without its leading NUL, n bytes long.
 * 1 and *out, or 0 when name is not a pool channel's. */
int pool_name_address(const char *name, size_t n, struct sockaddr_storage *out, socklen_t *outlen);

/* The path of the daemon socket of public port pub under home: 0, or -1
 * when it does not fit in a sun_path. */
int pool_daemon_path(struct sockaddr_un *daemon, const char *home, uint16_t pub);

/* One message to the daemon at daemon (msg, with fd attached unless
 * fd < 0) and its answer of rlen bytes into reply, with the descriptor it
 * carries, if any, in *rfd (close-on-exec; -1 for none; rfd NULL: none
 * expected, one that comes is closed): NULL, or why not (written into
 * why). The daemon must be of our own effective user. */
const char *pool_daemon_call(const struct sockaddr_un *daemon, const char *home, uint16_t pub, const void *msg, size_t mlen, int fd,
			     void *reply, size_t rlen, int *rfd, char *why, size_t cap);

/* Registers the listening socket listener (bound to addr, system port
 * sport, the program's virtual port vport) of process spid of application
 * aid with the pool daemon of public port pub under home: the channel (a
 * new descriptor, close-on-exec) that takes its place, or -1 with why. */
int pool_channel_join(const char *home, uint16_t pub, const char *aid, uint32_t spid, int listener, const struct sockaddr *addr,
		      uint16_t vport, uint16_t sport, char *why, size_t cap);

/* The same, for a registrant that can take a member socket (core/pool.h,
 * POOL_REG_MEMBER): the descriptor is a channel, or with *member = 1 a
 * listening socket of the public port's group, steered by the kernel. */
int pool_instance_join(const char *home, uint16_t pub, const char *aid, uint32_t spid, int listener, const struct sockaddr *addr,
		       uint16_t vport, uint16_t sport, int *member, char *why, size_t cap);

/* accept() on a channel: the next connection the pool hands this instance
 * (its handoff acknowledged to the daemon), SOCK_NONBLOCK and SOCK_CLOEXEC
 * of flags applied, or -1 with errno as accept would set it. Blocking or
 * not as the channel is. A datagram not from a daemon of our own user is
 * dropped, said once through warn. Used by the shim's accept and by the
 * supervisor's for a static or Go program (notify/port.c). */
int pool_channel_accept(int ch, int flags, void (*warn)(const char *msg));

#endif
