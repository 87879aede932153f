/*
 * ptrace for the checkpoint: freezing a thread from outside, reading and
 * writing its registers and memory, and making system calls in it.
 *
 * A system call is made in a tracee by pointing its rip at a `syscall`
 * instruction that lies in its memory (the vDSO's at dump, the stub's gadget
 * page at restore) and running it under PTRACE_SYSCALL to its exit stop, so
 * nothing is written into the tracee's code and no trap instruction is
 * needed. orig_rax is set to -1 first, so a system call the thread was
 * stopped in is not restarted under our feet (see trace_restart_fixup).
 */
#ifndef APPSHOT_CKPT_TRACE_H
#define APPSHOT_CKPT_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define CKPT_PAGE 4096UL

/* PTRACE_SEIZE options of every tracee: nothing the tracee forks escapes. */
#define TRACE_OPTIONS (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE)

/* A new task seen while waiting (a fork, vfork or clone event): kind is
 * 'p' (process) or 't' (thread). */
typedef void (*trace_born_fn)(void *ctx, pid_t parent, pid_t child, char kind);

/* Seizes tid (options | TRACE_OPTIONS) and interrupts it. 0 or -errno. */
int trace_seize(pid_t tid, long options);
/* Waits until tid sits in its interrupt stop, passing on signals that come
 * first and reporting tasks it makes meanwhile. 0, or -ESRCH if it died. */
int trace_wait_stopped(pid_t tid, trace_born_fn born, void *ctx);

int trace_getregs(pid_t tid, struct user_regs_struct *r);
int trace_setregs(pid_t tid, const struct user_regs_struct *r);
/* The XSAVE area (NT_X86_XSTATE): *len in is the buffer's size, out the
 * kernel's size of it. */
int trace_getxstate(pid_t tid, void *buf, size_t *len);
int trace_setxstate(pid_t tid, const void *buf, size_t len);

/* Makes system call nr in stopped thread tid from the `syscall` at address
 * at; the thread's registers are left as the call left them (the caller
 * restores them). The kernel's result (or -errno) in *ret; 0, or -1 if the
 * tracee could not be driven (died, unexpected stop). */
int trace_syscall(pid_t tid, uint64_t at, long *ret, long nr, long a1, long a2, long a3, long a4, long a5, long a6);
#define TRACE_SYSCALL_(tid, at, ret, nr, a1, a2, a3, a4, a5, a6, ...) \
	trace_syscall(tid, at, ret, nr, (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6))
/* trace_call(tid, at, &ret, SYS_x, args...): up to six arguments. */
#define trace_call(tid, at, ret, ...) TRACE_SYSCALL_(tid, at, ret, __VA_ARGS__, 0, 0, 0, 0, 0, 0)

/* The child of the last clone a trace_syscall made (a restored thread). */
extern pid_t trace_last_clone;

/* The kernel's restart of an interrupted system call, done by hand: a
 * thread whose registers are set while it stands in a ptrace stop after an
 * interrupted call (rax -ERESTART*) must make the call again. live: the
 * thread is the same one (ERESTART_RESTARTBLOCK continues with
 * restart_syscall); otherwise (a restored thread) the call is made anew. */
void trace_restart_fixup(struct user_regs_struct *r, int live);

/* Memory of process pid: process_vm_readv/writev where the pages allow it,
 * /proc/PID/mem (which reaches read-only and PROT_NONE pages) where not.
 * 0 or -errno. */
int mem_read(pid_t pid, uint64_t addr, void *buf, size_t len);
int mem_write(pid_t pid, uint64_t addr, const void *buf, size_t len);

#endif
