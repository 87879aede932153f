// The Node side of the translation core: the C layouts themselves (so the
// golden test holds C and TypeScript to the same bytes) and the inflight
// recovery the harness runs when it cleans up after an application.
#include <napi.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/msg.h>

extern "C" {
#include "../../tables/schema.h"
#include "../core/inflight.h"
}

namespace {

Napi::Buffer<uint8_t> bytes(Napi::Env env, const uint8_t *p, size_t n)
{
	return Napi::Buffer<uint8_t>::Copy(env, p, n);
}

uint32_t u32(const Napi::Value &v) { return v.As<Napi::Number>().Uint32Value(); }
uint64_t u64(const Napi::Value &v) { return (uint64_t)v.As<Napi::Number>().DoubleValue(); }

std::string aid_arg(const Napi::CallbackInfo &info, size_t i)
{
	std::string aid = info[i].As<Napi::String>().Utf8Value();
	if (aid.size() > APPSHOT_AID_MAX)
		throw Napi::RangeError::New(info.Env(), "AID longer than 63 bytes");
	return aid;
}

Napi::Value FwdKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[FWD_KEY_MAX];
	size_t n = fwd_key(b, aid.data(), aid.size(), (uint8_t)u32(info[1]), u32(info[2]));
	return bytes(info.Env(), b, n);
}

Napi::Value FwdVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct fwd_val v = { u32(o.Get("srid")), u32(o.Get("vkey")), u32(o.Get("skey")),
			     u32(o.Get("creator")), u64(o.Get("createdMs")) };
	uint8_t b[FWD_VAL_LEN];
	fwd_val_put(b, &v);
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcKey(const Napi::CallbackInfo &info)
{
	uint8_t b[PROC_KEY_LEN];
	proc_key(b, u32(info[0]));
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[PROC_VAL_MAX];
	return bytes(info.Env(), b, proc_val(b, u64(info[0]), aid.data(), aid.size()));
}

Napi::Value FwdValRemoved(const Napi::CallbackInfo &info)
{
	Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
	if (b.Length() != FWD_VAL_LEN) throw Napi::RangeError::New(info.Env(), "a fwd value is 24 bytes");
	struct fwd_val v;
	fwd_val_get(&v, b.Data());
	return Napi::Boolean::New(info.Env(), fwd_val_removed(&v));
}

Napi::Value RevKey(const Napi::CallbackInfo &info)
{
	uint8_t b[REV_KEY_LEN];
	rev_key(b, u32(info[0]), (uint8_t)u32(info[1]), u32(info[2]));
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value RevVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[REV_VAL_MAX];
	return bytes(info.Env(), b, rev_val(b, u32(info[0]), aid.data(), aid.size()));
}

Napi::Value AllocKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[APPSHOT_AID_MAX + 2];
	return bytes(info.Env(), b, alloc_key(b, aid.data(), aid.size(), (uint8_t)u32(info[1])));
}

Napi::Value AppVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct app_val v = { (uint8_t)u32(o.Get("schema")), (uint8_t)u32(o.Get("state")),
			     (uint16_t)u32(o.Get("flags")), u32(o.Get("harnessSpid")),
			     u64(o.Get("harnessStart")), u64(o.Get("createdMs")), u64(o.Get("endedMs")) };
	uint8_t b[APP_VAL_FIXED];
	app_val_put(b, &v);
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value PortId(const Napi::CallbackInfo &info)
{
	uint32_t proto = info[0].As<Napi::Number>().Uint32Value();
	uint32_t port = info[1].As<Napi::Number>().Uint32Value();
	return Napi::Number::New(info.Env(), port_id(proto, (uint16_t)port));
}

Napi::Value AidValid(const Napi::CallbackInfo &info)
{
	std::string aid = info[0].As<Napi::String>().Utf8Value();
	return Napi::Boolean::New(info.Env(), aid_valid(aid.data(), aid.size()));
}

struct MappedCtx {
	Napi::Env env;
	Napi::Function fn;
};

int mapped_by_js(void *ctx, uint8_t type, uint32_t srid)
{
	auto *c = static_cast<MappedCtx *>(ctx);
	Napi::Value r = c->fn.Call({ Napi::Number::New(c->env, type), Napi::Number::New(c->env, srid) });
	return r.ToBoolean().Value() ? 1 : 0;
}

// recoverInflight(home, isMapped(type, srid) => boolean): string | null.
// The caller holds the write lock (runs this inside a write transaction).
Napi::Value RecoverInflight(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	struct inflight_file f = {};
	int rc = inflight_open(&f, home.c_str());
	if (rc) throw Napi::Error::New(env, std::string("cannot open ") + home + "/" + APPSHOT_INFLIGHT_FILE + ": " + strerror(rc));
	MappedCtx ctx{ env, info[1].As<Napi::Function>() };
	static const struct kernel_ops libc_ops = { semget, semctl, shmget, shmctl, msgget, msgctl };
	char report[512];
	int removed = inflight_recover(&f, &libc_ops, mapped_by_js, &ctx, report, sizeof report);
	inflight_close(&f);
	return removed ? Napi::Value(Napi::String::New(env, report)) : env.Null();
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	exports.Set("fwdKey", Napi::Function::New(env, FwdKey));
	exports.Set("fwdVal", Napi::Function::New(env, FwdVal));
	exports.Set("procKey", Napi::Function::New(env, ProcKey));
	exports.Set("procVal", Napi::Function::New(env, ProcVal));
	exports.Set("fwdValRemoved", Napi::Function::New(env, FwdValRemoved));
	exports.Set("revKey", Napi::Function::New(env, RevKey));
	exports.Set("revVal", Napi::Function::New(env, RevVal));
	exports.Set("allocKey", Napi::Function::New(env, AllocKey));
	exports.Set("appVal", Napi::Function::New(env, AppVal));
	exports.Set("portId", Napi::Function::New(env, PortId));
	exports.Set("aidValid", Napi::Function::New(env, AidValid));
	exports.Set("recoverInflight", Napi::Function::New(env, RecoverInflight));
	return exports;
}

} // namespace

NODE_API_MODULE(appshot, Init)
