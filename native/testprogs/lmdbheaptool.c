/* Drives LMDB's heap (core/lmdbheap.c) for test/pidheap.test.ts. Each
 * command prints lines the test compares; linked with appshot's LMDB
 * library, not run under the shim.
 *   reuse   a freed block is given again; calloc of a used block is zeroed;
 *           realloc keeps the bytes; a 4 KiB block fills one page
 *   fork    a fork child finds the heap wiped: the parent's blocks read 0,
 *           its first allocation is the parent's first block's place, and
 *           what it writes there leaves the parent's bytes alone; the same
 *           for a child of a raw fork system call (no atfork handler)
 *   full    blocks past the heap's end come from libc and go back to it */
#define _GNU_SOURCE
#include "../core/lmdbheap.h"

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

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "reuse")) reuse();
		else if (!strcmp(argv[i], "fork")) forks();
		else if (!strcmp(argv[i], "full")) full();
		else {
			fprintf(stderr, "lmdbheaptool: unknown command '%s'\n", argv[i]);
			return 2;
		}
	}
	return 0;
}
