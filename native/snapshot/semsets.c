/*
 * appshot-semsets HOME AID IDENTITY CREATOR: a restore's semaphore sets made
 * again (ts/sysv/sem.ts), in C because the per-set cost of doing it from
 * Node (a write transaction through the lmdb package, ~110 us of CPU per
 * set) was most of a restore of thousands of sets.
 *
 * Every set is made under the write lock with its rows committed in the
 * transaction that covers it, and covered from before the kernel call, so
 * a SIGKILL at any point leaves every set either mapped by whole rows or
 * named where the next writer (a cleanup, `appshot gc`) finds and removes
 * it. Private sets, most of a restore's, are made BATCH to a transaction,
 * each covered by a pending record of the home's journal of new objects
 * (core/journal.h), as the shim covers the private objects it creates
 * there: a commit per set was ~45 us, most of 2,500 sets' 120 ms. A keyed
 * set (or a private one when every pending record is taken) is made alone,
 * as the shim's LMDB way makes one (core/ipcalloc.c), under the inflight
 * record. The helper dies with the restore (PR_SET_PDEATHSIG) so that it
 * never goes on making sets for a restore that is gone.
 *
 * stdin, in this machine's byte order (the restore writes it): per set,
 * u32 vrid, vkey, uid, gid, mode, nsems, then nsems u16 values.
 * stdout: per set made and committed, its system ID on a line, in order. On
 * the first failure, a line "error ERRNO WHAT" (or "mapped": the
 * application maps that vrid already) about the set after the last one
 * printed, and exit status 1; the sets printed before it are mapped (the
 * restore then ends the application, removing them), and none after.
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
#include "../core/journal.h"
#include "../core/procinfo.h"
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
static struct journal journal;
static uint64_t self_ticks; /* this process's start, which its pending records name */
static int identity;
static uint32_t creator;
/* The crash tests' points, with sets made in a transaction not committed:
 * APPSHOT_FAULT=semsets-batch, killed at its third; semsets-stop, stopped
 * (SIGSTOP) at the 1,000th set of the restore, for the test to kill the
 * restore itself there. */
static int fault_in_batch, stop_at_set;
static unsigned sets_made;

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
 * refuse SETALL): 0, or the errno and *what failed. */
static int fill_set(int id, const struct set_rec *r, unsigned short *values, const char **what)
{
	union semun arg = { .array = values };
	if (semctl(id, 0, SETALL, arg) != 0) return *what = "semctl(SETALL)", errno;
	struct semid_ds ds = { 0 };
	ds.sem_perm.uid = r->uid;
	ds.sem_perm.gid = r->gid;
	ds.sem_perm.mode = r->mode & 0777;
	arg.buf = &ds;
	if (semctl(id, 0, IPC_SET, arg) != 0) return *what = "semctl(IPC_SET)", errno;
	return 0;
}

/* A set made alone (make_set), filled, printed: 0, or -1 after the error line. */
static int make_alone(const struct set_rec *r, unsigned short *values)
{
	const char *what;
	int id = make_set(r), e;
	if (id < 0) return -1;
	if ((e = fill_set(id, r, values, &what))) return fail(e, what), -1;
	printf("%d\n", id);
	return 0;
}

/* ------------------------------------------------- private sets in batches */

#define BATCH 128

/* The open transaction's sets: made, filled and put in it, each named by a
 * pending record of the journal until the commit. */
static struct {
	MDB_txn *txn;
	unsigned n;
	int ids[BATCH], pending[BATCH];
} batch;

/* The batch's sets printed (committed) or removed, then their records
 * freed: a set is never unnamed while it is in the kernel unmapped. */
static void batch_release(int committed)
{
	for (unsigned i = 0; i < batch.n; i++) {
		if (committed) printf("%d\n", batch.ids[i]);
		else semctl(batch.ids[i], 0, IPC_RMID);
		journal_create_end(&journal, batch.pending[i]);
	}
	batch.n = 0;
}

static void batch_close(void)
{
	batch.txn = NULL;
	tabledb_write_unlock(&tables);
}

/* The batch committed and printed: 0, or -1 after the error line. */
static int batch_commit(void)
{
	if (!batch.txn) return 0;
	int rc = mdb_txn_commit(batch.txn);
	batch_close();
	batch_release(rc == 0);
	return rc ? fail(rc, "cannot record the sets in the tables"), -1 : 0;
}

static void batch_abort(void)
{
	if (!batch.txn) return;
	mdb_txn_abort(batch.txn);
	batch_close();
	batch_release(0);
}

/* A set that failed after the kernel made it: removed, its record freed. */
static void drop_made(int id, int p)
{
	semctl(id, 0, IPC_RMID);
	journal_create_end(&journal, p);
}

/* A private set made into the batch: 0, or -1 after the error line, which
 * follows the lines of the sets before it (committed while the transaction
 * still can be: the failure was the kernel's, or a vrid mapped already). */
static int add_private(const struct set_rec *r, unsigned short *values)
{
	int rc;
	if (!batch.txn && (rc = write_begin(&batch.txn))) return batch.txn = NULL, fail(rc, "cannot begin a write transaction on the tables"), -1;
	int p = journal_create_begin(&journal, getpid(), self_ticks, RT_SEM, IPC_PRIVATE);
	if (p < 0) return batch_commit() ? -1 : make_alone(r, values); /* every record taken */
	int id = semget(IPC_PRIVATE, (int)r->nsems, IPC_CREAT | 0600);
	if (id < 0) {
		int e = errno;
		journal_create_end(&journal, p);
		return batch_commit() ? -1 : (fail(e, "semget"), -1);
	}
	journal_pending_created(&journal, p, (uint32_t)id);
	const char *what;
	if ((rc = fill_set(id, r, values, &what))) {
		drop_made(id, p);
		return batch_commit() ? -1 : (fail(rc, what), -1);
	}
	if ((rc = record_set(batch.txn, r, IPC_PRIVATE, id))) {
		drop_made(id, p);
		if (rc != MDB_KEYEXIST) return batch_abort(), fail(rc, "cannot record it in the tables"), -1;
		return batch_commit() ? -1 : (printf("mapped\n"), fflush(stdout), -1);
	}
	batch.ids[batch.n] = id;
	batch.pending[batch.n++] = p;
	if (fault_in_batch && batch.n == 3) raise(SIGKILL);
	if (stop_at_set && ++sets_made == 1000) raise(SIGSTOP);
	return batch.n == BATCH ? batch_commit() : 0;
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
	const char *fault = getenv("APPSHOT_FAULT");
	fault_in_batch = fault && !strcmp(fault, "semsets-batch");
	stop_at_set = fault && !strcmp(fault, "semsets-stop");
	creator = (uint32_t)strtoul(argv[4], NULL, 10);
	char err[512];
	if (tabledb_open(&tables, argv[1], argv[2], err, sizeof err)) return printf("error %d %s\n", EIO, err), 1;
	int rc = inflight_open(&inflight, argv[1]);
	if (rc) return fail(rc, "cannot open the inflight record");
	/* Without the journal (or its start time) every set is made alone. */
	if (proc_start_ticks(getpid(), &self_ticks) == 0 && journal_open(&journal, argv[1]) == 0) journal_set_app(&journal, argv[2]);
	unsigned short *values = malloc(65536 * sizeof *values);
	if (!values) return fail(ENOMEM, "out of memory");
	for (;;) {
		struct set_rec r;
		rc = read_all(&r, sizeof r);
		if (rc < 0) break;
		if (rc || r.nsems == 0 || r.nsems > 65535 || read_all(values, r.nsems * sizeof *values))
			return batch_commit() ? 1 : fail(EIO, "cut-short input");
		if (r.vkey == 0 && journal.head) rc = add_private(&r, values);
		else rc = batch_commit() ? -1 : make_alone(&r, values);
		if (rc) return 1;
	}
	if (batch_commit()) return 1;
	fflush(stdout);
	return 0;
}
