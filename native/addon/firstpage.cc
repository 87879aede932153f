// The first rows of the translations, read in C for the first page of
// `appshot tables` (harness/inspector.ts): a cursor that reads only the
// rows the page shows, through the shim's own environment code
// (core/tabledb.h), so that the page needs neither the lmdb package nor
// its env open (half of the command's start-up at a million mappings).
// The caller has checked the pages these reads pass through
// (checkTables(path, n)) and decodes the rows with tables/schema.ts.
#include "napi_util.h"

#include <unistd.h>

extern "C" {
#include "../core/journal.h"
#include "../core/tabledb.h"
}

namespace {

// Entries of a database in the transaction (0 for the paths database of
// tables written before it existed).
double entries(MDB_txn *txn, MDB_dbi dbi, bool present)
{
	MDB_stat st;
	return present && mdb_stat(txn, dbi, &st) == 0 ? (double)st.ms_entries : 0;
}

// firstRows(home, n, skip): { rows: [key, value][] (forward rows skip to
// n - 1 in key order, as many as there are), fwdEntries, pathEntries } read
// in one transaction; the rows before skip are stepped over, not copied (a
// page far down costs no memory). null when the tables cannot be opened
// here (the caller then takes the lmdb path, which says why).
bool journal_holds_rows(const std::string &home)
{
	struct journal j;
	std::string file = home + "/" + APPSHOT_INFLIGHT_FILE;
	if (access(file.c_str(), F_OK) != 0 || journal_open(&j, home.c_str())) return false;
	bool used = journal_used(&j) > 0;
	journal_close(&j);
	return used;
}

Napi::Value FirstRows(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	uint32_t n = (uint32_t)addon::int_arg(info, 1, "rows", 0, UINT32_MAX);
	uint32_t skip = (uint32_t)addon::int_arg(info, 2, "skip", 0, n);
	struct tabledb t;
	char err[600];
	if (tabledb_open_env(&t, home.c_str(), err, sizeof err)) return env.Null();
	if (journal_holds_rows(home)) {
		tabledb_close(&t); // rows not in LMDB yet: the lmdb path folds them in first
		return env.Null();
	}
	MDB_txn *txn = nullptr;
	MDB_cursor *cur = nullptr;
	if (mdb_txn_begin(t.env, nullptr, MDB_RDONLY, &txn) || mdb_cursor_open(txn, t.fwd, &cur)) {
		if (txn) mdb_txn_abort(txn);
		tabledb_close(&t);
		return env.Null();
	}
	Napi::Array rows = Napi::Array::New(env);
	MDB_val k, v;
	int rc = MDB_NOTFOUND;
	for (uint32_t i = 0; i < n && (rc = mdb_cursor_get(cur, &k, &v, i ? MDB_NEXT : MDB_FIRST)) == 0; i++) {
		if (i < skip) continue;
		Napi::Array row = Napi::Array::New(env, 2);
		row.Set(0u, addon::js_bytes(env, (const uint8_t *)k.mv_data, k.mv_size));
		row.Set(1u, addon::js_bytes(env, (const uint8_t *)v.mv_data, v.mv_size));
		rows.Set(i - skip, row);
	}
	Napi::Value result = env.Null();
	if (rc == 0 || rc == MDB_NOTFOUND) {
		Napi::Object r = Napi::Object::New(env);
		r.Set("rows", rows);
		r.Set("fwdEntries", entries(txn, t.fwd, true));
		r.Set("pathEntries", entries(txn, t.paths, t.has_paths));
		result = r;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	tabledb_close(&t);
	return result;
}

} // namespace

namespace addon {

void RegisterFirstPage(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, { { "firstRows", FirstRows } });
}

} // namespace addon
