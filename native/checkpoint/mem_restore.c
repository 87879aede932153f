/* A process's memory made again in a stub (see mem.h). */
#define _GNU_SOURCE
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "trace.h"

static int failed(char *err, size_t errlen, const char *what, uint64_t addr, long rc)
{
	snprintf(err, errlen, "%s at 0x%llx failed: %s", what, (unsigned long long)addr, rc == -ESRCH ? "the stub could not be driven" : strerror((int)-rc));
	return -1;
}

/* A queued call's failure (or the batch's) as failed() words it. */
static int batch_failed(struct inj *in, char *err, size_t errlen)
{
	long rc = -ESRCH;
	const struct inj_why *w = inj_batch_failed(in, &rc);
	if (!w) return snprintf(err, errlen, "the stub could not be driven"), -1;
	if (w->path && rc != -ESRCH) return snprintf(err, errlen, "%s cannot be opened to map it: %s", w->path, strerror((int)-rc)), -1;
	return failed(err, errlen, w->what, w->addr, rc);
}

/* Queues a call that must succeed (its why: what, at addr); -1 when the
 * batch had to be flushed for room and that failed. */
#define QUEUE(in, what, addr, ...) inj_queue(in, (&(struct inj_why){what, (uint64_t)(addr), NULL}), 0, __VA_ARGS__)

static int prot_of(const char *p)
{
	return (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
}

static int has_madv(const cJSON *m, const char *what)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, cJSON_GetObjectItem(m, "madv")) if (!strcmp(a->valuestring, what)) return 1;
	return 0;
}

/* The stub's own memory: every mapping but the gadget region and the
 * kernel's, unmapped. The kernel's are reported by name. */
struct special {
	char name[16];
	uint64_t start, end;
};

static int unmap_stub(struct inj *in, uint64_t keep, uint64_t keep_len, struct special *sp, int *nsp, char *err, size_t errlen)
{
	char path[64], line[4608];
	snprintf(path, sizeof path, "/proc/%d/maps", in->tid);
	FILE *f = fopen(path, "re");
	if (!f) return snprintf(err, errlen, "the stub's memory map cannot be read"), -1;
	uint64_t ranges[512][2];
	int n = 0;
	*nsp = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long s, e;
		int at = 0;
		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &s, &e, &at) < 2) continue;
		char *name = line + at;
		name[strcspn(name, "\n")] = 0;
		if (!strcmp(name, "[vsyscall]")) continue;
		if (!strcmp(name, "[vdso]") || !strcmp(name, "[vvar]") || !strcmp(name, "[vvar_vclock]")) {
			if (*nsp < 4) {
				snprintf(sp[*nsp].name, sizeof sp[*nsp].name, "%.*s", (int)strlen(name) - 2, name + 1);
				sp[*nsp].start = s, sp[*nsp].end = e, (*nsp)++;
			}
			continue;
		}
		if (s >= keep && e <= keep + keep_len) continue;
		if (n && ranges[n - 1][1] == s)
			ranges[n - 1][1] = e;
		else if (n < 512)
			ranges[n][0] = s, ranges[n][1] = e, n++;
	}
	fclose(f);
	for (int i = 0; i < n; i++)
		if (QUEUE(in, "removing the stub's memory", ranges[i][0], SYS_munmap, ranges[i][0], ranges[i][1] - ranges[i][0]) < 0) return batch_failed(in, err, errlen);
	return 0;
}

/* Moves the vDSO and its data pages to their saved place, as one block:
 * the vDSO's code finds its data at a fixed distance. */
static int move_vdso(struct inj *in, const cJSON *mappings, struct special *sp, int nsp, uint64_t temp, char *err, size_t errlen)
{
	uint64_t delta = 0;
	int found = 0;
	for (int i = 0; i < nsp; i++) {
		const cJSON *m;
		int here = 0;
		cJSON_ArrayForEach(m, mappings)
		{
			const char *kind = json_str(m, "kind");
			if (!kind || strcmp(kind, sp[i].name)) continue;
			uint64_t s = json_addr(m, "start"), e = json_addr(m, "end");
			if (e - s != sp[i].end - sp[i].start || (found && s - sp[i].start != delta)) {
				snprintf(err, errlen, "its [%s] does not match this kernel's (another size or layout); restore it on the kernel it was saved on", sp[i].name);
				return -1;
			}
			delta = s - sp[i].start, found = here = 1;
		}
		if (!here) {
			snprintf(err, errlen, "it has no [%s] though this kernel gives one", sp[i].name);
			return -1;
		}
	}
	if (!found || !delta) return 0;
	uint64_t lo = ~0ULL, hi = 0;
	for (int i = 0; i < nsp; i++) lo = sp[i].start < lo ? sp[i].start : lo, hi = sp[i].end > hi ? sp[i].end : hi;
	/* Through a free place first when the block would land on itself. */
	uint64_t via = (lo + delta < hi && lo < hi + delta) ? temp - lo : 0;
	uint64_t steps[2] = {via, delta - via};
	for (int step = via ? 0 : 1; step < 2; step++)
		for (int i = 0; i < nsp; i++) {
			uint64_t len = sp[i].end - sp[i].start, from = sp[i].start + (step ? via : 0), to = from + steps[step];
			if (QUEUE(in, "moving the vDSO", to, SYS_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) < 0) return batch_failed(in, err, errlen);
		}
	return 0;
}

/* One stored run of a mapping: pages [first, first+count) at data page dpage. */
struct run {
	uint64_t first, count, dpage;
};

static struct run run_of(const cJSON *r)
{
	return (struct run){(uint64_t)cJSON_GetArrayItem(r, 0)->valuedouble, (uint64_t)cJSON_GetArrayItem(r, 1)->valuedouble,
			    (uint64_t)cJSON_GetArrayItem(r, 2)->valuedouble};
}

/* The preadv of a mapping's runs: its iovecs in the batch's pool (so at
 * most this many a call), at most this many bytes a call (the kernel
 * reads at most MAX_RW_COUNT, just under 2 GB, at once). */
#define FILL_IOV_MAX 256
#define FILL_CALL_MAX ((uint64_t)1 << 30)

struct batch {
	struct iovec iov[FILL_IOV_MAX];
	int n;
	uint64_t file_at, bytes;
};

/* Queues a preadv of the runs from the image straight into the stub's
 * memory, made in the stub. It must read all it asks for: a short read
 * (never expected of a regular file whose size was checked, in a stub
 * whose signals are blocked) fails the restore. */
static int flush_batch(struct inj *in, struct batch *b, int stub_fd, char *err, size_t errlen)
{
	size_t len = (size_t)b->n * sizeof *b->iov;
	struct inj_why why = {"reading saved pages from the image into", (uint64_t)b->iov[0].iov_base, NULL, (int64_t)b->bytes};
	uint64_t iov = inj_room(in, 1, len) == 0 ? inj_bytes(in, b->iov, len) : 0;
	if (!iov || inj_queue(in, &why, 0, SYS_preadv, stub_fd, iov, b->n, b->file_at) < 0) return batch_failed(in, err, errlen);
	b->n = 0, b->bytes = 0;
	return 0;
}

/* Transparent huge pages only on request (the system's setting is
 * [madvise]): then a restore's copy asks for them, and taking the advice
 * back leaves the memory as the kernel treats memory never advised. */
static int thp_on_advice(void)
{
	static int known = -1;
	if (known < 0) {
		char line[128] = "";
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
		if (f) {
			if (!fgets(line, sizeof line, f)) line[0] = 0;
			fclose(f);
		}
		known = strstr(line, "[madvise]") != NULL;
	}
	return known;
}

#define HUGE_PAGE ((uint64_t)2 << 20)

/* Copying into fresh anonymous memory costs a page fault and a cleared
 * page per 4 KB, more than the copy itself: the whole 2 MB stretches of
 * the mapping's runs (every page of them stored, so the memory the process
 * holds is the same) are advised as huge pages for the copy, which makes
 * it 2-3 times faster (100 MB: ~50 ms against ~160). Up to a budget per
 * restore: measured on the 2-core VM this was built on, huge-page faults
 * beyond a few hundred MB at once became slower than 4 KB ones (512 MB:
 * 1.2-2.1 s against 0.6-0.7 s), fresh memory the host backs late, it
 * seems. Returns whether any was advised: the advice is taken back after
 * (MADV_NOHUGEPAGE, as the kernel treats memory never advised under
 * [madvise]) unless the program had asked for it. */
#define HUGE_BUDGET ((uint64_t)128 << 20)

static int advise_huge(struct inj *in, const cJSON *m)
{
	if (!thp_on_advice() || has_madv(m, "nh")) return 0;
	static uint64_t budget = HUGE_BUDGET;
	uint64_t start = json_addr(m, "start");
	int advised = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(m, "runs"))
	{
		struct run u = run_of(r);
		uint64_t lo = start + u.first * CKPT_PAGE, hi = lo + u.count * CKPT_PAGE;
		lo = (lo + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), hi &= ~(HUGE_PAGE - 1);
		if (hi > lo && hi - lo > budget) hi = lo + (budget & ~(HUGE_PAGE - 1));
		if (lo >= hi) continue;
		/* advice: a refusal only costs time (taking it back after is harmless) */
		if (inj_queue(in, (&(struct inj_why){"madvise", lo, NULL}), INJ_MAY_FAIL, SYS_madvise, lo, hi - lo, MADV_HUGEPAGE) < 0) return -1;
		advised = 1;
		budget -= hi - lo;
	}
	return advised && !has_madv(m, "hg");
}

/* Fills a mapping's stored runs with one kernel copy each, from the image
 * straight into the stub's memory (preadv made in the stub, no round trip
 * through the restorer); runs that lie back to back in the image (a
 * mapping's runs are stored in order) go in one call. A mapping that is not
 * writable is made so for the copy and given its protection back. */
static int fill_runs(struct inj *in, const cJSON *m, int prot, int stub_fd, uint64_t data_at, char *err, size_t errlen)
{
	uint64_t start = json_addr(m, "start"), len = json_addr(m, "end") - start;
	if (!(prot & PROT_WRITE) && QUEUE(in, "making memory writable to fill it", start, SYS_mprotect, start, len, prot | PROT_READ | PROT_WRITE) < 0)
		return batch_failed(in, err, errlen);
	static struct batch b;
	b.n = 0, b.bytes = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(m, "runs"))
	{
		struct run u = run_of(r);
		uint64_t addr = start + u.first * CKPT_PAGE, file_at = data_at + u.dpage * CKPT_PAGE, left = u.count * CKPT_PAGE;
		while (left) {
			uint64_t piece = left < FILL_CALL_MAX ? left : FILL_CALL_MAX;
			if (b.n && (b.n == FILL_IOV_MAX || file_at != b.file_at + b.bytes || b.bytes + piece > FILL_CALL_MAX) &&
			    flush_batch(in, &b, stub_fd, err, errlen) != 0)
				return -1;
			if (!b.n) b.file_at = file_at;
			b.iov[b.n++] = (struct iovec){(void *)addr, (size_t)piece};
			b.bytes += piece, addr += piece, file_at += piece, left -= piece;
		}
	}
	if (b.n && flush_batch(in, &b, stub_fd, err, errlen) != 0) return -1;
	if (!(prot & PROT_WRITE) && QUEUE(in, "mprotect after filling", start, SYS_mprotect, start, len, prot) < 0) return batch_failed(in, err, errlen);
	return 0;
}

/* Maps a mapping's stored runs straight from the image, copy-on-write
 * (the shim answers for them where anonymous memory and a file mapping
 * differ: native/shim/memory.c). *mapped_at: the first address mapped. */
static int map_runs(struct inj *in, const cJSON *m, int prot, int stub_fd, uint64_t data_at, uint64_t *mapped_at, char *err, size_t errlen)
{
	uint64_t start = json_addr(m, "start");
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(m, "runs"))
	{
		struct run u = run_of(r);
		uint64_t at = start + u.first * CKPT_PAGE;
		if (QUEUE(in, "mapping saved pages from the image", at, SYS_mmap, at, u.count * CKPT_PAGE, prot, MAP_PRIVATE | MAP_FIXED, stub_fd,
			  data_at + u.dpage * CKPT_PAGE) < 0)
			return batch_failed(in, err, errlen);
		if (!*mapped_at) *mapped_at = at;
	}
	return 0;
}

/* Queues open, mmap of the descriptor it gives, close: one batch holds all three. */
static int map_file(struct inj *in, const char *path, int flags, uint64_t start, uint64_t len, int prot, int map_flags, uint64_t offset)
{
	if (inj_room(in, 3, strlen(path) + 1) != 0) return -1;
	int o = inj_queue(in, (&(struct inj_why){"opening a file", start, path}), 0, SYS_openat, AT_FDCWD, inj_string(in, path), flags | O_CLOEXEC);
	int m = QUEUE(in, "mapping a file", start, SYS_mmap, start, len, prot, map_flags, -1, offset);
	int c = inj_queue(in, (&(struct inj_why){"close", start, NULL}), INJ_MAY_FAIL, SYS_close, -1);
	if (o < 0 || m < 0 || c < 0) return -1;
	inj_ref(in, m, 4, o);
	inj_ref(in, c, 0, o);
	return 0;
}

static int make_mapping(struct inj *in, const cJSON *m, int stub_fd, uint64_t data_at, int map_pages, const cJSON *shm_fds, uint64_t *mapped_at,
			char *err, size_t errlen)
{
	const char *kind = json_str(m, "kind"), *prot_s = json_str(m, "prot");
	uint64_t start = json_addr(m, "start"), len = json_addr(m, "end") - start;
	int prot = prot_of(prot_s ? prot_s : "---p");
	int has_runs = cJSON_GetArraySize(cJSON_GetObjectItem(m, "runs")) > 0;
	if (!strcmp(kind, "anon") || !strcmp(kind, "stack")) {
		int grows = !strcmp(kind, "stack") ? MAP_GROWSDOWN : 0;
		if (QUEUE(in, "making anonymous memory", start, SYS_mmap, start, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | grows, -1, 0) < 0)
			return batch_failed(in, err, errlen);
		if (has_runs) {
			/* Executable pages are written: the image's file system
			 * may forbid mapping code from it (noexec); so are
			 * wipe-on-fork ones, which must stay anonymous. */
			if (map_pages && !grows && !(prot & PROT_EXEC) && !has_madv(m, "wf")) {
				if (map_runs(in, m, prot, stub_fd, data_at, mapped_at, err, errlen) != 0) return -1;
			} else {
				int unadvise = grows ? 0 : advise_huge(in, m);
				if (unadvise < 0) return batch_failed(in, err, errlen);
				if (fill_runs(in, m, prot, stub_fd, data_at, err, errlen) != 0) return -1;
				if (unadvise && QUEUE(in, "madvise", start, SYS_madvise, start, len, MADV_NOHUGEPAGE) < 0) return batch_failed(in, err, errlen);
			}
		}
	} else if (!strcmp(kind, "file") || !strcmp(kind, "shared")) {
		int shared = !strcmp(kind, "shared");
		const char *path = json_str(m, "path");
		if (map_file(in, path, shared && (prot & PROT_WRITE) ? O_RDWR : O_RDONLY, start, len, prot, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED,
			     json_addr(m, "offset")) != 0)
			return batch_failed(in, err, errlen);
		if (has_runs && fill_runs(in, m, prot, stub_fd, data_at, err, errlen) != 0) return -1;
	} else if (!strcmp(kind, "sysv")) {
		/* One attachment may show as several mappings (mprotect split
		 * it): attached at its first, the others given their prot. */
		uint64_t offset = json_addr(m, "offset");
		if (offset == 0 &&
		    QUEUE(in, "attaching the SysV segment again", start, SYS_shmat, json_int(m, "srid"), start, (prot & PROT_WRITE) ? 0 : SHM_RDONLY) < 0)
			return batch_failed(in, err, errlen);
		if (QUEUE(in, "mprotect of a SysV attachment", start, SYS_mprotect, start, len, prot) < 0) return batch_failed(in, err, errlen);
	} else if (!strcmp(kind, "shm")) {
		const cJSON *fd = cJSON_GetObjectItem(shm_fds, json_str(m, "shm") ? json_str(m, "shm") : "");
		if (!cJSON_IsNumber(fd)) return snprintf(err, errlen, "the image has no shared memory object for 0x%llx", (unsigned long long)start), -1;
		if (QUEUE(in, "mapping shared memory", start, SYS_mmap, start, len, prot, MAP_SHARED | MAP_FIXED, fd->valueint, json_addr(m, "offset")) < 0)
			return batch_failed(in, err, errlen);
	} else {
		return 0; /* the kernel's own: moved or left */
	}
	const cJSON *a;
	cJSON_ArrayForEach(a, cJSON_GetObjectItem(m, "madv"))
	{
		const char *v = a->valuestring;
		int advice = !strcmp(v, "wf")	? MADV_WIPEONFORK
			     : !strcmp(v, "dc") ? MADV_DONTFORK
			     : !strcmp(v, "hg") ? MADV_HUGEPAGE
			     : !strcmp(v, "nh") ? MADV_NOHUGEPAGE
						: -1;
		if (advice >= 0 && QUEUE(in, "madvise", start, SYS_madvise, start, len, advice) < 0) return batch_failed(in, err, errlen);
	}
	return 0;
}

int mem_restore(struct inj *in, const cJSON *mappings, uint64_t keep, uint64_t keep_len, int stub_image_fd, uint64_t data_at, int map_pages, const cJSON *shm_fds,
		uint64_t *mapped_at, char *err, size_t errlen)
{
	struct special sp[4];
	*mapped_at = 0;
	int nsp;
	/* Every call below is queued and made in batches (inject.h): one stop
	 * each, not two per call. */
	if (inj_batch_start(in, keep + INJ_BATCH_CODE_OFF) != 0) return snprintf(err, errlen, "out of memory"), -1;
	if (unmap_stub(in, keep, keep_len, sp, &nsp, err, errlen) != 0) return -1;
	if (move_vdso(in, mappings, sp, nsp, keep + keep_len / 4, err, errlen) != 0) return -1;
	const cJSON *m;
	cJSON_ArrayForEach(m, mappings) if (make_mapping(in, m, stub_image_fd, data_at, map_pages, shm_fds, mapped_at, err, errlen) != 0) return -1;
	return inj_flush(in) == 0 ? 0 : batch_failed(in, err, errlen);
}
