/* Drives LMDB's heap (core/lmdbheap.c) for test/pidheap.test.ts. Each
 * command prints lines the test compares; linked with appshot's LMDB
 * library, not run under the shim.
 *   reuse   a freed block is given again; calloc of a used block is zeroed;
 *           realloc keeps the bytes; a 4 KiB block fills one page
 *   fork    a fork child finds the heap wiped: the parent's blocks read 0,
 *           its first allocation is the parent's first block's place, and
 *           what it writes there leaves the parent's bytes alone; the same
 *           for a child of a raw fork system call (no atfork handler)
 *   full    blocks past the heap's end come from libc and go back to it
 *   threads four threads allocate, fill, check and free blocks of every
 *           size class at once: "threads ok" when no block was shared */
#define _GNU_SOURCE
#include "../core/lmdbheap.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int all(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v) return 0;
	return 1;
}

static void reuse(void)
{
	char *a = appshot_lmdb_malloc(100);
	printf("in heap %d\n", appshot_lmdb_heap_has(a));
	memset(a, 0x5a, 100);
	appshot_lmdb_free(a);
	char *b = appshot_lmdb_calloc(10, 10);
	printf("reused %d zeroed %d\n", a == b, all((unsigned char *)b, 100, 0));
	memcpy(b, "bytes kept", 11);
	char *c = appshot_lmdb_realloc(b, 5000);
	printf("realloc moved %d kept %d\n", c != b, !strcmp(c, "bytes kept"));
	char *page = appshot_lmdb_malloc(4096);
	printf("page aligned %d\n", ((uintptr_t)page & 4095) == 0);
	appshot_lmdb_free(c);
	appshot_lmdb_free(page);
}

/* In a fork child: what it finds of its parent's block p (n bytes). */
static void child_view(const char *how, unsigned char *p, size_t n)
{
	int wiped = all(p, n, 0);
	unsigned char *mine = appshot_lmdb_malloc(n);
	memset(mine, 0xc3, n);
	printf("%s child wiped %d first place %d\n", how, wiped, mine == p);
	fflush(stdout);
	_exit(0);
}

static void forks(void)
{
	size_t n = 3000;
	unsigned char *p = appshot_lmdb_malloc(n);
	memset(p, 0xa7, n);
	printf("wipe on fork %d\n", appshot_lmdb_heap_wiped());
	fflush(stdout);
	pid_t c = fork();
	if (c == 0) child_view("fork", p, n);
	waitpid(c, NULL, 0);
	long r = syscall(SYS_fork);
	if (r == 0) child_view("raw", p, n);
	waitpid((pid_t)r, NULL, 0);
	printf("parent kept %d\n", all(p, n, 0xa7));
}

static void full(void)
{
	size_t big = (size_t)4 << 20;
	void *kept[16];
	int n = 0, libc = 0;
	void *p = NULL;
	while (n < 16 && (p = appshot_lmdb_malloc(big)) && appshot_lmdb_heap_has(p)) kept[n++] = p;
	if (p && !appshot_lmdb_heap_has(p)) {
		libc = 1;
		memset(p, 1, 4096);
		appshot_lmdb_free(p); /* libc's free: no crash */
	}
	printf("heap blocks %d then libc %d\n", n, libc);
	appshot_lmdb_free(kept[0]);
	p = appshot_lmdb_malloc(big);
	printf("freed block given again %d\n", p == kept[0]);
}

/* One thread's share of `threads`: its blocks hold its own byte, checked
 * before each is freed; a block two threads were given shows the other's. */
static void *churn(void *arg)
{
	unsigned char mine = (unsigned char)(uintptr_t)arg;
	unsigned seed = mine;
	unsigned char *held[64] = { 0 };
	size_t size[64] = { 0 };
	for (int round = 0; round < 20000; round++) {
		int slot = rand_r(&seed) % 64;
		if (held[slot]) {
			if (!all(held[slot], size[slot], mine)) return (void *)1;
			appshot_lmdb_free(held[slot]);
		}
		size[slot] = (size_t)1 << (rand_r(&seed) % 15); /* 1 B to 16 KiB */
		held[slot] = appshot_lmdb_malloc(size[slot]);
		memset(held[slot], mine, size[slot]);
	}
	for (int slot = 0; slot < 64; slot++)
		if (held[slot] && !all(held[slot], size[slot], mine)) return (void *)1;
	return NULL;
}

static void threads(void)
{
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
	int bad = 0;
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad |= r != NULL;
	}
	printf("threads %s\n", bad ? "shared a block" : "ok");
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "reuse")) reuse();
		else if (!strcmp(argv[i], "fork")) forks();
		else if (!strcmp(argv[i], "full")) full();
		else if (!strcmp(argv[i], "threads")) threads();
		else {
			fprintf(stderr, "lmdbheaptool: unknown command '%s'\n", argv[i]);
			return 2;
		}
	}
	return 0;
}
