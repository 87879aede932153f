/*
 * appshot-semsets HOME AID IDENTITY CREATOR: a restore's semaphore sets made
 * again (ts/sysv/sem.ts), in C because the per-set cost of doing it from
 * Node (a write transaction through the lmdb package, ~110 us of CPU per
 * set) was most of a restore of thousands of sets; here a set costs what
 * the shim's own semget costs.
 *
 * Each set is made exactly as the shim makes one (core/ipcalloc.c): under
 * the write lock, with the home's inflight record filled before the kernel
 * call and the rows committed in the same transaction, so a SIGKILL at any
 * point leaves every set either mapped by whole rows or covered by the
 * record, which the next writer (a cleanup, `appshot gc`) recovers. The
 * helper dies with the restore (PR_SET_PDEATHSIG) so that it never goes on
 * making sets for a restore that is gone.
 *
 * stdin, in this machine's byte order (the restore writes it): per set,
 * u32 vrid, vkey, uid, gid, mode, nsems, then nsems u16 values.
 * stdout: per set made, its system ID on a line. On the first failure, a
 * line "error ERRNO WHAT" (or "mapped": the application maps that vrid
 * already) and exit status 1; the sets made before it are
 * mapped (the restore then ends the application, removing them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include "../core/inflight.h"
#include "../core/sysv.h"
#include "../core/tabledb.h"

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

struct set_rec {
	uint32_t vrid, vkey, uid, gid, mode, nsems;
};

static const struct kernel_ops libc_kernel = { semget, semctl, shmget, shmctl, msgget, msgctl };
static struct tabledb tables;
static struct inflight_file inflight;
static int identity;
static uint32_t creator;

/* The error line: the errno (positive; an LMDB code's is EIO) and what
 * failed, with LMDB's or the C library's words for it. */
static int fail(int err, const char *what)
{
	printf("error %d %s: %s\n", err > 0 ? err : EIO, what, mdb_strerror(err));
	fflush(stdout);
	return 1;
}

static int read_all(void *buf, size_t n)
{
	size_t got = fread(buf, 1, n, stdin);
	return got == n ? 0 : got == 0 && feof(stdin) ? -1 : EIO;
}

static int mapped_in(void *ctx, uint8_t type, uint32_t srid)
{
	uint32_t vrid;
	return tabledb_rev(&tables, ctx, type, srid, &vrid) != REV_NONE;
}

/* A write transaction as every writer takes one: under the open lock's
 * shared hold, after removing what a creator killed in its inflight window
 * left. */
static int write_begin(MDB_txn **txn)
{
	if (!tabledb_fds_ok(&tables)) return EBADF;
	int rc = tabledb_write_lock(&tables);
	if (rc) return rc;
	if ((rc = mdb_txn_begin(tables.env, NULL, 0, txn))) {
		tabledb_write_unlock(&tables);
		return rc;
	}
	inflight_recover(&inflight, &libc_kernel, mapped_in, *txn, NULL, 0);
	return 0;
}

/* The set in the kernel under skey (claimed for vkey), moving to a fresh
 * system key while a program outside appshot holds that one: 0 and its ID
 * in *id, covered by the inflight record, or an errno or LMDB code. */
static int create_set(MDB_txn *txn, const struct set_rec *r, uint32_t *skey, int *id)
{
	for (;;) {
		inflight_begin(&inflight, getpid(), tables.aid, RT_SEM, *skey); /* the process that may die mid-way */
		*id = semget((key_t)*skey, (int)r->nsems, IPC_CREAT | IPC_EXCL | 0600);
		if (*id >= 0) {
			inflight_created(&inflight, (uint32_t)*id);
			return 0;
		}
		int err = errno, rc;
		inflight_clear(&inflight);
		if (err != EEXIST || !r->vkey) return err;
		tabledb_release(&tables, txn, RT_SEMKEY, *skey);
		if ((rc = tabledb_claim_skey(&tables, txn, RT_SEMKEY, r->vkey, 0, skey))) return rc;
	}
}

/* Rows of the set (and of its key) at its saved vrid: MDB_KEYEXIST when
 * the application maps that vrid already. */
static int record_set(MDB_txn *txn, const struct set_rec *r, uint32_t skey, int id)
{
	uint64_t now = now_ms();
	int rc = 0;
	if (r->vkey) {
		struct fwd_val krow = { .srid = skey, .creator = creator, .created_ms = now };
		rc = tabledb_put_fwd(&tables, txn, RT_SEMKEY, r->vkey, &krow);
	}
	struct fwd_val row = { .srid = (uint32_t)id, .vkey = r->vkey, .skey = skey, .creator = creator, .created_ms = now };
	return rc ? rc : tabledb_map_at(&tables, txn, RT_SEM, r->vrid, &row);
}

/* One set made and mapped in one transaction: its system ID, or -1 after
 * the error line. */
static int make_set(const struct set_rec *r)
{
	MDB_txn *txn;
	int rc = write_begin(&txn);
	if (rc) return fail(rc, "cannot begin a write transaction on the tables"), -1;
	uint32_t skey = IPC_PRIVATE;
	if (r->vkey && (rc = tabledb_claim_skey(&tables, txn, RT_SEMKEY, r->vkey, identity, &skey))) {
		mdb_txn_abort(txn);
		tabledb_write_unlock(&tables);
		return fail(rc, "cannot claim a system key"), -1;
	}
	int id;
	if ((rc = create_set(txn, r, &skey, &id))) {
		mdb_txn_abort(txn);
		tabledb_write_unlock(&tables);
		return fail(rc, "semget"), -1;
	}
	rc = record_set(txn, r, skey, id);
	if (rc) mdb_txn_abort(txn);
	else rc = mdb_txn_commit(txn);
	tabledb_write_unlock(&tables);
	if (rc) semctl(id, 0, IPC_RMID); /* made, never recorded */
	inflight_clear(&inflight);
	if (rc == MDB_KEYEXIST) return printf("mapped\n"), fflush(stdout), -1;
	if (rc) return fail(rc, "cannot record it in the tables"), -1;
	return id;
}

/* Its values, then its owner and mode (last: a mode without write would
 * refuse SETALL). */
static int fill_set(int id, const struct set_rec *r, unsigned short *values)
{
	union semun arg = { .array = values };
	if (semctl(id, 0, SETALL, arg) != 0) return fail(errno, "semctl(SETALL)");
	struct semid_ds ds = { 0 };
	ds.sem_perm.uid = r->uid;
	ds.sem_perm.gid = r->gid;
	ds.sem_perm.mode = r->mode & 0777;
	arg.buf = &ds;
	if (semctl(id, 0, IPC_SET, arg) != 0) return fail(errno, "semctl(IPC_SET)");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: appshot-semsets HOME AID IDENTITY CREATOR (run by appshot restore)\n");
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1) return 1; /* the restore is gone already */
	identity = atoi(argv[3]);
	creator = (uint32_t)strtoul(argv[4], NULL, 10);
	char err[512];
	if (tabledb_open(&tables, argv[1], argv[2], err, sizeof err)) return printf("error %d %s\n", EIO, err), 1;
	int rc = inflight_open(&inflight, argv[1]);
	if (rc) return fail(rc, "cannot open the inflight record");
	unsigned short *values = malloc(65536 * sizeof *values);
	if (!values) return fail(ENOMEM, "out of memory");
	for (;;) {
		struct set_rec r;
		rc = read_all(&r, sizeof r);
		if (rc < 0) break;
		if (rc || r.nsems == 0 || r.nsems > 65535 || read_all(values, r.nsems * sizeof *values))
			return fail(EIO, "cut-short input");
		int id = make_set(&r);
		if (id < 0 || fill_set(id, &r, values)) return 1;
		printf("%d\n", id);
	}
	fflush(stdout);
	return 0;
}
