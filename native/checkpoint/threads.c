/* One thread's state, captured and restored (see threads.h). */
#define _GNU_SOURCE
#include "threads.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"

#define XSTATE_MAX 16384
#define XSTATE_BV_AT 512   /* the XSAVE header's feature bitmap */

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
/* The kernel's answer to PTRACE_GET_RSEQ_CONFIGURATION. */
struct rseq_config {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size, signature, flags, pad;
};

/* The kernel's stack_t and siginfo sizes on x86-64. */
struct kstack {
	uint64_t sp;
	int32_t flags, pad;
	uint64_t size;
};

static void read_comm(pid_t pid, pid_t tid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tid);
	FILE *f = fopen(path, "re");
	out[0] = 0;
	if (f) {
		if (fgets(out, (int)len, f)) out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
}

/* Signals queued on tid alone (shared: on the whole process), as hex
 * siginfo blobs, without taking them. */
cJSON *thread_pending(pid_t tid, int shared)
{
	cJSON *list = cJSON_CreateArray();
	siginfo_t si[16];
	for (uint64_t off = 0;; off += 16) {
		struct {
			uint64_t off;
			uint32_t flags;
			int32_t nr;
		} arg = {off, shared ? 1 : 0, 16};
		long n = ptrace(PTRACE_PEEKSIGINFO, tid, &arg, si);
		if (n <= 0) break;
		for (long i = 0; i < n; i++) {
			cJSON *o = cJSON_CreateObject();
			json_add_hex(o, "info", &si[i], sizeof si[i]);
			cJSON_AddItemToArray(list, o);
		}
		if (n < 16) break;
	}
	return list;
}

/* What only the thread itself can say, asked by calls made in it. */
static int capture_by_calls(struct inj *in, cJSON *t, char *err, size_t errlen)
{
	uint64_t tidaddr = 0;
	struct kstack ss = {0};
	long r1 = inj_call(in, SYS_prctl, PR_GET_TID_ADDRESS, in->scratch);
	if (r1 == 0) inj_get(in, 0, &tidaddr, sizeof tidaddr);
	long r2 = inj_call(in, SYS_sigaltstack, 0, in->scratch + 64);
	if (r2 == 0) inj_get(in, 64, &ss, sizeof ss);
	if (r1 == -ESRCH || r2 == -ESRCH) {
		snprintf(err, errlen, "thread %d could not be asked for its state (it died or was stopped by another signal)", in->tid);
		return -1;
	}
	json_add_addr(t, "tidaddr", tidaddr);
	cJSON *alt = cJSON_AddObjectToObject(t, "altstack");
	json_add_addr(alt, "sp", ss.sp);
	cJSON_AddNumberToObject(alt, "flags", ss.flags);
	json_add_addr(alt, "size", ss.size);
	return 0;
}

/* The signals pending on tid and its process, from /proc. */
static uint64_t pending_of(pid_t pid, pid_t tid)
{
	char path[64], line[256];
	uint64_t set = 0;
	snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
	FILE *f = fopen(path, "re");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "SigPnd:", 7) || !strncmp(line, "ShdPnd:", 7)) set |= strtoull(line + 7, NULL, 16);
	if (f) fclose(f);
	return set;
}

/* semop and epoll_wait answer any interruption with EINTR, the freeze's
 * too, which the program would then see. When no signal it could take is
 * pending, the EINTR was the freeze's: the call is marked to be made again
 * (ERESTARTNOHAND), in the image and in the thread when it is let go. */
static void undo_freeze_eintr(pid_t pid, struct inj *in)
{
	struct user_regs_struct *r = &in->regs;
	long nr = (long)r->orig_rax;
	if ((long)r->rax != -EINTR || (nr != SYS_semop && nr != SYS_semtimedop && nr != SYS_epoll_wait && nr != SYS_epoll_pwait && nr != 441 /* epoll_pwait2 */))
		return;
	if (pending_of(pid, in->tid) & ~in->mask) return; /* a real signal interrupted it */
	r->rax = (uint64_t)-514; /* ERESTARTNOHAND: no handler runs, so it restarts */
}

cJSON *thread_capture(pid_t pid, pid_t tid, uint64_t syscall_at, char *err, size_t errlen)
{
	cJSON *t = cJSON_CreateObject();
	cJSON_AddNumberToObject(t, "stid", tid);
	struct inj in;
	if (inj_begin(&in, tid, syscall_at, 0) != 0) {
		snprintf(err, errlen, "thread %d cannot be read: %s", tid, strerror(errno));
		goto bad;
	}
	undo_freeze_eintr(pid, &in);
	json_add_hex(t, "regs", &in.regs, sizeof in.regs);
	json_add_addr(t, "sigmask", in.mask);
	static uint8_t xs[XSTATE_MAX] __attribute__((aligned(64)));
	size_t xlen = sizeof xs;
	if (trace_getxstate(tid, xs, &xlen) != 0) {
		snprintf(err, errlen, "thread %d's vector registers cannot be read: %s", tid, strerror(errno));
		goto bad_end;
	}
	json_add_hex(t, "xstate", xs, xlen);
	struct rseq_config rc = {0};
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, (void *)sizeof rc, &rc) > 0 && rc.rseq_abi_pointer) {
		cJSON *r = cJSON_AddObjectToObject(t, "rseq");
		json_add_addr(r, "addr", rc.rseq_abi_pointer);
		cJSON_AddNumberToObject(r, "len", rc.rseq_abi_size);
		json_add_addr(r, "sig", rc.signature);
	}
	uint64_t head = 0;
	size_t hlen = 0;
	if (syscall(SYS_get_robust_list, tid, &head, &hlen) == 0) {
		cJSON *r = cJSON_AddObjectToObject(t, "robust");
		json_add_addr(r, "head", head);
		cJSON_AddNumberToObject(r, "len", (double)hlen);
	}
	cJSON_AddItemToObject(t, "pending", thread_pending(tid, 0));
	char comm[32];
	read_comm(pid, tid, comm, sizeof comm);
	cJSON_AddStringToObject(t, "comm", comm);
	if (capture_by_calls(&in, t, err, errlen) != 0) goto bad_end;
	if (inj_end(&in) != 0) {
		snprintf(err, errlen, "thread %d could not be put back after it was read", tid);
		goto bad;
	}
	return t;
bad_end:
	inj_end(&in);
bad:
	cJSON_Delete(t);
	return NULL;
}

long thread_tcb_tid_offset(pid_t pid, const cJSON *threads)
{
	enum { SPAN = 1024 };
	int n = cJSON_GetArraySize(threads);
	if (n == 0) return -1;
	static uint32_t words[64][SPAN / 4];
	if (n > 64) n = 64;
	for (int i = 0; i < n; i++) {
		const cJSON *t = cJSON_GetArrayItem(threads, i);
		struct user_regs_struct r;
		if (json_hex(t, "regs", &r, sizeof r) != sizeof r || !r.fs_base || mem_read(pid, r.fs_base, words[i], SPAN) != 0) return -1;
		/* Only a C library's thread block (x86-64 TLS: the block points
		 * at itself at 0 and 16): any other program's TLS is left alone. */
		uint64_t self0, self16;
		memcpy(&self0, &words[i][0], 8), memcpy(&self16, &words[i][4], 8);
		if (self0 != r.fs_base || self16 != r.fs_base) return -1;
	}
	for (int w = 0; w < SPAN / 4; w++) {
		int all = 1;
		for (int i = 0; i < n && all; i++) all = words[i][w] == (uint32_t)json_int(cJSON_GetArrayItem(threads, i), "stid");
		if (all) return w * 4;
	}
	return -1;
}

static int failed(char *err, size_t errlen, const char *what, long rc)
{
	snprintf(err, errlen, "%s failed: %s", what, rc == -ESRCH ? "the stub could not be driven" : strerror((int)-rc));
	return -1;
}

/* Queues a call of the restore's batch (inject.h); its why is what. */
#define QUEUE(in, what, ...) inj_queue(in, (&(struct inj_why){what, 0, NULL}), 0, __VA_ARGS__)

/* Re-queues each saved signal on the thread (or the process), from inside,
 * which lets a signal keep the si_code it was sent with. */
static int requeue(struct inj *in, pid_t tgid, const cJSON *pending, int shared, char *err, size_t errlen)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, pending)
	{
		siginfo_t si;
		if (json_hex(p, "info", &si, sizeof si) != sizeof si) continue;
		uint64_t at = inj_bytes(in, &si, sizeof si);
		int q = shared ? QUEUE(in, "re-queueing a pending signal", SYS_rt_sigqueueinfo, tgid, si.si_signo, at)
			       : QUEUE(in, "re-queueing a pending signal", SYS_rt_tgsigqueueinfo, tgid, in->tid, si.si_signo, at);
		if (!at || q < 0) return inj_flush_or_say(in, err, errlen) ? -1 : failed(err, errlen, "re-queueing a pending signal", -ESRCH);
	}
	return 0;
}

int thread_restore_pending(struct inj *in, pid_t tgid, const cJSON *pending, int shared, char *err, size_t errlen)
{
	return requeue(in, tgid, pending, shared, err, errlen);
}

int thread_restore_state(struct inj *in, pid_t tgid, const cJSON *t, long tcb_tid_offset, char *err, size_t errlen)
{
	/* Queued: the caller flushes (inj_flush_or_say) with the calls after. */
	int bad = 0;
	const cJSON *robust = cJSON_GetObjectItem(t, "robust");
	if (robust) bad |= QUEUE(in, "set_robust_list", SYS_set_robust_list, json_addr(robust, "head"), json_int(robust, "len")) < 0;
	bad |= QUEUE(in, "set_tid_address", SYS_set_tid_address, json_addr(t, "tidaddr")) < 0;
	const cJSON *rseq = cJSON_GetObjectItem(t, "rseq");
	if (rseq) bad |= QUEUE(in, "rseq registration", SYS_rseq, json_addr(rseq, "addr"), json_int(rseq, "len"), 0, json_addr(rseq, "sig")) < 0;
	const cJSON *alt = cJSON_GetObjectItem(t, "altstack");
	if (alt) {
		struct kstack ss = {json_addr(alt, "sp"), (int32_t)json_int(alt, "flags") & ~SS_ONSTACK, 0, json_addr(alt, "size")};
		uint64_t at = ss.flags & SS_DISABLE ? 1 : inj_bytes(in, &ss, sizeof ss);
		bad |= !at || (!(ss.flags & SS_DISABLE) && QUEUE(in, "sigaltstack", SYS_sigaltstack, at, 0) < 0);
	}
	const char *comm = json_str(t, "comm");
	if (comm) {
		uint64_t at = inj_string(in, comm);
		bad |= !at || QUEUE(in, "naming the thread", SYS_prctl, PR_SET_NAME, at) < 0;
	}
	if (bad) return inj_flush_or_say(in, err, errlen) ? -1 : failed(err, errlen, "queueing the thread's calls", -ESRCH);
	if (requeue(in, tgid, cJSON_GetObjectItem(t, "pending"), 0, err, errlen) != 0) return -1;
	struct user_regs_struct r;
	if (tcb_tid_offset >= 0 && json_hex(t, "regs", &r, sizeof r) == sizeof r && r.fs_base) {
		uint32_t tid = (uint32_t)in->tid;
		if (mem_write(in->tid, r.fs_base + (uint64_t)tcb_tid_offset, &tid, sizeof tid) != 0) {
			snprintf(err, errlen, "glibc's cached thread id at 0x%llx cannot be written", (unsigned long long)(r.fs_base + tcb_tid_offset));
			return -1;
		}
	}
	return 0;
}

int thread_restore_regs(pid_t tid, const cJSON *t, char *err, size_t errlen)
{
	static uint8_t xs[XSTATE_MAX] __attribute__((aligned(64)));
	long xlen = json_hex(t, "xstate", xs, sizeof xs);
	struct user_regs_struct r;
	uint64_t mask = json_addr(t, "sigmask");
	if (xlen <= 0 || json_hex(t, "regs", &r, sizeof r) != sizeof r) {
		snprintf(err, errlen, "the image holds no registers for thread %lld", (long long)json_int(t, "stid"));
		return -1;
	}
	trace_restart_fixup(&r, 0);
	if (trace_setxstate(tid, xs, (size_t)xlen) != 0 || trace_setregs(tid, &r) != 0 || ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof mask, &mask) != 0) {
		snprintf(err, errlen, "the registers of thread %lld cannot be set: %s", (long long)json_int(t, "stid"), strerror(errno));
		return -1;
	}
	return 0;
}

static uint64_t xcr0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (uint64_t)hi << 32 | lo;
}

/* The names of the XSAVE state components (Intel SDM vol. 1, 13.1), for
 * a refusal a person can act on. */
static void xfeature_names(uint64_t bits, char *out, size_t len)
{
	static const char *const names[] = {"x87", "SSE", "AVX", "MPX", "MPX", "AVX-512", "AVX-512", "AVX-512", "PT", "PKRU", "PASID", "CET",
					    "CET", "HDC", "UINTR", "LBR", "HWP", "AMX", "AMX", "APX"};
	size_t at = 0;
	const char *last = "";
	out[0] = 0;
	for (int b = 0; b < 64 && at < len; b++) {
		if (!(bits >> b & 1)) continue;
		const char *name = b < (int)(sizeof names / sizeof *names) ? names[b] : "unknown";
		if (!strcmp(name, last) && strcmp(name, "unknown")) continue; /* one name for its several components */
		at += (size_t)snprintf(out + at, len - at, "%s%s", at ? ", " : "", name);
		last = name;
	}
}

int thread_check_xstate(const cJSON *t, char *err, size_t errlen)
{
	static uint8_t xs[XSTATE_MAX];
	long xlen = json_hex(t, "xstate", xs, sizeof xs);
	if (xlen < XSTATE_BV_AT + 8) {
		snprintf(err, errlen, "the saved vector registers of thread %lld are missing", (long long)json_int(t, "stid"));
		return -1;
	}
	uint64_t saved, lacking;
	memcpy(&saved, xs + XSTATE_BV_AT, 8);
	if ((lacking = saved & ~xcr0())) {
		char names[200];
		xfeature_names(lacking, names, sizeof names);
		snprintf(err, errlen,
			 "its thread %lld uses processor register state this CPU or kernel does not have: %s (XSAVE features 0x%llx, this machine has 0x%llx); restore it on a machine with the same CPU features",
			 (long long)json_int(t, "stid"), names, (unsigned long long)lacking, (unsigned long long)xcr0());
		return -1;
	}
	return 0;
}
