/* ptrace for the checkpoint (see trace.h). */
#define _GNU_SOURCE
#include "trace.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* The kernel's restart codes (include/linux/errno.h, not exported). */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

int trace_seize(pid_t tid, long options)
{
	if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(options | TRACE_OPTIONS)) != 0) return -errno;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) return -errno;
	return 0;
}

/* A fork/vfork/clone event stop: reports the child. */
static int born_event(pid_t tid, int event, trace_born_fn born, void *ctx)
{
	if (event != PTRACE_EVENT_FORK && event != PTRACE_EVENT_VFORK && event != PTRACE_EVENT_CLONE) return 0;
	unsigned long child = 0;
	if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == 0 && born) born(ctx, tid, (pid_t)child, event == PTRACE_EVENT_CLONE ? 't' : 'p');
	return 1;
}

int trace_wait_stopped(pid_t tid, trace_born_fn born, void *ctx)
{
	for (;;) {
		int st;
		if (waitpid(tid, &st, __WALL) < 0) {
			if (errno == EINTR) continue;
			return -errno;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) return -ESRCH;
		if (!WIFSTOPPED(st)) continue;
		int event = st >> 16, sig = WSTOPSIG(st);
		if (event == PTRACE_EVENT_STOP) return 0;
		/* Anything else comes before the interrupt: let it go its way
		 * (an event continues, a signal is delivered) and ask again. */
		born_event(tid, event, born, ctx);
		int pass = (event || sig == (SIGTRAP | 0x80)) ? 0 : sig;
		if (ptrace(PTRACE_CONT, tid, 0, (void *)(long)pass) != 0) return -errno;
		ptrace(PTRACE_INTERRUPT, tid, 0, 0);
	}
}

int trace_getregs(pid_t tid, struct user_regs_struct *r)
{
	struct iovec iov = {r, sizeof *r};
	return ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov) == 0 ? 0 : -errno;
}

int trace_setregs(pid_t tid, const struct user_regs_struct *r)
{
	struct iovec iov = {(void *)r, sizeof *r};
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_PRSTATUS, &iov) == 0 ? 0 : -errno;
}

int trace_getxstate(pid_t tid, void *buf, size_t *len)
{
	struct iovec iov = {buf, *len};
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) != 0) return -errno;
	*len = iov.iov_len;
	return 0;
}

int trace_setxstate(pid_t tid, const void *buf, size_t len)
{
	struct iovec iov = {(void *)buf, len};
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_X86_XSTATE, &iov) == 0 ? 0 : -errno;
}

/* The child of the last clone made by trace_syscall (a restored thread). */
pid_t trace_last_clone;

static void note_clone(void *ctx, pid_t parent, pid_t child, char kind)
{
	(void)ctx, (void)parent, (void)kind;
	trace_last_clone = child;
}

int trace_syscall(pid_t tid, uint64_t at, long *ret, long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	struct user_regs_struct r;
	if (trace_getregs(tid, &r) != 0) return -1;
	r.rip = at;
	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a1, r.rsi = a2, r.rdx = a3, r.r10 = a4, r.r8 = a5, r.r9 = a6;
	if (trace_setregs(tid, &r) != 0) return -1;
	int stops = 0;
	if (ptrace(PTRACE_SYSCALL, tid, 0, 0) != 0) return -1;
	for (;;) {
		int st;
		if (waitpid(tid, &st, __WALL) < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		if (!WIFSTOPPED(st)) return -1;
		int event = st >> 16, sig = WSTOPSIG(st);
		if (sig == (SIGTRAP | 0x80) && ++stops == 2) {
			if (trace_getregs(tid, &r) != 0) return -1;
			*ret = (long)r.rax;
			return 0;
		}
		if (sig != (SIGTRAP | 0x80) && event != PTRACE_EVENT_STOP && !born_event(tid, event, note_clone, NULL)) {
			fprintf(stderr, "appshot: thread %d stopped by signal %d while a system call was made in it\n", tid, sig);
			return -1;
		}
		if (ptrace(PTRACE_SYSCALL, tid, 0, 0) != 0) return -1;
	}
}

void trace_restart_fixup(struct user_regs_struct *r, int live)
{
	int restart = 0;
	if ((long)r->orig_rax >= 0) {
		switch (-(long)r->rax) {
		case ERESTARTSYS:
		case ERESTARTNOINTR:
		case ERESTARTNOHAND:
			r->rax = r->orig_rax;
			restart = 1;
			break;
		case ERESTART_RESTARTBLOCK:
			/* The restart block (nanosleep's time left) lives in the
			 * kernel's task: only the same thread can continue it. */
			r->rax = live ? SYS_restart_syscall : r->orig_rax;
			restart = 1;
			break;
		}
	}
	if (restart) r->rip -= 2;
	/* A restored thread never restarts on its own; a live one that needs
	 * no restart keeps its registers as they were. */
	if (restart || !live) r->orig_rax = -1;
}

static int proc_mem(pid_t pid, uint64_t addr, void *buf, size_t len, int write)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", pid);
	int fd = open(path, write ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -errno;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write ? pwrite(fd, (char *)buf + done, len - done, (off_t)(addr + done)) : pread(fd, (char *)buf + done, len - done, (off_t)(addr + done));
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			return -e;
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

int mem_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {buf, len}, remote = {(void *)addr, len};
	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len) return 0;
	return proc_mem(pid, addr, buf, len, 0);
}

int mem_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = {(void *)buf, len}, remote = {(void *)addr, len};
	if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len) return 0;
	return proc_mem(pid, addr, (void *)buf, len, 1);
}
