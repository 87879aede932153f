// The C layouts of tables/schema.h, callable from Node for one reason: so
// that test/schema.test.ts holds C and TypeScript (tables/schema.ts) to the
// same bytes, the golden vectors in tables/golden.json. The library never
// calls these; it encodes with tables/schema.ts.
#include "napi_util.h"

#include <vector>

namespace {

using addon::aid_arg;
using addon::js_bytes;

uint32_t js_u32(const Napi::Value &v) { return v.As<Napi::Number>().Uint32Value(); }
uint64_t js_u64(const Napi::Value &v) { return (uint64_t)v.As<Napi::Number>().DoubleValue(); }

Napi::Value FwdKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[FWD_KEY_MAX];
	size_t n = fwd_key(b, aid.data(), aid.size(), (uint8_t)js_u32(info[1]), js_u32(info[2]));
	return js_bytes(info.Env(), b, n);
}

Napi::Value FwdVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct fwd_val v = { js_u32(o.Get("srid")), js_u32(o.Get("vkey")), js_u32(o.Get("skey")),
			     js_u32(o.Get("creator")), js_u64(o.Get("createdMs")) };
	uint8_t b[FWD_VAL_LEN];
	fwd_val_put(b, &v);
	return js_bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcKey(const Napi::CallbackInfo &info)
{
	uint8_t b[PROC_KEY_LEN];
	proc_key(b, js_u32(info[0]));
	return js_bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[PROC_VAL_MAX];
	return js_bytes(info.Env(), b, proc_val(b, js_u64(info[0]), aid.data(), aid.size()));
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
	rev_key(b, js_u32(info[0]), (uint8_t)js_u32(info[1]), js_u32(info[2]));
	return js_bytes(info.Env(), b, sizeof b);
}

Napi::Value RevVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[REV_VAL_MAX];
	return js_bytes(info.Env(), b, rev_val(b, js_u32(info[0]), aid.data(), aid.size()));
}

Napi::Value AllocKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[APPSHOT_AID_MAX + 2];
	return js_bytes(info.Env(), b, alloc_key(b, aid.data(), aid.size(), (uint8_t)js_u32(info[1])));
}

Napi::Value PathKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[PATH_KEY_MAX];
	return js_bytes(info.Env(), b, path_key(b, aid.data(), aid.size(), (uint16_t)js_u32(info[1])));
}

Napi::Value PathVal(const Napi::CallbackInfo &info)
{
	std::string from = info[0].As<Napi::String>().Utf8Value(), to = info[1].As<Napi::String>().Utf8Value();
	if (from.size() >= APPSHOT_PATH_MAX || to.size() >= APPSHOT_PATH_MAX)
		throw Napi::RangeError::New(info.Env(), "a redirected path is shorter than PATH_MAX");
	std::vector<uint8_t> b(PATH_VAL_MAX);
	return js_bytes(info.Env(), b.data(), path_val(b.data(), from.data(), from.size(), to.data(), to.size()));
}

Napi::Value AppVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct app_val v = { (uint8_t)js_u32(o.Get("schema")), (uint8_t)js_u32(o.Get("state")),
			     (uint16_t)js_u32(o.Get("flags")), js_u32(o.Get("harnessSpid")),
			     js_u64(o.Get("harnessStart")), js_u64(o.Get("createdMs")), js_u64(o.Get("endedMs")) };
	uint8_t b[APP_VAL_FIXED];
	app_val_put(b, &v);
	return js_bytes(info.Env(), b, sizeof b);
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

} // namespace

namespace addon {

void RegisterSchemaVectors(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "fwdKey", FwdKey },
		{ "fwdVal", FwdVal },
		{ "procKey", ProcKey },
		{ "procVal", ProcVal },
		{ "fwdValRemoved", FwdValRemoved },
		{ "revKey", RevKey },
		{ "revVal", RevVal },
		{ "allocKey", AllocKey },
		{ "appVal", AppVal },
		{ "pathKey", PathKey },
		{ "pathVal", PathVal },
		{ "portId", PortId },
		{ "aidValid", AidValid },
	});
}

} // namespace addon
