/* A stub: the process a saved one is restored into (see restore.h). */
#define _GNU_SOURCE
#include "restore.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"
#include "inject.h"

static void say(struct restorer *R, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2) n = sizeof line - 2;
	line[n++] = '\n';
	/* One write per line: a pipe keeps lines under PIPE_BUF whole. */
	if (write(R->report[1], line, (size_t)n) < 0) _exit(1);
}

static void __attribute__((noreturn)) fail(struct restorer *R, int idx, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	say(R, "E %d %s", idx, msg);
	_exit(1);
}

/* glibc registered an rseq area for this thread: the kernel would write to
 * it on every return to user space, also after the memory it lies in is
 * gone. Unregister it before the memory is replaced. */
static void unregister_rseq(void)
{
	if (!__rseq_size) return;
	char *tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp));
	void *area = tp + __rseq_offset;
	if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) != 0) syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
}

static void map_gadget(struct restorer *R, int idx)
{
	char *g = mmap((void *)R->gadget, (1 + GADGET_SCRATCH_PAGES) * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (g != (char *)R->gadget) fail(R, idx, "the stub cannot map its gadget at %p: %s", (void *)R->gadget, strerror(errno));
	memcpy(g, "\x0f\x05\xcc", 3); /* syscall; int3 */
	memcpy(g + INJ_BATCH_CODE_OFF, inj_batch_code, (size_t)(inj_batch_code_end - inj_batch_code));
	mprotect(g, 4096, PROT_READ | PROT_EXEC);
}

void stub_main(struct restorer *R, int idx, pid_t parent)
{
	struct rproc *p = &R->procs[idx];
	char err[1024];
	/* No stub outlives its restorer (a failed or killed restore): its parent's
	 * death kills it until the restorer, tracing it with EXITKILL by then,
	 * clears this. A parent that died before the prctl is seen by getppid. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) _exit(1);
	for (int sig = 1; sig < 65; sig++) signal(sig, SIG_DFL);
	if (json_int(p->json, "sid") == p->vpid && setsid() < 0) fail(R, idx, "setsid failed: %s", strerror(errno));
	if (fds_install(R->fds, cJSON_GetObjectItem(p->json, "fds"), R->keep_from, err, sizeof err) != 0) fail(R, idx, "%s", err);
	const char *cwd = json_str(p->json, "cwd");
	if (cwd && *cwd && chdir(cwd) != 0) fail(R, idx, "its working directory %s cannot be entered: %s", cwd, strerror(errno));
	umask((mode_t)json_int(p->json, "umask"));
	for (int c = 0; c < R->n; c++) {
		if (R->procs[c].parent != idx) continue;
		pid_t me = getpid(), pid = fork();
		if (pid < 0) fail(R, idx, "fork failed: %s", strerror(errno));
		if (pid == 0) stub_main(R, c, me);
	}
	/* Its copies of every file description: a pipe end held here would
	 * keep its reader from ever seeing end of file. */
	fds_close_base(R->fds);
	unregister_rseq();
	map_gadget(R, idx);
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	say(R, "R %d %d", idx, getpid());
	for (;;) pause();
}
