// What every part of the addon (addon.cc lists them) converts its
// arguments and reports its errors with, written once: arguments checked
// before they reach a kernel call, errors that carry the errno as Node's
// own system errors do.
#ifndef APPSHOT_ADDON_NAPI_UTIL_H
#define APPSHOT_ADDON_NAPI_UTIL_H

#include <napi.h>
#include <initializer_list>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <sys/sem.h>

extern "C" {
#include "../../tables/schema.h"
#include "../core/sysv.h"
}

namespace addon {

// A thrown Error names the call and the object; code and errno say what the
// kernel said, as Node's own system errors do (errno positive here).
inline Napi::Error sys_error(Napi::Env env, const std::string &what, int err)
{
	Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
	if (const char *name = strerrorname_np(err)) e.Set("code", name);
	e.Set("errno", (double)err);
	return e;
}

// The harness runs outside the shim: libc's calls are the kernel's.
inline const struct kernel_ops libc_ops = { semget, semctl, shmget, shmctl, msgget, msgctl };

inline Napi::Buffer<uint8_t> js_bytes(Napi::Env env, const uint8_t *p, size_t n)
{
	return Napi::Buffer<uint8_t>::Copy(env, p, n);
}

inline std::string aid_arg(const Napi::CallbackInfo &info, size_t i)
{
	std::string aid = info[i].As<Napi::String>().Utf8Value();
	if (aid.size() > APPSHOT_AID_MAX)
		throw Napi::RangeError::New(info.Env(), "AID longer than 63 bytes");
	return aid;
}

inline const double MAX_SAFE = 9007199254740991.0; // 2^53 - 1, JavaScript's largest exact integer

// An integer argument in [lo, hi]: a fraction or NaN would be truncated
// into some other object's ID or some other offset.
inline double int_arg(const Napi::CallbackInfo &info, size_t i, const char *name, double lo, double hi)
{
	if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
	double d = info[i].As<Napi::Number>().DoubleValue();
	if (!(d >= lo && d <= hi) || std::floor(d) != d)
		throw Napi::RangeError::New(info.Env(), std::string(name) + " is not an integer in range: " + std::to_string(d));
	return d;
}

inline int id_arg(const Napi::CallbackInfo &info, size_t i, const char *name = "id")
{
	return (int)int_arg(info, i, name, 0, INT_MAX);
}

inline Napi::Uint8Array bytes_arg(Napi::Env env, const Napi::Value &v, const char *name)
{
	if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
		throw Napi::TypeError::New(env, std::string(name) + " must be a Buffer");
	return v.As<Napi::Uint8Array>();
}

inline uint8_t ipc_type_arg(const Napi::CallbackInfo &info, size_t i)
{
	std::string t = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
	if (t == "sem") return RT_SEM;
	if (t == "shm") return RT_SHM;
	if (t == "msg") return RT_MSG;
	throw Napi::TypeError::New(info.Env(), "type must be 'sem', 'shm' or 'msg'");
}

// "shmToFd on shared memory segment 5", for messages.
inline std::string call_on(const char *call, uint8_t type, int id)
{
	return std::string(call) + " on " + sysv_noun(type) + " " + std::to_string(id);
}

// One part's exports, as a table of JavaScript name and function.
struct Export {
	const char *name;
	Napi::Value (*fn)(const Napi::CallbackInfo &);
};

inline void export_all(Napi::Env env, Napi::Object exports, std::initializer_list<Export> list)
{
	for (const Export &e : list) exports.Set(e.name, Napi::Function::New(env, e.fn));
}

} // namespace addon

#endif
