/* What the test tools (semtool, shmtool, msgtool) share: reading their
 * arguments and printing results the way tests read them. */
#ifndef APPSHOT_TESTPROGS_TOOL_H
#define APPSHOT_TESTPROGS_TOOL_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <unistd.h>

/* A number in C notation: 42, 0x5eed, 0644. */
static inline long num(const char *s) { return strtol(s, NULL, 0); }

/* Mode 0600 plus the flags named by letters: c IPC_CREAT, x IPC_EXCL,
 * n IPC_NOWAIT, e MSG_EXCEPT, t MSG_NOERROR; "-" for none. */
static inline int flags_of(const char *s)
{
	int f = 0600;
	for (; *s; s++) {
		if (*s == 'c') f |= IPC_CREAT;
		if (*s == 'x') f |= IPC_EXCL;
		if (*s == 'n') f |= IPC_NOWAIT;
		if (*s == 'e') f |= MSG_EXCEPT;
		if (*s == 't') f |= MSG_NOERROR;
	}
	return f;
}

/* "WHAT R" for a result, "err ENAME" for a failure. */
static inline long result(long r, const char *what)
{
	if (r < 0) printf("err %s\n", strerrorname_np(errno));
	else printf("%s %ld\n", what, r);
	fflush(stdout);
	return r;
}

/* A wait status as a shell reports it. */
static inline int status_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* The "fork" command: the rest of the commands run in a child, and the
 * parent exits with the child's status. Returns only in the child. */
static inline void fork_rest(void)
{
	pid_t p = fork();
	if (p < 0) {
		result(-1, "fork");
		exit(1);
	}
	if (p > 0) {
		int st;
		waitpid(p, &st, 0);
		exit(status_of(st));
	}
}

#endif
