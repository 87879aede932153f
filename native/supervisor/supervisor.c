/*
 * appshot-supervisor: started by `appshot run`, it starts the application's
 * command and stays until the application's last process is gone. As a
 * child subreaper it inherits every orphaned descendant, so "all processes
 * have exited" is a plain blocking wait() that returns ECHILD, with no
 * polling. It forwards SIGINT, SIGTERM and SIGHUP that a process sent it
 * (the terminal already delivers its own to the whole foreground group),
 * and exits with the command's status, 128+N if it died of signal N.
 *
 * Usage: appshot-supervisor [--report-fd FD] [--exec FILE] PRELOAD CMD [ARGS...]
 * With --exec, FILE is run under CMD's name: the harness gives the path a
 * redirection makes of CMD, since the supervisor itself runs without the
 * shim. With --report-fd, the supervisor writes "status N\n" to FD as soon
 * as it has reaped the command (N as its own exit status would be): the
 * harness then knows the command's status even if the supervisor is killed
 * while daemons the command left run on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include "../core/tabledb.h"

static void die(const char *what)
{
	fprintf(stderr, "appshot: supervisor: %s: %s\n", what, strerror(errno));
	exit(125);
}

/* LD_PRELOAD for the command: the shim first (its wrappers must be the
 * ones the program's calls reach), then whatever the user preloads, kept
 * as it was; the shim once, if the user's list names it already. */
static void set_preload(const char *shim)
{
	const char *user = getenv("LD_PRELOAD");
	if (!user || !*user) {
		if (setenv("LD_PRELOAD", shim, 1) != 0) die("setenv");
		return;
	}
	if (strstr(user, shim)) return;
	size_t len = strlen(shim) + 1 + strlen(user) + 1;
	char *both = malloc(len);
	if (!both) die("malloc");
	snprintf(both, len, "%s:%s", shim, user);
	if (setenv("LD_PRELOAD", both, 1) != 0) die("setenv");
	free(both);
}

/* Closes the descriptors of files in the home that the harness's own LMDB
 * left open without close-on-exec: a program of the application must reach
 * the tables only through the shim, read-only, never through a writable
 * descriptor it happened to inherit. Other inherited descriptors (a user's
 * `5<file appshot run ...`) are the program's and stay. */
static void close_home_descriptors(int keep)
{
	const char *home = getenv("APPSHOT_HOME");
	DIR *d = opendir("/proc/self/fd");
	if (!home || !*home || !d) {
		if (d) closedir(d);
		return;
	}
	size_t n = strlen(home);
	struct dirent *e;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == keep || fd == dirfd(d)) continue;
		char link[64], target[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t len = readlink(link, target, sizeof target - 1);
		if (len <= 0) continue;
		target[len] = 0;
		if (!strncmp(target, home, n) && (target[n] == '/' || target[n] == 0)) close(fd);
	}
	closedir(d);
}

/* In the child: exec CMD with the shim preloaded; on failure send errno up
 * the close-on-exec pipe, which the parent reads as "exec did not happen". */
static void exec_command(const char *file, char **argv, const char *preload, int report_fd, const sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
	set_preload(preload);
	execvp(file, argv);
	int err = errno;
	ssize_t w = write(report_fd, &err, sizeof err);
	(void)w;
	_exit(127);
}

/* The application's processes the supervisor reaps (orphans, and the
 * command) have no parent under the shim to forget them: their rows go
 * here, so no row outlives its process. Best effort: if the tables cannot
 * be opened, the harness's cleanup at the end removes the rows. */
static void forget_reaped(const pid_t *pids, int n)
{
	static struct tabledb t;
	static int state; /* 0 not opened yet, 1 open, -1 unusable */
	const char *home = getenv("APPSHOT_HOME"), *aid = getenv("APPSHOT_AID");
	char err[512];
	if (!n || state < 0) return;
	if (state == 0) state = home && aid && tabledb_open(&t, home, aid, err, sizeof err) == 0 ? 1 : -1;
	if (state < 0 || !tabledb_fds_ok(&t) || tabledb_write_lock(&t)) return;
	MDB_txn *txn;
	if (mdb_txn_begin(t.env, NULL, 0, &txn) == 0) {
		int rc = 0;
		for (int i = 0; i < n && !rc; i++) rc = tabledb_pid_forget(&t, txn, (uint32_t)pids[i]);
		if (rc) mdb_txn_abort(txn);
		else mdb_txn_commit(txn);
	}
	tabledb_write_unlock(&t);
}

static int exit_code(int status)
{
	if (WIFEXITED(status)) return WEXITSTATUS(status);
	if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
	return 125;
}

/* Tells the harness the command's status. The harness may be gone: no
 * SIGPIPE (the report channel is a socket, as Node makes its pipes). */
static void report_status(int fd, int code)
{
	if (fd < 0) return;
	char line[32];
	int len = snprintf(line, sizeof line, "status %d\n", code);
	ssize_t w = send(fd, line, (size_t)len, MSG_NOSIGNAL);
	(void)w;
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	int report_fd = -1;
	if (argc > 2 && !strcmp(argv[1], "--report-fd")) {
		report_fd = atoi(argv[2]);
		/* The harness's end of the channel, not the application's. */
		if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) != 0) report_fd = -1;
		argc -= 2;
		argv += 2;
	}
	if (argc > 2 && !strcmp(argv[1], "--exec")) {
		file = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < 3) {
		fprintf(stderr, "appshot: supervisor: usage: appshot-supervisor [--report-fd FD] [--exec FILE] PRELOAD CMD [ARGS...]\n");
		return 2;
	}
	if (!file) file = argv[2];
	close_home_descriptors(report_fd);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die("prctl(PR_SET_CHILD_SUBREAPER)");
	sigset_t waited, old;
	sigemptyset(&waited);
	sigaddset(&waited, SIGCHLD);
	sigaddset(&waited, SIGINT);
	sigaddset(&waited, SIGTERM);
	sigaddset(&waited, SIGHUP);
	sigprocmask(SIG_BLOCK, &waited, &old);

	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) != 0) die("pipe");
	pid_t child = fork();
	if (child < 0) die("fork");
	if (child == 0) {
		close(pipefd[0]);
		exec_command(file, argv + 2, argv[1], pipefd[1], &old);
	}
	close(pipefd[1]);
	int err = 0;
	ssize_t n;
	while ((n = read(pipefd[0], &err, sizeof err)) < 0 && errno == EINTR)
		;
	close(pipefd[0]);
	int status = 0, have_status = 0;
	if (n == sizeof err) {
		waitpid(child, NULL, 0);
		if (err == ENOENT) fprintf(stderr, "appshot: %s: not found\n", argv[2]);
		else fprintf(stderr, "appshot: %s: %s\n", argv[2], strerror(err));
		status = (err == ENOENT ? 127 : 126) << 8;
		have_status = 1;
		child = -1;
		report_status(report_fd, exit_code(status));
	}
	for (;;) {
		siginfo_t si;
		/* Reap whatever has ended; ECHILD means the application is gone. */
		pid_t reaped[64];
		int n_reaped = 0;
		for (;;) {
			int st;
			pid_t p = waitpid(-1, &st, WNOHANG);
			int wait_errno = errno;
			if (p > 0 && p == child) {
				status = st;
				have_status = 1;
				child = -1;
				report_status(report_fd, exit_code(status));
			}
			if (p > 0) {
				reaped[n_reaped++] = p;
				if (n_reaped < 64) continue;
			}
			forget_reaped(reaped, n_reaped);
			n_reaped = 0;
			if (p > 0) continue;
			if (p < 0 && wait_errno == ECHILD) return have_status ? exit_code(status) : 125;
			break;
		}
		if (sigwaitinfo(&waited, &si) < 0) continue;
		if (si.si_signo != SIGCHLD && child > 0 && si.si_code <= 0)
			kill(child, si.si_signo);
	}
}
