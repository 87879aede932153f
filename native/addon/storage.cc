// The tables' files before LMDB opens them (ts/tabledb.ts): a damaged data
// file or lock file found and, where it can be, repaired; the files of new
// tables reserved on disk so a full disk fails the open, not a later write.
#include "napi_util.h"

extern "C" {
#include "../core/lockcheck.h"
#include "../core/tablecheck.h"
#include "../core/tablespace.h"
}

namespace {

using addon::sys_error;

// checkTables(path, scope): null when the tables file is sound, else what
// is damaged in it; throws with the errno when it cannot be read. Node's
// lmdb follows every page number in the file, so this runs before it opens.
// scope: true, every page (TABLECHECK_ALL); false, the top pages; a
// number N, what a reader of the first N rows reads (TABLECHECK_FIRST).
Napi::Value CheckTables(const Napi::CallbackInfo &info)
{
	std::string path = info[0].As<Napi::String>().Utf8Value();
	char why[256] = "";
	bool first = info[1].IsNumber();
	enum tablecheck_scope scope = first ? TABLECHECK_FIRST : info[1].ToBoolean() ? TABLECHECK_ALL : TABLECHECK_TOP;
	unsigned long rows = first ? (unsigned long)info[1].As<Napi::Number>().Int64Value() : 0;
	int rc = tablecheck_file(path.c_str(), scope, rows, why, sizeof why);
	if (rc == TABLECHECK_DAMAGED) return Napi::String::New(info.Env(), why);
	if (rc) throw sys_error(info.Env(), "cannot read " + path, rc);
	return info.Env().Null();
}

// reserveTables(home): the files of new tables, their first blocks
// allocated (native/core/tablespace.h); throws with the errno (ENOSPC on a
// full disk) having removed what it made. unreserveTables(home) removes them.
Napi::Value ReserveTables(const Napi::CallbackInfo &info)
{
	std::string home = info[0].As<Napi::String>().Utf8Value();
	char why[512] = "";
	int rc = tabledb_reserve(home.c_str(), why, sizeof why);
	if (rc) {
		Napi::Error e = Napi::Error::New(info.Env(), why);
		if (const char *name = strerrorname_np(rc)) e.Set("code", name);
		throw e;
	}
	return info.Env().Undefined();
}

Napi::Value UnreserveTables(const Napi::CallbackInfo &info)
{
	tabledb_unreserve(info[0].As<Napi::String>().Utf8Value().c_str());
	return info.Env().Undefined();
}

// checkLock(path[, fd]): null when LMDB's lock file at path is sound (or,
// without fd, unused and so rebuilt by LMDB at open), { repaired: what }
// when garbage reader slots were cleared, { damaged: what, inUse } when its
// header is garbage (inUse: other processes use the tables); throws with the errno. Without fd, only before this process
// opens the environment (closing a descriptor would drop its LMDB locks).
Napi::Value CheckLock(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path = info[0].As<Napi::String>().Utf8Value();
	char what[512] = "";
	int rc = info.Length() > 1 && info[1].IsNumber()
			 ? lockcheck_fd(info[1].As<Napi::Number>().Int32Value(), path.c_str(), what, sizeof what)
			 : lockcheck_file(path.c_str(), what, sizeof what);
	if (rc == LOCKCHECK_OK) return env.Null();
	if (rc > LOCKCHECK_REPAIRED) throw sys_error(env, "cannot check " + path, rc);
	Napi::Object r = Napi::Object::New(env);
	r.Set(rc == LOCKCHECK_REPAIRED ? "repaired" : "damaged", what);
	if (rc < 0) r.Set("inUse", rc == LOCKCHECK_DAMAGED_IN_USE);
	return r;
}

} // namespace

namespace addon {

void RegisterStorage(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "checkTables", CheckTables },
		{ "reserveTables", ReserveTables },
		{ "unreserveTables", UnreserveTables },
		{ "checkLock", CheckLock },
	});
}

} // namespace addon
