// The home's inflight record (native/core/inflight.h) from Node: an object
// the harness creates (a restore's ipcCreate) is covered by it until the
// commit that maps it (inflightClear), and cleanup recovers what a crashed
// creator left behind (recoverInflight). The three share one open record
// per home.
#include "napi_util.h"

#include <cerrno>
#include <cstdio>
#include <map>
#include <mutex>
#include <unistd.h>

extern "C" {
#include "../core/inflight.h"
#include "../core/journal.h"
}

namespace {

using addon::aid_arg;
using addon::int_arg;
using addon::ipc_type_arg;
using addon::libc_ops;
using addon::MAX_SAFE;
using addon::sys_error;

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

// One inflight record per home, opened once; the harness may run worker
// threads, which share this module's statics.
std::mutex inflight_mutex;
std::map<std::string, inflight_file> inflight_files;

inflight_file &inflight_for(Napi::Env env, const std::string &home)
{
	auto it = inflight_files.find(home);
	if (it != inflight_files.end()) return it->second;
	inflight_file f = {};
	int rc = inflight_open(&f, home.c_str());
	if (rc) throw sys_error(env, "cannot open " + home + "/" + APPSHOT_INFLIGHT_FILE, rc);
	return inflight_files.emplace(home, f).first->second;
}

// recoverInflight(home, isMapped(type, srid) => boolean): string | null.
// The caller holds the write lock (runs this inside a write transaction).
Napi::Value RecoverInflight(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	inflight_file &f = inflight_for(env, home);
	MappedCtx ctx{ env, info[1].As<Napi::Function>() };
	char report[512];
	int removed = inflight_recover(&f, &libc_ops, mapped_by_js, &ctx, report, sizeof report);
	return removed ? Napi::Value(Napi::String::New(env, report)) : env.Null();
}

std::string key_text(uint32_t key)
{
	char b[32];
	snprintf(b, sizeof b, key ? "key 0x%08x" : "IPC_PRIVATE", key);
	return b;
}

// ipcCreate(home, aid, type, key, size, mode): a new object, covered by the
// home's inflight record until inflightClear. The caller holds the write
// lock (is inside its write transaction) from before this call to its commit.
Napi::Value IpcCreate(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (!info[0].IsString()) throw Napi::TypeError::New(env, "home must be a string");
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::string aid = aid_arg(info, 1);
	uint8_t type = ipc_type_arg(info, 2);
	uint32_t key = (uint32_t)int_arg(info, 3, "key", 0, UINT32_MAX);
	uint64_t size = (uint64_t)int_arg(info, 4, "size", 0, type == RT_SEM ? INT_MAX : MAX_SAFE);
	int mode = (int)int_arg(info, 5, "mode", 0, 0xffff) & 0777;
	std::lock_guard<std::mutex> hold(inflight_mutex);
	inflight_file &f = inflight_for(env, home);
	// The record covers one object: a second would leave the first to leak
	// if this process died before the commit.
	if (f.token)
		throw Napi::Error::New(env, "ipcCreate: the inflight record of " + home +
						    " still covers the object created before: commit its rows and call inflightClear first");
	inflight_begin(&f, getpid(), aid.c_str(), type, key);
	int id = sysv_get(&libc_ops, type, (key_t)key, size, IPC_CREAT | IPC_EXCL | mode);
	if (id < 0) {
		int e = errno;
		inflight_clear(&f);
		throw sys_error(env, std::string("ipcCreate of a ") + sysv_noun(type) + " with " + key_text(key), e);
	}
	inflight_created(&f, (uint32_t)id);
	return Napi::Number::New(env, id);
}

// inflightClear(home): after the commit that recorded the object.
Napi::Value InflightClear(const Napi::CallbackInfo &info)
{
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	auto it = inflight_files.find(home);
	if (it != inflight_files.end() && it->second.token) inflight_clear(&it->second);
	return info.Env().Undefined();
}

// The home's journal of new objects (core/journal.h), in the same file.
std::map<std::string, journal> journals;

journal &journal_for(Napi::Env env, const std::string &home)
{
	auto it = journals.find(home);
	if (it != journals.end()) return it->second;
	journal j;
	int rc = journal_open(&j, home.c_str());
	if (rc) throw sys_error(env, "cannot open the journal in " + home + "/" + APPSHOT_INFLIGHT_FILE, rc);
	return journals.emplace(home, j).first->second;
}

// journalUsed(home): how many rows and pending records the journal holds
// (0: nothing to fold or recover).
Napi::Value JournalUsed(const Napi::CallbackInfo &info)
{
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	journal &j = journal_for(info.Env(), home);
	return Napi::Number::New(info.Env(), journal_used(&j) + journal_pending(&j));
}

// recoverJournal(home, isMapped(type, srid) => boolean): string | null, as
// recoverInflight, for the journal's pending records. Inside a write transaction.
Napi::Value RecoverJournal(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	journal &j = journal_for(env, home);
	MappedCtx ctx{ env, info[1].As<Napi::Function>() };
	char report[512];
	int removed = journal_recover(&j, &libc_ops, mapped_by_js, &ctx, report, sizeof report, 1);
	return removed ? Napi::Value(Napi::String::New(env, report)) : env.Null();
}

struct FoldCtx {
	Napi::Env env;
	Napi::Function put;
};

int put_by_js(void *arg, const char *aid, const journal_row *r)
{
	auto *c = static_cast<FoldCtx *>(arg);
	c->put.Call({ Napi::String::New(c->env, aid), Napi::Number::New(c->env, r->type), Napi::Number::New(c->env, r->vrid),
		      Napi::Number::New(c->env, r->srid), Napi::Number::New(c->env, r->creator),
		      Napi::Number::New(c->env, (double)r->created_ms), Napi::Number::New(c->env, r->vkey),
		      Napi::Number::New(c->env, r->skey) });
	return c->env.IsExceptionPending() ? 1 : 0;
}

// foldJournalBegin(home, put(aid, type, vrid, srid, creator, createdMs, vkey, skey)):
// calls put with every row, inside the caller's write transaction; then
// foldJournalEnd(home, committed) after it ended (journal_fold_begin/end).
Napi::Value FoldJournalBegin(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	FoldCtx ctx{ env, info[1].As<Napi::Function>() };
	int rc = journal_fold_begin(&journal_for(env, home), getpid(), put_by_js, &ctx);
	if (rc == ETIMEDOUT)
		throw Napi::Error::New(env, "the journal of new objects in " + home + "/" + APPSHOT_INFLIGHT_FILE +
						    " stayed locked for seconds: a process is stopped while it changes it "
						    "(SIGSTOP, a debugger); continue it and try again");
	return env.Undefined();
}

Napi::Value FoldJournalEnd(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	journal_fold_end(&journal_for(env, home), getpid(), info[1].ToBoolean().Value() ? 1 : 0);
	return env.Undefined();
}

} // namespace

namespace addon {

void RegisterInflight(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "recoverInflight", RecoverInflight },
		{ "ipcCreate", IpcCreate },
		{ "inflightClear", InflightClear },
		{ "journalUsed", JournalUsed },
		{ "recoverJournal", RecoverJournal },
		{ "foldJournalBegin", FoldJournalBegin },
		{ "foldJournalEnd", FoldJournalEnd },
	});
}

} // namespace addon
