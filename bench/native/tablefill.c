/*
 * tablefill: fills the tables with semaphore mappings, for benchmarks and
 * tests that need large tables without creating kernel objects.
 *
 *   tablefill HOME APPS ROWS [PREFIX]   APPS kept applications PREFIX-00000..
 *                                       (default prefix "fill"), each with
 *                                       ROWS sets, vrid 1..ROWS
 *   tablefill HOME --aid AID ROWS       ROWS sets, vrid 1..ROWS, added to the
 *                                       running application AID
 *
 * Every row is a forward row and its reverse row, as the shim writes them.
 * The system IDs are fake: 0x80000000 and up, past every row already there,
 * so they are unique on the host and never a kernel IPC ID (those are
 * non-negative ints): cleanup and gc find no kernel object under them and
 * remove nothing real. Prints one JSON object: apps, rows, seconds.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../native/core/tabledb.h"
#include "bench.h"

#define ROWS_PER_TXN 4096u /* each a forward and a reverse put */
#define FAKE_SRID_BASE 0x80000000u

struct fill {
	struct tabledb t; /* t.aid is the application being filled */
	MDB_txn *txn;
	uint32_t in_txn, next_srid;
	uint64_t now;
	char err[600];
};

static int failf(struct fill *f, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->err, sizeof f->err, fmt, ap);
	va_end(ap);
	return rc ? rc : -1;
}

/* Write transactions as every writer takes them: under the open lock held
 * shared (native/core/tabledb.h). */
static int begin(struct fill *f)
{
	int rc = tabledb_write_lock(&f->t);
	if (rc) return failf(f, rc, "cannot lock the tables: %s", strerror(rc));
	if ((rc = mdb_txn_begin(f->t.env, NULL, 0, &f->txn))) {
		tabledb_write_unlock(&f->t);
		return failf(f, rc, "cannot write the tables: %s", mdb_strerror(rc));
	}
	f->in_txn = 0;
	return 0;
}

static int commit(struct fill *f)
{
	int rc = mdb_txn_commit(f->txn);
	f->txn = NULL;
	tabledb_write_unlock(&f->t);
	return rc ? failf(f, rc, "cannot commit to the tables: %s", mdb_strerror(rc)) : 0;
}

/* The first fake srid past those already in the reverse table. */
static int first_free_srid(struct fill *f)
{
	uint8_t kb[REV_KEY_LEN];
	rev_key(kb, f->t.node, RT_SEM, UINT32_MAX);
	MDB_val k = { REV_KEY_LEN, kb }, v;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(f->txn, f->t.rev, &cur);
	if (rc) return failf(f, rc, "cannot read the tables: %s", mdb_strerror(rc));
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
	f->next_srid = FAKE_SRID_BASE;
	if (rc == 0 && k.mv_size == REV_KEY_LEN && get_u32be(k.mv_data) == f->t.node &&
	    ((uint8_t *)k.mv_data)[4] == RT_SEM) {
		uint32_t last = get_u32be((uint8_t *)k.mv_data + 5);
		if (last >= FAKE_SRID_BASE) f->next_srid = last + 1;
	}
	mdb_cursor_close(cur);
	return 0;
}

/* One mapping of the current application, both directions; neither may be
 * there already. Commits every ROWS_PER_TXN rows and begins the next. */
static int put_row(struct fill *f, uint32_t vrid)
{
	if (f->next_srid == UINT32_MAX) return failf(f, 0, "no fake system IDs left");
	struct fwd_val fv = { .srid = f->next_srid++, .creator = (uint32_t)getpid(), .created_ms = f->now };
	uint8_t fk[FWD_KEY_MAX], fvb[FWD_VAL_LEN], rk[REV_KEY_LEN], rvb[REV_VAL_MAX];
	fwd_val_put(fvb, &fv);
	rev_key(rk, f->t.node, RT_SEM, fv.srid);
	MDB_val k = { fwd_key(fk, f->t.aid, f->t.aidlen, RT_SEM, vrid), fk }, v = { FWD_VAL_LEN, fvb };
	MDB_val r = { REV_KEY_LEN, rk }, rv = { rev_val(rvb, vrid, f->t.aid, f->t.aidlen), rvb };
	int rc = mdb_put(f->txn, f->t.fwd, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) return failf(f, rc, "'%s' already has semaphore set %u", f->t.aid, vrid);
	if (!rc) rc = mdb_put(f->txn, f->t.rev, &r, &rv, MDB_NOOVERWRITE);
	if (rc) return failf(f, rc, "cannot write the tables: %s", mdb_strerror(rc));
	if (++f->in_txn < ROWS_PER_TXN) return 0;
	return (rc = commit(f)) ? rc : begin(f);
}

/* The application record: kept, as `appshot run --keep` leaves one, so no
 * harness is expected and gc leaves it alone unless told --kept. */
static int put_app(struct fill *f)
{
	static const char command[] = "tablefill";
	uint8_t vb[APP_VAL_FIXED + sizeof command - 1];
	struct app_val app = { .schema = APPSHOT_SCHEMA_VERSION, .state = APP_KEPT,
			       .created_ms = f->now, .ended_ms = f->now };
	app_val_put(vb, &app);
	memcpy(vb + APP_VAL_FIXED, command, sizeof command - 1);
	MDB_val k = { f->t.aidlen, f->t.aid }, v = { sizeof vb, vb };
	int rc = mdb_put(f->txn, f->t.apps, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) return failf(f, rc, "application '%s' exists already", f->t.aid);
	return rc ? failf(f, rc, "cannot write the tables: %s", mdb_strerror(rc)) : 0;
}

static int set_aid(struct fill *f, const char *aid)
{
	size_t len = strlen(aid);
	if (!aid_valid(aid, len)) return failf(f, 0, "'%s' is not a valid application ID", aid);
	memcpy(f->t.aid, aid, len + 1);
	f->t.aidlen = len;
	return 0;
}

static int fill_apps(struct fill *f, long apps, uint32_t rows, const char *prefix)
{
	char aid[APPSHOT_AID_MAX + 16];
	int rc = 0;
	for (long a = 0; a < apps && !rc; a++) {
		snprintf(aid, sizeof aid, "%s-%05ld", prefix, a);
		if (!(rc = set_aid(f, aid)) && !(rc = put_app(f)))
			for (uint32_t vrid = 1; vrid <= rows && !rc; vrid++) rc = put_row(f, vrid);
	}
	return rc;
}

static int fill_one(struct fill *f, uint32_t rows)
{
	int rc = 0;
	for (uint32_t vrid = 1; vrid <= rows && !rc; vrid++) rc = put_row(f, vrid);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: tablefill HOME APPS ROWS [PREFIX]\n       tablefill HOME --aid AID ROWS\n");
	exit(2);
}

static long count(const char *s, long max)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*s == 0 || *end || n < 0 || n > max) usage();
	return n;
}

int main(int argc, char **argv)
{
	static struct fill f;
	int one = argc == 5 && !strcmp(argv[2], "--aid");
	if (!one && (argc < 4 || argc > 5)) usage();
	long apps = one ? 1 : count(argv[2], 99999);
	uint32_t rows = (uint32_t)count(argv[one ? 4 : 3], 0x7fffffff);
	const char *prefix = one || argc < 5 ? "fill" : argv[4];
	double t0 = now_ns();
	/* Adding to one application goes through tabledb_open, which checks that
	 * it is registered and running, as the shim's own open does. */
	int rc = one ? tabledb_open(&f.t, argv[1], argv[3], f.err, sizeof f.err)
		     : tabledb_open_env(&f.t, argv[1], f.err, sizeof f.err);
	if (rc) {
		fprintf(stderr, "tablefill: %s\n", f.err);
		return 1;
	}
	f.now = now_ms();
	if (!(rc = begin(&f)) && !(rc = first_free_srid(&f)))
		rc = one ? fill_one(&f, rows) : fill_apps(&f, apps, rows, prefix);
	if (!rc) rc = commit(&f);
	else if (f.txn) {
		mdb_txn_abort(f.txn);
		tabledb_write_unlock(&f.t);
	}
	tabledb_close(&f.t);
	if (rc) {
		fprintf(stderr, "tablefill: %s (what was committed before stays)\n", f.err);
		return 1;
	}
	printf("{\"apps\": %ld, \"rows\": %llu, \"seconds\": %.3f}\n", apps, (unsigned long long)apps * rows,
	       (now_ns() - t0) / 1e9);
	return 0;
}
