/*
 * cowbench: what giving memory back costs in a process restored with its
 * pages mapped from the image (the shim traps madvise there and answers as
 * over anonymous memory: native/shim/memory.c), against the same calls
 * natively, under the shim unrestored, and restored with copied memory.
 * bench/cow.ts runs it on each side. It fills MB megabytes (written, so a
 * snapshot stores them), then waits for the file TRIGGER (made after a
 * restore; made before the start for the sides that are not restored),
 * then times, per call, and prints one JSON object:
 *   dontneed_first  MADV_DONTNEED of one page as it was filled (mapped: of
 *                   the image: made anonymous)
 *   dontneed_again  the same pages again, written since (mapped: anonymous
 *                   now, but still trapped and looked up)
 *   dontneed_fresh  MADV_DONTNEED of one page of memory mapped after the
 *                   restore (mapped: trapped, never the image's: no look-up)
 *   willneed        MADV_WILLNEED, an advice no filter traps
 *
 *   cowbench TRIGGER [MB]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PAGE 4096

/* ns per call of madvise(advice) over each page in turn, one page a call,
 * each written first when write_first (outside the timing). */
static double per_page(unsigned char *mem, size_t pages, int advice, int write_first)
{
	if (write_first)
		for (size_t i = 0; i < pages; i++) mem[i * PAGE] = 1;
	double t0 = now_ns();
	for (size_t i = 0; i < pages; i++)
		if (madvise(mem + i * PAGE, PAGE, advice) != 0) {
			perror("cowbench: madvise");
			exit(1);
		}
	return (now_ns() - t0) / (double)pages;
}

int main(int argc, char **argv)
{
	if (argc < 2) return fprintf(stderr, "usage: cowbench TRIGGER [MB]\n"), 2;
	size_t len = (size_t)(argc > 2 ? atol(argv[2]) : 32) << 20, pages = len / PAGE;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) return perror("cowbench: mmap"), 1;
	memset(mem, 0xa5, len);
	for (long n = 1; access(argv[1], F_OK) != 0; n++) {
		printf("tick %ld\n", n);
		fflush(stdout);
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	double first = per_page(mem, pages, MADV_DONTNEED, 0);
	double again = per_page(mem, pages, MADV_DONTNEED, 1);
	unsigned char *fresh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fresh == MAP_FAILED) return perror("cowbench: mmap"), 1;
	double fresh_ns = per_page(fresh, pages, MADV_DONTNEED, 1);
	double willneed = per_page(mem, pages, MADV_WILLNEED, 0);
	printf("{\"dontneed_first\": %.1f, \"dontneed_again\": %.1f, \"dontneed_fresh\": %.1f, \"willneed\": %.1f}\n", first, again, fresh_ns, willneed);
	return 0;
}
