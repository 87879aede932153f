/* The translation the three SysV IPC families share (see ipc.h): every ID
 * and key the program passes or receives is virtual; the kernel sees only
 * system IDs and keys. Each family keeps its own key space, as in the
 * kernel. */
#define _GNU_SOURCE
#include "ipc.h"
#include "../core/procinfo.h"
#include "../core/ipcalloc.h"
#include "../core/rawcall.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define CREATE_FLAGS (IPC_CREAT | IPC_EXCL)

static int kernel_get(uint8_t type, key_t key, size_t size, int flags)
{
	return sysv_get(&shim_kernel, type, key, size, flags);
}

static int fail_get(uint8_t type, size_t size, int err)
{
	return shim_fail(ipc_alloc_get_error(&shim_kernel, type, size, err));
}

static void warn_line(const char *msg) { shim_warn("%s", msg); }
static void after_create(void) { shim_fault_point(FAULT_AFTER_CREATE); }
static int commit(MDB_txn *txn) { return write_commit(txn); }

static struct ipc_alloc allocator(void (*after)(void))
{
	return (struct ipc_alloc){ shim_tables(), shim_inflight(), shim_journal(), &shim_kernel, shim_pid, write_abort, commit, warn_line, after };
}

/* FIG. 11 and the allocating branch of FIG. 15, in core/ipcalloc.c: the
 * kernel creates the object under a system key (identity first), and the
 * translation is recorded in the same write transaction, with the
 * inflight record covering the gap between the kernel call and the
 * commit. */
static int ipc_create(uint8_t type, key_t vkey, size_t size, int flags)
{
	MDB_txn *txn = write_begin();
	const struct ipc_alloc a = allocator(after_create);
	return ipc_alloc_get(&a, txn, type, vkey, size, flags);
}

/* This process's start time, for its pending records in the journal: read
 * once per process (a fork child reads its own). */
static uint64_t own_start_ticks(void)
{
	static pid_t of;
	static uint64_t ticks;
	if (of != shim_pid) {
		if (proc_start_ticks(shim_pid, &ticks) != 0) ticks = 0;
		of = shim_pid;
	}
	return ticks;
}

/* What of the application's LMDB rows of a family a new private object's
 * vrid must not meet, per thread, as of a committed transaction: its
 * remapped vrids lie below its counter's next (bound), every vrid at or
 * below its highest (last). */
struct row_bounds {
	uint8_t type;
	uint32_t bound, last;
};

static int bounds_in(MDB_txn *txn, void *arg)
{
	struct row_bounds *b = arg;
	const struct tabledb *t = shim_tables();
	int rc = tabledb_counter(t, txn, b->type, &b->bound);
	if (rc == MDB_NOTFOUND) b->bound = VRID_REMAP_BASE, rc = 0;
	if (!rc && (rc = tabledb_last(t, txn, b->type, &b->last)) == MDB_NOTFOUND) b->last = 0, rc = 0;
	return rc;
}

static __thread struct {
	uint64_t txnid; /* 0: not read */
	struct row_bounds of[RT_MSG + 1];
} bounds __attribute__((tls_model("initial-exec")));

static const struct row_bounds *row_bounds(uint8_t type)
{
	uint64_t now = tabledb_txnid(shim_tables());
	if (bounds.txnid != now) {
		memset(&bounds, 0, sizeof bounds);
		bounds.txnid = now;
	}
	struct row_bounds *b = &bounds.of[type];
	if (!b->type) {
		struct row_bounds read = { type, 0, 0 };
		if (with_read_txn(bounds_in, &read)) return NULL;
		*b = read;
	}
	return b;
}

/* Whether the application's LMDB rows map vrid to an object other than
 * srid (0: to none, or to srid); asked of LMDB only when the bounds cannot
 * tell. */
static int held_otherwise(uint8_t type, uint32_t vrid, uint32_t srid, int remapped_only)
{
	const struct row_bounds *b = row_bounds(type);
	uint32_t held;
	if (b && (remapped_only ? vrid >= b->bound : vrid > b->last)) return 0;
	return vr_to_sr_tables(type, vrid, &held) == 0 && held != srid;
}

/* The remapped vrids of a family the application's processes share in the
 * journal (dense, as the kernel's indexes are), another block reserved
 * from LMDB's counter when they are used up: 1, or 0 when none can be
 * had. Each reservation is an LMDB commit, which 64 processes creating at
 * once all wait behind: blocks grow with the application's use. Also
 * reads the bounds of its LMDB rows (row_bounds) as of now, outside the
 * journal's lock, under which the row's vrid is checked against them. */
#define IPC_BLOCK_FIRST 256
#define IPC_BLOCK_MOST 4096
static int remapped_vrids_ready(uint8_t type)
{
	if (!journal_vrids_left(shim_journal(), type) && journal_vrids_reserve(type, IPC_BLOCK_FIRST, IPC_BLOCK_MOST)) return 0;
	row_bounds(type);
	return 1;
}

static int remapped(void) { return shim_tables()->app_flags & APP_FLAG_NO_IDENTITY; }

/* Whether a row holds the remapped vrid the journal hands object srid
 * (a restored object's saved vrid): the LMDB way then. */
static int remapped_vrid_held(uint8_t type, uint32_t vrid, uint32_t srid) { return held_otherwise(type, vrid, srid, 0); }

/* The new object's row into the journal. Identity: under its own ID,
 * unless the application maps that vrid to another object; below
 * VRID_REMAP_BASE only a row of an object of that very ID can be there,
 * whose object is gone (the kernel just handed the ID out), and the
 * journal's row replaces it; from there on a remapped row may hold it, if
 * the counter handed it out. Remapped: under the application's next
 * remapped vrid, another block reserved if other processes took the last
 * ones since this one began (unless it holds the journal's lock: a keyed
 * creation). -1: the LMDB way. */
static int journal_row_in(struct journal *j, struct journal_row *row)
{
	if (remapped()) {
		int rc = journal_insert_remapped(j, row, remapped_vrid_held);
		for (int tries = 0; rc == JOURNAL_NO_VRID && row->vkey == IPC_PRIVATE && tries < 3 && remapped_vrids_ready(row->type); tries++)
			rc = journal_insert_remapped(j, row, remapped_vrid_held);
		return rc ? -1 : 0;
	}
	if (row->srid >= VRID_REMAP_BASE && held_otherwise(row->type, row->srid, row->srid, 1)) return -1;
	row->vrid = row->srid;
	return journal_insert(j, row);
}

#define NOT_JOURNALED (-2)

/* A new object whose row goes to the journal (core/journal.h), with no
 * LMDB commit: a private one (vkey and skey IPC_PRIVATE), or a keyed one
 * under skey where the application has its key vkey mapped already (the
 * key's row stays in LMDB), which the kernel creates with IPC_EXCL so that
 * it is surely this call's, holding the journal's lock from before the
 * kernel's call until the row is in (journal_create_begin says why).
 * NOT_JOURNALED when the kernel has an object under skey already (the
 * caller looks it up) or the journal cannot take the row: the LMDB way. */
static int journal_create(uint8_t type, key_t vkey, uint32_t skey, size_t size, int flags)
{
	struct journal *j = shim_journal();
	uint32_t now_skey;
	/* Reserved before the lock: a new block is an LMDB write. */
	if (journal_used(j) >= JOURNAL_FOLD_AT || (remapped() && !remapped_vrids_ready(type))) return NOT_JOURNALED;
	int p = journal_create_begin(j, shim_pid, own_start_ticks(), type, skey);
	/* The key's row as of now (no writer changes it while the lock is held). */
	if (p >= 0 && vkey != IPC_PRIVATE && (vr_to_sr(sysv_key_type(type), (uint32_t)vkey, &now_skey) || now_skey != skey))
		journal_create_end(j, p), p = -1;
	int r = NOT_JOURNALED, err = 0;
	if (p >= 0) {
		int id = kernel_get(type, (key_t)skey, size, vkey == IPC_PRIVATE ? flags : flags | CREATE_FLAGS);
		err = errno;
		if (id < 0) r = err == EEXIST && vkey != IPC_PRIVATE ? NOT_JOURNALED : -1;
		else {
			journal_pending_created(j, p, (uint32_t)id);
			after_create();
			journal_map_ahead(j, type, remapped() ? 0 : (uint32_t)id, vkey != IPC_PRIVATE ? (uint32_t)id : 0, shim_pid);
			struct journal_row row = { type, 0, (uint32_t)id, (uint32_t)shim_pid, now_ms(), (uint32_t)vkey, skey };
			if (journal_row_in(j, &row) == 0) r = (int)row.vrid;
			else sysv_rmid(&shim_kernel, type, id); /* made again the LMDB way */
		}
		journal_create_end(j, p);
	}
	return r == -1 ? shim_fail(err) : r;
}

/* Inside the table code as the canary page tells it: a whole-process
 * snapshot waits until no thread is halfway through. A private object the
 * journal cannot take is made the LMDB way here. */
static int create(uint8_t type, key_t vkey, uint32_t skey, size_t size, int flags)
{
	shim_check_tables(); /* a restored process maps its own home's journal first */
	shim_tables_enter();
	int r = journal_create(type, vkey, skey, size, flags);
	if (r == NOT_JOURNALED && vkey == IPC_PRIVATE) r = ipc_create(type, IPC_PRIVATE, size, flags);
	int err = errno;
	shim_tables_leave();
	errno = err;
	return r;
}

/* The key of the last keyed object this process removed, per family: its
 * next get with IPC_CREAT most likely creates (a program making and
 * removing objects under one key), so the create is tried first there. */
static _Atomic uint32_t last_removed_key[RT_MSG + 1];

static int likely_new(uint8_t type, key_t key, int flags)
{
	uint32_t k = (uint32_t)key;
	return (flags & IPC_CREAT) && atomic_compare_exchange_strong(&last_removed_key[type], &k, 0);
}

int ipc_get(uint8_t type, key_t key, size_t size, int flags)
{
	if (key == IPC_PRIVATE) return create(type, IPC_PRIVATE, IPC_PRIVATE, size, flags);
	uint32_t skey, vrid;
	uint8_t keytype = sysv_key_type(type);
	/* A key the application has mapped: its objects' rows can go to the
	 * journal; a new key is claimed in an LMDB write. */
	if (vr_to_sr(keytype, (uint32_t)key, &skey) == 0) {
		int exclusive = (flags & CREATE_FLAGS) == CREATE_FLAGS, r;
		/* With IPC_EXCL the kernel's create says whether the key is free;
		 * without, a failed create (EEXIST) only costs the lookup after. */
		if ((exclusive || likely_new(type, key, flags)) && (r = create(type, key, skey, size, flags)) != NOT_JOURNALED)
			return r;
		/* With IPC_EXCL an existing object is EEXIST before any other
		 * check, so only look it up; otherwise let the kernel check
		 * permissions and size as it would natively. */
		int id = kernel_get(type, (key_t)skey, exclusive ? 0 : size, exclusive ? 0 : flags & ~CREATE_FLAGS);
		if (id >= 0 && sr_to_vr(type, (uint32_t)id, &vrid) == 0)
			return exclusive ? fail_get(type, size, EEXIST) : (int)vrid;
		if (id < 0 && errno != ENOENT) return -1;
		/* An object under our key with no row yet is another process's
		 * creation in flight: the write lock waits for its commit. */
		if (id >= 0) return ipc_create(type, key, size, flags);
		if (!exclusive && (flags & IPC_CREAT) && (r = create(type, key, skey, size, flags)) != NOT_JOURNALED)
			return r;
	}
	if (!(flags & IPC_CREAT)) return fail_get(type, size, ENOENT);
	return ipc_create(type, key, size, flags);
}

int ipc_srid(uint8_t type, int vrid, uint32_t *srid)
{
	return vr_to_sr(type, (uint32_t)vrid, srid) ? shim_fail(EINVAL) : 0;
}

/* No object can have this ID: its index bits are the highest index, which
 * the kernel hands out only with 2^15 (2^24 under ipcmni_extend) objects
 * of the family in use, above every default and above any limit but
 * SEMMNI, MSGMNI or SHMMNI set to its 32768 maximum, and then only to the
 * object of the last generation (sequence 65535 or 127). */
#define NO_SUCH_ID INT_MAX

SHIM_HOT int ipc_kernel_id(uint8_t type, int vrid)
{
	uint32_t srid;
	if (vrid < 0) return vrid;
	return vr_to_sr(type, (uint32_t)vrid, &srid) ? NO_SUCH_ID : (int)srid;
}

int ipc_readable(const void *buf, size_t len)
{
	char copy[256];
	if (len > sizeof copy) len = sizeof copy;
	struct iovec local = { copy, len }, remote = { (void *)buf, len };
	/* A copy of its own memory through the kernel, which says EFAULT where
	 * a plain read would end the process with SIGSEGV. */
	return raw_call(SYS_process_vm_readv, shim_pid, &local, 1, &remote, 1, 0) == (long)len ? 0 : shim_fail(EFAULT);
}

static int gone(int err) { return ipc_alloc_gone(err); }

/* IPC_RMID (core/ipcalloc.c), with what only the shim knows: how many
 * attachments the application holds of a template's segment, counted
 * before the write transaction begins (it reads /proc). */
/* After the kernel removed a journal's object (or found it gone): its row
 * goes from the journal, or, once folded (a folder holds the write lock
 * until its commit), from LMDB; a segment still attached keeps its row,
 * marked removed, in LMDB. */
static void forget_removed(uint8_t type, uint32_t vrid, uint32_t srid, int lives_on)
{
	if (!lives_on) {
		journal_map_ahead(shim_journal(), type, vrid, srid, shim_pid);
		if (journal_drop(shim_journal(), type, vrid, srid) == JOURNAL_DROPPED) return;
	}
	MDB_txn *txn = write_begin(); /* folds the journal's rows in, this one too */
	const struct ipc_alloc a = allocator(NULL);
	ipc_alloc_forget(&a, txn, type, vrid, srid, lives_on);
}

static int remove_journaled(uint8_t type, const struct journal_row *r)
{
	if (sysv_rmid(&shim_kernel, type, (int)r->srid) != 0) {
		int err = errno;
		if (gone(err)) forget_removed(type, r->vrid, r->srid, 0);
		return shim_fail(err);
	}
	if (r->vkey != IPC_PRIVATE) atomic_store(&last_removed_key[type], r->vkey);
	struct sysv_stat st;
	forget_removed(type, r->vrid, r->srid, type == RT_SHM && sysv_stat(&shim_kernel, type, (int)r->srid, &st) == 0);
	return 0;
}

int ipc_remove(uint8_t type, int vrid)
{
	struct journal_row r;
	shim_check_tables();
	if (vrid >= 0 && journal_find(shim_journal(), type, (uint32_t)vrid, &r) == 0) {
		shim_tables_enter(); /* as create */
		int rc = remove_journaled(type, &r);
		int err = errno;
		shim_tables_leave();
		errno = err;
		return rc;
	}
	uint32_t srid;
	int template = vr_is_template(type, (uint32_t)vrid);
	unsigned attached = type == RT_SHM && template && ipc_srid(type, vrid, &srid) == 0 ? ipc_shm_attachments(srid) : 0;
	/* The row is LMDB's (the journal has none of this vrid): the journal's
	 * rows stay where they are (folded, each one's IPC_RMID would be a
	 * commit too), unless a template's object lets go of its key, a key
	 * row a keyed creation in the journal may be reading (a folding
	 * write's mark keeps those off; journal_create_begin). */
	MDB_txn *txn = template ? write_begin() : write_begin_unfolded();
	const struct ipc_alloc a = allocator(NULL);
	return ipc_alloc_remove(&a, txn, type, (uint32_t)vrid, attached);
}

/* A removed segment is gone for the application when the kernel has no
 * such segment, or, for a template's segment (which the kernel keeps for
 * the other clones), when no process of the application has it attached. */
void ipc_forget_if_gone(uint8_t type, uint32_t vrid)
{
	struct tabledb *t = shim_tables();
	uint32_t srid;
	int template = vr_is_template(type, vrid);
	if (template && (ipc_srid(type, (int)vrid, &srid) || ipc_shm_attachments(srid))) return;
	struct fwd_val row;
	struct sysv_stat st;
	MDB_txn *txn = write_begin();
	int drop = tabledb_fwd(t, txn, type, vrid, &row) == 0 && fwd_val_removed(&row);
	if (drop && template)
		drop = row.creator == CREATOR_TEMPLATE && tabledb_unmap(t, txn, type, vrid) == 0;
	else if (drop)
		drop = sysv_stat(&shim_kernel, type, (int)row.srid, &st) != 0 && gone(errno) &&
		       tabledb_unmap_row(t, txn, type, vrid, row.srid) == 0;
	if (drop) write_commit(txn);
	else write_abort(txn);
}

struct attachments {
	uint32_t srid;
	unsigned count;
};

static void add_attachments(uint32_t spid, void *arg)
{
	struct attachments *a = arg;
	a->count += proc_shm_attachments((pid_t)spid, a->srid);
}

unsigned ipc_shm_attachments(uint32_t srid)
{
	struct attachments a = { srid, 0 };
	ipc_each(RT_PID, add_attachments, &a);
	return a.count;
}

void ipc_virtual_perm(uint8_t type, int removed, struct ipc_perm *perm)
{
	if (!removed) {
		perm->__key = ipc_virtual_key(type, perm->__key);
		return;
	}
	perm->__key = IPC_PRIVATE;
	if (type == RT_SHM) perm->mode |= SHM_DEST;
}

key_t ipc_virtual_key(uint8_t type, key_t skey)
{
	uint32_t vkey;
	if (skey != IPC_PRIVATE && sr_to_vr(sysv_key_type(type), (uint32_t)skey, &vkey) == 0) return (key_t)vkey;
	return skey;
}

/* The kernel's *_STAT commands take an index into its ID table, and of a
 * full ID its index bits: the low 15 bits, or 24 when the kernel was
 * booted with ipcmni_extend. The application's view has the same shape:
 * an object's index is the index bits of its virtual ID. VRID_REMAP_BASE
 * is a multiple of 2^24, so the remapped IDs base+0, base+1, ... have the
 * indices 0, 1, ..., and an identity ID (vrid == srid) keeps the kernel's. */
static uint32_t index_mask(void)
{
	static uint32_t mask;
	if (!mask) {
		char buf[4096] = "";
		/* The raw call: under the shim, open gives the application's view. */
		int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/cmdline", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
			buf[n > 0 ? n : 0] = 0;
			syscall(SYS_close, fd);
		}
		mask = strstr(buf, "ipcmni_extend") ? (1u << 24) - 1 : (1u << 15) - 1;
	}
	return mask;
}

/* The application's objects of a family: virtual and system IDs, read in
 * one read transaction (which holds the process's translation lock, so the
 * kernel is asked after it). */
struct each {
	uint8_t type;
	uint32_t count, cap;
	uint32_t *ids; /* vrid, srid of each row in turn */
};

static uint32_t vrid_at(const struct each *e, uint32_t i) { return e->ids[2 * i]; }
static uint32_t srid_at(const struct each *e, uint32_t i) { return e->ids[2 * i + 1]; }

/* The rows come in one cursor walk: the array grows as they come. */
static int collect_row(void *arg, uint32_t vrid, const struct fwd_val *row)
{
	struct each *e = arg;
	if (e->count == e->cap) {
		uint32_t cap = e->cap ? 2 * e->cap : 64;
		uint32_t *grown = realloc(e->ids, 2 * (size_t)cap * sizeof *grown);
		if (!grown) return ENOMEM;
		e->ids = grown;
		e->cap = cap;
	}
	e->ids[2 * e->count] = vrid;
	e->ids[2 * e->count + 1] = row->srid;
	e->count++;
	return 0;
}

static int collect_in(MDB_txn *txn, void *arg)
{
	struct each *e = arg;
	return tabledb_each(shim_tables(), txn, e->type, collect_row, e);
}

void ipc_settle(void)
{
	if (journal_used(shim_journal())) write_commit(write_begin());
}

static void collect(struct each *e, uint8_t type)
{
	ipc_settle();
	*e = (struct each){ .type = type };
	if (with_read_txn(collect_in, e)) e->count = 0;
}

static void collect_free(struct each *e)
{
	free(e->ids);
	*e = (struct each){ 0 };
}

/* A stat command's buffer: ipc_perm leads each family's structure. */
union stat_buf {
	struct semid_ds sem;
	struct shmid_ds shm;
	struct msqid_ds msg;
};

/* The application's object that id names for *_STAT, from every row:
 * the object with that virtual ID, else the one at its index. Returns its
 * position in e, or -1. */
static int64_t at_index(const struct each *e, int id)
{
	uint32_t mask = index_mask();
	int64_t found = -1;
	for (uint32_t i = 0; i < e->count; i++) {
		if (vrid_at(e, i) == (uint32_t)id) return i;
		if (found < 0 && (vrid_at(e, i) & mask) == ((uint32_t)id & mask)) found = i;
	}
	return found;
}

struct last {
	uint8_t type;
	uint32_t vrid;
};

static int last_in(MDB_txn *txn, void *arg)
{
	struct last *l = arg;
	return tabledb_last(shim_tables(), txn, l->type, &l->vrid);
}

/* Whether the application has a remapped ID past the first 2^15 (or 2^24),
 * one whose index a probe of VRID_REMAP_BASE + index misses. */
static int has_high_remapped(uint8_t type)
{
	struct last l = { .type = type };
	return with_read_txn(last_in, &l) == 0 && l.vrid > VRID_REMAP_BASE + index_mask();
}

static const int stat_any[] = { [RT_SEM] = SEM_STAT_ANY, [RT_SHM] = SHM_STAT_ANY, [RT_MSG] = MSG_STAT_ANY };

/* The application's object that id names for *_STAT (see at_index), found
 * by lookups where it can be: the virtual ID itself; an identity ID (vrid
 * == srid), which has the kernel's index, by asking the kernel which object
 * it has there; a remapped one, VRID_REMAP_BASE + index. Every row is read
 * only when the application has remapped IDs beyond those. */
static int find_at_index(uint8_t type, int id, uint32_t *vrid, uint32_t *srid)
{
	uint32_t mask = index_mask(), idx = (uint32_t)id & mask, v;
	union stat_buf probe;
	if (vr_to_sr(type, (uint32_t)id, srid) == 0) return *vrid = (uint32_t)id, 0;
	int s = sysv_ctl(&shim_kernel, type, (int)idx, stat_any[type], &probe);
	if (s >= 0 && sr_to_vr(type, (uint32_t)s, &v) == 0 && (v & mask) == idx) return *vrid = v, *srid = (uint32_t)s, 0;
	if (vr_to_sr(type, VRID_REMAP_BASE + idx, srid) == 0) return *vrid = VRID_REMAP_BASE + idx, 0;
	if (!has_high_remapped(type)) return -1;
	struct each e;
	collect(&e, type);
	int64_t i = at_index(&e, id);
	if (i >= 0) *vrid = vrid_at(&e, (uint32_t)i), *srid = srid_at(&e, (uint32_t)i);
	collect_free(&e);
	return i >= 0 ? 0 : -1;
}

int ipc_stat_any(uint8_t type, uint32_t srid, void *buf)
{
	/* Given the full ID, the kernel looks at its index only: the answer
	 * is our object when it names it; else ours is gone from the kernel. */
	int r = sysv_ctl(&shim_kernel, type, (int)srid, stat_any[type], buf);
	if (r >= 0 && r != (int)srid) return shim_fail(EINVAL);
	return r < 0 ? -1 : 0;
}

int ipc_stat_index(uint8_t type, int id, int cmd, void *buf)
{
	uint32_t vrid, srid;
	ipc_settle(); /* the reverse lookups read LMDB alone */
	if (id < 0 || find_at_index(type, id, &vrid, &srid)) return shim_fail(EINVAL);
	/* Read into our own buffer first: if the index now holds an object
	 * that is not ours, the caller's buffer must not see it. Then the
	 * kernel's own call with the caller's buffer, for its permission
	 * check (SEM_STAT needs read access, SEM_STAT_ANY not) and EFAULT. */
	union stat_buf probe;
	if (ipc_stat_any(type, srid, &probe)) return -1;
	int r = sysv_ctl(&shim_kernel, type, (int)srid, cmd, buf);
	if (r < 0) return -1;
	if (r != (int)srid) return shim_fail(EINVAL);
	uint32_t skey;
	ipc_virtual_perm(type, vr_to_skey(type, vrid, &skey) == 0 && skey == SKEY_REMOVED, buf);
	return (int)vrid;
}

uint32_t ipc_each(uint8_t type, void (*fn)(uint32_t srid, void *arg), void *arg)
{
	struct each e;
	collect(&e, type);
	for (uint32_t i = 0; i < e.count; i++) fn(srid_at(&e, i), arg);
	uint32_t count = e.count;
	collect_free(&e);
	return count;
}

/* What *_INFO needs of the rows, per thread and family, good while
 * nothing was committed since it was read (the translation cache's
 * check): a program that asks again and again pays a walk of the rows
 * only after a change. */
static __thread struct {
	uint64_t txnid; /* 0: never read */
	struct ipc_summary s;
} summaries[RT_MSG + 1] __attribute__((tls_model("initial-exec")));

struct summing {
	uint8_t type;
	uint32_t mask;
	struct ipc_summary s;
};

static int add_row(void *arg, uint32_t vrid, const struct fwd_val *row)
{
	struct summing *sum = arg;
	(void)row;
	sum->s.count++;
	if ((int)(vrid & sum->mask) > sum->s.max_index) sum->s.max_index = (int)(vrid & sum->mask);
	return 0;
}

static int summary_in(MDB_txn *txn, void *arg)
{
	struct summing *sum = arg;
	return tabledb_each(shim_tables(), txn, sum->type, add_row, sum);
}

void ipc_summary(uint8_t type, struct ipc_summary *out)
{
	ipc_settle();
	uint64_t now = tabledb_txnid(shim_tables());
	if (summaries[type].txnid != now || now == 0) {
		/* The walk sees what was committed at now or later: if later,
		 * the next call's check reads again. */
		struct summing sum = { .type = type, .mask = index_mask() };
		if (with_read_txn(summary_in, &sum)) {
			*out = (struct ipc_summary){ 0 };
			return;
		}
		summaries[type].s = sum.s;
		summaries[type].txnid = now;
	}
	*out = summaries[type].s;
}
