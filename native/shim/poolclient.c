/* The shim's side of the published-port pool (core/pool.h): registering
 * a listening socket with the pool daemon of its public port, the channel
 * (a datagram socket under an abstract name) that takes its place, and the
 * connections the daemon hands over through it. Everything here talks to
 * the daemon or reads a channel; translating ports is port.c's. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"
#include "poolclient.h"
#include "../core/pool.h"
#include "../core/poolreg.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

_Atomic uint64_t known_channels[KNOWN_FDS / 64];

int channel_address(int fd, struct sockaddr_storage *out, socklen_t *outlen)
{
	struct sockaddr_un un;
	socklen_t len = sizeof un;
	int saved = errno, ok = 0;
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	if (!REAL(getsockname)(fd, (struct sockaddr *)&un, &len) && un.sun_family == AF_UNIX && len > off && un.sun_path[0] == 0)
		ok = pool_name_address(un.sun_path + 1, len - off, out, outlen);
	errno = saved;
	return ok;
}

int is_channel(int fd)
{
	struct sockaddr_storage a;
	socklen_t l;
	int is = channel_address(fd, &a, &l);
	mark_channel(fd, is);
	return is;
}

int pool_sockopt(int ch, uint16_t pub, int set, int level, int name, void *value, socklen_t *len)
{
	struct sockaddr_un daemon, self;
	socklen_t slen = sizeof self;
	struct pool_sockopt o = { POOL_MAGIC_OPT, (uint32_t)set, level, name, *len, "", { 0 } };
	struct pool_optreply r = { -1, 0, { 0 } };
	char why[PATH_MAX + 256];
	const size_t off = offsetof(struct sockaddr_un, sun_path) + 1;
	if (*len > POOL_OPT_MAX || pool_daemon_path(&daemon, shim_home(), pub) ||
	    REAL(getsockname)(ch, (struct sockaddr *)&self, &slen) || slen <= off || slen - off > POOL_NAME_MAX)
		return -2;
	memcpy(o.name, self.sun_path + 1, slen - off);
	if (set) memcpy(o.value, value, *len);
	if (pool_daemon_call(&daemon, shim_home(), pub, &o, sizeof o, -1, &r, sizeof r, NULL, why, sizeof why)) {
		static int told;
		if (!told++) shim_warn("cannot reach the pool daemon of published port %u for a socket option (%s); the option stays on the channel only", pub, why);
		return -2;
	}
	if (r.status == ENOENT) return -2; /* a daemon that does not know the instance */
	if (r.status) return shim_fail(r.status);
	if (!set) {
		memcpy(value, r.value, r.len < *len ? r.len : *len);
		*len = r.len;
	}
	return 0;
}

void pool_join(int fd, const struct sockaddr *addr, uint16_t vport, uint16_t sport, uint16_t pub)
{
	struct sockaddr_un daemon;
	const char *home = shim_home();
	char why[PATH_MAX + 256];
	if (pool_daemon_path(&daemon, home, pub)) {
		shim_warn("the pool socket path under %s is too long; port %u is not published", home, vport);
		return;
	}
	int fdflags = REAL(fcntl)(fd, F_GETFD), flflags = REAL(fcntl)(fd, F_GETFL), member = 0;
	int ch = pool_instance_join(home, pub, shim_tables()->aid, (uint32_t)shim_pid, fd, addr, vport, sport, &member, why, sizeof why);
	if (ch < 0) {
		shim_warn("cannot join the pool of published port %u at %s (%s); virtual port %u is reachable from inside the application only",
			  pub, daemon.sun_path, why, vport);
		return;
	}
	REAL(dup3)(ch, fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	/* Blocking or not as the program's socket was (a member comes
	 * non-blocking from the daemon). */
	if (flflags >= 0 && ((flflags & O_NONBLOCK) || member)) REAL(fcntl)(fd, F_SETFL, flflags & O_NONBLOCK);
	close(ch);
	/* A member (the daemon steers in the kernel) is a listening TCP socket
	 * of the public port: accept, poll and socket options are the kernel's
	 * own on it, and getsockname shows the virtual port (port.c). */
	mark_channel(fd, !member);
}

static void warn_line(const char *msg) { shim_warn("%s", msg); }

int pool_accept(int ch, int flags) { return pool_channel_accept(ch, flags, warn_line); }
