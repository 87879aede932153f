/* The tables side of a whole-process snapshot (rows.h). */
#define _GNU_SOURCE
#include "rows.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/journal.h"
#include "../core/procinfo.h"
#include "../core/tabledb.h"

#include <unistd.h>

int ckpt_rows_open(struct ckpt_ctx *ctx, char *err, size_t errlen)
{
	struct tabledb *t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(err, errlen, "cannot open the tables of '%s': out of memory", ctx->aid);
		return -1;
	}
	if (tabledb_open(t, ctx->home, ctx->aid, err, errlen) != 0) {
		free(t);
		return -1;
	}
	ctx->tables = t;
	ctx->identity = !(t->app_flags & APP_FLAG_NO_IDENTITY);
	return 0;
}

void ckpt_rows_close(struct ckpt_ctx *ctx)
{
	if (!ctx->tables) return;
	tabledb_close(ctx->tables);
	free(ctx->tables);
	ctx->tables = NULL;
}

/* A write transaction under the open lock's shared hold, as every writer
 * takes one (core/tabledb.h). */
static int write_begin(const struct ckpt_ctx *ctx, MDB_txn **txn)
{
	struct tabledb *t = ctx->tables;
	if (!t || !tabledb_fds_ok(t)) return EBADF;
	int rc = tabledb_write_lock(t);
	if (rc) return rc;
	if ((rc = mdb_txn_begin(t->env, NULL, 0, txn))) tabledb_write_unlock(t);
	return rc;
}

static int write_end(const struct ckpt_ctx *ctx, MDB_txn *txn, int rc)
{
	if (rc) mdb_txn_abort(txn);
	/* This LMDB's word for a commit that changed nothing: a fold whose
	 * rows another live process is folding itself (the journal passes over
	 * them), which is not a failure. */
	else if ((rc = mdb_txn_commit(txn)) == MDB_EMPTY_TXN) rc = 0;
	tabledb_write_unlock(ctx->tables);
	return rc;
}

int ckpt_rows_fold(const struct ckpt_ctx *ctx, char *err, size_t errlen)
{
	struct journal j;
	MDB_txn *txn;
	if (!ctx->tables) return 0;
	int rc = journal_open(&j, ctx->home);
	if (rc == 0 && journal_used(&j) && (rc = write_begin(ctx, &txn)) == 0) {
		rc = journal_fold_into(&j, ctx->tables, txn, getpid());
		if (rc) journal_fold_end(&j, getpid(), 0); /* before the write lock goes, as the shim's write_abort */
		rc = write_end(ctx, txn, rc);
		journal_fold_end(&j, getpid(), rc == 0);
	}
	if (rc == 0 || rc == ENOENT) rc = 0;
	else snprintf(err, errlen, "cannot fold the journal of new objects into the tables of '%s': %s", ctx->aid,
		      rc > 0 ? strerror(rc) : mdb_strerror(rc));
	journal_close(&j);
	return rc ? -1 : 0;
}

/* The application's next remapped vpid moved past vpid, if it is not already. */
static int reserve_past(const struct tabledb *t, MDB_txn *txn, uint32_t vpid)
{
	if (vpid < VRID_REMAP_BASE || vpid + 1 >= 0x7fffffffu) return 0;
	uint8_t kb[APPSHOT_AID_MAX + 2], vb[4];
	MDB_val k = { alloc_key(kb, t->aid, t->aidlen, RT_PID), kb }, v;
	int rc = mdb_get(txn, t->alloc, &k, &v);
	if (rc && rc != MDB_NOTFOUND) return rc;
	if (rc == 0 && v.mv_size == 4 && get_u32be(v.mv_data) > vpid) return 0;
	put_u32be(vb, vpid + 1);
	v.mv_size = 4;
	v.mv_data = vb;
	return mdb_put(txn, t->alloc, &k, &v, 0);
}

int ckpt_rows_bind_pid(const struct ckpt_ctx *ctx, pid_t spid, uint32_t vpid, char *err, size_t errlen)
{
	uint64_t ticks;
	if (proc_start_ticks(spid, &ticks) != 0) {
		snprintf(err, errlen, "cannot bind restored process %d to vpid %u: it is gone", (int)spid, vpid);
		return -1;
	}
	MDB_txn *txn;
	int rc = write_begin(ctx, &txn);
	uint32_t got = 0;
	if (!rc) {
		rc = tabledb_pid_record(ctx->tables, txn, (uint32_t)spid, ticks, vpid, 0, &got);
		/* Another vpid: the saved one is held, and this row must not stay. */
		if (!rc && got != vpid) rc = MDB_KEYEXIST;
		if (!rc) rc = reserve_past(ctx->tables, txn, vpid);
		rc = write_end(ctx, txn, rc);
	}
	if (rc == MDB_KEYEXIST) {
		snprintf(err, errlen, "cannot give restored process %d its vpid %u: application '%s' has a process with that vpid already", (int)spid, vpid, ctx->aid);
		return -1;
	}
	if (rc) {
		snprintf(err, errlen, "cannot record restored process %d (vpid %u) in the tables of '%s': %s", (int)spid, vpid, ctx->aid, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int ckpt_rows_forget_pid(const struct ckpt_ctx *ctx, pid_t spid)
{
	MDB_txn *txn;
	int rc = write_begin(ctx, &txn);
	if (rc) return -1;
	return write_end(ctx, txn, tabledb_pid_forget(ctx->tables, txn, (uint32_t)spid)) ? -1 : 0;
}

/* A read transaction's answer to one lookup. */
static int read_begin(const struct ckpt_ctx *ctx, MDB_txn **txn)
{
	if (!ctx->tables || !tabledb_fds_ok(ctx->tables)) return EBADF;
	return mdb_txn_begin(ctx->tables->env, NULL, MDB_RDONLY, txn);
}

int ckpt_rows_srid(const struct ckpt_ctx *ctx, uint8_t type, uint32_t vrid, uint32_t *srid)
{
	MDB_txn *txn;
	if (read_begin(ctx, &txn)) return -1;
	struct fwd_val fv;
	int rc = tabledb_fwd(ctx->tables, txn, type, vrid, &fv);
	mdb_txn_abort(txn);
	if (rc) return -1;
	*srid = fv.srid;
	return 0;
}

int ckpt_rows_vrid(const struct ckpt_ctx *ctx, uint8_t type, uint32_t srid, uint32_t *vrid)
{
	MDB_txn *txn;
	if (read_begin(ctx, &txn)) return -1;
	int rc = tabledb_rev_seen(ctx->tables, txn, type, srid, vrid);
	mdb_txn_abort(txn);
	return rc == REV_MINE ? 0 : -1;
}
