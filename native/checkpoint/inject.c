/* System calls made in a stopped thread (see inject.h). */
#define _GNU_SOURCE
#include "inject.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

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
	/* Calls queued before are made first, in order (their failure is told
	 * by whoever flushes them explicitly; here it only stops this call). */
	if (in->batch && inj_flush(in) != 0) return -ESRCH;
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
	inj_batch_stop(in);
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

/* ---- Batches ---- */

/* One call of a batch as the routine reads it (offsets fixed in its code). */
struct inj_op {
	int64_t nr, a[6], ret, flags;
	int32_t ref_arg, ref_from; /* ref_arg -1: no argument from an earlier result */
};
_Static_assert(sizeof(struct inj_op) == 80 && offsetof(struct inj_op, ret) == 56 && offsetof(struct inj_op, flags) == 64 &&
		       offsetof(struct inj_op, ref_arg) == 72 && offsetof(struct inj_op, ref_from) == 76,
	       "the batch routine's offsets");
_Static_assert(INJ_BATCH_MAX * sizeof(struct inj_op) + INJ_BATCH_POOL <= INJ_BATCH_BYTES, "the batch fits its scratch pages");

struct inj_batch {
	uint64_t code;
	struct inj_op op[INJ_BATCH_MAX];
	struct inj_why why[INJ_BATCH_MAX];
	char pool[INJ_BATCH_POOL];
	int n, failed;
	size_t pooled;
	long failed_rc;
};

/*
 * The routine, entered with rdi = the table, rsi = how many calls. It uses
 * registers only (the tracee's stack may be unmapped by the batch itself)
 * and stops at an int3: after the last call, or after the first failed
 * one that may not fail.
 */
__asm__(".pushsection .rodata\n"
	".globl inj_batch_code\n"
	".globl inj_batch_code_end\n"
	"inj_batch_code:\n"
	"	mov %rdi, %r12\n"       /* the call */
	"	mov %rdi, %r14\n"       /* the table */
	"	mov %rsi, %r13\n"       /* calls left */
	"1:	test %r13, %r13\n"
	"	jz 3f\n"
	"	movslq 72(%r12), %rax\n" /* ref_arg */
	"	test %rax, %rax\n"
	"	js 2f\n"
	"	movslq 76(%r12), %rdx\n" /* ref_from */
	"	imul $80, %rdx, %rdx\n"
	"	mov 56(%r14,%rdx), %rdx\n"
	"	mov %rdx, 8(%r12,%rax,8)\n"
	"2:	mov 0(%r12), %rax\n"
	"	mov 8(%r12), %rdi\n"
	"	mov 16(%r12), %rsi\n"
	"	mov 24(%r12), %rdx\n"
	"	mov 32(%r12), %r10\n"
	"	mov 40(%r12), %r8\n"
	"	mov 48(%r12), %r9\n"
	"	syscall\n"
	"	mov %rax, 56(%r12)\n"
	"	cmp $-4095, %rax\n"
	"	jb 4f\n"                  /* unsigned: not -4095..-1, succeeded */
	"	testb $1, 64(%r12)\n"     /* INJ_MAY_FAIL */
	"	jz 3f\n"
	"4:	add $80, %r12\n"
	"	dec %r13\n"
	"	jmp 1b\n"
	"3:	int3\n"
	"inj_batch_code_end:\n"
	".popsection\n");

int inj_batch_start(struct inj *in, uint64_t code)
{
	if (!in->batch && !(in->batch = malloc(sizeof *in->batch))) return -1;
	in->batch->code = code;
	in->batch->n = 0, in->batch->pooled = 0, in->batch->failed = -1;
	return 0;
}

void inj_batch_stop(struct inj *in)
{
	free(in->batch);
	in->batch = NULL;
}

static uint64_t table_at(const struct inj *in) { return in->scratch + INJ_BATCH_TABLE_OFF; }
static uint64_t pool_at(const struct inj *in) { return table_at(in) + INJ_BATCH_MAX * sizeof(struct inj_op); }

int inj_room(struct inj *in, int ops, size_t bytes)
{
	struct inj_batch *b = in->batch;
	if (b->failed >= 0) return -1; /* a failure stays until the next start */
	if (b->n + ops <= INJ_BATCH_MAX && b->pooled + bytes <= INJ_BATCH_POOL) return 0;
	return inj_flush(in);
}

uint64_t inj_bytes(struct inj *in, const void *buf, size_t len)
{
	struct inj_batch *b = in->batch;
	size_t padded = (len + 7) & ~(size_t)7; /* the structs a call reads stay aligned */
	/* Room for the call that reads them too: a flush between the bytes
	 * and their call would leave the call reading another batch's pool. */
	if (inj_room(in, 1, padded) != 0 || b->pooled + padded > INJ_BATCH_POOL) return 0;
	memcpy(b->pool + b->pooled, buf, len);
	uint64_t at = pool_at(in) + b->pooled;
	b->pooled += padded;
	return at;
}

int inj_queue6(struct inj *in, const struct inj_why *why, int flags, long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	struct inj_batch *b = in->batch;
	if (inj_room(in, 1, 0) != 0) return -1;
	b->why[b->n] = *why;
	b->op[b->n] = (struct inj_op){nr, {a1, a2, a3, a4, a5, a6}, 0, flags, -1, 0};
	return b->n++;
}

void inj_ref(struct inj *in, int op, int arg, int from)
{
	in->batch->op[op].ref_arg = arg;
	in->batch->op[op].ref_from = from;
}

/* Runs the routine over the table in the tracee until its int3. */
static int run_batch(struct inj *in, int n)
{
	struct user_regs_struct r = in->regs;
	r.rip = in->batch->code, r.rdi = table_at(in), r.rsi = (uint64_t)n, r.orig_rax = -1;
	if (trace_setregs(in->tid, &r) != 0 || ptrace(PTRACE_CONT, in->tid, 0, 0) != 0) return -1;
	for (;;) {
		int st;
		if (waitpid(in->tid, &st, __WALL) < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		if (!WIFSTOPPED(st)) return -1;
		int event = st >> 16, sig = WSTOPSIG(st);
		if (sig == SIGTRAP && !event) return 0; /* the int3: not delivered, the next resume drops it */
		if (event != PTRACE_EVENT_STOP) {
			fprintf(stderr, "appshot: thread %d stopped by signal %d while system calls were made in it\n", in->tid, sig);
			return -1;
		}
		if (ptrace(PTRACE_CONT, in->tid, 0, 0) != 0) return -1;
	}
}

int inj_flush(struct inj *in)
{
	struct inj_batch *b = in->batch;
	int n = b->n;
	if (b->failed >= 0) return -1;
	if (!n) return 0;
	b->n = 0;
	size_t table = (size_t)n * sizeof *b->op;
	in->called = 1;

	if (mem_write(in->tid, table_at(in), b->op, table) != 0 || (b->pooled && mem_write(in->tid, pool_at(in), b->pool, b->pooled) != 0) ||
	    run_batch(in, n) != 0 || mem_read(in->tid, table_at(in), b->op, table) != 0) {
		b->failed = 0, b->failed_rc = -ESRCH;
		return -1;
	}
	b->pooled = 0;
	for (int i = 0; i < n; i++) {
		struct inj_op *o = &b->op[i];
		int error = (uint64_t)o->ret >= (uint64_t)-4095;
		if ((error && !(o->flags & INJ_MAY_FAIL)) || (!error && b->why[i].want && o->ret != b->why[i].want)) {
			b->failed = i, b->failed_rc = error ? (long)o->ret : -EIO;
			return -1;
		}
	}
	return 0;
}

const struct inj_why *inj_batch_failed(const struct inj *in, long *rc)
{
	if (!in->batch || in->batch->failed < 0) return NULL;
	*rc = in->batch->failed_rc;
	return &in->batch->why[in->batch->failed];
}

int inj_flush_or_say(struct inj *in, char *err, size_t errlen)
{
	if (inj_flush(in) == 0) return 0;
	long rc = -ESRCH;
	const struct inj_why *w = inj_batch_failed(in, &rc);
	snprintf(err, errlen, "%s failed: %s", w ? w->what : "a system call", rc == -ESRCH ? "the stub could not be driven" : strerror((int)-rc));
	return -1;
}
