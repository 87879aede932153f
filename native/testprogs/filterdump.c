/* The seccomp filters of a running process, read back from the kernel, for
 * test/trapfilter.test.ts, which runs the shim's filter against what it
 * must trap.
 *
 *   filterdump PID
 *
 * One line per filter, the newest (the one its own shim installed) first:
 * its instructions as CODE:JT:JF:K in hex, separated by spaces. The process
 * is stopped while they are read (PTRACE_SEIZE, PTRACE_INTERRUPT) and goes
 * on as before. PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN. Exit 1 with
 * a message on stderr when the filters cannot be read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif

#define MAX_INSNS 4096

static int fail(const char *what, pid_t pid)
{
	fprintf(stderr, "filterdump: %s of process %d: %s\n", what, (int)pid, strerror(errno));
	return 1;
}

/* Prints filter `index` of the stopped pid; 1 when there is none (the
 * kernel says ENOENT past the oldest), -1 on an error. */
static int print_filter(pid_t pid, long index)
{
	static struct sock_filter insn[MAX_INSNS];
	long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)index, NULL);
	if (n < 0) return errno == ENOENT ? 1 : -1;
	if (n > MAX_INSNS || ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)index, insn) != n) return -1;
	for (long i = 0; i < n; i++)
		printf("%s%x:%x:%x:%x", i ? " " : "", insn[i].code, insn[i].jt, insn[i].jf, insn[i].k);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: filterdump PID\n");
		return 2;
	}
	pid_t pid = (pid_t)strtol(argv[1], NULL, 10);
	int status;
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL)) return fail("PTRACE_SEIZE", pid);
	if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) || waitpid(pid, &status, __WALL) != pid)
		return fail("stopping", pid);
	int r = 0;
	for (long index = 0; r == 0; index++) {
		r = print_filter(pid, index);
		if (r < 0) fail("PTRACE_SECCOMP_GET_FILTER", pid);
		if (r == 1 && index == 0) fprintf(stderr, "filterdump: process %d has no seccomp filter\n", (int)pid);
		if (r == 1 && index > 0) r = 2; /* the end */
	}
	ptrace(PTRACE_DETACH, pid, NULL, NULL);
	return r == 2 ? 0 : 1;
}
