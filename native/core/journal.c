/* The journal of new objects (journal.h). The slots are a hash table with
 * linear probing, changed only under a robust process-shared lock and
 * read without one: a reader checks the generation before and after its
 * probe (odd while the slots change), as a seqlock does. */
#define _GNU_SOURCE
#include "journal.h"
#include "guardmap.h"
#include "home.h"
#include "populate.h"
#include "procinfo.h"
#include "rawcall.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x32304c4e524a5041ull    /* "APJRNL02": keyed rows */
#define MAGIC_V1 0x31304c4e524a5041ull /* "APJRNL01": 32-byte slots, private rows only */
#define INITIALIZING (1ull << 63)   /* | the initializing process's PID */
#define HEAD_SIZE 65536u
#define MASK (JOURNAL_SLOTS - 1)
/* How long a fold waits for the journal's lock before it gives up. */
#define FOLD_WAIT_S 5

enum kind { FREE = 0, LIVE = 1, FOLDING = 2, TOMB = 3 };
/* A keyed row's second entry, found by srid: its type is the row's with
 * this bit, its vrid the srid and its srid the vrid. Folded with its row
 * and dropped with it; never put in LMDB (the fold's reverse row is). */
#define REVERSE 0x40
/* A slot's state: its kind, and for FOLDING the folder's PID above it. */
static inline uint32_t state_of(enum kind k, pid_t owner) { return (uint32_t)k | ((uint32_t)owner << 2); }
static inline enum kind kind_of(uint32_t state) { return (enum kind)(state & 3); }
static inline pid_t owner_of(uint32_t state) { return (pid_t)(state >> 2); }

struct journal_slot {
	_Atomic uint32_t state;
	uint8_t type, pad;
	uint16_t app;
	uint32_t vrid, srid, creator, check;
	uint64_t created_ms;
	uint32_t vkey, skey;
};

struct journal_app {
	uint64_t hash; /* 0: free */
	uint32_t rows;
	/* The remapped vrids of each family this application's processes
	 * hand out next, reserved from its LMDB counter (journal_take_vrid):
	 * shared, so that its objects' indexes stay dense, as natively. */
	uint32_t next[RT_MSG + 1], left[RT_MSG + 1];
	char aid[APPSHOT_AID_MAX + 1];
};

enum { PENDING_CREATING = 1, PENDING_CREATED = 2 };
struct journal_pending {
	_Atomic uint64_t token; /* 0 free; else the creator's PID << 32 | a count */
	_Atomic uint64_t ready; /* == token once the fields below are the creator's */
	uint32_t spid, srid, skey;
	_Atomic uint8_t state;
	uint8_t type;
	uint64_t start_ticks, started_s;
	char aid[APPSHOT_AID_MAX + 1];
};

struct journal_head {
	_Atomic uint64_t magic;
	_Atomic uint64_t gen;
	_Atomic uint32_t used; /* slots not FREE */
	_Atomic uint32_t pending_used;
	/* Pending records ever taken: a creation begun since a count was read
	 * changes it (journal_recover's private objects). */
	_Atomic uint64_t pending_taken;
	_Atomic uint32_t app_epoch;
	uint32_t tombs;
	/* No row lies further than this past its probe's start: probes and
	 * deletes look no further (the rows of a run of consecutive vrids
	 * each sit at their start, and a miss must not walk the whole run). */
	_Atomic uint32_t max_disp;
	/* The PID of a process inside an LMDB write transaction of the home,
	 * from its fold's begin to its end (journal_create_begin), or 0. */
	_Atomic int32_t key_writer;
	pthread_mutex_t mutex;
	struct journal_app apps[JOURNAL_APPS];
	struct journal_pending pending[JOURNAL_PENDING];
};

_Static_assert(sizeof(struct journal_slot) == 40, "a slot is 40 bytes");

void (*journal_fault)(const char *point);
static inline void fault(const char *point)
{
	if (__builtin_expect(journal_fault != NULL, 0)) journal_fault(point);
}
_Static_assert(sizeof(struct journal_head) <= HEAD_SIZE, "the head fits its part of the file");

size_t journal_file_size(void) { return JOURNAL_OFFSET + HEAD_SIZE + (size_t)JOURNAL_SLOTS * sizeof(struct journal_slot); }
static size_t map_size(void) { return HEAD_SIZE + (size_t)JOURNAL_SLOTS * sizeof(struct journal_slot); }

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t aid_hash(const char *aid)
{
	uint64_t h = fnv(aid, strlen(aid), 0xcbf29ce484222325ull);
	return h ? h : 1;
}

/* Where a row's probe starts: the low bits of its vrid, which for an
 * identity row (vrid = srid) are the kernel's index of the object. Live
 * objects of a family have distinct indexes, host-wide, and the kernel
 * hands the lowest free one out again: so rows rarely share a start, and a
 * program that creates and removes keeps touching the same few slots
 * (a hashed start was a cache miss on every call). */
static uint32_t home_of(uint8_t type, uint32_t vrid)
{
	/* A reverse entry's start is apart from its identity row's (vrid = srid). */
	uint32_t family = (uint32_t)(type & 3) * (JOURNAL_SLOTS / 4) + (type & REVERSE ? JOURNAL_SLOTS / 8 : 0);
	return (vrid + family) & MASK;
}

static uint32_t slot_check(const struct journal_slot *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	h = fnv(&s->type, 1, h);
	h = fnv(&s->app, 2, h);
	h = fnv(&s->vrid, 4, h);
	h = fnv(&s->srid, 4, h);
	h = fnv(&s->creator, 4, h);
	h = fnv(&s->created_ms, 8, h);
	h = fnv(&s->vkey, 4, h);
	h = fnv(&s->skey, 4, h);
	return (uint32_t)(h ^ (h >> 32));
}

static int alive(pid_t pid) { return raw_call(SYS_kill, pid, 0) == 0 || errno == EPERM; }

/* ------------------------------------------------------------ mapping */

static void init_lock(struct journal_head *h)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	/* A keyed creation holds it around calls that take it again. */
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&h->mutex, &a);
	pthread_mutexattr_destroy(&a);
}

/* The first user makes the lock; one that died doing so is replaced. The
 * previous version's journal, if empty, is made again in this layout (its
 * head's counts lie where this one's do). */
static int make_ready(struct journal_head *h)
{
	pid_t me = (pid_t)raw_call(SYS_getpid);
	for (;;) {
		uint64_t m = atomic_load_explicit(&h->magic, memory_order_acquire);
		if (m == MAGIC) return 0;
		if (m == MAGIC_V1 && !atomic_load(&h->used) && !atomic_load(&h->pending_used)) {
			if (!atomic_compare_exchange_strong(&h->magic, &m, INITIALIZING | (uint64_t)me)) continue;
			memset((char *)h + sizeof h->magic, 0, map_size() - sizeof h->magic);
			init_lock(h);
			atomic_store_explicit(&h->magic, MAGIC, memory_order_release);
			return 0;
		}
		if (m != 0 && !(m & INITIALIZING)) return EPROTO; /* not a journal */
		if (m & INITIALIZING && alive((pid_t)(m & 0xffffffffu))) {
			raw_call(SYS_sched_yield);
			continue;
		}
		if (!atomic_compare_exchange_strong(&h->magic, &m, INITIALIZING | (uint64_t)me)) continue;
		init_lock(h);
		atomic_store_explicit(&h->magic, MAGIC, memory_order_release);
		return 0;
	}
}

int journal_map_fd(struct journal *j, int fd)
{
	*j = (struct journal){ 0 };
	int e = inflight_reserve(fd, (off_t)journal_file_size());
	if (e) return e;
	void *p = appshot_guarded_mmap(NULL, map_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, JOURNAL_OFFSET);
	if (p == MAP_FAILED) return errno;
	if ((e = make_ready(p))) {
		appshot_guarded_munmap(p, map_size());
		return e;
	}
	j->head = p;
	j->slots = (struct journal_slot *)((char *)p + HEAD_SIZE);
	return 0;
}

int journal_open(struct journal *j, const char *home)
{
	char path[4096];
	*j = (struct journal){ 0 };
	if (snprintf(path, sizeof path, "%s/%s", home, APPSHOT_INFLIGHT_FILE) >= (int)sizeof path) return ENAMETOOLONG;
	int fd = home_path_open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) return errno;
	int e = journal_map_fd(j, fd);
	close(fd);
	return e;
}

void journal_close(struct journal *j)
{
	if (j->head) appshot_guarded_munmap(j->head, map_size());
	*j = (struct journal){ 0 };
}

void journal_set_app(struct journal *j, const char *aid)
{
	snprintf(j->aid, sizeof j->aid, "%s", aid);
	j->aidhash = aid_hash(j->aid);
	j->app_at = 0;
}

uint64_t journal_gen(const struct journal *j)
{
	/* No journal (a restored process between its old mapping and the new): 0. */
	const struct journal_head *h = __atomic_load_n(&j->head, __ATOMIC_RELAXED);
	return h ? atomic_load_explicit(&h->gen, memory_order_acquire) : 0;
}

const uint64_t *journal_gen_word(const struct journal *j)
{
	const struct journal_head *h = __atomic_load_n(&j->head, __ATOMIC_RELAXED);
	/* A plain pointer, for the C++ that includes journal.h: the caller
	 * loads through it with __atomic_load_n, as journal_gen does. */
	return h ? (const uint64_t *)&h->gen : NULL;
}

uint32_t journal_used(const struct journal *j)
{
	return j->head ? atomic_load_explicit(&j->head->used, memory_order_relaxed) : 0;
}

uint32_t journal_pending(const struct journal *j)
{
	return j->head ? atomic_load_explicit(&j->head->pending_used, memory_order_relaxed) : 0;
}

/* ------------------------------------------------------------ the lock */

static void repair(struct journal *j);

/* A holder keeps the lock for a few slot stores, while a robust mutex's
 * waiter sleeps at once: with many processes creating, each wait was a
 * futex sleep and wake-up (two context switches, dear in a VM) for a lock
 * free again a microsecond later. So a while of tries first, about as long
 * as a holder's stores; a holder not running at all is then waited for
 * asleep, as before. A try is made only when the lock's word (the holder's
 * thread ID) reads free: a failed try is a locked write, which takes the
 * head's cache line from the holder on the other CPU. */
#define LOCK_TRIES 100

static int looks_free(const pthread_mutex_t *m)
{
	return !(__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) & FUTEX_TID_MASK);
}

static void lock(struct journal *j)
{
	/* Tried first as it is: this thread may hold it already (a keyed
	 * creation), when the word does not read free. */
	int rc = pthread_mutex_trylock(&j->head->mutex);
	for (int i = 0; rc == EBUSY && i < LOCK_TRIES; i++) {
		__builtin_ia32_pause();
		if (looks_free(&j->head->mutex)) rc = pthread_mutex_trylock(&j->head->mutex);
	}
	if (rc == EBUSY) rc = pthread_mutex_lock(&j->head->mutex);
	if (rc == EOWNERDEAD) {
		repair(j);
		pthread_mutex_consistent(&j->head->mutex);
	}
}

/* lock, giving up after seconds: ETIMEDOUT when a holder keeps it (a
 * process stopped inside, by SIGSTOP or a debugger). */
static int lock_within(struct journal *j, int seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	int rc = pthread_mutex_timedlock(&j->head->mutex, &until);
	if (rc == EOWNERDEAD) {
		repair(j);
		pthread_mutex_consistent(&j->head->mutex);
		rc = 0;
	}
	return rc;
}

static void unlock(struct journal *j) { pthread_mutex_unlock(&j->head->mutex); }

/* Around every change of the slots or the AID table, under the lock. */
static void change_begin(struct journal *j) { atomic_fetch_add_explicit(&j->head->gen, 1, memory_order_acq_rel); }
static void change_end(struct journal *j) { atomic_fetch_add_explicit(&j->head->gen, 1, memory_order_release); }

/* ------------------------------------------------------------ AIDs */

static int app_lookup(const struct journal *j)
{
	const struct journal_head *h = j->head;
	for (unsigned i = 0; i < JOURNAL_APPS; i++)
		if (h->apps[i].hash == j->aidhash && !strncmp(h->apps[i].aid, j->aid, sizeof h->apps[i].aid)) return (int)i;
	return -1;
}

/* This application's entry, as of the table's epoch: exact under the
 * lock; read racing with a change, the caller's generation check catches
 * it. */
static int app_index(struct journal *j)
{
	uint32_t epoch = atomic_load_explicit(&j->head->app_epoch, memory_order_acquire);
	uint64_t at = __atomic_load_n(&j->app_at, __ATOMIC_RELAXED);
	if (at && (uint32_t)(at >> 32) == epoch) return (int)(uint32_t)at - 1;
	int app = app_lookup(j);
	if (app >= 0) __atomic_store_n(&j->app_at, (uint64_t)epoch << 32 | (uint32_t)(app + 1), __ATOMIC_RELAXED);
	return app;
}

/* Entries without rows go, with the vrids they had reserved (the counter
 * only moves forward: those are skipped). Only when the table is full: an
 * entry kept keeps its application's indexes dense across folds. */
static int apps_prune(struct journal *j)
{
	struct journal_head *h = j->head;
	int pruned = 0;
	for (unsigned a = 0; a < JOURNAL_APPS; a++)
		if (h->apps[a].hash && !h->apps[a].rows) h->apps[a].hash = 0, pruned = 1;
	if (pruned) atomic_fetch_add_explicit(&h->app_epoch, 1, memory_order_release);
	return pruned;
}

/* Under the lock, inside a change: the entry, made if need be. */
static int app_claim(struct journal *j)
{
	int app = app_index(j);
	if (app >= 0) return app;
	struct journal_head *h = j->head;
	for (int round = 0; round < 2; round++) {
		for (unsigned i = 0; i < JOURNAL_APPS; i++) {
			if (h->apps[i].hash) continue;
			snprintf(h->apps[i].aid, sizeof h->apps[i].aid, "%s", j->aid);
			h->apps[i].rows = 0;
			memset(h->apps[i].left, 0, sizeof h->apps[i].left);
			h->apps[i].hash = j->aidhash;
			atomic_fetch_add_explicit(&h->app_epoch, 1, memory_order_release);
			return (int)i;
		}
		if (!apps_prune(j)) break;
	}
	return -1;
}

static void app_release(struct journal *j, uint16_t app)
{
	struct journal_app *a = &j->head->apps[app];
	if (a->rows) a->rows--;
}

/* Under the lock, inside a change: the application's next remapped vrid
 * of type, or 0 when its processes have none left. */
static uint32_t take_vrid(struct journal *j, int app, uint8_t type)
{
	struct journal_app *a = &j->head->apps[app];
	if (!a->left[type]) return 0;
	a->left[type]--;
	return a->next[type]++;
}

/* Under the lock: vrid given back if it was the last one handed out. */
static void return_vrid(struct journal *j, int app, uint8_t type, uint32_t vrid)
{
	struct journal_app *a = &j->head->apps[app];
	if (a->next[type] == vrid + 1) {
		a->next[type]--;
		a->left[type]++;
	}
}

int journal_take_vrid(struct journal *j, uint8_t type, uint32_t *vrid)
{
	if (!j->head || type > RT_MSG) return -1;
	lock(j);
	change_begin(j);
	int app = app_claim(j);
	uint32_t v = app >= 0 ? take_vrid(j, app, type) : 0;
	change_end(j);
	unlock(j);
	if (v) *vrid = v;
	return v ? 0 : -1;
}

uint32_t journal_vrids_left(struct journal *j, uint8_t type)
{
	if (!j->head || type > RT_MSG) return 0;
	int app = app_index(j);
	return app >= 0 ? __atomic_load_n(&j->head->apps[app].left[type], __ATOMIC_RELAXED) : 0;
}

void journal_give_vrids(struct journal *j, uint8_t type, uint32_t first, uint32_t count)
{
	if (!j->head || type > RT_MSG) return;
	lock(j);
	change_begin(j);
	int app = app_claim(j);
	/* Another process of the application may have given some meanwhile:
	 * these are then skipped. */
	if (app >= 0 && !j->head->apps[app].left[type]) {
		j->head->apps[app].next[type] = first;
		j->head->apps[app].left[type] = count;
	}
	change_end(j);
	unlock(j);
}

/* ------------------------------------------------------------ slots */

static struct journal_slot *slot(const struct journal *j, uint32_t i) { return &j->slots[i & MASK]; }

static int matches(const struct journal_slot *s, int app, uint8_t type, uint32_t vrid)
{
	return s->app == app && s->type == type && s->vrid == vrid;
}

/* The slot holding the row, or -1; free is set to the first slot a new
 * row could take on the way (FREE or TOMB), if asked. */
static int64_t probe(const struct journal *j, int app, uint8_t type, uint32_t vrid, int64_t *free)
{
	uint32_t i = home_of(type, vrid), reach = atomic_load_explicit(&j->head->max_disp, memory_order_relaxed);
	if (free) *free = -1;
	for (uint32_t n = 0; n < JOURNAL_SLOTS; n++, i = (i + 1) & MASK) {
		/* Past the reach no row of this start lies; an insert walks on
		 * to the first slot it can take. */
		if (n > reach && (!free || *free >= 0)) return -1;
		const struct journal_slot *s = slot(j, i);
		enum kind k = kind_of(atomic_load_explicit(&s->state, memory_order_acquire));
		if (k == FREE) {
			if (free && *free < 0) *free = i;
			return -1;
		}
		if (k == TOMB) {
			if (free && *free < 0) *free = i;
			continue;
		}
		if (n <= reach && matches(s, app, type, vrid)) return i;
	}
	return -1;
}

static void row_of(const struct journal_slot *s, struct journal_row *out)
{
	*out = (struct journal_row){ s->type, s->vrid, s->srid, s->creator, s->created_ms, s->vkey, s->skey };
}

int journal_find(struct journal *j, uint8_t type, uint32_t vrid, struct journal_row *out)
{
	if (!j->head || !atomic_load_explicit(&j->head->used, memory_order_relaxed)) return -1;
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t g = atomic_load_explicit(&j->head->gen, memory_order_acquire);
		if (g & 1) {
			raw_call(SYS_sched_yield);
			continue;
		}
		int app = app_index(j);
		int64_t i = app >= 0 ? probe(j, app, type, vrid, NULL) : -1;
		struct journal_row r;
		if (i >= 0) row_of(slot(j, (uint32_t)i), &r);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&j->head->gen, memory_order_relaxed) != g) continue;
		if (i >= 0) *out = r;
		return i >= 0 ? 0 : -1;
	}
	/* Someone keeps changing the slots, or died doing so: take the lock. */
	lock(j);
	int app = app_lookup(j);
	int64_t i = app >= 0 ? probe(j, app, type, vrid, NULL) : -1;
	if (i >= 0) row_of(slot(j, (uint32_t)i), out);
	unlock(j);
	return i >= 0 ? 0 : -1;
}

/* The slots are mapped in parts of this size: 40, one bit each in
 * struct journal's mapped. */
#define MAP_PART (32u * 1024)
#define SLOTS_BYTES ((size_t)JOURNAL_SLOTS * sizeof(struct journal_slot))
_Static_assert(SLOTS_BYTES / MAP_PART < 64, "a bit per part");

static void map_part_of(struct journal *j, uint32_t i)
{
	size_t part = (size_t)(i & MASK) * sizeof(struct journal_slot) / MAP_PART, at = part * MAP_PART;
	uint64_t bit = 1ull << part;
	if (__atomic_load_n(&j->mapped, __ATOMIC_RELAXED) & bit || __atomic_fetch_or(&j->mapped, bit, __ATOMIC_RELAXED) & bit) return;
	/* An older kernel refuses the advice: the pages fault in as before. */
	madvise((char *)j->slots + at, SLOTS_BYTES - at < MAP_PART ? SLOTS_BYTES - at : MAP_PART, MADV_POPULATE_WRITE);
}

void journal_map_ahead(struct journal *j, uint8_t type, uint32_t vrid, uint32_t srid, pid_t me)
{
	if (!j->head || type > RT_MSG) return;
	if (__atomic_load_n(&j->mapped_by, __ATOMIC_RELAXED) != me) {
		/* A fork child: its parent's pages are not its own. */
		__atomic_store_n(&j->mapped, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&j->mapped_by, me, __ATOMIC_RELAXED);
	}
	if (!vrid) {
		int app = app_index(j);
		if (app < 0) return;
		vrid = __atomic_load_n(&j->head->apps[app].next[type], __ATOMIC_RELAXED);
	}
	/* The row's start and where the rows after it will go (a run of
	 * vrids, or the row pushed on by others in its way). */
	uint32_t home = home_of(type, vrid);
	map_part_of(j, home);
	map_part_of(j, home + MAP_PART / sizeof(struct journal_slot) / 2);
	if (srid) map_part_of(j, home_of(type | REVERSE, srid));
}

int journal_find_srid(struct journal *j, uint8_t type, uint32_t srid, uint32_t *vrid)
{
	struct journal_row rev, row;
	/* The row itself too: the entry by srid only says where to look. */
	if (journal_find(j, type | REVERSE, srid, &rev) || journal_find(j, type, rev.srid, &row) || row.srid != srid) return -1;
	*vrid = rev.srid;
	return 0;
}

static void put_row(struct journal_slot *s, int app, const struct journal_row *row, uint32_t state)
{
	s->type = row->type;
	s->app = (uint16_t)app;
	s->vrid = row->vrid;
	fault("torn");
	s->srid = row->srid;
	s->creator = row->creator;
	s->created_ms = row->created_ms;
	s->vkey = row->vkey;
	s->skey = row->skey;
	s->check = slot_check(s);
	atomic_store_explicit(&s->state, state, memory_order_release);
}

/* Whether k lies cyclically in (i, j]. */
static int between(uint32_t k, uint32_t i, uint32_t j) { return i <= j ? (i < k && k <= j) : (i < k || k <= j); }

/* Removes slot at (Knuth's algorithm R: later rows of the probe run move
 * back into the hole, so no probe ever meets a hole before its row). A
 * moved row is written whole to its new slot before its old slot is
 * reused: killed at any point, every row stays whole in one slot at least
 * (repair then drops the copies). Under the lock, inside a change. */
static void delete_slot(struct journal *j, uint32_t at)
{
	struct journal_head *h = j->head;
	app_release(j, slot(j, at)->app);
	uint32_t hole = at, reach = atomic_load(&h->max_disp);
	for (uint32_t i = (at + 1) & MASK; i != at && ((i - hole) & MASK) <= reach; i = (i + 1) & MASK) {
		struct journal_slot *s = slot(j, i);
		uint32_t st = atomic_load(&s->state);
		if (kind_of(st) == FREE) break;
		if (kind_of(st) == TOMB) continue;
		if (between(home_of(s->type, s->vrid), hole, i)) continue;
		struct journal_row r;
		row_of(s, &r);
		put_row(slot(j, hole), s->app, &r, st);
		fault("moved");
		hole = i;
	}
	atomic_store_explicit(&slot(j, hole)->state, state_of(FREE, 0), memory_order_release);
	if (atomic_fetch_sub(&h->used, 1) == 1) atomic_store(&h->max_disp, 0);
}

static int keyed(const struct journal_row *row) { return row->vkey != IPC_PRIVATE; }

/* A keyed row's entry by srid. */
static struct journal_row reverse_of(const struct journal_row *row)
{
	struct journal_row r = *row;
	r.type = (uint8_t)(row->type | REVERSE);
	r.vrid = row->srid;
	r.srid = row->vrid;
	return r;
}

/* Under the lock, inside a change: a new entry in the first slot its
 * probe may take. 0, or -1 when full. */
static int put_new(struct journal *j, int app, const struct journal_row *row)
{
	struct journal_head *h = j->head;
	int64_t free, i = probe(j, app, row->type, row->vrid, &free);
	if (i >= 0 || free < 0) return -1;
	struct journal_slot *s = slot(j, (uint32_t)free);
	int tomb = kind_of(atomic_load(&s->state)) == TOMB;
	/* A FREE slot is taken only while another stays FREE: probes end there. */
	if (!tomb && atomic_load(&h->used) >= JOURNAL_SLOTS - 1) return -1;
	uint32_t disp = ((uint32_t)free - home_of(row->type, row->vrid)) & MASK;
	if (disp > atomic_load(&h->max_disp)) atomic_store(&h->max_disp, disp);
	if (tomb) h->tombs--;
	else atomic_fetch_add(&h->used, 1);
	h->apps[app].rows++;
	put_row(s, app, row, state_of(LIVE, 0));
	return 0;
}

#define ANY_SRID UINT64_MAX

/* Under the lock, inside a change: the application's row type/vrid (of
 * object srid, unless ANY_SRID) removed, with its entry by srid if keyed;
 * a row a folder holds stays. */
static enum journal_drop remove_row(struct journal *j, int app, uint8_t type, uint32_t vrid, uint64_t srid)
{
	int64_t i = probe(j, app, type, vrid, NULL);
	if (i < 0 || (srid != ANY_SRID && slot(j, (uint32_t)i)->srid != srid)) return JOURNAL_ABSENT;
	struct journal_slot *s = slot(j, (uint32_t)i);
	if (kind_of(atomic_load(&s->state)) == FOLDING) return JOURNAL_FOLDING;
	struct journal_row r;
	row_of(s, &r);
	delete_slot(j, (uint32_t)i);
	if (keyed(&r)) {
		/* Looked up again: the delete may have moved it. */
		int64_t k = probe(j, app, r.type | REVERSE, r.srid, NULL);
		if (k >= 0 && slot(j, (uint32_t)k)->srid == r.vrid && kind_of(atomic_load(&slot(j, (uint32_t)k)->state)) == LIVE)
			delete_slot(j, (uint32_t)k);
	}
	return JOURNAL_DROPPED;
}

/* Under the lock, inside a change: the keyed row of object srid, if any
 * (a stale one: the kernel just handed srid out again), removed. */
static enum journal_drop remove_by_srid(struct journal *j, int app, uint8_t type, uint32_t srid)
{
	int64_t k = probe(j, app, type | REVERSE, srid, NULL);
	if (k < 0) return JOURNAL_ABSENT;
	uint32_t vrid = slot(j, (uint32_t)k)->srid;
	enum journal_drop d = remove_row(j, app, type, vrid, srid);
	/* An entry by srid left without its row: only a crash's leftover. */
	k = probe(j, app, type | REVERSE, srid, NULL);
	if (d != JOURNAL_FOLDING && k >= 0 && kind_of(atomic_load(&slot(j, (uint32_t)k)->state)) == LIVE) delete_slot(j, (uint32_t)k);
	return d;
}

/* Under the lock, inside a change: the row in. A stale row at its vrid or
 * of its srid (its object is gone, or the kernel could not have handed the
 * ID out) is replaced, unless a folder has it in hand: -1, the caller then
 * goes the LMDB way, as when the slots are full. */
static int insert_row(struct journal *j, int app, const struct journal_row *row)
{
	if (remove_row(j, app, row->type, row->vrid, ANY_SRID) == JOURNAL_FOLDING ||
	    (keyed(row) && remove_by_srid(j, app, row->type, row->srid) == JOURNAL_FOLDING))
		return -1;
	struct journal_row rev = reverse_of(row);
	int rc = put_new(j, app, row);
	if (!rc && keyed(row) && (rc = put_new(j, app, &rev))) remove_row(j, app, row->type, row->vrid, ANY_SRID);
	return rc;
}

int journal_insert(struct journal *j, const struct journal_row *row)
{
	lock(j);
	change_begin(j);
	int app = app_claim(j);
	int rc = app >= 0 ? insert_row(j, app, row) : -1;
	change_end(j);
	unlock(j);
	return rc;
}

int journal_insert_remapped(struct journal *j, struct journal_row *row, journal_vrid_held_fn *held)
{
	if (!j->head || row->type > RT_MSG) return -1;
	lock(j);
	change_begin(j);
	int app = app_claim(j);
	int rc = app >= 0 ? JOURNAL_NO_VRID : -1;
	if (app >= 0 && (row->vrid = take_vrid(j, app, row->type))) {
		rc = held(row->type, row->vrid, row->srid) ? -1 : insert_row(j, app, row);
		if (rc) return_vrid(j, app, row->type, row->vrid);
	}
	change_end(j);
	unlock(j);
	return rc;
}

enum journal_drop journal_drop(struct journal *j, uint8_t type, uint32_t vrid, uint32_t srid)
{
	enum journal_drop d = JOURNAL_ABSENT;
	if (!j->head) return d;
	lock(j);
	change_begin(j);
	int app = app_index(j);
	if (app >= 0) d = remove_row(j, app, type, vrid, srid);
	change_end(j);
	unlock(j);
	return d;
}

/* An entry by srid whose row is gone (its holder died dropping it). */
static int orphan_entry(const struct journal *j, const struct journal_slot *s)
{
	if (!(s->type & REVERSE)) return 0;
	int64_t f = probe(j, s->app, s->type & ~REVERSE, s->srid, NULL);
	return f < 0 || slot(j, (uint32_t)f)->srid != s->vrid;
}

/* After a holder of the lock died: a slot it was writing (its check
 * fails) and the second copy of a row it was moving become tombstones,
 * which probes pass over and inserts reuse; the counts are made again. */
static void repair(struct journal *j)
{
	struct journal_head *h = j->head;
	uint32_t used = 0, tombs = 0;
	for (uint32_t i = 0; i < JOURNAL_SLOTS; i++) {
		struct journal_slot *s = slot(j, i);
		enum kind k = kind_of(atomic_load(&s->state));
		if ((k == LIVE || k == FOLDING) &&
		    (s->app >= JOURNAL_APPS || !h->apps[s->app].hash || s->check != slot_check(s)))
			atomic_store(&s->state, state_of(TOMB, 0));
	}
	/* Now every row left is whole: of two copies, the first a probe meets stays. */
	for (unsigned a = 0; a < JOURNAL_APPS; a++) h->apps[a].rows = 0;
	for (uint32_t i = 0; i < JOURNAL_SLOTS; i++) {
		struct journal_slot *s = slot(j, i);
		enum kind k = kind_of(atomic_load(&s->state));
		if (k == FREE) continue;
		used++;
		if (k != TOMB && (probe(j, s->app, s->type, s->vrid, NULL) != (int64_t)i || orphan_entry(j, s)))
			atomic_store(&s->state, state_of(TOMB, 0)), k = TOMB;
		if (k == TOMB) tombs++;
		else h->apps[s->app].rows++;
	}
	atomic_fetch_add(&h->app_epoch, 1);
	atomic_store(&h->used, used);
	h->tombs = tombs;
	if (atomic_load(&h->gen) & 1) atomic_fetch_add(&h->gen, 1);
}

/* ------------------------------------------------------------ folding */

static int foldable(uint32_t st, pid_t me)
{
	enum kind k = kind_of(st);
	return k == LIVE || (k == FOLDING && owner_of(st) != me && !alive(owner_of(st)));
}

static void give_back(struct journal *j, pid_t me, int committed);

int journal_fold_begin(struct journal *j, pid_t me, journal_fold_fn *fn, void *arg)
{
	/* Stored only when not 0 already: this view's page (libc's heap) is
	 * still shared with the child when a fork's row is written. */
	if (j->folding) j->folding = 0;
	struct journal_head *h = j->head;
	if (!h) return 0;
	/* Marked before the lock is taken: a keyed creation that takes it
	 * later sees the mark and goes the LMDB way; one that holds it now
	 * puts its row in before this fold reads the slots. */
	atomic_store(&h->key_writer, (int32_t)me);
	int rc = lock_within(j, FOLD_WAIT_S);
	if (rc) return rc;
	for (uint32_t i = 0; i < JOURNAL_SLOTS && atomic_load(&h->used) && !rc; i++) {
		struct journal_slot *s = slot(j, i);
		uint32_t st = atomic_load(&s->state);
		if (!foldable(st, me)) continue;
		struct journal_row r;
		row_of(s, &r);
		/* An entry by srid goes with its row; LMDB has its own. */
		if (!(r.type & REVERSE) && (rc = fn(arg, h->apps[s->app].aid, &r))) break;
		/* A state change only: probes see FOLDING as a row. */
		atomic_store(&s->state, state_of(FOLDING, me));
		j->folding++;
	}
	unlock(j);
	if (rc) give_back(j, me, 0);
	return rc;
}

/* The rows this process marked: dropped once committed, else LIVE again. */
static void give_back(struct journal *j, pid_t me, int committed)
{
	if (!j->folding) return;
	struct journal_head *h = j->head;
	lock(j);
	change_begin(j);
	/* A delete moves later rows back, into the slot just looked at, or,
	 * where the run wraps, to the start: look again until all are done. */
	for (uint32_t n = 0, i = 0; j->folding && n < 2 * JOURNAL_SLOTS; n++, i = (i + 1) & MASK) {
		struct journal_slot *s = slot(j, i);
		while (j->folding && atomic_load(&s->state) == state_of(FOLDING, me)) {
			j->folding--;
			if (!committed) atomic_store(&s->state, state_of(LIVE, 0));
			else delete_slot(j, i);
		}
	}
	j->folding = 0; /* a repair after a crash may have taken some */
	if (h->tombs && atomic_load(&h->used) == h->tombs) {
		for (uint32_t k = 0; k < JOURNAL_SLOTS; k++) atomic_store(&slot(j, k)->state, state_of(FREE, 0));
		atomic_store(&h->used, 0);
		atomic_store(&h->max_disp, 0);
		h->tombs = 0;
	}
	change_end(j);
	unlock(j);
}

void journal_fold_end(struct journal *j, pid_t me, int committed)
{
	if (!j->head) return;
	give_back(j, me, committed);
	int32_t mine = (int32_t)me;
	atomic_compare_exchange_strong(&j->head->key_writer, &mine, 0);
}

/* ------------------------------------------------------------ creating */

static int pending_begin(struct journal *j, pid_t spid, uint64_t start_ticks, uint8_t type, uint32_t skey)
{
	static _Atomic uint32_t count;
	struct journal_head *h = j->head;
	if (!h) return -1;
	uint64_t token = ((uint64_t)spid << 32) | (atomic_fetch_add(&count, 1) + 1u);
	atomic_fetch_add(&h->pending_taken, 1); /* before the kernel's call: see recover_private */
	for (uint32_t n = 0, p = (uint32_t)spid % JOURNAL_PENDING; n < JOURNAL_PENDING; n++, p = (p + 1) % JOURNAL_PENDING) {
		struct journal_pending *r = &h->pending[p];
		uint64_t zero = 0;
		if (atomic_load_explicit(&r->token, memory_order_relaxed) || !atomic_compare_exchange_strong(&r->token, &zero, token))
			continue;
		atomic_fetch_add(&h->pending_used, 1);
		r->spid = (uint32_t)spid;
		r->type = type;
		r->srid = 0;
		r->skey = skey;
		r->start_ticks = start_ticks;
		r->started_s = (uint64_t)time(NULL);
		memcpy(r->aid, j->aid, sizeof r->aid);
		atomic_store_explicit(&r->state, PENDING_CREATING, memory_order_relaxed);
		atomic_store_explicit(&r->ready, token, memory_order_release);
		return (int)p;
	}
	return -1;
}

void journal_pending_created(struct journal *j, int p, uint32_t srid)
{
	struct journal_pending *r = &j->head->pending[p];
	r->srid = srid;
	atomic_store_explicit(&r->state, PENDING_CREATED, memory_order_release);
}

static void pending_free(struct journal_head *h, struct journal_pending *r, uint64_t token)
{
	if (atomic_compare_exchange_strong(&r->token, &token, 0)) atomic_fetch_sub(&h->pending_used, 1);
}

/* Whether an LMDB writer is in its transaction (journal_fold_begin's
 * mark); one that died there left the mark, lifted here. */
static int writer_in(struct journal *j)
{
	int32_t writer = atomic_load(&j->head->key_writer);
	if (writer && !alive(writer)) atomic_compare_exchange_strong(&j->head->key_writer, &writer, 0), writer = 0;
	return writer != 0;
}

int journal_create_begin(struct journal *j, pid_t spid, uint64_t start_ticks, uint8_t type, uint32_t skey)
{
	if (!j->head) return -1;
	if (skey == IPC_PRIVATE) return pending_begin(j, spid, start_ticks, type, skey);
	lock(j);
	int p = writer_in(j) ? -1 : pending_begin(j, spid, start_ticks, type, skey);
	if (p < 0) unlock(j);
	return p;
}

void journal_create_end(struct journal *j, int p)
{
	struct journal_pending *r = &j->head->pending[p];
	int keyed = r->skey != IPC_PRIVATE;
	pending_free(j->head, r, atomic_load(&r->token));
	if (keyed) unlock(j);
}

/* Whether the record's creator still runs (the same process, not a later
 * one with its number). */
static int creator_runs(const struct journal_pending *r, uint64_t token)
{
	pid_t pid = (pid_t)(token >> 32);
	uint64_t ticks;
	if (!alive(pid)) return 0;
	/* A record seconds old whose creator's number lives: read its start
	 * (a later process may have the number); a younger one is its own
	 * (numbers are not handed out again that fast), as most are: a
	 * creation takes microseconds, and this runs at every write. */
	if (atomic_load_explicit(&r->ready, memory_order_acquire) != token || (uint64_t)time(NULL) < r->started_s + 2)
		return 1;
	return proc_start_ticks(pid, &ticks) == 0 && ticks == r->start_ticks;
}

struct mapped_ctx {
	struct journal *j;
	is_mapped_fn mapped;
	void *ctx;
};

static int in_slots(const struct journal *j, uint8_t type, uint32_t srid)
{
	for (uint32_t i = 0; i < JOURNAL_SLOTS; i++) {
		const struct journal_slot *s = slot(j, i);
		enum kind k = kind_of(atomic_load(&s->state));
		if ((k == LIVE || k == FOLDING) && s->type == type && s->srid == srid) return 1;
	}
	return 0;
}

static int mapped_anywhere(void *arg, uint8_t type, uint32_t srid)
{
	struct mapped_ctx *m = arg;
	return in_slots(m->j, type, srid) || m->mapped(m->ctx, type, srid);
}

/* Whether a pending record names srid: a creator between the kernel's
 * call and its row. */
static int named_pending(const struct journal_head *h, uint8_t type, uint32_t srid)
{
	for (uint32_t p = 0; p < JOURNAL_PENDING; p++) {
		const struct journal_pending *r = &h->pending[p];
		uint64_t token = atomic_load(&r->token);
		if (token && atomic_load(&r->ready) == token && r->type == type && atomic_load(&r->state) == PENDING_CREATED &&
		    r->srid == srid)
			return 1;
	}
	return 0;
}

static int mapped_or_named(void *arg, uint8_t type, uint32_t srid)
{
	struct mapped_ctx *m = arg;
	return mapped_anywhere(arg, type, srid) || named_pending(m->j->head, type, srid);
}

/* A record of a private creation between the kernel's call and its ID. */
static int private_creating(const struct journal_pending *r, uint64_t token)
{
	return atomic_load(&r->ready) == token && r->skey == IPC_PRIVATE && atomic_load(&r->state) == PENDING_CREATING;
}

/* A record naming its object whose creator died and is not reaped yet: it
 * still answers kill(pid, 0). appshot-semsets holds its records named
 * across a transaction of many sets, and when its restore is killed it
 * dies (PDEATHSIG) with no parent to reap it but init, which may be slow
 * to. A read of /proc: asked by thorough recoveries only (64 processes
 * creating at once lost a fifth of their rate when every write asked it). */
static int named_by_unreaped(const struct journal_pending *r, uint64_t token)
{
	return atomic_load(&r->ready) == token && atomic_load(&r->state) == PENDING_CREATED && proc_ended((pid_t)(token >> 32));
}

#define RECOVER_GIVE_UP_S 10

/* The private objects of type that creators left who died between the
 * kernel's call and their record's ID: a private object has no key to find
 * it by, and creators run side by side, so several such deaths leave
 * several fresh unmapped objects. All of them go when there are no more
 * than such creators (more, and one may be another program's: better a
 * leak than removing it), and only when no creation of the type was under
 * way while they were looked for (a live creator's object is unmapped too):
 * else the records stay for a later writer (given up after seconds). */
static int recover_private(struct journal *j, const struct kernel_ops *k, uint8_t type, struct mapped_ctx *m,
			   char *report, size_t reportlen)
{
	struct journal_head *h = j->head;
	uint32_t dead[JOURNAL_PENDING];
	uint64_t tokens[JOURNAL_PENDING], from = UINT64_MAX, to = 0, now = (uint64_t)time(NULL);
	uint64_t taken = atomic_load(&h->pending_taken);
	unsigned n = 0;
	int busy = 0, stale = 1;
	for (uint32_t p = 0; p < JOURNAL_PENDING; p++) {
		struct journal_pending *r = &h->pending[p];
		uint64_t token = atomic_load(&r->token);
		if (!token || r->type != type || !private_creating(r, token)) continue;
		/* Unreaped, a dead creator answers kill(pid, 0): asked of /proc
		 * only here, where the record says it died in its call. */
		if (creator_runs(r, token) && !proc_ended((pid_t)r->spid)) {
			busy = 1;
			continue;
		}
		dead[n] = p, tokens[n++] = token;
		if (r->started_s < from) from = r->started_s;
		if (r->started_s + 5 > to) to = r->started_s + 5;
		if (r->started_s + RECOVER_GIVE_UP_S > now) stale = 0;
	}
	if (!n) return 0;
	int ids[JOURNAL_PENDING], found = 0, removed = 0;
	if (!busy) {
		lock(j);
		found = inflight_fresh_private(k, type, from, to, mapped_or_named, m, ids, JOURNAL_PENDING);
		unlock(j);
		if (atomic_load(&h->pending_taken) != taken) busy = 1;
	}
	if (busy && !stale) return 0;
	for (int i = 0; !busy && found <= (int)n && i < found; i++) {
		if (sysv_rmid(k, type, ids[i])) continue;
		if (report && reportlen && !report[0])
			snprintf(report, reportlen, "removed %s %d that process %u of application '%s' created and did not record before it died",
				 sysv_noun(type), ids[i], h->pending[dead[0]].spid, h->pending[dead[0]].aid);
		removed++;
	}
	for (unsigned i = 0; i < n; i++) pending_free(h, &h->pending[dead[i]], tokens[i]);
	return removed;
}

int journal_recover(struct journal *j, const struct kernel_ops *k, is_mapped_fn mapped, void *ctx, char *report,
		    size_t reportlen, int thorough)
{
	struct journal_head *h = j->head;
	int removed = 0;
	if (report && reportlen) report[0] = 0;
	if (!h || !atomic_load(&h->pending_used)) return 0;
	struct mapped_ctx m = { j, mapped, ctx };
	for (uint32_t p = 0; p < JOURNAL_PENDING; p++) {
		struct journal_pending *r = &h->pending[p];
		uint64_t token = atomic_load(&r->token);
		if (!token || private_creating(r, token) || (creator_runs(r, token) && !(thorough && named_by_unreaped(r, token))))
			continue;
		/* A creator that died before it filled its record had not called
		 * the kernel yet. */
		if (atomic_load(&r->ready) == token && sysv_is_ipc(r->type)) {
			lock(j);
			int id = inflight_orphan(k, r->type, r->skey, r->started_s, atomic_load(&r->state) == PENDING_CREATED,
						 r->srid, mapped_anywhere, &m);
			unlock(j);
			if (id >= 0 && sysv_rmid(k, r->type, id) == 0) {
				removed++;
				if (report && reportlen && !report[0])
					snprintf(report, reportlen,
						 "removed %s %d that process %u of application '%s' created and did not record before it died",
						 sysv_noun(r->type), id, r->spid, r->aid);
			}
		}
		pending_free(h, r, token);
	}
	for (uint8_t type = RT_SEM; type <= RT_MSG; type++)
		removed += recover_private(j, k, type, &m, report && reportlen && !report[0] ? report : NULL, reportlen);
	return removed;
}

/* ------------------------------------------------------------ into LMDB */

struct fold_into {
	const struct tabledb *t;
	MDB_txn *txn;
};

/* A row of another application (a home's journal holds every one's), put
 * through a copy of t under that AID: in a frame of its own, only for such
 * rows. In the fold's frame, the copy's 4 KiB of stack put every write
 * transaction's calls a page deeper, a page a fork's row (written right
 * after fork) copies from the child. */
static __attribute__((noinline)) int put_foreign(const struct fold_into *f, const char *aid, uint8_t type, uint32_t vrid,
						 const struct fwd_val *fv)
{
	struct tabledb other = *f->t;
	snprintf(other.aid, sizeof other.aid, "%s", aid);
	other.aidlen = strlen(other.aid);
	return tabledb_map_over(&other, f->txn, type, vrid, fv);
}

static int put_folded(void *arg, const char *aid, const struct journal_row *r)
{
	struct fold_into *f = arg;
	struct fwd_val fv = { .srid = r->srid, .vkey = r->vkey, .skey = r->skey, .creator = r->creator,
			      .created_ms = r->created_ms };
	if (strcmp(aid, f->t->aid)) return put_foreign(f, aid, r->type, r->vrid, &fv);
	return tabledb_map_over(f->t, f->txn, r->type, r->vrid, &fv);
}

int journal_fold_into(struct journal *j, const struct tabledb *t, MDB_txn *txn, pid_t me)
{
	struct fold_into f = { .t = t, .txn = txn };
	return journal_fold_begin(j, me, put_folded, &f);
}
