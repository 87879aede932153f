/* System calls made in a stopped thread (see inject.h). */
#define _GNU_SOURCE
#include "inject.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>

int inj_begin(struct inj *in, pid_t tid, uint64_t at, uint64_t scratch)
{
	memset(in, 0, sizeof *in);
	in->tid = tid;
	in->at = at;
	if (trace_getregs(tid, &in->regs) != 0) return -1;
	if (ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof in->mask, &in->mask) != 0) return -1;
	uint64_t all = ~0ULL;
	if (ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof all, &all) != 0) return -1;
	in->scratch = scratch ? scratch : ((in->regs.rsp - 128 - 1024) & ~63ULL);
	return 0;
}

long inj_call6(struct inj *in, long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;
	in->called = 1;
	if (trace_syscall(in->tid, in->at, &ret, nr, a1, a2, a3, a4, a5, a6) != 0) return -ESRCH;
	return ret;
}

uint64_t inj_put(struct inj *in, size_t off, const void *buf, size_t len)
{
	return mem_write(in->tid, in->scratch + off, buf, len) == 0 ? in->scratch + off : 0;
}

int inj_get(struct inj *in, size_t off, void *buf, size_t len)
{
	return mem_read(in->tid, in->scratch + off, buf, len);
}

int inj_end(struct inj *in)
{
	struct user_regs_struct r = in->regs;
	if (in->called) trace_restart_fixup(&r, 1);
	if (trace_setregs(in->tid, &r) != 0) return -1;
	return ptrace(PTRACE_SETSIGMASK, in->tid, (void *)sizeof in->mask, &in->mask) == 0 ? 0 : -1;
}

/* Searches [start, end) of pid for the bytes 0f 05: wherever they lie, an
 * instruction fetched there is `syscall`. */
static uint64_t syscall_in(pid_t pid, uint64_t start, uint64_t end)
{
	size_t len = end - start;
	if (len > (1 << 20)) len = 1 << 20;
	unsigned char *buf = malloc(len);
	uint64_t found = 0;
	if (buf && mem_read(pid, start, buf, len) == 0)
		for (size_t i = 0; i + 1 < len && !found; i++)
			if (buf[i] == 0x0f && buf[i + 1] == 0x05) found = start + i;
	free(buf);
	return found;
}

uint64_t inj_find_syscall(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f) return 0;
	uint64_t found = 0;
	for (int pass = 0; pass < 2 && !found; pass++) {
		rewind(f);
		while (!found && fgets(line, sizeof line, f)) {
			unsigned long long s, e;
			char perms[8];
			if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) != 3 || perms[2] != 'x') continue;
			if (pass == 0 && !strstr(line, "[vdso]")) continue;
			if (strstr(line, "[vsyscall]")) continue;
			found = syscall_in(pid, s, e);
		}
	}
	fclose(f);
	return found;
}
