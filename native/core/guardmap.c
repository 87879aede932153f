#include "guardmap.h"
#include "populate.h"

#include <errno.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

/* The guarded mappings of this process, so munmap can find their guards.
 * A handful at most (an environment's lock file per open, the inflight
 * record); one that finds no free slot keeps its guards until exit. */
#define SLOTS 16
static uintptr_t guarded[SLOTS];

/* The page size from the auxiliary vector, as sysconf has it, without
 * sysconf's code (two pages a program's start would fault in for it). */
static size_t page_size(void)
{
	size_t page = (size_t)getauxval(AT_PAGESZ);
	return page ? page : (size_t)sysconf(_SC_PAGESIZE);
}

static size_t page_round(size_t len)
{
	size_t page = page_size();
	return (len + page - 1) & ~(page - 1);
}

static void remember(uintptr_t at)
{
	for (int i = 0; i < SLOTS; i++) {
		uintptr_t free_slot = 0;
		if (__atomic_compare_exchange_n(&guarded[i], &free_slot, at, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) return;
	}
}

static int forget(uintptr_t at)
{
	for (int i = 0; i < SLOTS; i++) {
		uintptr_t was = at;
		if (__atomic_compare_exchange_n(&guarded[i], &was, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) return 1;
	}
	return 0;
}

void *appshot_guarded_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (addr || fd < 0 || !(prot & PROT_WRITE) || !(flags & MAP_SHARED)) return mmap(addr, len, prot, flags, fd, off);
	size_t body = page_round(len);
	/* One reservation holds the guards and the body; the file is mapped
	 * over its middle. */
	char *area = mmap(NULL, body + 2 * GUARD_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED) return mmap(addr, len, prot, flags, fd, off);
	void *p = mmap(area + GUARD_BYTES, len, prot, flags | MAP_FIXED, fd, off);
	if (p == MAP_FAILED) {
		int e = errno;
		munmap(area, body + 2 * GUARD_BYTES);
		errno = e;
		return MAP_FAILED;
	}
	remember((uintptr_t)p);
	return p;
}

void *appshot_lmdb_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = appshot_guarded_mmap(addr, len, prot, flags, fd, off);
	size_t page = page_size();
	if (p == MAP_FAILED || !(flags & MAP_SHARED) || len < 2 * page) return p;
	/* Refused before Linux 5.14: the pages are then faulted in as before. */
	if (prot & PROT_WRITE) madvise(p, page, MADV_POPULATE_WRITE);
	else madvise(p, 2 * page, MADV_POPULATE_READ);
	return p;
}

int appshot_guarded_munmap(void *addr, size_t len)
{
	if (!forget((uintptr_t)addr)) return munmap(addr, len);
	return munmap((char *)addr - GUARD_BYTES, page_round(len) + 2 * GUARD_BYTES);
}
