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

static int prot_of(const char *p)
{
	return (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
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
	for (int i = 0; i < n; i++) {
		long rc = inj_call(in, SYS_munmap, ranges[i][0], ranges[i][1] - ranges[i][0]);
		if (rc != 0) return failed(err, errlen, "removing the stub's memory", ranges[i][0], rc);
	}
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
			long rc = inj_call(in, SYS_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
			if (rc != (long)to) return failed(err, errlen, "moving the vDSO", to, rc);
		}
	return 0;
}

/* Writes a mapping's stored runs from the image through the stub's memory. */
static int write_runs(struct inj *in, const cJSON *m, int image_fd, uint64_t data_at, char *err, size_t errlen)
{
	const size_t chunk = 8 << 20;
	static char *buf;
	if (!buf && !(buf = malloc(chunk))) return snprintf(err, errlen, "out of memory"), -1;
	uint64_t start = json_addr(m, "start");
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(m, "runs"))
	{
		uint64_t first = (uint64_t)cJSON_GetArrayItem(r, 0)->valuedouble, count = (uint64_t)cJSON_GetArrayItem(r, 1)->valuedouble,
			 dpage = (uint64_t)cJSON_GetArrayItem(r, 2)->valuedouble;
		for (uint64_t off = 0; off < count * CKPT_PAGE; off += chunk) {
			size_t n = count * CKPT_PAGE - off < chunk ? count * CKPT_PAGE - off : chunk;
			if (pread(image_fd, buf, n, (off_t)(data_at + dpage * CKPT_PAGE + off)) != (ssize_t)n) return snprintf(err, errlen, "the image's pages cannot be read"), -1;
			int rc = mem_write(in->tid, start + first * CKPT_PAGE + off, buf, n);
			if (rc) return failed(err, errlen, "writing saved pages", start + first * CKPT_PAGE + off, rc);
		}
	}
	return 0;
}

/* Maps a mapping's stored runs straight from the image, copy-on-write. */
static int map_runs(struct inj *in, const cJSON *m, int prot, int stub_fd, uint64_t data_at, char *err, size_t errlen)
{
	uint64_t start = json_addr(m, "start");
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(m, "runs"))
	{
		uint64_t first = (uint64_t)cJSON_GetArrayItem(r, 0)->valuedouble, count = (uint64_t)cJSON_GetArrayItem(r, 1)->valuedouble,
			 dpage = (uint64_t)cJSON_GetArrayItem(r, 2)->valuedouble;
		uint64_t at = start + first * CKPT_PAGE;
		long rc = inj_call(in, SYS_mmap, at, count * CKPT_PAGE, prot, MAP_PRIVATE | MAP_FIXED, stub_fd, data_at + dpage * CKPT_PAGE);
		if (rc != (long)at) return failed(err, errlen, "mapping saved pages from the image", at, rc);
	}
	return 0;
}

static int has_madv(const cJSON *m, const char *what)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, cJSON_GetObjectItem(m, "madv")) if (!strcmp(a->valuestring, what)) return 1;
	return 0;
}

static long open_in_stub(struct inj *in, const char *path, int flags)
{
	return inj_call(in, SYS_openat, AT_FDCWD, inj_put(in, 0, path, strlen(path) + 1), flags | O_CLOEXEC);
}

static int make_mapping(struct inj *in, const cJSON *m, int stub_fd, int image_fd, uint64_t data_at, int map_pages, const cJSON *shm_fds, char *err,
			size_t errlen)
{
	const char *kind = json_str(m, "kind"), *prot_s = json_str(m, "prot");
	uint64_t start = json_addr(m, "start"), len = json_addr(m, "end") - start;
	int prot = prot_of(prot_s ? prot_s : "---p");
	int has_runs = cJSON_GetArraySize(cJSON_GetObjectItem(m, "runs")) > 0;
	long rc;
	if (!strcmp(kind, "anon") || !strcmp(kind, "stack")) {
		int grows = !strcmp(kind, "stack") ? MAP_GROWSDOWN : 0;
		rc = inj_call(in, SYS_mmap, start, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | grows, -1, 0);
		if (rc != (long)start) return failed(err, errlen, "making anonymous memory", start, rc);
		if (has_runs) {
			/* Executable pages are written: the image's file system
			 * may forbid mapping code from it (noexec); so are
			 * wipe-on-fork ones, which must stay anonymous. */
			if (map_pages && !grows && !(prot & PROT_EXEC) && !has_madv(m, "wf")) {
				if (map_runs(in, m, prot, stub_fd, data_at, err, errlen) != 0) return -1;
			} else if (write_runs(in, m, image_fd, data_at, err, errlen) != 0)
				return -1;
		}
	} else if (!strcmp(kind, "file") || !strcmp(kind, "shared")) {
		int shared = !strcmp(kind, "shared");
		const char *path = json_str(m, "path");
		long fd = open_in_stub(in, path, shared && (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
		if (fd < 0) {
			snprintf(err, errlen, "%s cannot be opened to map it: %s", path, strerror((int)-fd));
			return -1;
		}
		rc = inj_call(in, SYS_mmap, start, len, prot, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd, json_addr(m, "offset"));
		inj_call(in, SYS_close, fd);
		if (rc != (long)start) return failed(err, errlen, "mapping a file", start, rc);
		if (has_runs && write_runs(in, m, image_fd, data_at, err, errlen) != 0) return -1;
	} else if (!strcmp(kind, "sysv")) {
		/* One attachment may show as several mappings (mprotect split
		 * it): attached at its first, the others given their prot. */
		uint64_t offset = json_addr(m, "offset");
		if (offset == 0) {
			rc = inj_call(in, SYS_shmat, json_int(m, "srid"), start, (prot & PROT_WRITE) ? 0 : SHM_RDONLY);
			if (rc != (long)start) return failed(err, errlen, "attaching the SysV segment again", start, rc);
		}
		if ((rc = inj_call(in, SYS_mprotect, start, len, prot)) != 0) return failed(err, errlen, "mprotect of a SysV attachment", start, rc);
	} else if (!strcmp(kind, "shm")) {
		const cJSON *fd = cJSON_GetObjectItem(shm_fds, json_str(m, "shm") ? json_str(m, "shm") : "");
		if (!cJSON_IsNumber(fd)) return snprintf(err, errlen, "the image has no shared memory object for 0x%llx", (unsigned long long)start), -1;
		rc = inj_call(in, SYS_mmap, start, len, prot, MAP_SHARED | MAP_FIXED, fd->valueint, json_addr(m, "offset"));
		if (rc != (long)start) return failed(err, errlen, "mapping shared memory", start, rc);
	} else {
		return 0; /* the kernel's own: moved or left */
	}
	const cJSON *a;
	cJSON_ArrayForEach(a, cJSON_GetObjectItem(m, "madv"))
	{
		int advice = !strcmp(a->valuestring, "wf") ? MADV_WIPEONFORK : !strcmp(a->valuestring, "dc") ? MADV_DONTFORK : -1;
		if (advice >= 0 && (rc = inj_call(in, SYS_madvise, start, len, advice)) != 0) return failed(err, errlen, "madvise", start, rc);
	}
	return 0;
}

int mem_restore(struct inj *in, const cJSON *mappings, uint64_t keep, uint64_t keep_len, int stub_image_fd, int image_fd, uint64_t data_at, int map_pages,
		const cJSON *shm_fds, char *err, size_t errlen)
{
	struct special sp[4];
	int nsp;
	if (unmap_stub(in, keep, keep_len, sp, &nsp, err, errlen) != 0) return -1;
	if (move_vdso(in, mappings, sp, nsp, keep + keep_len / 4, err, errlen) != 0) return -1;
	const cJSON *m;
	cJSON_ArrayForEach(m, mappings) if (make_mapping(in, m, stub_image_fd, image_fd, data_at, map_pages, shm_fds, err, errlen) != 0) return -1;
	return 0;
}
