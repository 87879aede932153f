/* Calls that do not pass through the wrappers: raw system calls (syscall(),
 * an inline `syscall` instruction), glibc's internal calls, and libraries
 * bound straight to libc (RTLD_DEEPBIND: PHP's extensions). A seccomp
 * filter traps the translated system calls (SECCOMP_RET_TRAP) when their
 * instruction lies in the code this process had mapped at start, other than
 * the shim's: the program, libc, ld.so and the libraries loaded with them.
 * The SIGSYS handler below completes the call through the wrappers'
 * translation and puts the kernel's answer in the interrupted RAX.
 *
 * Why ranges, not "all but the shim": a filter survives exec and cannot be
 * removed. After exec the ranges name nothing of the new program (ASLR), so
 * a static or set-user-ID program started later, with no shim and no
 * handler, is not killed by a stale filter; a new shim installs its own.
 *
 * SIGSYS must stay deliverable: a trapped call with SIGSYS blocked kills
 * the process. glibc blocks every signal with its own rt_sigprocmask around
 * internal calls that are trapped (pthread_kill: getpid and tgkill; the
 * posix_spawn child's setpgid; abort's raise), where no wrapper can reach.
 * So rt_sigprocmask from libc that may block is trapped too, and the
 * handler applies the new mask to the interrupted context without SIGSYS,
 * keeping the thread's view of it (trap_view_sigsys).
 *
 * ld.so's own getpid is trapped too: it prefixes each line of LD_DEBUG
 * with it, and a lazy binding (_dl_fixup) prints one. The handler's way to
 * getpid's answer must therefore bind nothing: a call through the PLT
 * not bound yet would make ld.so print, trap, and come back here for the
 * same binding, until the stack ran out (every program died of SIGSEGV
 * under LD_DEBUG=bindings). So errno is reached through a GOT entry bound
 * at load (below) and the getpid wrapper called by its hidden name
 * (pid_getpid). The other calls may bind: ld.so's getpid in that binding
 * comes back here once and ends. */
#define _GNU_SOURCE
#include "trap.h"
#include "shim.h"
#include "real.h"
#include "pid.h"
#include "memory.h"
#include "../core/rawcall.h"

#include <errno.h>
#include <link.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

/* errno's location through the GOT, bound when the shim is loaded, not
 * lazily through the PLT: on_sigsys saves errno on every trap (above). */
extern int *__errno_location(void) __attribute__((noplt));

int trap_on;

/* The filter's SECCOMP_RET_DATA, which the kernel puts in si_errno: tells
 * the shim's traps from those of a filter the program installed. */
#define TRAP_MARK 0x5a7
/* The second filter's, in a process whose memory is mapped from an image
 * (memory.c). */
#define MEMORY_MARK 0x5a8
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a seccomp trap */
#endif

/* ---------------------------------------------------------------- the filter */

/* The trapped numbers (in any order: the filter finds a number by a search,
 * build_filter), each with the test that decides whether the call's
 * instruction is looked at: sendto and recvfrom only with an address, and
 * the others below. */
enum cond { ALWAYS, ADDR_ARG4, PRIO_WHICH, MAY_BLOCK, ARG0_SIGSYS };
static const struct {
	int nr;
	enum cond cond;
} trapped[] = {
	{ SYS_semop, ALWAYS }, { SYS_semctl, ALWAYS }, { SYS_msgsnd, ALWAYS }, { SYS_msgrcv, ALWAYS },
	{ SYS_sendto, ADDR_ARG4 }, { SYS_recvfrom, ADDR_ARG4 }, { SYS_semtimedop, ALWAYS }, { SYS_shmat, ALWAYS },
	{ SYS_shmdt, ALWAYS }, { SYS_kill, ALWAYS }, { SYS_tgkill, ALWAYS }, { SYS_getpid, ALWAYS },
	{ SYS_gettid, ALWAYS }, { SYS_rt_sigprocmask, MAY_BLOCK }, { SYS_rt_sigaction, ARG0_SIGSYS },
	{ SYS_wait4, ALWAYS }, { SYS_waitid, ALWAYS }, { SYS_getppid, ALWAYS }, { SYS_semget, ALWAYS },
	{ SYS_shmget, ALWAYS }, { SYS_shmctl, ALWAYS }, { SYS_msgget, ALWAYS }, { SYS_msgctl, ALWAYS },
	{ SYS_getpgid, ALWAYS }, { SYS_getpgrp, ALWAYS }, { SYS_getsid, ALWAYS }, { SYS_setpgid, ALWAYS },
	{ SYS_tkill, ALWAYS }, { SYS_rt_sigqueueinfo, ALWAYS }, { SYS_rt_tgsigqueueinfo, ALWAYS }, { SYS_fork, ALWAYS },
	{ SYS_vfork, ALWAYS }, { SYS_bind, ALWAYS }, { SYS_connect, ALWAYS }, { SYS_listen, ALWAYS },
	{ SYS_getsockname, ALWAYS }, { SYS_getpeername, ALWAYS }, { SYS_accept, ALWAYS }, { SYS_accept4, ALWAYS },
	{ SYS_sched_setaffinity, ALWAYS }, { SYS_sched_getaffinity, ALWAYS }, { SYS_sched_setscheduler, ALWAYS },
	{ SYS_sched_getscheduler, ALWAYS }, { SYS_sched_setparam, ALWAYS }, { SYS_sched_getparam, ALWAYS },
	{ SYS_sched_rr_get_interval, ALWAYS }, { SYS_sched_setattr, ALWAYS }, { SYS_sched_getattr, ALWAYS },
	{ SYS_prlimit64, ALWAYS }, { SYS_capget, ALWAYS }, { SYS_capset, ALWAYS }, { SYS_getpriority, PRIO_WHICH },
	{ SYS_setpriority, PRIO_WHICH }, { SYS_ioprio_get, ALWAYS }, { SYS_ioprio_set, ALWAYS },
	{ SYS_pidfd_open, ALWAYS }, { SYS_pidfd_send_signal, ALWAYS }, { SYS_process_vm_readv, ALWAYS },
	{ SYS_process_vm_writev, ALWAYS }, { SYS_kcmp, ALWAYS }, { SYS_get_robust_list, ALWAYS },
};
#define N_TRAPPED (sizeof trapped / sizeof trapped[0])

/* A part of an executable mapping within one 4 GiB-aligned window: the
 * filter's A register holds 32 bits, so the instruction pointer is tested
 * as its high word (hi) and a low-word range [lo, end); end 0 is 2^32. */
struct piece {
	uint32_t hi, lo, end;
};

#define MAX_PIECES 512
#define MAX_INSNS 4096

/* n before insn: a program of a few hundred instructions writes one
 * page of the array, not also its last. */
struct program {
	unsigned n;
	int overflow;
	struct sock_filter insn[MAX_INSNS];
};

static void emit(struct program *p, uint16_t code, uint32_t k, unsigned jt, unsigned jf)
{
	if (p->n >= MAX_INSNS || jt > 255 || jf > 255) {
		p->overflow = 1;
		return;
	}
	p->insn[p->n++] = (struct sock_filter)BPF_JUMP(code, k, (uint8_t)jt, (uint8_t)jf);
}

#define LD_ABS(p, off) emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)(off), 0, 0)
#define RET(p, v) emit(p, BPF_RET | BPF_K, (v), 0, 0)
#define ALLOW SECCOMP_RET_ALLOW
#define TRAP (SECCOMP_RET_TRAP | TRAP_MARK)
#define MEMORY_TRAP (SECCOMP_RET_TRAP | MEMORY_MARK)
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (ARG_LO(i) + 4)
#define IP_LO offsetof(struct seccomp_data, instruction_pointer)
#define IP_HI (IP_LO + 4)

/* Pieces sorted by address, highest first: a test that finds the
 * instruction above a piece knows it is above every later one too. */
static int by_address_down(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;
	if (x->hi != y->hi) return x->hi < y->hi ? 1 : -1;
	return x->lo < y->lo ? 1 : x->lo > y->lo ? -1 : 0;
}

/* The shim's own text, which no piece covers (executable_pieces). */
static uintptr_t shim_text_start, shim_text_end;

/* The shim's own instruction, allowed in six instructions before the
 * pieces are walked: every translated call of the program is one such call,
 * which runs the filter (the answer is the same without this test, which
 * only makes it short). Left out when the text crosses a 4 GiB window. */
static void emit_shim_test(struct program *p)
{
	uint32_t hi = (uint32_t)(shim_text_start >> 32), lo = (uint32_t)shim_text_start, end = (uint32_t)shim_text_end;
	if (!shim_text_end || (shim_text_end - 1) >> 32 != hi) return;
	LD_ABS(p, IP_HI);
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, hi, 0, end ? 4 : 3); /* else on to the pieces */
	LD_ABS(p, IP_LO);
	if (end) emit(p, BPF_JMP | BPF_JGE | BPF_K, end, 2, 0); /* above: on to the pieces */
	emit(p, BPF_JMP | BPF_JGE | BPF_K, lo, 0, 1);
	RET(p, ALLOW);
}

/* The instruction-pointer test: trap (the filter's TRAP value) if it lies
 * in a piece, else ALLOW. Per high word present: one test, then its pieces
 * from the top; a call from elsewhere (the shim, a later library, another
 * program after exec) costs a few instructions per high word. */
static void emit_ip_test(struct program *p, struct piece *pc, unsigned n, uint32_t trap)
{
	emit_shim_test(p);
	LD_ABS(p, IP_HI);
	emit(p, BPF_ST, 0, 0, 0);
	LD_ABS(p, IP_LO);
	emit(p, BPF_ST, 1, 0, 0);
	for (unsigned i = 0; i < n;) {
		unsigned j = i;
		while (j < n && pc[j].hi == pc[i].hi && j - i < 80) j++;
		unsigned group = j - i;
		emit(p, BPF_LD | BPF_MEM, 0, 0, 0);
		/* not this high word: on to the next group */
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, pc[i].hi, 0, 1 + 3 * group + 1);
		emit(p, BPF_LD | BPF_MEM, 1, 0, 0);
		for (unsigned k = i; k < j; k++) {
			unsigned left = 3 * (j - k - 1); /* instructions after this piece's three */
			if (pc[k].end) /* at or above the end: above every later piece */
				emit(p, BPF_JMP | BPF_JGE | BPF_K, pc[k].end, 2 + left, 0);
			else
				emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
			emit(p, BPF_JMP | BPF_JGE | BPF_K, pc[k].lo, 0, 1);
			RET(p, trap);
		}
		/* The group's ALLOW: reached by "above", or below its last piece.
		 * A group cut at 80 pieces goes on to the next group instead. */
		if (j < n && pc[j].hi == pc[i].hi) emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
		else RET(p, ALLOW);
		i = j;
	}
	RET(p, ALLOW);
}

/* Jumps to labels, resolved once the program is written: a label is an
 * instruction index known later. Conditional jumps reach 255 ahead. The
 * number search (emit_search) makes labels of its own, after N_LABELS. */
enum label { NEXT, L_ALLOW, L_PASS, L_ADDR_ARG4, L_PRIO_WHICH, L_MAY_BLOCK, L_ARG0_SIGSYS, L_IP, N_LABELS };
/* The search has at most 2 * N_TRAPPED + 1 intervals, one jump and at most
 * one label each. */
#define MAX_INTERVALS (2 * N_TRAPPED + 1)
static unsigned label_at[N_LABELS + MAX_INTERVALS], n_labels;
static struct fixup {
	unsigned insn, jt, jf;
} fixups[MAX_INTERVALS + 16];
static unsigned n_fixups;

static void jump(struct program *p, uint16_t code, uint32_t k, unsigned jt, unsigned jf)
{
	fixups[n_fixups++] = (struct fixup){ p->n, jt, jf };
	emit(p, BPF_JMP | code | BPF_K, k, 0, 0);
}

static void place(struct program *p, unsigned l) { label_at[l] = p->n; }

static unsigned new_label(void) { return n_labels++; }

static void resolve(struct program *p)
{
	for (unsigned i = 0; i < n_fixups; i++) {
		struct fixup f = fixups[i];
		unsigned jt = f.jt == NEXT ? 0 : label_at[f.jt] - f.insn - 1;
		unsigned jf = f.jf == NEXT ? 0 : label_at[f.jf] - f.insn - 1;
		if (jt > 255 || jf > 255) p->overflow = 1;
		p->insn[f.insn].jt = (uint8_t)jt;
		p->insn[f.insn].jf = (uint8_t)jf;
	}
}

static const enum label cond_label[] = { [ALWAYS] = L_IP, [ADDR_ARG4] = L_ADDR_ARG4,
					 [PRIO_WHICH] = L_PRIO_WHICH, [MAY_BLOCK] = L_MAY_BLOCK,
					 [ARG0_SIGSYS] = L_ARG0_SIGSYS };

/* The system call numbers as intervals [from, the next one's from), each
 * with the label its numbers go to: runs of trapped numbers with one test,
 * and the gaps between them (L_ALLOW). The last one, up to 2^32, is a gap:
 * x32 numbers (bit 30 set) and anything above the trapped are allowed. */
struct interval {
	uint32_t from;
	unsigned label;
};

static unsigned number_intervals(struct interval *iv)
{
	struct interval t[N_TRAPPED]; /* the trapped numbers, sorted */
	for (unsigned i = 0; i < N_TRAPPED; i++) {
		struct interval x = { (uint32_t)trapped[i].nr, cond_label[trapped[i].cond] };
		unsigned j = i;
		for (; j > 0 && t[j - 1].from > x.from; j--) t[j] = t[j - 1];
		t[j] = x;
	}
	unsigned n = 0;
	uint32_t end = 0; /* one past the last trapped number so far */
	iv[n++] = (struct interval){ 0, L_ALLOW };
	for (unsigned i = 0; i < N_TRAPPED; i++) {
		if (t[i].from > end && iv[n - 1].label != L_ALLOW) iv[n++] = (struct interval){ end, L_ALLOW };
		if (iv[n - 1].label != t[i].label) {
			if (iv[n - 1].from == t[i].from) n--; /* an empty gap */
			iv[n++] = t[i];
		}
		end = t[i].from + 1;
	}
	iv[n++] = (struct interval){ end, L_ALLOW };
	return n;
}

/* Where the search over intervals lo..hi splits them: the interval that
 * holds semop (with semget..msgctl, the numbers the shim makes on the
 * program's every translated SysV call, each of which runs the filter)
 * stands alone near the top, two tests in; elsewhere in the middle. */
static unsigned split(unsigned lo, unsigned hi, unsigned hot)
{
	if (hot >= lo && hot <= hi) return hot > lo ? hot : hot + 1;
	return (lo + hi + 1) / 2;
}

/* The binary search for the number (in A) over intervals lo..hi, lo < hi:
 * a JGE at the split, the lower part right after it, the upper part at a
 * label of its own; a part of one interval is its label. Three intervals
 * whose middle one is a single number between two of one label are one
 * JEQ. */
static void emit_search(struct program *p, const struct interval *iv, unsigned lo, unsigned hi, unsigned hot)
{
	if (hi - lo == 2 && iv[lo].label == iv[hi].label && iv[hi].from - iv[lo + 1].from == 1) {
		jump(p, BPF_JEQ, iv[lo + 1].from, iv[lo + 1].label, iv[lo].label);
		return;
	}
	unsigned mid = split(lo, hi, hot);
	unsigned upper = mid == hi ? iv[hi].label : new_label();
	jump(p, BPF_JGE, iv[mid].from, upper, mid - 1 == lo ? iv[lo].label : NEXT);
	if (mid - 1 > lo) emit_search(p, iv, lo, mid - 1, hot);
	if (mid < hi) {
		place(p, upper);
		emit_search(p, iv, mid, hi, hot);
	}
}

/* The interval that holds nr. */
static unsigned interval_of(const struct interval *iv, unsigned n, uint32_t nr)
{
	unsigned i = 0;
	while (i + 1 < n && iv[i + 1].from <= nr) i++;
	return i;
}

/* Per trapped number, a jump to its test; numbers with a condition on an
 * argument test it first. Every other number is allowed on its number and
 * architecture alone, which the kernel caches: their calls never run the
 * filter.
 *
 * The number is found by a binary search, not a list of tests: at install
 * the kernel fills that cache by running the filter once for every number
 * of both architectures, and with a list of the 61 numbers that was ~30,000
 * emulated instructions, 100-150 us of every program's start here; with the
 * search ~11 a number. */
static void build_filter(struct program *p, struct piece *pc, unsigned n)
{
	struct interval iv[MAX_INTERVALS];
	unsigned n_iv = number_intervals(iv);
	n_fixups = 0;
	n_labels = N_LABELS;
	LD_ABS(p, offsetof(struct seccomp_data, arch));
	jump(p, BPF_JEQ, AUDIT_ARCH_X86_64, NEXT, L_ALLOW);
	LD_ABS(p, offsetof(struct seccomp_data, nr));
	emit_search(p, iv, 0, n_iv - 1, interval_of(iv, n_iv, SYS_semop));
	place(p, L_ALLOW);
	RET(p, ALLOW);
	/* sendto and recvfrom name a port only with an address (fifth argument). */
	place(p, L_ADDR_ARG4);
	LD_ABS(p, ARG_LO(4));
	jump(p, BPF_JEQ, 0, NEXT, L_IP);
	LD_ABS(p, ARG_HI(4));
	jump(p, BPF_JEQ, 0, L_PASS, L_IP);
	/* getpriority, setpriority: PRIO_PROCESS (0) and PRIO_PGRP (1) name
	 * PIDs, PRIO_USER a user. */
	place(p, L_PRIO_WHICH);
	LD_ABS(p, ARG_LO(0));
	jump(p, BPF_JGT, 1, L_PASS, L_IP);
	/* rt_sigprocmask that may block: SIG_BLOCK or SIG_SETMASK with a set.
	 * A query or SIG_UNBLOCK cannot block SIGSYS. */
	place(p, L_MAY_BLOCK);
	LD_ABS(p, ARG_LO(0));
	jump(p, BPF_JEQ, SIG_UNBLOCK, L_PASS, NEXT);
	LD_ABS(p, ARG_LO(1));
	jump(p, BPF_JEQ, 0, NEXT, L_IP);
	LD_ABS(p, ARG_HI(1));
	jump(p, BPF_JEQ, 0, L_PASS, L_IP);
	/* rt_sigaction of SIGSYS, which is the trap's: a runtime that sets its
	 * handlers with its own system call (Go) would take it. */
	place(p, L_ARG0_SIGSYS);
	LD_ABS(p, ARG_LO(0));
	jump(p, BPF_JEQ, SIGSYS, L_IP, L_PASS);
	place(p, L_PASS); /* jumps go forward only: a second ALLOW */
	RET(p, ALLOW);
	place(p, L_IP);
	emit_ip_test(p, pc, n, TRAP);
	resolve(p);
}

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/* The second filter (memory.c): madvise giving memory back, and mremap,
 * from the same code as the first. Every other number is allowed on its
 * number alone (the kernel's cache: never run). */
static void build_memory_filter(struct program *p, struct piece *pc, unsigned n)
{
	LD_ABS(p, offsetof(struct seccomp_data, arch));               /* 0 */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 7);   /* 1: else 9 */
	LD_ABS(p, offsetof(struct seccomp_data, nr));                 /* 2 */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_mremap, 6, 0);          /* 3: 10 */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, 4);         /* 4: else 9 */
	LD_ABS(p, ARG_LO(2)); /* 5: the advice, an int */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, MADV_DONTNEED, 3, 0);       /* 6: 10 */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, MADV_FREE, 2, 0);           /* 7: 10 */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, MADV_DONTNEED_LOCKED, 1, 0); /* 8: 10 */
	RET(p, ALLOW);                                                /* 9 */
	emit_ip_test(p, pc, n, MEMORY_TRAP);                          /* 10 */
}

/* ------------------------------------------------------- what is trapped */

/* The shim's own code, and a `syscall; ret` stub on a page of its own.
 * Filters outlive exec: an ancestor's filter traps by the ancestor's
 * address ranges, which after ASLR may by chance cover this shim's text
 * (a few in 10^5 execs). Its own calls would then be trapped and, made
 * again from the handler, trapped forever; the handler makes them, as they
 * are, from the stub instead, whose anonymous page no filter lists.
 *
 * Made when first needed, in the handler: a page and two system calls
 * (10-15 us with the page's first touch) that every other program's start
 * would pay for nothing. */
typedef long (*stub_fn)(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
static stub_fn syscall_stub;

/* The stub, made at the first call that needs it, in any thread; NULL when
 * no executable page can be had (the rare case then stays unhandled). Only
 * system calls no filter of appshot's traps (mmap, mprotect, munmap): safe
 * in the SIGSYS handler, and on the trapped calls' path. */
static stub_fn get_syscall_stub(void)
{
	static const unsigned char code[] = {
		0x48, 0x89, 0xf8,             /* mov rax, rdi */
		0x48, 0x89, 0xf7,             /* mov rdi, rsi */
		0x48, 0x89, 0xd6,             /* mov rsi, rdx */
		0x48, 0x89, 0xca,             /* mov rdx, rcx */
		0x4d, 0x89, 0xc2,             /* mov r10, r8 */
		0x4d, 0x89, 0xc8,             /* mov r8, r9 */
		0x4c, 0x8b, 0x4c, 0x24, 0x08, /* mov r9, [rsp + 8] */
		0x0f, 0x05,                   /* syscall */
		0xc3,                         /* ret */
	};
	stub_fn stub = __atomic_load_n(&syscall_stub, __ATOMIC_ACQUIRE);
	if (stub) return stub;
	long page = raw_call_kernel(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page < 0) return NULL;
	__builtin_memcpy((void *)page, code, sizeof code);
	if (raw_call_kernel(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC)) {
		raw_call_kernel(SYS_munmap, page, 4096); /* no executable memory allowed */
		return NULL;
	}
	stub_fn made = (stub_fn)page;
	if (__atomic_compare_exchange_n(&syscall_stub, &stub, made, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return made;
	raw_call_kernel(SYS_munmap, page, 4096); /* another thread's came first */
	return stub;
}

/* The executable, file-backed mappings of this process now, other than the
 * shim's, as pieces. Left out: the vDSO and anything unnamed, and code
 * below 4 GiB, where a program built without PIE sits at a fixed address
 * that a static program exec'd later would share (its inline system calls
 * go untrapped; its calls through libc are trapped).
 *
 * At the shim's start those are the executable segments of the loaded
 * objects (the program, ld.so, the libraries, the vDSO), which
 * dl_iterate_phdr lists without the 100-120 us of reading and parsing
 * /proc/self/maps. A segment is mapped from the file over its whole pages
 * up to the end of its file part; what lies beyond (zero-filled) is
 * anonymous, and a later segment mapped over its last page takes that page
 * (the loaders map them in order). */
struct piece_walk {
	struct piece *pc;
	unsigned n, max;
	uintptr_t self, vdso;
};

/* [start, end) as pieces, one per 4 GiB window it touches. */
static void add_pieces(struct piece_walk *w, uintptr_t start, uintptr_t end)
{
	for (uintptr_t s = start; s < end && w->n < w->max;) {
		uintptr_t window_end = (s | 0xffffffffUL) + 1, e = end < window_end ? end : window_end;
		w->pc[w->n++] = (struct piece){ (uint32_t)(s >> 32), (uint32_t)s, (uint32_t)e };
		s = e;
	}
}

static int object_pieces(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct piece_walk *w = data;
	const ElfW(Phdr) *ph = info->dlpi_phdr;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X) || !ph[i].p_filesz) continue;
		uintptr_t start = page_down(info->dlpi_addr + ph[i].p_vaddr);
		uintptr_t end = page_up(info->dlpi_addr + ph[i].p_vaddr + ph[i].p_filesz);
		for (unsigned j = i + 1; j < info->dlpi_phnum; j++) {
			if (ph[j].p_type != PT_LOAD) continue;
			uintptr_t next = page_down(info->dlpi_addr + ph[j].p_vaddr);
			if (next < end) end = next > start ? next : start;
			break;
		}
		if (w->self >= start && w->self < end) {
			shim_text_start = start, shim_text_end = end;
			continue;
		}
		if (w->vdso >= start && w->vdso < end) continue;
		if (start >= (1UL << 32)) add_pieces(w, start, end);
	}
	return 0;
}

static unsigned executable_pieces(struct piece *pc, unsigned max)
{
	struct piece_walk w = { pc, 0, max, (uintptr_t)&trap_init, (uintptr_t)getauxval(AT_SYSINFO_EHDR) };
	dl_iterate_phdr(object_pieces, &w);
	qsort(pc, w.n, sizeof *pc, by_address_down);
	return w.n;
}

/* --------------------------------------------------------------- signals */

/* The program's SIGSYS action: the kernel's is the shim's while the trap is
 * on. A SIGSYS that is not the shim's trap goes to it. */
static struct sigaction program_sigsys;

/* Whether the program, in this thread, asked for SIGSYS blocked: it is
 * never blocked in the kernel, but the thread's mask shows it. */
static __thread int view_sigsys __attribute__((tls_model("initial-exec")));

#define SIGBIT(sig) (1ULL << ((sig) - 1))
/* glibc's internal signals: thread cancellation, and set*id across threads. */
#define SIGCANCEL __SIGRTMIN
#define SIGSETXID (__SIGRTMIN + 1)

/* sigprocmask and pthread_sigmask: the kernel's, with SIGSYS never blocked
 * in the kernel while the trap is on, but shown blocked to a thread that
 * asked for it; glibc's internal signals left alone, as glibc does.
 * Returns 0 or an errno value. */
static int change_mask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t want;
	int view = view_sigsys;
	if (set) {
		want = *set;
		/* By hand: glibc's sigdelset refuses its internal signals with
		 * EINVAL, and errno must stay as the program left it on success
		 * (PostgreSQL reads select's EINTR after its sigprocmask). */
		*(uint64_t *)&want &= ~(SIGBIT(SIGCANCEL) | SIGBIT(SIGSETXID));
		if (trap_on && sigismember(&want, SIGSYS)) {
			if (how == SIG_BLOCK || how == SIG_SETMASK) view = 1;
			else if (how == SIG_UNBLOCK) view = 0;
			if (how != SIG_UNBLOCK) sigdelset(&want, SIGSYS);
		} else if (how == SIG_SETMASK) {
			view = 0;
		}
	}
	long r = raw_call_kernel(SYS_rt_sigprocmask, how, set ? &want : NULL, old, 8);
	if (r < 0) return (int)-r;
	if (old && view_sigsys) sigaddset(old, SIGSYS);
	view_sigsys = view;
	return 0;
}

WRAPPER(sigprocmask)
{
	int e = change_mask(how, set, old);
	if (e) errno = e;
	return e ? -1 : 0;
}

WRAPPER(pthread_sigmask) { return change_mask(how, set, old); }

/* As glibc's (BSD semantics): the signal blocked while its handler runs,
 * interrupted calls restarted. Through the sigaction wrapper, so that
 * SIGSYS stays the trap's and siginfo handlers see vpids. */
WRAPPER(signal)
{
	struct sigaction act = { .sa_handler = handler, .sa_flags = SA_RESTART }, old;
	if (handler == SIG_ERR || sig <= 0 || sig >= _NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, sig);
	return sigaction(sig, &act, &old) < 0 ? SIG_ERR : old.sa_handler;
}

int trap_sigaction(int sig, const struct sigaction **act, struct sigaction *old, struct sigaction *fixed, int *r)
{
	if (!trap_on) return 0;
	if (sig == SIGSYS) {
		struct sigaction prev = program_sigsys;
		if (*act) program_sigsys = **act;
		if (old) *old = prev;
		*r = 0;
		return 1;
	}
	if (*act && sigismember(&(*act)->sa_mask, SIGSYS)) {
		*fixed = **act;
		sigdelset(&fixed->sa_mask, SIGSYS);
		*act = fixed;
	}
	return 0;
}

/* rt_sigprocmask as the kernel does it, on the interrupted context's mask,
 * which the return from the handler installs; SIGSYS kept out of it. */
static long sigprocmask_in(ucontext_t *uc, long how, const uint64_t *set, uint64_t *old, long size)
{
	if (size != 8) return -EINVAL;
	uint64_t *cur = (uint64_t *)&uc->uc_sigmask;
	uint64_t was = *cur | (view_sigsys ? SIGBIT(SIGSYS) : 0), want = was;
	if (set) {
		uint64_t s = *set;
		if (how == SIG_BLOCK) want = was | s;
		else if (how == SIG_UNBLOCK) want = was & ~s;
		else if (how == SIG_SETMASK) want = s;
		else return -EINVAL;
	}
	if (old) *old = was;
	want &= ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP));
	view_sigsys = (want & SIGBIT(SIGSYS)) != 0;
	*cur = want & ~SIGBIT(SIGSYS);
	return 0;
}

/* The kernel's struct sigaction (rt_sigaction's). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

/* rt_sigaction(SIGSYS) trapped: the program's action kept and shown as the
 * kernel would give it; the kernel's stays the shim's. */
static long sigsys_action_in(const struct kernel_sigaction *act, struct kernel_sigaction *old, long size)
{
	if (size != 8) return -EINVAL;
	struct kernel_sigaction k = { program_sigsys.sa_handler, (unsigned long)program_sigsys.sa_flags,
				      (void *)program_sigsys.sa_restorer, *(uint64_t *)&program_sigsys.sa_mask };
	if (act) {
		struct sigaction a = { .sa_flags = (int)act->flags, .sa_restorer = (void (*)(void))act->restorer };
		a.sa_handler = (__sighandler_t)act->handler;
		sigemptyset(&a.sa_mask);
		*(uint64_t *)&a.sa_mask = act->mask;
		program_sigsys = a;
	}
	if (old) *old = k;
	return 0;
}

/* SIGSYS back to the kernel's default, from the shim's own instruction
 * (libc's sigaction of SIGSYS is trapped). */
static void sigsys_default(void)
{
	struct kernel_sigaction dfl = { SIG_DFL, 0, NULL, 0 };
	raw_call(SYS_rt_sigaction, SIGSYS, &dfl, NULL, 8);
}

/* A SIGSYS not from the shim's filter (a bad system call, the program's own
 * filter): what the program's action says. */
static void program_sigsys_action(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction a = program_sigsys;
	if (a.sa_handler == SIG_IGN) return;
	if (a.sa_handler == SIG_DFL) {
		sigsys_default(); /* dies of it on return, as natively */
		raw_call(SYS_tgkill, shim_pid, raw_call(SYS_gettid), SIGSYS);
		return;
	}
	if (a.sa_flags & SA_RESETHAND) program_sigsys.sa_handler = SIG_DFL;
	if (a.sa_flags & SA_SIGINFO) a.sa_sigaction(sig, si, ctx);
	else a.sa_handler(sig);
}

/* ------------------------------------------------------ completing a call */

/* A wrapper's answer (-1 and errno) as the kernel gives it (-errno). */
static long kernel_answer(long r) { return r == -1 ? -errno : r; }

/* A PID argument of a call that takes 0 for the caller: translated when it
 * names a process (> 0); else as it is, for the kernel to judge. */
static int system_pid(long pid, long *out)
{
	pid_t s = (pid_t)pid;
	if ((pid_t)pid > 0 && pid_to_system((pid_t)pid, &s)) return -1;
	*out = s;
	return 0;
}

/* A siginfo the program built for rt_*sigqueueinfo or pidfd_send_signal:
 * libc fills si_pid with getpid(), the vpid, where the kernel's receiver
 * (and the shim in the receiver) expects the sender's kernel PID. */
static const siginfo_t *sender_as_system(const siginfo_t *info, siginfo_t *copy)
{
	if (!info) return info;
	*copy = *info;
	if (copy->si_pid == pid_getpid()) copy->si_pid = shim_pid;
	return copy;
}

/* capget and capset name the process in their header. */
static long capability_call(long nr, struct __user_cap_header_struct *h, void *data)
{
	struct __user_cap_header_struct sh = *h;
	long spid;
	if (system_pid(sh.pid, &spid)) return -errno;
	sh.pid = (int)spid;
	long r = raw_call_kernel(nr, &sh, data);
	h->version = sh.version; /* the kernel tells its version there */
	return r;
}

static long complete(long nr, long a[6], ucontext_t *uc)
{
	long s0, s1;
	siginfo_t copy;
	switch (nr) {
	case SYS_getpid:
		/* With SIGCANCEL or SIGSETXID blocked, which a program cannot
		 * do, this is glibc inside its own handler for them, comparing
		 * the sender's si_pid (the kernel's) with getpid, or inside
		 * pthread_kill, passing it to tgkill: the kernel's PID. */
		if (*(uint64_t *)&uc->uc_sigmask & (SIGBIT(SIGCANCEL) | SIGBIT(SIGSETXID))) return shim_pid;
		return pid_getpid();
	case SYS_gettid: return gettid();
	case SYS_getppid: return getppid();
	case SYS_getpgrp: return getpgrp();
	case SYS_getpgid: return kernel_answer(getpgid((pid_t)a[0]));
	case SYS_getsid: return kernel_answer(getsid((pid_t)a[0]));
	case SYS_setpgid: return kernel_answer(setpgid((pid_t)a[0], (pid_t)a[1]));
	case SYS_kill: return kernel_answer(kill((pid_t)a[0], (int)a[1]));
	case SYS_tgkill: return kernel_answer(tgkill((pid_t)a[0], (pid_t)a[1], (int)a[2]));
	case SYS_tkill:
		if (system_pid(a[0], &s0)) return -errno;
		return raw_call_kernel(nr, s0, a[1]);
	case SYS_rt_sigqueueinfo:
		if (system_pid(a[0], &s0)) return -errno;
		return raw_call_kernel(nr, s0, a[1], sender_as_system((siginfo_t *)a[2], &copy));
	case SYS_rt_tgsigqueueinfo:
		if (system_pid(a[0], &s0) || system_pid(a[1], &s1)) return -errno;
		return raw_call_kernel(nr, s0, s1, a[2], sender_as_system((siginfo_t *)a[3], &copy));
	case SYS_pidfd_send_signal:
		return raw_call_kernel(nr, a[0], a[1], sender_as_system((siginfo_t *)a[2], &copy), a[3]);
	case SYS_wait4: return kernel_answer(wait4((pid_t)a[0], (int *)a[1], (int)a[2], (struct rusage *)a[3]));
	case SYS_waitid:
		if (!a[4]) return kernel_answer(waitid((idtype_t)a[0], (id_t)a[1], (siginfo_t *)a[2], (int)a[3]));
		/* with a resource usage, which the wrapper does not take */
		if ((a[0] == P_PID || a[0] == P_PGID) && system_pid(a[1], &s1)) return -ECHILD;
		if (a[0] != P_PID && a[0] != P_PGID) s1 = a[1];
		{
			long r = raw_call_kernel(nr, a[0], s1, a[2], a[3], a[4]);
			siginfo_t *info = (siginfo_t *)a[2];
			if (r == 0 && info && info->si_pid > 0) info->si_pid = pid_to_virtual(info->si_pid);
			return r;
		}
	case SYS_fork: case SYS_vfork:
		/* vfork too: a vfork child could not return through this frame
		 * without wrecking the parent's stack. POSIX lets vfork be fork. */
		return kernel_answer(fork());
	case SYS_semget: return kernel_answer(semget((key_t)a[0], (int)a[1], (int)a[2]));
	case SYS_semop: return kernel_answer(semop((int)a[0], (struct sembuf *)a[1], (size_t)a[2]));
	case SYS_semtimedop:
		return kernel_answer(semtimedop((int)a[0], (struct sembuf *)a[1], (size_t)a[2], (const struct timespec *)a[3]));
	case SYS_semctl: return kernel_answer(semctl((int)a[0], (int)a[1], (int)a[2], (unsigned long)a[3]));
	case SYS_shmget: return kernel_answer(shmget((key_t)a[0], (size_t)a[1], (int)a[2]));
	case SYS_shmat: return kernel_answer((long)shmat((int)a[0], (const void *)a[1], (int)a[2]));
	case SYS_shmdt: return kernel_answer(shmdt((const void *)a[0]));
	case SYS_shmctl: return kernel_answer(shmctl((int)a[0], (int)a[1], (struct shmid_ds *)a[2]));
	case SYS_msgget: return kernel_answer(msgget((key_t)a[0], (int)a[1]));
	case SYS_msgsnd: return kernel_answer(msgsnd((int)a[0], (const void *)a[1], (size_t)a[2], (int)a[3]));
	case SYS_msgrcv: return kernel_answer(msgrcv((int)a[0], (void *)a[1], (size_t)a[2], a[3], (int)a[4]));
	case SYS_msgctl: return kernel_answer(msgctl((int)a[0], (int)a[1], (struct msqid_ds *)a[2]));
	case SYS_bind: return kernel_answer(bind((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2]));
	case SYS_connect: return kernel_answer(connect((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2]));
	case SYS_listen: return kernel_answer(listen((int)a[0], (int)a[1]));
	case SYS_getsockname: return kernel_answer(getsockname((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2]));
	case SYS_getpeername: return kernel_answer(getpeername((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2]));
	case SYS_accept: return kernel_answer(accept((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2]));
	case SYS_accept4:
		return kernel_answer(accept4((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2], (int)a[3]));
	case SYS_sendto:
		return kernel_answer(sendto((int)a[0], (const void *)a[1], (size_t)a[2], (int)a[3], (const struct sockaddr *)a[4], (socklen_t)a[5]));
	case SYS_recvfrom:
		return kernel_answer(recvfrom((int)a[0], (void *)a[1], (size_t)a[2], (int)a[3], (struct sockaddr *)a[4], (socklen_t *)a[5]));
	case SYS_rt_sigaction:
		return sigsys_action_in((const struct kernel_sigaction *)a[1], (struct kernel_sigaction *)a[2], a[3]);
	case SYS_rt_sigprocmask:
		return sigprocmask_in(uc, a[0], (const uint64_t *)a[1], (uint64_t *)a[2], a[3]);
	case SYS_capget: case SYS_capset:
		return capability_call(nr, (struct __user_cap_header_struct *)a[0], (void *)a[1]);
	case SYS_getpriority: case SYS_setpriority: case SYS_ioprio_get: case SYS_ioprio_set:
		/* (which, who, ...): who a PID for a process or a group */
		if (system_pid(a[1], &s1)) return -errno;
		return raw_call_kernel(nr, a[0], s1, a[2]);
	case SYS_kcmp:
		if (system_pid(a[0], &s0) || system_pid(a[1], &s1)) return -errno;
		return raw_call_kernel(nr, s0, s1, a[2], a[3], a[4]);
	default:
		/* The calls whose first argument is a PID, 0 the caller: sched_*,
		 * prlimit64, pidfd_open, process_vm_*, get_robust_list. */
		if (system_pid(a[0], &s0)) return -errno;
		return raw_call_kernel(nr, s0, a[1], a[2], a[3], a[4], a[5]);
	}
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	if (si->si_code != SYS_SECCOMP || (si->si_errno != TRAP_MARK && si->si_errno != MEMORY_MARK)) {
		program_sigsys_action(sig, si, ctx);
		return;
	}
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	int saved = errno;
	long a[6] = { g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9] };
	uintptr_t at = (uintptr_t)si->si_call_addr;
	stub_fn stub;
	if (at >= shim_text_start && at < shim_text_end && (stub = get_syscall_stub()))
		g[REG_RAX] = stub(si->si_syscall, a[0], a[1], a[2], a[3], a[4], a[5]); /* an ancestor's filter */
	else if (si->si_errno == MEMORY_MARK)
		g[REG_RAX] = memory_trapped(si->si_syscall, a);
	else
		g[REG_RAX] = complete(si->si_syscall, a, uc);
	errno = saved;
}

/* ---------------------------------------------------------------- install */

static int has_sys_admin(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (raw_call(SYS_capget, &h, d)) return 0;
	return (d[CAP_SYS_ADMIN / 32].effective >> (CAP_SYS_ADMIN % 32)) & 1;
}

/* The filter as built at start, kept for trap_reinstall; the code it
 * traps from, kept for the second filter (trap_memory_install). */
static struct program prog, memory_prog SHIM_COLD;
static struct piece pieces[MAX_PIECES];
static unsigned n_pieces;

/* Installs p on every thread of the process: no_new_privs first unless
 * the process may install it without (CAP_SYS_ADMIN), as the kernel asks.
 * Only system calls, from the shim's own instruction: safe in a restored
 * process whose other threads are stopped anywhere. 0, or -1 (errno). */
static long install_filter(const struct program *p)
{
	/* Without CAP_SYS_ADMIN the kernel takes a filter only under
	 * no_new_privs: set-user-ID programs then gain nothing at exec. */
	if (!has_sys_admin()) raw_call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	struct sock_fprog fprog = { (unsigned short)p->n, (struct sock_filter *)p->insn };
	/* SPEC_ALLOW: where the kernel would otherwise turn on its speculative
	 * store bypass mitigation for every seccomp user, slowing all of the
	 * program's code; this filter is for translation, not a sandbox.
	 * Kernels before 4.17 lack the flag: then without it. */
	long r = raw_call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW, &fprog);
	if (r != 0 && errno == EINVAL) r = raw_call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
	return r;
}

int trap_reinstall(void)
{
	if (!trap_on) return 0;
	int saved = errno;
	long r = install_filter(&prog);
	errno = saved;
	return r == 0 ? 0 : -1;
}

int trap_memory_install(void)
{
	if (!trap_on) return -1;
	int saved = errno;
	memory_prog.n = 0;
	memory_prog.overflow = 0;
	build_memory_filter(&memory_prog, pieces, n_pieces);
	long r = memory_prog.overflow ? -1 : install_filter(&memory_prog);
	errno = saved;
	return r == 0 ? 0 : -1;
}

void trap_init(void)
{
	const char *want = getenv("APPSHOT_TRAP");
	if (want && !strcmp(want, "off")) return;
	unsigned n = n_pieces = executable_pieces(pieces, MAX_PIECES);
	prog.n = 0;
	prog.overflow = 0;
	build_filter(&prog, pieces, n);
	if (prog.overflow) {
		shim_warn("this program maps too much code (%u pieces) for the system call filter; its raw system calls are not translated", n);
		return;
	}
	struct sigaction act = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART };
	sigemptyset(&act.sa_mask);
	if (REAL(sigaction)(SIGSYS, &act, &program_sigsys)) return;
	real_use_kernel();
	if (install_filter(&prog) != 0) {
		shim_warn("cannot install the system call filter (%s); raw system calls of this program are not translated (appshot run --no-trap says so on purpose)",
			  strerror(errno));
		REAL(sigaction)(SIGSYS, &program_sigsys, NULL);
		return;
	}
	trap_on = 1;
}
