/*
 * ckptzero: memory that must behave as anonymous memory after a restore,
 * for the checkpoint tests. It fills MB megabytes of private anonymous
 * memory with 0xa5 (and a few more blocks, below), prints "tick N" every
 * 10 ms, and once the file TRIGGER exists (the test makes it after a
 * restore) checks, prints two lines and exits 0:
 *   dontneed written=zero|stale stored=zero|stale kept=ok|bad
 *   more backing=image|anon free=.. raw=.. locked=.. einval=.. enomem=..
 *        filefree=.. filedontneed=.. grow=.. realloc=.. trim=..
 * written: a page written again, then MADV_DONTNEED'd; stored: a page as
 * saved, MADV_DONTNEED'd; both must read zeros (allocators such as jemalloc
 * and glibc's arenas count on it); kept: every other page still 0xa5.
 * backing: whether the big block is mapped from a file (the image, a
 * restore with mapped pages) or anonymous. Then each check says ok or what
 * it found:
 *   free      MADV_FREE succeeds and the page reads zeros or its bytes
 *   raw       MADV_DONTNEED by an inline `syscall` instruction reads zeros
 *   locked    MADV_DONTNEED_LOCKED reads zeros
 *   einval    an unaligned address is EINVAL
 *   enomem    a range running past its mapping into a hole is ENOMEM, the
 *             mapped pages given back (zeros)
 *   filefree  MADV_FREE over a private mapping of a file is EINVAL, as ever
 *   filedontneed  a written page of a private file mapping, DONTNEED'd,
 *             reads the file's bytes again, as ever
 *   grow      mremap(MAYMOVE|FIXED) growing a block saved half written
 *             onto a new place: its old bytes, then zeros (no SIGBUS, no
 *             bytes of anything else); its first page given back there
 *             reads zeros
 *   realloc   glibc's realloc of a large (mmapped) block (mremap from
 *             libc, in place or moved): old bytes, zeros
 *   trim      free of a block in the main heap then malloc_trim: its inner
 *             pages read zeros
 *   nomove    mremap growing a page saved written, without MREMAP_MAYMOVE,
 *             into a page mapped after it: ENOMEM, its bytes kept
 *   thread    a thread that existed when the process was saved gives a
 *             page back: zeros
 *   child     a fork child gives a page back: zeros
 *   ckptzero TRIGGER [MB]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define PAGE 4096
#define GROW (1 << 20)
#define BIG (1 << 20)
#define SMALL (100 << 10)

static int all(const unsigned char *p, size_t len, unsigned char v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v) return 0;
	return 1;
}

static int zero(const unsigned char *p) { return all(p, PAGE, 0); }

/* madvise by this program's own `syscall` instruction, not libc's. */
static long raw_madvise(void *addr, size_t len, long advice)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_madvise), "D"(addr), "S"(len), "d"(advice) : "rcx", "r11", "memory");
	return ret;
}

/* Whether addr lies in a mapping of a file. */
static const char *backing(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096];
	const char *found = "?";
	while (f && fgets(line, sizeof line, f)) {
		unsigned long s, e, ino;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &s, &e, &ino) == 3 && (unsigned long)addr >= s && (unsigned long)addr < e) found = ino ? "image" : "anon";
	}
	if (f) fclose(f);
	return found;
}

/* A thread made at start, waiting on a pipe until told to give page 15 back. */
static int thread_pipe[2];
static unsigned char *thread_mem;
static const char *thread_s = "none";

static void *give_back_later(void *arg)
{
	char c;
	(void)arg;
	if (read(thread_pipe[0], &c, 1) == 1)
		thread_s = madvise(thread_mem + 15 * PAGE, PAGE, MADV_DONTNEED) ? "error" : zero(thread_mem + 15 * PAGE) ? "ok" : "stale";
	return NULL;
}

static struct {
	unsigned char *hole;   /* 3 pages of 0xa5, the 4th unmapped */
	unsigned char *file;   /* this program's file, private, writable */
	unsigned char *grow;   /* GROW bytes, the first half 0x77 */
	unsigned char *big;    /* malloc(BIG), 0x33: an mmapped chunk */
	unsigned char *small[3]; /* malloc(SMALL) each, 0x44: in the main heap */
	unsigned char *pair;   /* a page of 0x66, then a read-only page */
} B;

static void prepare(const char *self)
{
	/* Far below where mmap places things: the hole stays one. */
	B.hole = mmap((void *)0x200000000000UL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	memset(B.hole, 0xa5, 3 * PAGE);
	munmap(B.hole + 3 * PAGE, PAGE);
	int fd = open(self, O_RDONLY | O_CLOEXEC);
	B.file = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	B.grow = mmap(NULL, GROW, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(B.grow, 0x77, GROW / 2);
	B.big = malloc(BIG);
	memset(B.big, 0x33, BIG);
	for (int i = 0; i < 3; i++) memset(B.small[i] = malloc(SMALL), 0x44, SMALL);
	B.pair = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(B.pair, 0x66, PAGE);
	mprotect(B.pair + PAGE, PAGE, PROT_READ);
}

static void more(const unsigned char *mem, size_t pages)
{
	unsigned char *m = (unsigned char *)mem;
	size_t free_pg = 7, raw_pg = 9, locked_pg = 11;
	const char *back = backing(mem);
	int r = madvise(m + free_pg * PAGE, PAGE, MADV_FREE);
	const char *free_s = r ? "error" : zero(m + free_pg * PAGE) || all(m + free_pg * PAGE, PAGE, 0xa5) ? "ok" : "bad";
	r = (int)raw_madvise(m + raw_pg * PAGE, PAGE, MADV_DONTNEED);
	const char *raw_s = r ? "error" : zero(m + raw_pg * PAGE) ? "ok" : "stale";
	r = madvise(m + locked_pg * PAGE, PAGE, MADV_DONTNEED_LOCKED);
	const char *locked_s = r ? "error" : zero(m + locked_pg * PAGE) ? "ok" : "stale";
	r = madvise(m + 13 * PAGE + 1, PAGE, MADV_DONTNEED);
	const char *einval_s = r == -1 && errno == EINVAL ? "ok" : "bad";
	r = madvise(B.hole, 4 * PAGE, MADV_DONTNEED);
	const char *enomem_s = !(r == -1 && errno == ENOMEM) ? "errno" : all(B.hole, 3 * PAGE, 0) ? "ok" : "stale";
	r = madvise(B.file, PAGE, MADV_FREE);
	const char *filefree_s = r == -1 && errno == EINVAL ? "ok" : "bad";
	B.file[0] = 'X';
	r = madvise(B.file, PAGE, MADV_DONTNEED);
	const char *filedontneed_s = r == 0 && !memcmp(B.file, "\177ELF", 4) ? "ok" : "bad";
	/* Moved (onto a place of its own): then its first page, still as
	 * saved, given back must read zeros there too. */
	unsigned char *to = mmap(NULL, 3 * GROW, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *g = mremap(B.grow, GROW, 3 * GROW, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	const char *grow_s = g != to ? "error" : !all(g, GROW / 2, 0x77) || !all(g + GROW / 2, 3 * GROW - GROW / 2, 0) ? "bad"
			     : madvise(g, PAGE, MADV_DONTNEED) || !zero(g)				     ? "stale"
												     : "ok";
	unsigned char *b = realloc(B.big, 4 * BIG);
	const char *realloc_s = !b ? "error" : all(b, BIG, 0x33) && all(b + BIG, 3 * BIG - 64, 0) ? "ok" : "bad";
	free(B.small[1]);
	malloc_trim(0);
	const char *trim_s = zero(B.small[1] + SMALL / 2 - PAGE) ? "ok" : "stale";
	void *nm = mremap(B.pair, PAGE, 2 * PAGE, 0);
	const char *nomove_s = nm != MAP_FAILED ? "moved" : errno != ENOMEM ? "errno" : all(B.pair, PAGE, 0x66) ? "ok" : "bad";
	if (write(thread_pipe[1], "x", 1) != 1) thread_s = "pipe";
	pid_t child = fork();
	if (child == 0) _exit(madvise(m + 17 * PAGE, PAGE, MADV_DONTNEED) ? 2 : zero(m + 17 * PAGE) ? 0 : 1);
	int st = 0;
	const char *child_s = child < 0 || waitpid(child, &st, 0) != child ? "error" : !WIFEXITED(st) ? "died" : WEXITSTATUS(st) == 0 ? "ok" : "stale";
	while (!strcmp(thread_s, "none")) usleep(1000);
	printf("more backing=%s free=%s raw=%s locked=%s einval=%s enomem=%s filefree=%s filedontneed=%s grow=%s realloc=%s trim=%s nomove=%s thread=%s child=%s\n",
	       back, free_s, raw_s, locked_s, einval_s, enomem_s, filefree_s, filedontneed_s, grow_s, realloc_s, trim_s, nomove_s, thread_s, child_s);
	(void)pages;
}

int main(int argc, char **argv)
{
	if (argc < 2) return fprintf(stderr, "usage: ckptzero TRIGGER [MB]\n"), 2;
	size_t len = (size_t)(argc > 2 ? atol(argv[2]) : 8) << 20, pages = len / PAGE;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) return perror("mmap"), 1;
	memset(mem, 0xa5, len);
	prepare("/proc/self/exe");
	pthread_t thread;
	thread_mem = mem;
	if (pipe(thread_pipe) || pthread_create(&thread, NULL, give_back_later, NULL)) return perror("ckptzero: thread"), 1;
	size_t written = 5, stored = pages / 2 + 3;
	for (long n = 1;; n++) {
		if (access(argv[1], F_OK) == 0) {
			memset(mem + written * PAGE, 0x5a, PAGE);
			madvise(mem + written * PAGE, PAGE, MADV_DONTNEED);
			madvise(mem + stored * PAGE, PAGE, MADV_DONTNEED);
			int kept = 1;
			for (size_t i = 0; i < pages; i++)
				if (i != written && i != stored && i != 7 && i != 9 && i != 11 && i != 15 && i != 17 && (mem[i * PAGE] != 0xa5 || mem[i * PAGE + PAGE - 1] != 0xa5)) kept = 0;
			printf("dontneed written=%s stored=%s kept=%s\n", zero(mem + written * PAGE) ? "zero" : "stale", zero(mem + stored * PAGE) ? "zero" : "stale",
			       kept ? "ok" : "bad");
			more(mem, pages);
			return 0;
		}
		printf("tick %ld\n", n);
		fflush(stdout);
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
}
