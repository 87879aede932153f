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
#include <sys/types.h>
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

/* A pointer no program may use: the "bad" commands pass it for a buffer. */
#define BAD_POINTER ((void *)8)

/* The IDs this run got, for "mine". */
static int tool_ids[64];
static int tool_n_ids;

static inline void tool_got(int id)
{
	if (id >= 0 && tool_n_ids < 64) tool_ids[tool_n_ids++] = id;
}

static inline void tool_drop(int id)
{
	for (int i = 0; i < tool_n_ids; i++)
		if (tool_ids[i] == id) tool_ids[i--] = tool_ids[--tool_n_ids];
}

static inline int tool_is_mine(int id)
{
	for (int i = 0; i < tool_n_ids; i++)
		if (tool_ids[i] == id) return 1;
	return 0;
}

/* A *_STAT result for the current object: "NAME cur" when it named it. */
static inline void stat_result(const char *name, int r, int cur)
{
	if (r < 0) printf("%s err %s\n", name, strerrorname_np(errno));
	else if (r == cur) printf("%s cur\n", name);
	else printf("%s other\n", name);
}

/* The kernel's index of an ID (without ipcmni_extend): the *_STAT
 * commands take it, or a full ID, whose index bits they use. */
static inline int index_of(int id) { return id & 0x7fff; }

/* "found N of M": how many of the IDs this run got a *_STAT loop over
 * every index up to maxidx returned, each at its own index. */
static inline void found_result(int found, int misplaced)
{
	printf("found %d of %d%s\n", found, tool_n_ids, misplaced ? " misplaced" : "");
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
