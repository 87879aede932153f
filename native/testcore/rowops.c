/*
 * rowops HOME AID NOIDENTITY OP ARGS...: one row operation of the
 * translation core (core/tabledb.c), run in its own write transaction on
 * the tables under HOME as application AID (NOIDENTITY 1: the application
 * was registered with --no-identity). test/rows.test.ts runs the scenario
 * vectors of tables/rows.json through it and through ts/rows.ts, so both
 * sides are held to the same rows. Numbers are decimal; TYPE is a resource
 * type code (tables/schema.h).
 *
 *   claim-skey KEYTYPE VKEY IDENTITY      prints "skey N"
 *   claim TYPE VRID SRID                  prints "ok", or "held"
 *   release TYPE SRID                     prints "ok", or "none"
 *   put-fwd TYPE VRID SRID VKEY SKEY CREATOR CREATED_MS    prints "ok"
 *   map-at TYPE VRID SRID VKEY SKEY CREATOR CREATED_MS     prints "ok", or "held"
 *   map-over TYPE VRID SRID VKEY SKEY CREATOR CREATED_MS   prints "ok"
 *   unmap TYPE VRID                       prints "ok", or "none"
 *
 * Any other outcome: "error ..." on stdout, exit 1.
 */
#include "../core/tabledb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t arg(char **argv, int i) { return (uint32_t)strtoull(argv[i], NULL, 10); }

static struct fwd_val row_args(char **argv, int i)
{
	return (struct fwd_val){ .srid = arg(argv, i), .vkey = arg(argv, i + 1), .skey = arg(argv, i + 2),
				 .creator = arg(argv, i + 3), .created_ms = strtoull(argv[i + 4], NULL, 10) };
}

/* Runs the operation; prints its outcome unless it is an error (returned). */
static int run(struct tabledb *t, MDB_txn *txn, int argc, char **argv)
{
	const char *op = argv[4];
	int rc;
	if (!strcmp(op, "claim-skey") && argc == 8) {
		uint32_t skey;
		if ((rc = tabledb_claim_skey(t, txn, (uint8_t)arg(argv, 5), arg(argv, 6), (int)arg(argv, 7), &skey))) return rc;
		printf("skey %u\n", skey);
		return 0;
	}
	if (!strcmp(op, "claim") && argc == 8) rc = tabledb_claim(t, txn, (uint8_t)arg(argv, 5), arg(argv, 6), arg(argv, 7));
	else if (!strcmp(op, "release") && argc == 7) rc = tabledb_release(t, txn, (uint8_t)arg(argv, 5), arg(argv, 6));
	else if (!strcmp(op, "unmap") && argc == 7) rc = tabledb_unmap(t, txn, (uint8_t)arg(argv, 5), arg(argv, 6));
	else if ((!strcmp(op, "put-fwd") || !strcmp(op, "map-at") || !strcmp(op, "map-over")) && argc == 12) {
		struct fwd_val fv = row_args(argv, 7);
		uint8_t type = (uint8_t)arg(argv, 5);
		uint32_t vrid = arg(argv, 6);
		rc = !strcmp(op, "put-fwd") ? tabledb_put_fwd(t, txn, type, vrid, &fv)
		     : !strcmp(op, "map-at") ? tabledb_map_at(t, txn, type, vrid, &fv)
					     : tabledb_map_over(t, txn, type, vrid, &fv);
	} else {
		printf("error usage: rowops HOME AID NOIDENTITY OP ARGS... (see rowops.c)\n");
		exit(2);
	}
	if (rc == MDB_KEYEXIST) printf("held\n");
	else if (rc == MDB_NOTFOUND) printf("none\n");
	else if (rc == 0) printf("ok\n");
	return rc == MDB_KEYEXIST || rc == MDB_NOTFOUND ? 0 : rc;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		printf("error usage: rowops HOME AID NOIDENTITY OP ARGS... (see rowops.c)\n");
		return 2;
	}
	struct tabledb t;
	char err[512];
	int rc = tabledb_open_env(&t, argv[1], err, sizeof err);
	if (rc) {
		printf("error %s\n", err);
		return 1;
	}
	t.aidlen = strlen(argv[2]);
	if (t.aidlen > APPSHOT_AID_MAX) {
		printf("error AID too long\n");
		return 1;
	}
	memcpy(t.aid, argv[2], t.aidlen + 1);
	t.app_flags = arg(argv, 3) ? APP_FLAG_NO_IDENTITY : 0;
	MDB_txn *txn;
	if ((rc = tabledb_write_lock(&t)) == 0 && (rc = mdb_txn_begin(t.env, NULL, 0, &txn)) == 0) {
		rc = run(&t, txn, argc, argv);
		if (rc) mdb_txn_abort(txn);
		else if ((rc = mdb_txn_commit(txn)) == MDB_EMPTY_TXN)
			rc = 0; /* this LMDB's word for a commit that changed nothing */
	}
	if (rc) printf("error %s\n", mdb_strerror(rc));
	tabledb_write_unlock(&t);
	tabledb_close(&t);
	return rc ? 1 : 0;
}
