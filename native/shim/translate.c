/* Table access for the shim: a per-thread cache in front of LMDB, checked
 * against the last committed transaction id, so the common translation is
 * a hash probe and never leaves the process; and the write transactions
 * that allocation runs in. */
#define _GNU_SOURCE
#include "shim.h"
#include "../core/afterfork.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define CACHE_SLOTS 256 /* direct-mapped; a collision only costs a refill */
#define CACHE_USED (1ull << 63)

/* A slot remembers absence too (found = 0): a connect to a port that is
 * not the application's asks on every call, and must not read LMDB each time. */
struct slot {
	uint64_t key;
	uint32_t val, found;
};

/* initial-exec: the shim is loaded at startup, so its TLS is static and a
 * probe costs no __tls_get_addr call. */
static __thread struct {
	uint64_t txnid, jgen; /* the tables' and the journal's, when filled */
	/* The tables and journal the check last read, and where their txn
	 * id and generation lie (tabledb_txnid_word, journal_gen_word): the
	 * check then loads those two words alone, not the handles' and
	 * LMDB's environment's pages in turn, each a cache and TLB miss after
	 * the system call before (20 ns of a 3 us msgsnd + msgrcv pair,
	 * measured alternated). The shim never frees a tables handle or a
	 * journal, nor maps a journal again in place, so a new one is never
	 * at an old address. */
	const struct tabledb *tables;
	const struct journal *journal;
	const uint64_t *txnid_at;
	const uint64_t *gen_at;
	struct slot s[CACHE_SLOTS];
} cache __attribute__((tls_model("initial-exec")));

static pthread_mutex_t lock APPSHOT_AFTER_FORK = PTHREAD_MUTEX_INITIALIZER;
/* Set while this thread holds lock: LMDB calls libc from inside (fcntl
 * F_GETLK on its lock file while it opens the tables), which reaches the
 * shim's own wrappers; they must not read the tables again then. */
static __thread int holding __attribute__((tls_model("initial-exec")));

int shim_in_tables(void) { return holding; }
/* Both written in a fork child at once: on the page it copies anyway. */
static MDB_txn *rtxn APPSHOT_AFTER_FORK;     /* this process's read transaction, kept reset */
static int env_inherited APPSHOT_AFTER_FORK; /* in a fork child: the handle is the parent's */

/* A restored process that did not renew yet does so before it forks, so
 * the child starts from the restored application's state. */
void translate_before_fork(void)
{
	shim_check_tables();
	pthread_mutex_lock(&lock);
}
void translate_after_fork_parent(void) { pthread_mutex_unlock(&lock); }
APPSHOT_AFTER_FORK_CODE void translate_after_fork_child(void)
{
	/* The parent's environment handle and read transaction must not be
	 * used here (LMDB's rule after fork); they are dropped, not closed,
	 * since closing would release the parent's reader slot and locks.
	 * Until this child first misses its cache it keeps translating with
	 * the parent's cache, checked against the shared map's txn id. */
	lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER; /* as tabledb_after_fork_child does */
	struct tabledb *t = shim_tables_if_open();
	if (t) tabledb_close_lock(t);
	rtxn = NULL;
	env_inherited = 1;
}

/* After a restore: this thread's cache (tp == my_tp) or a stopped one's,
 * emptied. A cache holds a transaction id of the old tables, which the
 * restored application's tables may reach too. No lock, no libc: called
 * from shim_restored_entry. */
void translate_forget_thread(uintptr_t tp, uintptr_t my_tp)
{
	uintptr_t at = tp + ((uintptr_t)&cache.txnid - my_tp);
	*(volatile uint64_t *)at = UINT64_MAX; /* no transaction id */
	/* And the words' addresses read again, from the handles then current. */
	at = tp + ((uintptr_t)&cache.tables - my_tp);
	*(const void *volatile *)at = NULL;
	at = tp + ((uintptr_t)&cache.journal - my_tp);
	*(const void *volatile *)at = NULL;
}

/* The restore's renewal: the old environment and its read transaction are
 * dropped, not closed (their reader slot and descriptors were the old
 * process's), and the tables opened again (reopen), under the lock, so no
 * other thread reads through the old handle meanwhile. */
void translate_restored(void (*reopen)(void))
{
	pthread_mutex_lock(&lock);
	holding = 1;
	rtxn = NULL;
	env_inherited = 0;
	reopen();
	holding = 0;
	pthread_mutex_unlock(&lock);
}

/* Makes sure this process's LMDB handle is its own (not the fork parent's)
 * and its file descriptor still the tables file, before LMDB touches a
 * descriptor: writes, and the first read, which registers a reader. */
static uint64_t checked_epoch = UINT64_MAX;

void translate_tables_opened(void)
{
	checked_epoch = atomic_load_explicit(&shim_fd_epoch, memory_order_relaxed);
}

static void own_env_locked(int check_fd)
{
	uint64_t epoch = atomic_load_explicit(&shim_fd_epoch, memory_order_relaxed);
	if (check_fd && epoch != checked_epoch) {
		const struct tabledb *t = shim_tables_if_open();
		if (!env_inherited && (!t || !tabledb_fds_ok(t))) env_inherited = 1;
		checked_epoch = epoch;
	}
	if (env_inherited) {
		shim_open_tables();
		env_inherited = 0;
		rtxn = NULL;
	}
}

/* As a fork child's reopen (own_env_locked), under the lock: LMDB's own
 * calls into libc meet the wrappers, which read no tables meanwhile. */
int translate_open_deferred(void)
{
	shim_tables_enter();
	pthread_mutex_lock(&lock);
	holding = 1;
	int opening = shim_tables_deferred();
	if (opening) {
		shim_open_tables();
		env_inherited = 0;
		rtxn = NULL;
	}
	holding = 0;
	pthread_mutex_unlock(&lock);
	shim_tables_leave();
	return opening;
}

static void read_begin_locked(void)
{
	own_env_locked(rtxn == NULL);
	struct tabledb *t = shim_tables();
	int rc = rtxn ? mdb_txn_renew(rtxn) : mdb_txn_begin(t->env, NULL, MDB_RDONLY, &rtxn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(t->env, 0);
		rc = rtxn ? mdb_txn_renew(rtxn) : mdb_txn_begin(t->env, NULL, MDB_RDONLY, &rtxn);
	}
	if (rc)
		shim_fatal("cannot read tables at %s: %s", t->path, mdb_strerror(rc));
}

int with_read_txn(int (*fn)(MDB_txn *txn, void *arg), void *arg)
{
	shim_tables_enter();
	shim_check_tables();
	pthread_mutex_lock(&lock);
	holding = 1;
	read_begin_locked();
	int rc = fn(rtxn, arg);
	mdb_txn_reset(rtxn);
	holding = 0;
	pthread_mutex_unlock(&lock);
	shim_tables_leave();
	return rc;
}

/* What a lookup answers: the srid, skey or creator of a fwd row, or the
 * vrid of a rev row of this application. */
enum answer { SRID, SKEY, CREATOR, VRID };

struct lookup {
	enum answer answer;
	uint8_t type;
	uint32_t id, out;
};

static int lookup_in(MDB_txn *txn, void *arg)
{
	struct lookup *l = arg;
	const struct tabledb *t = shim_tables();
	if (l->answer == VRID) return tabledb_rev_seen(t, txn, l->type, l->id, &l->out) == REV_MINE ? 0 : -1;
	struct fwd_val fv;
	int rc = tabledb_fwd(t, txn, l->type, l->id, &fv);
	if (rc == 0) l->out = l->answer == SKEY ? fv.skey : l->answer == CREATOR ? fv.creator : fv.srid;
	else if (rc != MDB_NOTFOUND) shim_fatal("cannot read tables at %s: %s", t->path, mdb_strerror(rc));
	return rc ? -1 : 0;
}

/* The last committed txn id and the journal's generation, through the
 * addresses kept for the handles now in use. */
static inline uint64_t tables_txnid(void)
{
	const struct tabledb *t = shim_tables();
	if (__builtin_expect(cache.tables != t, 0)) {
		cache.txnid_at = tabledb_txnid_word(t);
		cache.tables = t;
	}
	return cache.txnid_at ? __atomic_load_n(cache.txnid_at, __ATOMIC_ACQUIRE) : tabledb_txnid(t);
}

static inline uint64_t journal_now(void)
{
	const struct journal *j = shim_journal();
	if (__builtin_expect(cache.journal != j, 0)) {
		cache.gen_at = journal_gen_word(j);
		cache.journal = j;
	}
	return cache.gen_at ? __atomic_load_n(cache.gen_at, __ATOMIC_ACQUIRE) : 0;
}

/* The cache slot for a lookup, emptied first if anything was committed,
 * or the journal of new objects changed, since the cache was filled. */
static inline struct slot *probe(uint64_t key, uint64_t *txnid, uint64_t *jgen)
{
	uint64_t now = tables_txnid(), gen = journal_now();
	if (__builtin_expect(cache.txnid != now || cache.jgen != gen, 0)) {
		shim_thread_seen(); /* first, so a restore finds this cache */
		memset(cache.s, 0, sizeof cache.s);
		cache.txnid = now;
		cache.jgen = gen;
	}
	*txnid = now;
	*jgen = gen;
	return &cache.s[(key * 0x9E3779B97F4A7C15ull) >> 56];
}

/* An object's row still in the journal (core/journal.h): read before
 * LMDB, since a fold commits a row before it leaves the journal. */
static int in_journal(struct lookup *l)
{
	struct journal_row r;
	if (!sysv_is_ipc(l->type)) return -1;
	if (l->answer == VRID) return journal_find_srid(shim_journal(), l->type, l->id, &l->out);
	if (journal_find(shim_journal(), l->type, l->id, &r)) return -1;
	l->out = l->answer == SKEY ? r.skey : l->answer == CREATOR ? r.creator : r.srid;
	return 0;
}

static inline uint64_t cache_key(enum answer answer, uint8_t type, uint32_t id)
{
	return CACHE_USED | ((uint64_t)answer << 40) | ((uint64_t)type << 32) | id;
}

static inline SHIM_HOT int translate(enum answer answer, uint8_t type, uint32_t id, uint32_t *out)
{
	uint64_t key = cache_key(answer, type, id), now, gen;
	struct slot *s = probe(key, &now, &gen);
	if (__builtin_expect(s->key == key, 1)) {
		*out = s->val;
		return s->found ? 0 : -1;
	}
	struct lookup l = { answer, type, id, 0 };
	shim_check_tables(); /* a restored process maps its own home's journal first */
	int found = in_journal(&l) == 0 || with_read_txn(lookup_in, &l) == 0;
	/* Only cache what was read at or after the checked txn id and generation. */
	if (cache.txnid == now && cache.jgen == gen) *s = (struct slot){ key, l.out, found };
	*out = l.out;
	return found ? 0 : -1;
}

SHIM_HOT int vr_to_sr(uint8_t type, uint32_t vrid, uint32_t *srid) { return translate(SRID, type, vrid, srid); }
int vr_to_skey(uint8_t type, uint32_t vrid, uint32_t *skey) { return translate(SKEY, type, vrid, skey); }

int vr_is_template(uint8_t type, uint32_t vrid)
{
	uint32_t creator;
	return translate(CREATOR, type, vrid, &creator) == 0 && creator == CREATOR_TEMPLATE;
}

/* A translation from the cache alone: -1 on a miss, without reading LMDB. */
static int cached(enum answer answer, uint8_t type, uint32_t id, uint32_t *out)
{
	uint64_t key = cache_key(answer, type, id), now, gen;
	struct slot *s = probe(key, &now, &gen);
	if (s->key != key || !s->found) return -1;
	*out = s->val;
	return 0;
}


int vr_to_sr_tables(uint8_t type, uint32_t vrid, uint32_t *srid)
{
	struct lookup l = { SRID, type, vrid, 0 };
	if (with_read_txn(lookup_in, &l)) return -1;
	*srid = l.out;
	return 0;
}

/* The same lookup under a stable name, so the benchmark can time a
 * translation on its own. */
SHIM_EXPORT int appshot_vr_to_sr(uint8_t type, uint32_t vrid, uint32_t *srid)
{
	return translate(SRID, type, vrid, srid);
}
int sr_to_vr(uint8_t type, uint32_t srid, uint32_t *vrid) { return translate(VRID, type, srid, vrid); }

int sr_to_vr_cached(uint8_t type, uint32_t srid, uint32_t *vrid) { return cached(VRID, type, srid, vrid); }

static int mapped_in(void *ctx, uint8_t type, uint32_t srid)
{
	uint32_t vrid;
	return tabledb_rev(shim_tables(), ctx, type, srid, &vrid) != REV_NONE;
}

static MDB_txn *begin_write(int fold)
{
	shim_tables_enter(); /* until write_commit or write_abort */
	shim_check_tables();
	pthread_mutex_lock(&lock);
	/* holding only when there is something to do: it is a store to this
	 * thread's TLS page, which right after fork (the child's row) is still
	 * shared with the child and would be copied. */
	if (env_inherited || atomic_load_explicit(&shim_fd_epoch, memory_order_relaxed) != checked_epoch) {
		holding = 1;
		own_env_locked(1);
		holding = 0;
	}
	pthread_mutex_unlock(&lock);
	struct tabledb *t = shim_tables();
	MDB_txn *txn;
	int rc = tabledb_write_lock(t);
	if (rc) shim_fatal("cannot lock the tables at %s for writing: %s", t->path, strerror(rc));
	tabledb_check_readers(t);
	rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(t->env, 0);
		rc = mdb_txn_begin(t->env, NULL, 0, &txn);
	}
	if (rc) shim_fatal("cannot write tables at %s: %s", t->path, mdb_strerror(rc));
	inflight_recover(shim_inflight(), &shim_kernel, mapped_in, txn, NULL, 0);
	journal_recover(shim_journal(), &shim_kernel, mapped_in, txn, NULL, 0, 0);
	/* The journal's rows go with this commit: after it, LMDB alone is
	 * the truth for whatever this write reads or replaces. */
	if (fold) journal_fold_into(shim_journal(), t, txn, shim_pid);
	return txn;
}

MDB_txn *write_begin(void) { return begin_write(1); }

MDB_txn *write_begin_unfolded(void) { return begin_write(0); }

int vrids_reserve(uint8_t type, uint32_t n, uint32_t *first, uint32_t *count)
{
	/* A counter alone: no SysV row read or written, so no fold. */
	MDB_txn *txn = write_begin_unfolded();
	if (tabledb_reserve_block(shim_tables(), txn, type, n, n, first, count)) {
		write_abort(txn);
		return -1;
	}
	/* Uncommitted, the counter did not move: another process would be
	 * given the same vrids. */
	return write_commit(txn) ? -1 : 0;
}

uint32_t vrid_block_take(struct vrid_block *b, uint8_t type, uint32_t n)
{
	uint32_t vrid = 0;
	pthread_mutex_lock(&b->lock);
	if (!b->left && vrids_reserve(type, n, &b->next, &b->left)) b->left = 0;
	if (b->left) {
		vrid = b->next++;
		b->left--;
	}
	pthread_mutex_unlock(&b->lock);
	return vrid;
}

/* The commit, the write lock still held. */
static int commit_locked(MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	if (rc == MDB_EMPTY_TXN) rc = 0; /* this LMDB's word for a commit that changed nothing */
	journal_fold_end(shim_journal(), shim_pid, rc == 0);
	if (rc) shim_warn("cannot commit to tables at %s: %s", shim_tables()->path, mdb_strerror(rc));
	return rc;
}

static void write_unlock(void)
{
	tabledb_write_unlock(shim_tables());
	shim_tables_leave();
}

int write_commit(MDB_txn *txn)
{
	int rc = commit_locked(txn);
	write_unlock();
	return rc;
}

int journal_vrids_reserve(uint8_t type, uint32_t n, uint32_t most)
{
	struct journal *j = shim_journal();
	uint32_t first, count;
	MDB_txn *txn = write_begin_unfolded(); /* a counter alone */
	/* Given by the process this one waited for. */
	if (journal_vrids_left(j, type)) {
		write_abort(txn);
		return 0;
	}
	if (tabledb_reserve_block(shim_tables(), txn, type, n, most, &first, &count)) {
		write_abort(txn);
		return -1;
	}
	/* Given only once committed (else another process would be given the
	 * same vrids), and before the lock goes (else every process waiting
	 * for it would reserve a block of its own). */
	int rc = commit_locked(txn);
	if (!rc) journal_give_vrids(j, type, first, count);
	write_unlock();
	return rc ? -1 : 0;
}

void write_abort(MDB_txn *txn)
{
	/* The folded rows LIVE again before LMDB's write lock goes: the next
	 * writer's fold passes over rows another live process holds. */
	journal_fold_end(shim_journal(), shim_pid, 0);
	mdb_txn_abort(txn);
	tabledb_write_unlock(shim_tables());
	shim_tables_leave();
}
