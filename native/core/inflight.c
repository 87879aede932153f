#include "inflight.h"
#include "guardmap.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CREATING = 1, CREATED = 2 };

struct inflight_rec {
	_Atomic uint64_t token; /* 0 when free; the owner's token while in flight */
	uint32_t spid;
	uint8_t type, state;
	uint32_t skey, srid;
	uint64_t started_s;
	char aid[APPSHOT_AID_MAX + 1];
};

struct inflight_slot {
	pthread_mutex_t holder; /* robust, process-shared: held while the slot is in use */
	_Atomic uint32_t state; /* enum inflight_slot_state */
	uint32_t spid, srid, vrid;
	uint8_t type;
	uint64_t started_s;
	char aid[APPSHOT_AID_MAX + 1];
} __attribute__((aligned(64)));

/* Who leads the next group commit. */
struct inflight_board {
	pthread_mutex_t leader; /* robust, process-shared */
	/* Slots in use, at least (counted before a claim marks its slot, and
	 * after a release): while 0, no one needs to look at them. */
	_Atomic uint32_t busy;
};

/* The record in the first block, as it always was, the board in its second
 * half; the slots after it. */
#define BOARD_AT 2048u
#define SLOTS_AT 4096u
_Static_assert(sizeof(struct inflight_rec) <= BOARD_AT, "the record fits before the board");
#define MAP_BYTES (SLOTS_AT + INFLIGHT_SLOTS * sizeof(struct inflight_slot))
_Static_assert(MAP_BYTES <= 32 * 1024, "core/tablespace.c reserves the file's blocks");

static struct inflight_board *board_of(const struct inflight_file *f)
{
	return (struct inflight_board *)((char *)f->rec + BOARD_AT);
}

static struct inflight_slot *slot_at(const struct inflight_file *f, int i)
{
	return (struct inflight_slot *)((char *)f->rec + SLOTS_AT) + i;
}

int inflight_open(struct inflight_file *f, const char *home)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s/%s", home, APPSHOT_INFLIGHT_FILE) >= (int)sizeof path)
		return ENAMETOOLONG;
	/* Never through a link: the record is mapped and written. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) return errno;
	int e = inflight_map_fd(f, fd);
	close(fd);
	return e;
}

int inflight_map_fd(struct inflight_file *f, int fd)
{
	struct stat st;
	/* Blocks, not a hole: a write to a mapped hole the full filesystem
	 * cannot fill is SIGBUS, an error here is a message. */
	int e = fstat(fd, &st) != 0 ? errno : posix_fallocate(fd, 0, MAP_BYTES);
	if (e) return e;
	void *p = appshot_guarded_mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) return errno;
	f->rec = p;
	return 0;
}

void inflight_close(struct inflight_file *f)
{
	if (f->rec) appshot_guarded_munmap(f->rec, MAP_BYTES);
	f->rec = NULL;
}

static uint64_t next_token(pid_t spid)
{
	static _Atomic uint32_t counter;
	return ((uint64_t)spid << 32) | (atomic_fetch_add(&counter, 1) + 1u);
}

void inflight_begin(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type, uint32_t skey)
{
	struct inflight_rec *r = f->rec;
	r->spid = (uint32_t)spid;
	r->type = type;
	r->state = CREATING;
	r->skey = skey;
	r->srid = 0;
	r->started_s = (uint64_t)time(NULL);
	strncpy(r->aid, aid, APPSHOT_AID_MAX);
	r->aid[APPSHOT_AID_MAX] = 0;
	f->token = next_token(spid);
	atomic_store(&r->token, f->token);
}

void inflight_created(struct inflight_file *f, uint32_t srid)
{
	f->rec->srid = srid;
	f->rec->state = CREATED;
}

void inflight_clear(struct inflight_file *f)
{
	uint64_t mine = f->token;
	/* Only our own record: a later writer may already have replaced it. */
	atomic_compare_exchange_strong(&f->rec->token, &mine, 0);
	f->token = 0;
}

/* What a dead creator was making, from the record or a slot. */
struct in_flight {
	uint8_t type;
	int created; /* srid is the object's */
	uint32_t skey, srid, spid;
	uint64_t started_s;
	const char *aid;
};

/* Created since the record and never used: what a creator that died
 * before its commit leaves. */
static int fresh_since(const struct kernel_ops *k, const struct in_flight *w, int id)
{
	struct sysv_stat st;
	return sysv_stat(k, w->type, id, &st) == 0 && !st.used && st.ctime >= (time_t)w->started_s &&
	       st.ctime <= (time_t)w->started_s + 5;
}

/* A private (IPC_PRIVATE) object has no key to find it by: look for the
 * one unmapped, fresh object of its family. Two such (a program outside
 * appshot made one in the same seconds) and neither is touched: better a
 * leak than removing someone else's object. */
static int find_private(const struct in_flight *w, const struct kernel_ops *k, is_mapped_fn mapped,
			void *ctx, int *found_id)
{
	FILE *fp = sysv_open_listing(w->type);
	if (!fp) return 0;
	char line[512];
	int found = 0;
	if (!fgets(line, sizeof line, fp)) { fclose(fp); return 0; }
	while (fgets(line, sizeof line, fp)) {
		long long key, id;
		if (sscanf(line, "%lld %lld", &key, &id) != 2 || key != 0) continue;
		if (mapped(ctx, w->type, (uint32_t)id) || !fresh_since(k, w, (int)id)) continue;
		*found_id = (int)id;
		found++;
	}
	fclose(fp);
	return found;
}

/* The keyed object the record names, if it looks like the one being created. */
static int fresh_keyed(const struct in_flight *w, const struct kernel_ops *k)
{
	int id = sysv_get(k, w->type, (key_t)w->skey, 0, 0);
	return id >= 0 && fresh_since(k, w, id) ? id : -1;
}

/* Removes what a dead creator may have left unmapped: 1 if it did. A
 * report line goes after those already in report. */
static int recover_one(const struct in_flight *w, const struct kernel_ops *k, is_mapped_fn mapped, void *ctx,
		       char *report, size_t reportlen)
{
	int id = -1;
	if (w->created) id = (int)w->srid;
	else if (w->skey != IPC_PRIVATE) id = fresh_keyed(w, k);
	else if (find_private(w, k, mapped, ctx, &id) != 1) id = -1;
	if (id < 0 || mapped(ctx, w->type, (uint32_t)id) || sysv_rmid(k, w->type, id) != 0) return 0;
	if (report && reportlen) {
		size_t at = strlen(report);
		if (at + 1 < reportlen)
			snprintf(report + at, reportlen - at,
				 "%sremoved %s %d that process %u of application '%s' created and did not record before it died",
				 at ? "\n" : "", sysv_noun(w->type), id, w->spid, w->aid);
	}
	return 1;
}

/* The slots' objects count as mapped while a private object is looked for:
 * another process of the application may be between its create and the
 * commit that records it. */
struct slots_mapped {
	const struct inflight_file *f;
	is_mapped_fn mapped;
	void *ctx;
};

static int mapped_or_held(void *arg, uint8_t type, uint32_t srid)
{
	struct slots_mapped *m = arg;
	for (int i = 0; i < INFLIGHT_SLOTS; i++) {
		struct inflight_slot *s = slot_at(m->f, i);
		uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
		if (state >= SLOT_CREATED && s->type == type && s->srid == srid) return 1;
	}
	return m->mapped(m->ctx, type, srid);
}

/* A mutex of the file, made robust and process-shared on first use: the file
 * starts as zeros, which glibc reads as a plain mutex, and robust and
 * shared are its kind alone (core/lockcheck.c reads the same field). */
static pthread_mutex_t *robust(pthread_mutex_t *m)
{
	static int kind = -1;
	if (kind < 0) {
		pthread_mutexattr_t attr;
		pthread_mutex_t m;
		pthread_mutexattr_init(&attr);
		pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&m, &attr);
		pthread_mutexattr_destroy(&attr);
		kind = m.__data.__kind;
	}
	int zero = 0;
	__atomic_compare_exchange_n(&m->__data.__kind, &zero, kind, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	return m;
}

/* Takes a mutex of the file unless a live thread holds it (its holder may
 * have died): 1, and the caller holds it. */
static int take(pthread_mutex_t *mutex)
{
	pthread_mutex_t *m = robust(mutex);
	int rc = pthread_mutex_trylock(m);
	if (rc == EOWNERDEAD) pthread_mutex_consistent(m), rc = 0;
	return rc == 0;
}

static int take_holder(struct inflight_slot *s) { return take(&s->holder); }

/* Set while this thread holds the leader mutex. */
static __thread int leading;

/* Slots in use whose holder died: recovered, then free. Only while no
 * leader is between its scan of the slots and its marks: a slot freed
 * meanwhile could be claimed again and marked with another's object. */
static int recover_slots(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped, void *ctx,
			 char *report, size_t reportlen)
{
	if (!atomic_load_explicit(&board_of(f)->busy, memory_order_acquire)) return 0;
	if (!leading && !take(&board_of(f)->leader)) return 0;
	int removed = 0;
	struct slots_mapped held = { f, mapped, ctx };
	for (int i = 0; i < INFLIGHT_SLOTS; i++) {
		struct inflight_slot *s = slot_at(f, i);
		uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
		if (state == SLOT_FREE || !take_holder(s)) continue;
		state = atomic_load_explicit(&s->state, memory_order_acquire);
		/* Free (to the others' eyes) before its object is looked for. */
		atomic_store_explicit(&s->state, SLOT_FREE, memory_order_release);
		atomic_fetch_sub(&board_of(f)->busy, 1);
		if (state != SLOT_FREE && sysv_is_ipc(s->type)) {
			struct in_flight w = { s->type, state >= SLOT_CREATED, IPC_PRIVATE, s->srid, s->spid, s->started_s, s->aid };
			removed += recover_one(&w, k, mapped_or_held, &held, report, reportlen);
		}
		pthread_mutex_unlock(&s->holder);
	}
	if (!leading) pthread_mutex_unlock(&board_of(f)->leader);
	return removed;
}

int inflight_recover(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped,
		     void *ctx, char *report, size_t reportlen)
{
	struct inflight_rec *r = f->rec;
	uint64_t token = atomic_load(&r->token);
	int removed = 0;
	if (report && reportlen) report[0] = 0;
	if (token && sysv_is_ipc(r->type)) {
		struct in_flight w = { r->type, r->state == CREATED, r->skey, r->srid, r->spid, r->started_s, r->aid };
		removed = recover_one(&w, k, mapped, ctx, report, reportlen);
	}
	if (token) atomic_compare_exchange_strong(&r->token, &token, 0);
	return removed + recover_slots(f, k, mapped, ctx, report, reportlen);
}

int inflight_slot_claim(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type)
{
	/* Each process starts at its own place: claims seldom meet. */
	for (int n = 0, i = (int)((uint32_t)spid % INFLIGHT_SLOTS); n < INFLIGHT_SLOTS; n++, i = (i + 1) % INFLIGHT_SLOTS) {
		struct inflight_slot *s = slot_at(f, i);
		if (atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_FREE || !take_holder(s)) continue;
		if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_FREE) {
			/* A dead creator's: the next holder of the write lock recovers it. */
			pthread_mutex_unlock(&s->holder);
			continue;
		}
		atomic_fetch_add(&board_of(f)->busy, 1);
		s->spid = (uint32_t)spid;
		s->type = type;
		s->srid = 0;
		s->started_s = (uint64_t)time(NULL);
		strncpy(s->aid, aid, APPSHOT_AID_MAX);
		s->aid[APPSHOT_AID_MAX] = 0;
		atomic_store_explicit(&s->state, SLOT_CREATING, memory_order_release);
		return i;
	}
	return -1;
}

void inflight_slot_created(struct inflight_file *f, int slot, uint32_t srid)
{
	struct inflight_slot *s = slot_at(f, slot);
	s->srid = srid;
	atomic_store_explicit(&s->state, SLOT_CREATED, memory_order_release);
}

void inflight_slot_release(struct inflight_file *f, int slot)
{
	struct inflight_slot *s = slot_at(f, slot);
	atomic_store_explicit(&s->state, SLOT_FREE, memory_order_release);
	atomic_fetch_sub(&board_of(f)->busy, 1);
	pthread_mutex_unlock(&s->holder);
}

void inflight_slots_created(const struct inflight_file *f, const char *aid, int skip, inflight_slot_fn *fn, void *arg)
{
	if (!atomic_load_explicit(&board_of(f)->busy, memory_order_acquire)) return;
	for (int i = 0; i < INFLIGHT_SLOTS; i++) {
		struct inflight_slot *s = slot_at(f, i);
		if (i == skip || atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_CREATED) continue;
		if (strcmp(s->aid, aid) == 0) fn(arg, i, s->type, s->srid, s->spid);
	}
}

void inflight_slot_recorded(struct inflight_file *f, int slot, uint32_t vrid)
{
	struct inflight_slot *s = slot_at(f, slot);
	s->vrid = vrid;
	atomic_store_explicit(&s->state, SLOT_RECORDED, memory_order_release);
}

int inflight_slot_vrid(const struct inflight_file *f, int slot, uint32_t *vrid)
{
	struct inflight_slot *s = slot_at(f, slot);
	if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_RECORDED) return -1;
	*vrid = s->vrid;
	return 0;
}

int inflight_lead(struct inflight_file *f)
{
	pthread_mutex_t *m = robust(&board_of(f)->leader);
	int rc = pthread_mutex_lock(m);
	if (rc == EOWNERDEAD) pthread_mutex_consistent(m);
	leading = 1;
	return rc == EOWNERDEAD;
}

void inflight_lead_done(struct inflight_file *f)
{
	leading = 0;
	pthread_mutex_unlock(&board_of(f)->leader);
}
