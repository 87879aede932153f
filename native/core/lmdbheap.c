/* LMDB's heap (lmdbheap.h): one reservation of address space, wiped in a
 * fork child, cut into power-of-two blocks. A page holds small blocks of
 * one size (up to 2 KiB) or starts a block of one or more whole pages; a
 * byte per page names its size class, so a block carries no header and a
 * 4 KiB page buffer fills exactly one page. Freed blocks go on their
 * class's list and are reused; pages are never given back (LMDB keeps its
 * buffers for the environment's life and reuses its page buffers itself). */
#define _GNU_SOURCE
#include "lmdbheap.h"
#include "populate.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Address space (MAP_NORESERVE: untouched pages cost no memory; a host
 * with strict overcommit counts it all, so it is kept small). An
 * environment takes 7-9 MiB of it, almost all untouched (LMDB's dirty and
 * free page lists are sized for its largest transaction), and a process
 * opens one, another only after a restore or when the program took its
 * descriptors; what does not fit goes to libc, as before. */
#define HEAP_BYTES ((size_t)32 << 20)
#define PAGE_SHIFT 12
#define PAGE ((size_t)1 << PAGE_SHIFT)
#define HEAP_PAGES (HEAP_BYTES >> PAGE_SHIFT)
#define MIN_SHIFT 4 /* 16 bytes: malloc's alignment */
#define CLASSES 40

/* At the start of the heap, wiped with it: all zero is an empty heap with
 * an unlocked lock, which is what a fork child must find. */
struct heap_state {
	pthread_mutex_t lock;
	size_t next; /* offset of the first page never handed out; 0: not set up */
	size_t small_next; /* the same in the run of small blocks' pages */
	void *free[CLASSES];
	uint8_t class_of[HEAP_PAGES]; /* class + 1 of what starts at each page */
};

#define STATE_BYTES ((sizeof(struct heap_state) + PAGE - 1) & ~(PAGE - 1))
/* The pages of small blocks come first from a run of their own right after
 * the state, so that the ones an environment's opening takes (LMDB's
 * handle parts, transactions, cursors: a page per size class, five here)
 * are neighbours of the state rather than lying between its multi-MiB
 * page lists: heap_make maps the state and the run in one call, where each
 * page would otherwise be a fault of its own (10-14 us in a VM, issue 21).
 * Past the run they come from the shared bump as before. */
#define SMALL_RUN (8 * PAGE)


static char *heap; /* set once; a fork child keeps the (wiped) mapping */
static int heap_wiped = -1;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

static void heap_make(void)
{
	void *p = mmap(NULL, HEAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) return; /* everything goes to libc */
	/* A kernel without it (before 4.14) copies the heap into the child,
	 * which then allocates from its copy: correct, only slower. */
	heap_wiped = madvise(p, HEAP_BYTES, MADV_WIPEONFORK) == 0;
	/* With the first page past the run: the first multi-page block's,
	 * LMDB's free page list, whose header its opening writes at once.
	 * A kernel before 5.14 refuses: the pages are faulted in as used. */
	madvise(p, STATE_BYTES + SMALL_RUN + PAGE, MADV_POPULATE_WRITE);
	heap = p;
}

static struct heap_state *state(void)
{
	pthread_once(&heap_once, heap_make);
	return (struct heap_state *)heap;
}

static int in_heap(const void *p)
{
	return heap && (const char *)p >= heap + STATE_BYTES && (const char *)p < heap + HEAP_BYTES;
}

static unsigned class_for(size_t n)
{
	if (n <= ((size_t)1 << MIN_SHIFT)) return MIN_SHIFT;
	return 64 - (unsigned)__builtin_clzl(n - 1);
}

static size_t page_of(const void *p) { return (size_t)((const char *)p - heap) >> PAGE_SHIFT; }

/* A new page cut into blocks of class c, all but the first put on its
 * list; or a run of pages for one block. NULL when the heap is full. */
static void *fresh(struct heap_state *s, unsigned c)
{
	if (!s->next) { /* a new heap, or a fork child's wiped one */
		s->small_next = STATE_BYTES;
		s->next = STATE_BYTES + SMALL_RUN;
	}
	size_t bytes = c >= PAGE_SHIFT ? (size_t)1 << c : PAGE;
	size_t *from = c < PAGE_SHIFT && s->small_next < STATE_BYTES + SMALL_RUN ? &s->small_next : &s->next;
	if (bytes > HEAP_BYTES - *from) return NULL;
	char *p = heap + *from;
	*from += bytes;
	s->class_of[page_of(p)] = (uint8_t)(c + 1);
	if (c < PAGE_SHIFT)
		for (size_t at = PAGE - ((size_t)1 << c); at > 0; at -= (size_t)1 << c) {
			*(void **)(p + at) = s->free[c];
			s->free[c] = p + at;
		}
	return p;
}

/* A block of class c and whether it is fresh (zero: pages never used in
 * this heap), or NULL. */
static void *take(unsigned c, int *zero)
{
	struct heap_state *s = state();
	if (!s || c >= CLASSES) return NULL;
	pthread_mutex_lock(&s->lock);
	void *p = s->free[c];
	*zero = 0;
	if (p) s->free[c] = *(void **)p;
	else if ((p = fresh(s, c)) != NULL) *zero = c >= PAGE_SHIFT;
	pthread_mutex_unlock(&s->lock);
	return p;
}

void *appshot_lmdb_malloc(size_t n)
{
	int zero;
	void *p = take(class_for(n), &zero);
	return p ? p : malloc(n);
}

void *appshot_lmdb_calloc(size_t count, size_t n)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, n, &bytes)) return calloc(count, n); /* libc's ENOMEM */
	int zero;
	void *p = take(class_for(bytes), &zero);
	if (!p) return calloc(count, n);
	if (!zero) memset(p, 0, bytes);
	return p;
}

void appshot_lmdb_free(void *p)
{
	if (!p) return;
	if (!in_heap(p)) {
		free(p);
		return;
	}
	struct heap_state *s = (struct heap_state *)heap;
	pthread_mutex_lock(&s->lock);
	/* A small block's page names its class; a large one starts its run. */
	unsigned c = (unsigned)s->class_of[page_of(p)] - 1;
	*(void **)p = s->free[c];
	s->free[c] = p;
	pthread_mutex_unlock(&s->lock);
}

void *appshot_lmdb_realloc(void *p, size_t n)
{
	if (!p) return appshot_lmdb_malloc(n);
	if (!in_heap(p)) return realloc(p, n);
	if (n == 0) {
		appshot_lmdb_free(p);
		return NULL;
	}
	size_t has = (size_t)1 << ((unsigned)((struct heap_state *)heap)->class_of[page_of(p)] - 1);
	if (n <= has) return p;
	void *q = appshot_lmdb_malloc(n);
	if (!q) return NULL;
	memcpy(q, p, has);
	appshot_lmdb_free(p);
	return q;
}

int appshot_lmdb_heap_has(const void *p) { return in_heap(p); }
int appshot_lmdb_heap_wiped(void) { return heap ? heap_wiped : -1; }
