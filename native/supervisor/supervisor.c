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
 *        appshot-supervisor [--report-fd FD] --restore RESTORER [ARGS...]
 * With --exec, FILE is run under CMD's name: the harness gives the path a
 * redirection makes of CMD, since the supervisor itself runs without the
 * shim. With --report-fd, the supervisor writes "status N\n" to FD as soon
 * as it has reaped the command (N as its own exit status would be): the
 * harness then knows the command's status even if the supervisor is killed
 * while daemons the command left run on. In restore mode it writes
 * "root SPID\n" there first, once the restored processes run.
 *
 * With --restore (`appshot restore` of a whole image, issue 18) there is no
 * command to start: the supervisor runs RESTORER ARGS --report-fd N (that
 * is `appshot-checkpoint restore ...`, without the shim), which recreates
 * the application's processes as its own descendants and writes
 * "root SPID\n" to N once they all run again, then exits. The supervisor
 * then treats SPID, reparented to it as their subreaper, as the command:
 * its status is the application's. A restorer that ends without naming a
 * root failed: its status is the supervisor's.
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
#include "../core/elfkind.h"
#include "../notify/notify.h"

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

/* A static or Go program (core/elfkind.h) is started through the loader
 * beside this program, which gives the notification thread its filter
 * (notify/notify.h); returns only if it is not one, or the loader is
 * missing (then as before: untranslated). */
static void exec_notified(const char *file, char **argv)
{
	char path[PATH_MAX], self[PATH_MAX];
	if (!getenv(NOTIFY_ENV) || exec_search(file, getenv("PATH"), path, sizeof path) || !elf_kind_notified(elf_kind_of(path))) return;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
	if (!slash || (size_t)(slash - self) + 1 + sizeof NOTIFY_LOADER > sizeof self) return;
	memcpy(slash + 1, NOTIFY_LOADER, sizeof NOTIFY_LOADER);
	int argc = 0;
	while (argv[argc]) argc++;
	char *args[argc + 3]; /* no malloc in a fork child of a process with threads */
	args[0] = NOTIFY_LOADER;
	args[1] = path;
	for (int i = 0; i <= argc; i++) args[i + 2] = argv[i];
	execv(self, args);
}

/* In the child: exec CMD with the shim preloaded; on failure send errno up
 * the close-on-exec pipe, which the parent reads as "exec did not happen". */
static void exec_command(const char *file, char **argv, const char *preload, int report_fd, const sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
	set_preload(preload);
	exec_notified(file, argv);
	execvp(file, argv);
	int err = errno;
	ssize_t w = write(report_fd, &err, sizeof err);
	(void)w;
	_exit(127);
}

/* Starts the restorer (--restore) with the write end of a pipe as its
 * --report-fd; gives the read end, on which it names the restored root.
 * The exec's failure goes up err_fd as exec_command's does. */
static int start_restorer(char **argv, int argc, int err_fd, const sigset_t *old, pid_t *pid)
{
	int report[2];
	if (pipe2(report, O_CLOEXEC) != 0) die("pipe");
	*pid = fork();
	if (*pid < 0) die("fork");
	if (*pid > 0) {
		close(report[1]);
		return report[0];
	}
	sigprocmask(SIG_SETMASK, old, NULL);
	close(report[0]);
	/* The restorer is appshot's own program, never under the shim. */
	unsetenv("LD_PRELOAD");
	char fdarg[16];
	snprintf(fdarg, sizeof fdarg, "%d", report[1]);
	char **args = calloc((size_t)argc + 3, sizeof *args);
	if (!args || fcntl(report[1], F_SETFD, 0) != 0) _exit(125);
	for (int i = 0; i < argc; i++) args[i] = argv[i];
	args[argc] = "--report-fd";
	args[argc + 1] = fdarg;
	execv(args[0], args);
	int err = errno;
	ssize_t w = write(err_fd, &err, sizeof err);
	(void)w;
	_exit(127);
}

/* Reads the restorer's report until "root SPID\n": SPID, or -1 when it
 * ended (the pipe closed) without naming one. */
static pid_t await_root(int fd)
{
	char buf[256];
	size_t used = 0;
	for (;;) {
		ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		used += (size_t)n;
		buf[used] = 0;
		char *line = strstr(buf, "root ");
		if (line && (line == buf || line[-1] == '\n') && strchr(line, '\n')) {
			long spid = strtol(line + 5, NULL, 10);
			close(fd);
			return spid > 0 ? (pid_t)spid : -1;
		}
		if (used == sizeof buf - 1) used = 0; /* a report this long is no report of ours */
	}
	close(fd);
	return -1;
}

/* The application's processes the supervisor reaps (orphans, and the
 * command) have no parent under the shim to forget them: their rows go
 * here, so no row outlives its process. Best effort: if the tables cannot
 * be opened, the harness's cleanup at the end removes the rows. The
 * tables are the ones the notification thread uses (notify/serve.c). */
static void forget_reaped(const pid_t *pids, int n)
{
	if (!n) return;
	notify_tables_close(); /* opened anew: checked before LMDB uses it */
	struct tabledb *t = notify_tables_lock();
	if (!t) return;
	if (tabledb_write_lock(t) == 0) {
		MDB_txn *txn;
		if (mdb_txn_begin(t->env, NULL, 0, &txn) == 0) {
			int rc = 0;
			for (int i = 0; i < n && !rc; i++) rc = tabledb_pid_forget(t, txn, (uint32_t)pids[i]);
			if (rc) mdb_txn_abort(txn);
			else mdb_txn_commit(txn);
		}
		tabledb_write_unlock(t);
	}
	notify_tables_unlock();
}

/* SIGKILLs every child of ours (/proc/self/task/TID/children); how many. */
static int kill_children(void)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC), n = 0;
	if (fd < 0) return 0;
	ssize_t len = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (len <= 0) return 0;
	buf[len] = 0;
	for (char *at = buf, *end; *at; at = end) {
		long pid = strtol(at, &end, 10);
		if (end == at) break;
		if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0) n++;
	}
	return n;
}

/* A restorer that ended without naming a root (a failed or killed restore):
 * the processes it had already let go are half an application, which must
 * not run on. As their subreaper they are ours once it is gone; their
 * children become ours as they die. Reaps until none is left. */
static void end_half_restored(void)
{
	for (;;) {
		kill_children();
		pid_t p = waitpid(-1, NULL, 0);
		if (p > 0) forget_reaped(&p, 1);
		else if (errno != EINTR) return;
	}
}

static int exit_code(int status)
{
	if (WIFEXITED(status)) return WEXITSTATUS(status);
	if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
	return 125;
}

/* Tells the harness the command's status. The harness may be gone: no
 * SIGPIPE (the report channel is a socket, as Node makes its pipes). */
static void report_line(int fd, const char *word, int n)
{
	if (fd < 0) return;
	char line[48];
	int len = snprintf(line, sizeof line, "%s %d\n", word, n);
	ssize_t w = send(fd, line, (size_t)len, MSG_NOSIGNAL);
	(void)w;
}

static void report_status(int fd, int code)
{
	report_line(fd, "status", code);
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
	int restore = 0;
	if (argc > 1 && !strcmp(argv[1], "--restore")) {
		restore = 1;
		argc -= 1;
		argv += 1;
	} else if (argc > 2 && !strcmp(argv[1], "--exec")) {
		file = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < (restore ? 2 : 3)) {
		fprintf(stderr, "appshot: supervisor: usage: appshot-supervisor [--report-fd FD] [--exec FILE] PRELOAD CMD [ARGS...]\n"
				"       appshot-supervisor [--report-fd FD] --restore RESTORER [ARGS...]\n");
		return 2;
	}
	if (!file) file = argv[restore ? 1 : 2];
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
	pid_t child, restorer = -1;
	int root_fd = -1;
	if (restore) {
		root_fd = start_restorer(argv + 1, argc - 1, pipefd[1], &old, &restorer);
		child = restorer;
	} else {
		/* Static and Go programs of the application are answered by a
		 * thread of ours; without it they run untranslated, as before. */
		unsetenv(NOTIFY_ENV); /* an enclosing application's supervisor is not ours */
		notify_start(argv[1]);
		child = fork();
		if (child < 0) die("fork");
		if (child == 0) {
			close(pipefd[0]);
			exec_command(file, argv + 2, argv[1], pipefd[1], &old);
		}
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
		if (err == ENOENT) fprintf(stderr, "appshot: %s: not found\n", file);
		else fprintf(stderr, "appshot: %s: %s\n", file, strerror(err));
		status = (err == ENOENT ? 127 : 126) << 8;
		have_status = 1;
		child = restorer = -1;
		report_status(report_fd, exit_code(status));
	}
	if (root_fd >= 0) {
		/* While the restorer works the signals stay blocked: one that came
		 * meanwhile goes to the restored root, or ends a failed restore's
		 * wait. A restorer that names no root failed, with its status. */
		pid_t root = await_root(root_fd);
		if (root > 0 && child > 0) {
			child = root;
			report_line(report_fd, "root", root);
		} else if (child > 0) {
			int st;
			while (waitpid(child, &st, 0) < 0 && errno == EINTR)
				;
			status = st;
			have_status = 1;
			child = -1;
			end_half_restored();
			report_status(report_fd, exit_code(status));
		}
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
				/* The command; in restore mode the root, or a restorer
				 * that failed before it named one. */
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
