// The snapshot file's byte work (ts/snapfile.ts): the CRC-32C every
// header and section carries, shared memory segments' bytes streamed
// between the kernel and the file at the descriptor's position (never
// whole in a JavaScript buffer), and the seek that moves that position
// past a section.
#include "napi_util.h"

#include <cerrno>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "../core/snapshot.h"
}

namespace {

using addon::bytes_arg;
using addon::id_arg;
using addon::int_arg;
using addon::MAX_SAFE;
using addon::call_on;
using addon::sys_error;

uint32_t crc_arg(const Napi::CallbackInfo &info, size_t i)
{
	return info.Length() > i && !info[i].IsUndefined() ? (uint32_t)int_arg(info, i, "crc", 0, UINT32_MAX) : 0;
}

// crc32c(buf, crc = 0): crc continued over buf.
Napi::Value Crc32c(const Napi::CallbackInfo &info)
{
	Napi::Uint8Array b = bytes_arg(info.Env(), info[0], "buf");
	return Napi::Number::New(info.Env(), crc32c(crc_arg(info, 1), b.Data(), b.ByteLength()));
}

typedef int (*shm_copy_fn)(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc);

// (fd, shmid, offset, len, crc) => crc continued over the bytes copied.
Napi::Value ShmCopy(const Napi::CallbackInfo &info, const char *call, shm_copy_fn copy)
{
	int fd = id_arg(info, 0, "fd");
	int shmid = id_arg(info, 1, "shmid");
	uint64_t offset = (uint64_t)int_arg(info, 2, "offset", 0, MAX_SAFE);
	uint64_t len = (uint64_t)int_arg(info, 3, "len", 0, MAX_SAFE);
	uint32_t crc = crc_arg(info, 4);
	int rc = copy(fd, shmid, offset, len, &crc);
	if (rc) throw sys_error(info.Env(), call_on(call, RT_SHM, shmid) + " (bytes " + std::to_string(offset) + " to " +
						    std::to_string(offset + len) + ", fd " + std::to_string(fd) + ")", rc);
	return Napi::Number::New(info.Env(), crc);
}

Napi::Value ShmToFd(const Napi::CallbackInfo &info) { return ShmCopy(info, "shmToFd", snap_shm_to_fd); }
Napi::Value FdToShm(const Napi::CallbackInfo &info) { return ShmCopy(info, "fdToShm", snap_fd_to_shm); }

// semCapture(semids: Int32Array): Uint32Array, for each set in order:
// errno (0 when read), key, uid, gid, mode, nsems, then nsems values (none
// after an errno). One call for every set of a snapshot: two calls into the
// addon per set (IPC_STAT, GETALL) were most of capturing thousands.
Napi::Value SemCapture(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
		throw Napi::TypeError::New(env, "semids must be an Int32Array");
	Napi::Int32Array ids = info[0].As<Napi::Int32Array>();
	std::vector<uint32_t> out;
	out.reserve(ids.ElementLength() * 7);
	for (size_t i = 0; i < ids.ElementLength(); i++) {
		struct semid_ds ds;
		union semun_arg {
			int val;
			struct semid_ds *buf;
			unsigned short *array;
		} arg;
		arg.buf = &ds;
		size_t at = out.size();
		if (semctl(ids[i], 0, IPC_STAT, arg) != 0) {
			out.push_back((uint32_t)errno);
			continue;
		}
		out.insert(out.end(), { 0u, (uint32_t)ds.sem_perm.__key, ds.sem_perm.uid, ds.sem_perm.gid, (uint32_t)ds.sem_perm.mode, (uint32_t)ds.sem_nsems });
		std::vector<unsigned short> vals(ds.sem_nsems);
		arg.array = vals.data();
		if (semctl(ids[i], 0, GETALL, arg) != 0) {
			out.resize(at);
			out.push_back((uint32_t)errno);
			continue;
		}
		out.insert(out.end(), vals.begin(), vals.end());
	}
	Napi::Uint32Array r = Napi::Uint32Array::New(env, out.size());
	std::copy(out.begin(), out.end(), r.Data());
	return r;
}

// seek(fd, offset): lseek(SEEK_SET), for reading past a section Node would
// otherwise have to read.
Napi::Value Seek(const Napi::CallbackInfo &info)
{
	int fd = id_arg(info, 0, "fd");
	double off = info[1].As<Napi::Number>().DoubleValue();
	if (lseek(fd, (off_t)off, SEEK_SET) < 0) throw sys_error(info.Env(), "lseek", errno);
	return info.Env().Undefined();
}

} // namespace

namespace addon {

void RegisterSnapshot(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "crc32c", Crc32c },
		{ "shmToFd", ShmToFd },
		{ "fdToShm", FdToShm },
		{ "seek", Seek },
		{ "semCapture", SemCapture },
	});
}

} // namespace addon
