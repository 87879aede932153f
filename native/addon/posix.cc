// Single kernel calls Node's standard library does not offer: flock on the
// tables' open lock and the pool's lock files, SO_PEERCRED on a pool
// socket, and a bind probe for a free port. flock is here rather than
// through koffi: opening the tables is on every command's path, and
// loading koffi costs more than the call.
#include "napi_util.h"

#include <cerrno>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>

namespace {

using addon::int_arg;
using addon::sys_error;

// flock(fd, operation): the open lock's flock, retried on EINTR; throws
// with the errno.
Napi::Value Flock(const Napi::CallbackInfo &info)
{
	int fd = info[0].As<Napi::Number>().Int32Value(), op = info[1].As<Napi::Number>().Int32Value();
	while (flock(fd, op) != 0)
		if (errno != EINTR) throw sys_error(info.Env(), "flock", errno);
	return info.Env().Undefined();
}

// peerCred(fd): SO_PEERCRED of a connected Unix socket, { pid, uid, gid }
// of the process that listened (or connected) at the other end.
Napi::Value PeerCred(const Napi::CallbackInfo &info)
{
	int fd = info[0].As<Napi::Number>().Int32Value();
	struct ucred cr = {};
	socklen_t len = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) throw sys_error(info.Env(), "getsockopt SO_PEERCRED", errno);
	Napi::Object o = Napi::Object::New(info.Env());
	o.Set("pid", (double)cr.pid);
	o.Set("uid", (double)cr.uid);
	o.Set("gid", (double)cr.gid);
	return o;
}

// portFree(proto, port): whether the kernel lets a socket of that protocol
// bind the port on every address (dual stack) right now.
Napi::Value PortFree(const Napi::CallbackInfo &info)
{
	uint32_t proto = info[0].As<Napi::Number>().Uint32Value();
	int port = int_arg(info, 1, "port", 1, 65535);
	int type = proto == PORT_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0), rc;
	if (fd >= 0) {
		int off = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
		struct sockaddr_in6 a = {};
		a.sin6_family = AF_INET6;
		a.sin6_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&a, sizeof a);
	} else {
		// No IPv6 here: the IPv4 wildcard says the same.
		fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
		if (fd < 0) throw sys_error(info.Env(), "socket", errno);
		struct sockaddr_in a = {};
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&a, sizeof a);
	}
	close(fd);
	return Napi::Boolean::New(info.Env(), rc == 0);
}

} // namespace

namespace addon {

void RegisterPosix(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "flock", Flock },
		{ "peerCred", PeerCred },
		{ "portFree", PortFree },
	});
}

} // namespace addon
