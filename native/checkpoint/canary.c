/* The shim's canary page at restore (see canary.h). */
#define _GNU_SOURCE
#include "canary.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.h"
#include "trace.h"

uint64_t canary_find(const cJSON *mappings)
{
	const cJSON *m, *a;
	cJSON_ArrayForEach(m, mappings)
	{
		if (json_addr(m, "end") - json_addr(m, "start") != CKPT_PAGE || !cJSON_GetArraySize(cJSON_GetObjectItem(m, "runs"))) continue;
		cJSON_ArrayForEach(a, cJSON_GetObjectItem(m, "madv")) if (!strcmp(a->valuestring, "wf")) return json_addr(m, "start");
	}
	return 0;
}

int canary_zeroes(const cJSON *p, const struct ckpt_ctx *ctx, int image_fd, uint64_t data_at)
{
	if (!ctx->aid || !ctx->home) return 0; /* the entry is not called: nobody would answer */
	uint64_t page = canary_find(cJSON_GetObjectItem(p, "mappings"));
	const cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItem(p, "mappings"))
	{
		if (!page || json_addr(m, "start") != page) continue;
		const cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "runs"), 0);
		uint64_t dpage = (uint64_t)cJSON_GetArrayItem(run, 2)->valuedouble;
		struct {
			uint32_t canary, features;
			uint64_t magic;
		} head;
		if (pread(image_fd, &head, sizeof head, (off_t)(data_at + dpage * CKPT_PAGE)) != (ssize_t)sizeof head) return 0;
		return head.magic == CANARY_MAGIC && (head.features & CANARY_FEATURE_ZEROES);
	}
	return 0;
}

/* The image's file as the restored process's /proc/PID/maps names it at
 * addr (a page mapped from it): what the shim compares its mappings with.
 * Not fstat of the image: on an overlay file system a mapping names the
 * file underneath. */
static int image_identity(pid_t tid, uint64_t addr, uint32_t id[4])
{
	char path[64], line[4608];
	snprintf(path, sizeof path, "/proc/%d/maps", tid);
	FILE *f = fopen(path, "re");
	if (!f) return -1;
	int found = -1;
	while (found && fgets(line, sizeof line, f)) {
		unsigned long long s, e, ino;
		unsigned major, minor;
		if (sscanf(line, "%llx-%llx %*s %*s %x:%x %llu", &s, &e, &major, &minor, &ino) != 5 || addr < s || addr >= e || !ino) continue;
		id[0] = major, id[1] = minor, id[2] = (uint32_t)ino, id[3] = (uint32_t)(ino >> 32);
		found = 0;
	}
	fclose(f);
	return found;
}

/* Calls void entry(void) in stopped thread tid: a return address at the
 * gadget's int3 on a stack well below the saved one (its red zone kept). */
static int call_entry(pid_t tid, const cJSON *main_thread, uint64_t entry, uint64_t trap, char *err, size_t errlen)
{
	struct user_regs_struct r;
	if (json_hex(main_thread, "regs", &r, sizeof r) != sizeof r) return snprintf(err, errlen, "no registers for its main thread"), -1;
	uint64_t sp = ((r.rsp - 4096) & ~15ULL) - 8; /* as after a call: rsp % 16 == 8 */
	r.rip = entry, r.rsp = sp, r.orig_rax = -1, r.rax = 0;
	if (mem_write(tid, sp, &trap, sizeof trap) != 0 || trace_setregs(tid, &r) != 0 || ptrace(PTRACE_CONT, tid, 0, 0) != 0)
		return snprintf(err, errlen, "the shim's restore entry cannot be called: %s", strerror(errno)), -1;
	for (;;) {
		int st;
		if (waitpid(tid, &st, __WALL) < 0) {
			if (errno == EINTR) continue;
			return snprintf(err, errlen, "the shim's restore entry: %s", strerror(errno)), -1;
		}
		if (!WIFSTOPPED(st)) return snprintf(err, errlen, "the process died in the shim's restore entry"), -1;
		if (WSTOPSIG(st) == SIGTRAP && (st >> 16) == 0) return 0;
		if ((st >> 16) == PTRACE_EVENT_STOP) {
			ptrace(PTRACE_CONT, tid, 0, 0);
			continue;
		}
		return snprintf(err, errlen, "the shim's restore entry stopped with signal %d", WSTOPSIG(st)), -1;
	}
}

int canary_restore(pid_t tid, const cJSON *p, const struct ckpt_ctx *ctx, uint64_t trap, uint64_t mapped_at, char *err, size_t errlen)
{
	uint64_t page = canary_find(cJSON_GetObjectItem(p, "mappings")), magic = 0, entry = 0;
	if (!page || !ctx->aid || !ctx->home) return 0;
	if (mem_read(tid, page + CANARY_OFF_MAGIC, &magic, 8) != 0 || magic != CANARY_MAGIC || mem_read(tid, page + CANARY_OFF_ENTRY, &entry, 8) != 0) return 0;
	if (strlen(ctx->aid) >= CANARY_AID_MAX || strlen(ctx->home) >= CANARY_HOME_MAX)
		return snprintf(err, errlen, "the AID or home is too long for the shim's canary page"), -1;
	static char fields[CANARY_AID_MAX + CANARY_HOME_MAX];
	memset(fields, 0, sizeof fields);
	memcpy(fields, ctx->aid, strlen(ctx->aid));
	memcpy(fields + CANARY_AID_MAX, ctx->home, strlen(ctx->home));
	uint32_t restored = 1, zero = 0, image[4] = {0, 0, 0, 0};
	if (mapped_at && image_identity(tid, mapped_at, image) != 0)
		return snprintf(err, errlen, "the image's pages mapped at 0x%llx are not in its memory map", (unsigned long long)mapped_at), -1;
	if (mem_write(tid, page + CANARY_OFF_IMAGE, image, sizeof image) != 0 || mem_write(tid, page + CANARY_OFF_AID, fields, sizeof fields) != 0 || mem_write(tid, page + CANARY_OFF_RESTORED, &restored, 4) != 0 ||
	    mem_write(tid, page + CANARY_OFF_IN_TABLES, &zero, 4) != 0 || mem_write(tid, page + CANARY_OFF_CANARY, &zero, 4) != 0)
		return snprintf(err, errlen, "the shim's canary page at 0x%llx cannot be written", (unsigned long long)page), -1;
	return call_entry(tid, cJSON_GetArrayItem(cJSON_GetObjectItem(p, "threads"), 0), entry, trap, err, errlen);
}
