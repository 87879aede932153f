/* A process's memory captured into the image (see mem.h). */
#define _GNU_SOURCE
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/snapshot.h"
#include "canary.h"
#include "datacopy.h"
#include "rows.h"
#include "../../tables/schema.h"
#include "trace.h"

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61) /* a file page or shared anonymous: not the process's own */

/* One line of /proc/PID/smaps and its VmFlags. */
struct vma {
	uint64_t start, end, offset;
	char prot[5];
	unsigned major, minor;
	uint64_t ino;
	char path[4096];
	char flags[256];
};

static int has_flag(const struct vma *v, const char *f)
{
	for (const char *p = v->flags; (p = strstr(p, f)); p += 2)
		if ((p == v->flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == 0 || p[2] == '\n')) return 1;
	return 0;
}

static void plan_add(struct mem_plan *plan, uint64_t addr, uint64_t len)
{
	if (plan->n && plan->runs[plan->n - 1].addr + plan->runs[plan->n - 1].len == addr) {
		plan->runs[plan->n - 1].len += len;
	} else {
		if (plan->n == plan->cap) plan->runs = realloc(plan->runs, (plan->cap = plan->cap ? plan->cap * 2 : 64) * sizeof *plan->runs);
		plan->runs[plan->n++] = (struct mem_run){addr, len};
	}
	plan->pages += len / CKPT_PAGE;
}

void mem_plan_free(struct mem_plan *plan)
{
	free(plan->runs);
	memset(plan, 0, sizeof *plan);
}

/* Which pages of v to store: whole, or per pagemap those the process owns
 * (anon_only: not a file's page). Appends runs to plan and the JSON. */
static void emit_run(cJSON *runs, struct mem_plan *plan, const struct vma *v, uint64_t first, uint64_t len)
{
	cJSON *r = cJSON_CreateArray();
	cJSON_AddItemToArray(r, cJSON_CreateNumber((double)first));
	cJSON_AddItemToArray(r, cJSON_CreateNumber((double)len));
	cJSON_AddItemToArray(r, cJSON_CreateNumber((double)plan->pages));
	cJSON_AddItemToArray(runs, r);
	plan_add(plan, v->start + first * CKPT_PAGE, len * CKPT_PAGE);
}

static int store_pages(pid_t pid, int pagemap, const struct vma *v, int whole, cJSON *runs, struct mem_plan *plan)
{
	enum { CHUNK = 65536 };
	static uint64_t pm[CHUNK];
	uint64_t pages = (v->end - v->start) / CKPT_PAGE, first = 0, len = 0;
	for (uint64_t i = 0; i < pages; i++) {
		if (!whole && i % CHUNK == 0) {
			size_t n = (pages - i < CHUNK ? pages - i : CHUNK) * 8;
			if (pread(pagemap, pm, n, (off_t)((v->start / CKPT_PAGE + i) * 8)) != (ssize_t)n) return -1;
		}
		uint64_t e = whole ? 0 : pm[i % CHUNK];
		if (whole || (e & PM_SWAPPED) || ((e & PM_PRESENT) && !(e & PM_FILE))) {
			if (!len++) first = i;
		} else if (len) {
			emit_run(runs, plan, v, first, len);
			len = 0;
		}
	}
	if (len) emit_run(runs, plan, v, first, len);
	return 0;
}

/* Is the file at path an appshot image (a restored process's pages)? */
static int is_image(const char *path)
{
	char magic[8];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) return 0;
	int yes = pread(fd, magic, 8, 0) == 8 && memcmp(magic, "APPSNAP\n", 8) == 0;
	close(fd);
	return yes;
}

/* The shim's canary page: a one-page wipe-on-fork mapping with its magic. */
static int is_canary(pid_t pid, const struct vma *v)
{
	uint64_t magic = 0;
	return v->end - v->start == CKPT_PAGE && mem_read(pid, v->start + CANARY_OFF_MAGIC, &magic, 8) == 0 && magic == CANARY_MAGIC;
}

static const char *kind_of(pid_t pid, const struct vma *v, int *whole, struct stat *st, char *err, size_t errlen)
{
	int shared = v->prot[3] == 's';
	*whole = 0;
	if (!strcmp(v->path, "[vdso]") || !strcmp(v->path, "[vvar]") || !strcmp(v->path, "[vvar_vclock]") || !strcmp(v->path, "[vsyscall]")) return v->path[1] == 'v' && v->path[2] == 's' ? "vsyscall" : v->path;
	if (has_flag(v, "ht")) return snprintf(err, errlen, "it maps hugetlbfs memory at 0x%llx", (unsigned long long)v->start), NULL;
	if (has_flag(v, "io") || has_flag(v, "pf"))
		return snprintf(err, errlen, "it maps device memory at 0x%llx (%s)", (unsigned long long)v->start, v->path[0] ? v->path : "no name"), NULL;
	if (strstr(v->path, "io_uring")) return snprintf(err, errlen, "it uses io_uring (rings mapped at 0x%llx)", (unsigned long long)v->start), NULL;
	if (!strcmp(v->path, "[stack]")) return "stack";
	if (!shared && (!v->path[0] || !strcmp(v->path, "[heap]") || !strncmp(v->path, "[anon:", 6))) return "anon";
	if (!strncmp(v->path, "/SYSV", 5)) return "sysv"; /* the segment is the IPC sections' */
	size_t len = strlen(v->path);
	int deleted = len > 10 && !strcmp(v->path + len - 10, " (deleted)");
	if (shared && (deleted || !v->path[0] || !strncmp(v->path, "/memfd:", 7) || !strncmp(v->path, "[anon_shmem:", 12))) return "shm";
	if (v->path[0] != '/') return snprintf(err, errlen, "it has a mapping of a kind appshot does not know at 0x%llx (%s)", (unsigned long long)v->start, v->path), NULL;
	if (deleted) {
		*whole = 1;
		return "anon";
	}
	if (stat(v->path, st) != 0) return snprintf(err, errlen, "the file it maps at 0x%llx, %s, cannot be looked at: %s", (unsigned long long)v->start, v->path, strerror(errno)), NULL;
	if (!S_ISREG(st->st_mode)) return snprintf(err, errlen, "it maps %s at 0x%llx, which is not a regular file (a device?)", v->path, (unsigned long long)v->start), NULL;
	if (!shared && is_image(v->path)) {
		*whole = 1;
		return "anon";
	}
	return shared ? "shared" : "file";
}

static cJSON *describe(pid_t pid, int pagemap, const struct vma *v, struct mem_plan *plan, struct shared_set *shared, const struct ckpt_ctx *ctx, char *err,
		       size_t errlen)
{
	int whole;
	struct stat st;
	const char *kind = kind_of(pid, v, &whole, &st, err, errlen);
	if (!kind) return NULL;
	cJSON *m = cJSON_CreateObject();
	json_add_addr(m, "start", v->start);
	json_add_addr(m, "end", v->end);
	cJSON_AddStringToObject(m, "prot", v->prot);
	cJSON_AddStringToObject(m, "kind", kind[0] == '[' ? strndup(kind + 1, strlen(kind) - 2) : kind);
	if (!strcmp(kind, "file") || !strcmp(kind, "shared")) {
		cJSON_AddStringToObject(m, "path", v->path);
		json_add_addr(m, "offset", v->offset);
		json_add_addr(m, "dev", st.st_dev);
		json_add_addr(m, "ino", st.st_ino);
		json_add_addr(m, "size", (uint64_t)st.st_size);
		json_add_addr(m, "mtime", (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec);
	}
	if (!strcmp(kind, "shm")) {
		cJSON_AddStringToObject(m, "shm", shared_note(shared, pid, v->start, v->end, v->offset, v->major, v->minor, v->ino, v->path));
		json_add_addr(m, "offset", v->offset);
	}
	if (!strcmp(kind, "sysv")) {
		/* The maps line's inode is the segment's system ID: saved as the
		 * vrid the application knows, found again on restore. */
		uint32_t vrid = (uint32_t)v->ino;
		if (ctx->tables && ckpt_rows_vrid(ctx, RT_SHM, (uint32_t)v->ino, &vrid) != 0) {
			snprintf(err, errlen, "its SysV segment %llu attached at 0x%llx is not in its application's tables", (unsigned long long)v->ino, (unsigned long long)v->start);
			cJSON_Delete(m);
			return NULL;
		}
		cJSON_AddNumberToObject(m, "shmid", vrid);
		json_add_addr(m, "offset", v->offset);
	}
	cJSON *madv = cJSON_AddArrayToObject(m, "madv");
	if (has_flag(v, "wf")) cJSON_AddItemToArray(madv, cJSON_CreateString("wf"));
	if (has_flag(v, "dc")) cJSON_AddItemToArray(madv, cJSON_CreateString("dc"));
	/* The program's own huge page advice (a restore's copy uses huge
	 * pages where the program did not refuse them). */
	if (has_flag(v, "hg")) cJSON_AddItemToArray(madv, cJSON_CreateString("hg"));
	if (has_flag(v, "nh")) cJSON_AddItemToArray(madv, cJSON_CreateString("nh"));
	cJSON *runs = cJSON_AddArrayToObject(m, "runs");
	uint64_t before = plan->pages;
	/* Wipe-on-fork memory comes back zeroed, as in a fork child; the
	 * shim's canary page excepted: it tells the shim it was restored. */
	int stored = strcmp(kind, "shared") && strcmp(kind, "shm") && strcmp(kind, "sysv") && kind[0] != '[' && strcmp(kind, "vsyscall") && (!has_flag(v, "wf") || is_canary(pid, v));
	if (stored && store_pages(pid, pagemap, v, whole, runs, plan) != 0) {
		snprintf(err, errlen, "the page map of 0x%llx cannot be read: %s", (unsigned long long)v->start, strerror(errno));
		cJSON_Delete(m);
		return NULL;
	}
	json_add_addr(m, "bytes", (plan->pages - before) * CKPT_PAGE);
	return m;
}

cJSON *mem_capture(pid_t pid, struct mem_plan *plan, struct shared_set *shared, const struct ckpt_ctx *ctx, char *err, size_t errlen)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "re");
	snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
	int pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (!f || pagemap < 0) {
		snprintf(err, errlen, "its memory map cannot be read: %s", strerror(errno));
		if (f) fclose(f);
		if (pagemap >= 0) close(pagemap);
		return NULL;
	}
	cJSON *list = cJSON_CreateArray();
	static struct vma v;
	static char line[8192];
	int have = 0;
	while (list && fgets(line, sizeof line, f)) {
		unsigned long long s, e, off, ino;
		int n = 0;
		if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &s, &e, v.prot, &off, &v.major, &v.minor, &ino, &n) >= 7) {
			v.start = s, v.end = e, v.offset = off, v.ino = ino;
			snprintf(v.path, sizeof v.path, "%s", line + n);
			v.path[strcspn(v.path, "\n")] = 0;
			v.flags[0] = 0;
			have = 1;
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			snprintf(v.flags, sizeof v.flags, "%.200s", line + 9);
			cJSON *m = describe(pid, pagemap, &v, plan, shared, ctx, err, errlen);
			if (m)
				cJSON_AddItemToArray(list, m);
			else
				cJSON_Delete(list), list = NULL;
			have = 0;
		}
	}
	fclose(f);
	close(pagemap);
	return list;
}

int mem_write_data(pid_t pid, const struct mem_plan *plan, const char *staged, struct img_writer *w, struct img_data *d)
{
	uint32_t crc = 0;
	int rc = data_copy(pid, plan, staged, w->fd, w->pos, &crc);
	if (!rc) img_data_appended(w, d, plan->pages * CKPT_PAGE, crc);
	return rc;
}

uint64_t mem_find_canary(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "re");
	static struct vma v;
	static char line[8192];
	uint64_t found = 0;
	while (f && !found && fgets(line, sizeof line, f)) {
		unsigned long long s, e;
		if (sscanf(line, "%llx-%llx", &s, &e) == 2 && strchr(line, ' ') > strchr(line, '-')) {
			v.start = s, v.end = e;
		} else if (!strncmp(line, "VmFlags:", 8)) {
			snprintf(v.flags, sizeof v.flags, "%.200s", line + 9);
			if (has_flag(&v, "wf") && is_canary(pid, &v)) found = v.start;
		}
	}
	if (f) fclose(f);
	return found;
}

/* The [vdso]'s bytes in process pid (self: 0). */
static int vdso_sum(pid_t pid, uint64_t *size, uint32_t *sum)
{
	char path[64], line[512];
	snprintf(path, sizeof path, pid ? "/proc/%d/maps" : "/proc/self/maps", pid);
	FILE *f = fopen(path, "re");
	int rc = -1;
	while (f && rc && fgets(line, sizeof line, f)) {
		unsigned long long s, e;
		if (!strstr(line, "[vdso]") || sscanf(line, "%llx-%llx", &s, &e) != 2) continue;
		char *buf = malloc(e - s);
		if (buf && (pid ? mem_read(pid, s, buf, e - s) == 0 : (memcpy(buf, (void *)s, e - s), 1))) {
			*size = e - s, *sum = crc32c(0, buf, e - s);
			rc = 0;
		}
		free(buf);
	}
	if (f) fclose(f);
	return rc;
}

void mem_note_vdso(pid_t pid, cJSON *p)
{
	uint64_t size;
	uint32_t sum;
	if (vdso_sum(pid, &size, &sum) != 0) return;
	cJSON *o = cJSON_AddObjectToObject(p, "vdso");
	json_add_addr(o, "size", size);
	json_add_addr(o, "crc", sum);
}

int mem_check_vdso(const cJSON *p, char *err, size_t errlen)
{
	const cJSON *o = cJSON_GetObjectItem(p, "vdso");
	uint64_t size;
	uint32_t sum;
	if (!o) return 0;
	if (vdso_sum(0, &size, &sum) != 0 || size != json_addr(o, "size") || sum != json_addr(o, "crc")) {
		snprintf(err, errlen, "it was saved on another kernel (its vDSO differs from this kernel's); restore it on the kernel it was saved on");
		return -1;
	}
	return 0;
}

int mem_check_files(const cJSON *mappings, char *err, size_t errlen)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, mappings)
	{
		const char *path = json_str(m, "path");
		if (!path || cJSON_IsTrue(cJSON_GetObjectItem(m, "home"))) continue; /* the restored home's own */
		struct stat st;
		if (stat(path, &st) != 0) {
			snprintf(err, errlen, "the file it maps, %s, is gone (%s); put it back or snapshot again", path, strerror(errno));
			return -1;
		}
		uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
		if ((uint64_t)st.st_size != json_addr(m, "size") || mtime != json_addr(m, "mtime") || (st.st_dev == json_addr(m, "dev") && st.st_ino != json_addr(m, "ino"))) {
			snprintf(err, errlen, "the file it maps, %s, changed since the snapshot (size or modification time differ); restore needs the same file", path);
			return -1;
		}
	}
	return 0;
}

int mem_overlaps(const cJSON *mappings, uint64_t start, uint64_t end)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, mappings) if (json_addr(m, "start") < end && start < json_addr(m, "end")) return 1;
	return 0;
}
