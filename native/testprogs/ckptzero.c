/*
 * ckptzero: memory that must read as zeros after MADV_DONTNEED, for the
 * checkpoint tests. It fills MB megabytes of private anonymous memory with
 * 0xa5, prints "tick N" every 10 ms, and once the file TRIGGER exists
 * (the test makes it after a restore) checks, prints and exits 0:
 *   dontneed written=zero|stale stored=zero|stale kept=ok|bad
 * written: a page written again, then MADV_DONTNEED'd; stored: a page as
 * saved, MADV_DONTNEED'd; both must read zeros (allocators such as jemalloc
 * and glibc's arenas count on it); kept: every other page still 0xa5.
 *   ckptzero TRIGGER [MB]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static int zero(const unsigned char *p)
{
	for (int i = 0; i < PAGE; i++)
		if (p[i]) return 0;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) return fprintf(stderr, "usage: ckptzero TRIGGER [MB]\n"), 2;
	size_t len = (size_t)(argc > 2 ? atol(argv[2]) : 8) << 20, pages = len / PAGE;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) return perror("mmap"), 1;
	memset(mem, 0xa5, len);
	size_t written = 5, stored = pages / 2 + 3;
	for (long n = 1;; n++) {
		if (access(argv[1], F_OK) == 0) {
			memset(mem + written * PAGE, 0x5a, PAGE);
			madvise(mem + written * PAGE, PAGE, MADV_DONTNEED);
			madvise(mem + stored * PAGE, PAGE, MADV_DONTNEED);
			int kept = 1;
			for (size_t i = 0; i < pages; i++)
				if (i != written && i != stored && (mem[i * PAGE] != 0xa5 || mem[i * PAGE + PAGE - 1] != 0xa5)) kept = 0;
			printf("dontneed written=%s stored=%s kept=%s\n", zero(mem + written * PAGE) ? "zero" : "stale", zero(mem + stored * PAGE) ? "zero" : "stale",
			       kept ? "ok" : "bad");
			return 0;
		}
		printf("tick %ld\n", n);
		fflush(stdout);
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
}
