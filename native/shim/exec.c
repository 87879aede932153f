/* Starting programs: the exec family, posix_spawn and system.
 *
 * A new program of the application must load the shim too. Most inherit
 * LD_PRELOAD, APPSHOT_AID and APPSHOT_HOME from the environment, but a
 * program may exec with an environment of its own (Python's subprocess with
 * env=..., env -i, a daemon cleaning up): these wrappers put back whatever
 * of the three is missing, and leave present values alone (a nested
 * `appshot run` names its own application). They run in vfork children
 * too, so they never allocate: the patched environment lives on the stack.
 *
 * The program's path is redirected (path.c) like any other; a bare name
 * that execvp, execvpe and posix_spawnp search for in PATH is left to the
 * search, which looks in the directories as they are on disk.
 *
 * A program the shim cannot reach (statically linked, or Go's, which makes
 * its own system calls: core/elfkind.h) is started through the loader
 * appshot-notify beside the shim, which puts it under the supervisor's
 * filter (native/notify/notify.h), when the application has a supervisor
 * that answers (APPSHOT_NOTIFY, kept like APPSHOT_AID). */
#define _GNU_SOURCE
#include "shim.h"
#include "../core/home.h"
#include "../core/text.h"
#include "real.h"
#include "pid.h"
#include "path.h"
#include "../core/elfkind.h"
#include "../notify/notify.h"

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static char env_aid[16 + APPSHOT_AID_MAX], env_home[16 + PATH_MAX];
/* The loader's name of the shim's file (its link map's, which lives as
 * long as the process: a preloaded object is never unloaded); "" until
 * exec_env_init. A pointer, not a copy: a copy writes a page at start. */
static const char *shim_path = "";
/* NOTIFY_ENV=name of the supervisor's socket ("" without one), and the
 * loader's path. */
static char env_notify[sizeof NOTIFY_ENV + 128];
/* Allocated at start when env_notify is set (a static buffer would cost
 * every program a page it writes). */
/* In the shim's memory, not malloc'd: at every start, where it was the
 * process's first malloc (its heap set up: 40-50 us and a page fault). */
static char loader_path[PATH_MAX];

/* The shim's own file, found by the loaded object whose segments hold
 * this function: what dladdr gives too, without its walk over every
 * symbol of the object (tens of microseconds in every program started). */
void exec_env_init(const char *aid, const char *home);

static int own_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t at = (uintptr_t)exec_env_init;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && at >= start && at < start + ph->p_memsz) {
			*(const char **)arg = info->dlpi_name;
			return 1;
		}
	}
	return 0;
}

/* At every start: joined by hand, not printf'd (core/text.h). */
void exec_env_init(const char *aid, const char *home)
{
	text_join(env_aid, sizeof env_aid, "APPSHOT_AID=", aid, "");
	text_join(env_home, sizeof env_home, "APPSHOT_HOME=", home, "");
	dl_iterate_phdr(own_object, &shim_path);
	const char *notify = getenv(NOTIFY_ENV), *slash = strrchr(shim_path, '/');
	if (!notify || *notify != '@' || !slash || text_join(env_notify, sizeof env_notify, NOTIFY_ENV "=", notify, "")) return;
	size_t dir = (size_t)(slash - shim_path);
	static const char loader[] = "/" NOTIFY_LOADER;
	if (dir + sizeof loader > sizeof loader_path) {
		env_notify[0] = 0; /* no loader: as without the notifier */
		return;
	}
	memcpy(loader_path, shim_path, dir);
	memcpy(loader_path + dir, loader, sizeof loader);
}

/* What env_aid and env_home were before a restore: an environment that
 * still names them (copied by the program before it was snapshotted) is
 * given the restored ones instead. */
static char stale_env_aid[sizeof env_aid] SHIM_COLD, stale_env_home[sizeof env_home] SHIM_COLD;

/* Concatenates a and b into dst of max bytes, cut short if need be. */
static void join2(char *dst, size_t max, const char *a, const char *b)
{
	size_t n = 0;
	for (; *a && n + 1 < max; a++) dst[n++] = *a;
	for (; *b && n + 1 < max; b++) dst[n++] = *b;
	dst[n] = 0;
}

/* From shim_restored_entry (no libc: other threads are stopped anywhere). */
void exec_env_restored(const char *aid, const char *home)
{
	if (!stale_env_aid[0]) {
		join2(stale_env_aid, sizeof stale_env_aid, env_aid, "");
		join2(stale_env_home, sizeof stale_env_home, env_home, "");
	}
	join2(env_aid, sizeof env_aid, "APPSHOT_AID=", aid);
	join2(env_home, sizeof env_home, "APPSHOT_HOME=", home);
}

static int is_stale(const char *entry, const char *stale)
{
	return stale[0] && strcmp(entry, stale) == 0;
}

static int has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static size_t env_count(char *const envp[])
{
	size_t n = 0;
	while (envp && envp[n]) n++;
	return n;
}

/* LD_PRELOAD that already names the shim, or NULL. */
static int preload_has_shim(const char *entry)
{
	return strstr(entry, shim_path) != NULL;
}

/* The application's descriptors (core/home.h) for the next program, as
 * HOME_FDS_ENV=..., into buf (on the caller's stack); "" if it has none. */
#define FDS_ENTRY_MAX (sizeof HOME_FDS_ENV + HOMEFD_COUNT * 64)
static void fds_entry(char *buf)
{
	const struct home_fds *fds = shim_active ? shim_home_fds() : NULL;
	size_t n = strlen(HOME_FDS_ENV "=");
	buf[0] = 0;
	if (!fds) return;
	memcpy(buf, HOME_FDS_ENV "=", n);
	if (!home_fds_format(fds, buf + n, FDS_ENTRY_MAX - n)) buf[0] = 0;
}

/* Fills out (n + 7 slots) with envp plus what is missing; preload is room
 * for a merged LD_PRELOAD entry, fds the descriptors' entry (fds_entry),
 * which replaces any other unless envp names another home (a nested
 * `appshot run`), start the start entry ("" for none), which replaces any
 * other. Returns envp itself when nothing is missing. */
static char *const *patch_env(char *const envp[], size_t n, char **out, char *preload, size_t preload_len, char *fds,
			      char *start)
{
	int aid = 0, home = 0, pre = -1, fds_at = -1, start_at = -1, other_home = 0, stale_at[2] = { -1, -1 },
	    notify = !env_notify[0];
	for (size_t i = 0; i < n; i++) {
		if (is_stale(envp[i], stale_env_aid)) stale_at[0] = (int)i;
		else if (is_stale(envp[i], stale_env_home)) stale_at[1] = (int)i;
		else if (has_prefix(envp[i], "APPSHOT_AID=")) aid = 1;
		else if (has_prefix(envp[i], "APPSHOT_HOME=")) home = 1, other_home = strcmp(envp[i], env_home) != 0;
		else if (has_prefix(envp[i], "LD_PRELOAD=")) pre = (int)i;
		else if (has_prefix(envp[i], HOME_FDS_ENV "=")) fds_at = (int)i;
		else if (has_prefix(envp[i], NOTIFY_ENV "=")) notify = 1;
		else if (has_prefix(envp[i], SPAWN_START_ENV "=")) start_at = (int)i;
	}
	int preload_ok = pre >= 0 && preload_has_shim(envp[pre]);
	int fds_ok = other_home || !fds[0] || (fds_at >= 0 && !strcmp(envp[fds_at], fds));
	int stale = stale_at[0] >= 0 || stale_at[1] >= 0;
	if (!shim_active || !shim_path[0] || (aid && home && preload_ok && fds_ok && !stale && notify && !start[0])) return envp;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) out[k++] = envp[i];
	if (stale_at[0] >= 0) out[stale_at[0]] = env_aid, aid = 1;
	if (stale_at[1] >= 0) out[stale_at[1]] = env_home, home = 1;
	if (!aid) out[k++] = env_aid;
	if (!home) out[k++] = env_home;
	if (!notify && !other_home) out[k++] = env_notify;
	if (!fds_ok) {
		if (fds_at >= 0) out[fds_at] = fds;
		else out[k++] = fds;
	}
	if (start[0]) {
		if (start_at >= 0) out[start_at] = start;
		else out[k++] = start;
	}
	if (!preload_ok) {
		const char *rest = pre >= 0 ? envp[pre] + strlen("LD_PRELOAD=") : "";
		snprintf(preload, preload_len, "LD_PRELOAD=%s%s%s", shim_path, *rest ? ":" : "", rest);
		if (pre >= 0) out[pre] = preload;
		else out[k++] = preload;
	}
	out[k] = NULL;
	return out;
}

/* Declares the room patch_env needs, on the caller's stack; start is
 * the new program's start entry (pid_spawn_start_entry) or "". */
#define PATCHED_ENV_STARTING(name, envp, start)                                        \
	size_t name##_n = env_count(envp);                                             \
	char *name##_slots[name##_n + 7];                                              \
	char name##_preload[strlen(shim_path) + 16 + preload_room(envp, name##_n)];    \
	char name##_fds[FDS_ENTRY_MAX];                                                \
	fds_entry(name##_fds);                                                         \
	char *const *name = patch_env(envp, name##_n, name##_slots, name##_preload, sizeof name##_preload, name##_fds, start)
/* An exec's: this process's start tick for the program (pid.c); not for
 * a program the loader starts (loaded: no shim to take the entry out). */
#define PATCHED_ENV(name, envp, loaded)                                                \
	char name##_start[96];                                                         \
	if ((loaded) || !pid_exec_start_entry(name##_start, sizeof name##_start, redirect_count != 0)) name##_start[0] = 0; \
	PATCHED_ENV_STARTING(name, envp, name##_start)

/* posix_spawn's: the child's vpid reserved and the clock read first, so
 * that the new program may take its vpid and start tick from its entry
 * (pid.c, pid_read_start); not for a program the loader starts (loaded:
 * static or Go, no shim to take the entry out). */
#define PATCHED_SPAWN_ENV(name, envp, before, want, loaded)                             \
	uint32_t want = pid_spawn_vpid();                                              \
	uint64_t before = pid_clock();                                                 \
	char name##_start[96];                                                         \
	if ((loaded) || !pid_spawn_start_entry(name##_start, sizeof name##_start, before, want, redirect_count != 0)) name##_start[0] = 0; \
	PATCHED_ENV_STARTING(name, envp, name##_start)

static size_t preload_room(char *const envp[], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (has_prefix(envp[i], "LD_PRELOAD=")) return strlen(envp[i]);
	return 0;
}

/* For the calls that search PATH for a bare name. */
#define REDIRECT_FILE(file, fail)                                               \
	char file##_redirected[PATH_MAX];                                      \
	if (redirect_count && strchr(file, '/') && redirect_path_slow(&(file), file##_redirected)) return (fail)

/* For a static or Go program (core/elfkind.h), the loader's argument
 * vector into out (argc + 3 slots): the loader, the program's path, then
 * argv; NULL for any other program, or without a supervisor to answer. */
static char *const *notified_argv(const char *path, char *const argv[], char **out)
{
	if (!env_notify[0] || !shim_active || !elf_kind_notified(elf_kind_of(path))) return NULL;
	size_t k = 0;
	out[k++] = (char *)NOTIFY_LOADER;
	out[k++] = (char *)path;
	if (!argv || !argv[0]) out[k++] = (char *)path; /* the loader takes the program's argv[0] */
	for (size_t i = 0; argv && argv[i]; i++) out[k++] = argv[i];
	out[k] = NULL;
	return out;
}

static size_t argv_count(char *const argv[])
{
	size_t n = 0;
	while (argv && argv[n]) n++;
	return n;
}

/* Declares the loader's argument vector for path (notified_argv), NULL
 * when the program is not one for it. */
#define NOTIFIED_ARGV(name, path, argv)                  \
	char *name##_room[argv_count(argv) + 4];         \
	char *const *name = notified_argv(path, argv, name##_room)

/* The file a bare name names in PATH (exec_search), into found; file itself
 * when it holds a slash or nothing is found there. */
static const char *searched(const char *file, char *found)
{
	if (!env_notify[0] || strchr(file, '/') || exec_search(file, getenv("PATH"), found, PATH_MAX)) return file;
	return found;
}

WRAPPER(execve)
{
	REDIRECT(path, -1);
	pid_before_exec();
	NOTIFIED_ARGV(loader_argv, path, argv);
	PATCHED_ENV(env, envp, loader_argv != NULL);
	if (loader_argv) return REAL(execve)(loader_path, loader_argv, env);
	return REAL(execve)(path, argv, env);
}

WRAPPER(execv)
{
	REDIRECT(path, -1);
	pid_before_exec();
	NOTIFIED_ARGV(loader_argv, path, argv);
	PATCHED_ENV(env, environ, loader_argv != NULL);
	if (loader_argv) return REAL(execve)(loader_path, loader_argv, env);
	return REAL(execve)(path, argv, env);
}

WRAPPER(execvpe)
{
	REDIRECT_FILE(file, -1);
	pid_before_exec();
	char found[PATH_MAX];
	NOTIFIED_ARGV(loader_argv, searched(file, found), argv);
	PATCHED_ENV(env, envp, loader_argv != NULL);
	if (loader_argv) return REAL(execve)(loader_path, loader_argv, env);
	return REAL(execvpe)(file, argv, env);
}

WRAPPER(execvp)
{
	REDIRECT_FILE(file, -1);
	pid_before_exec();
	char found[PATH_MAX];
	NOTIFIED_ARGV(loader_argv, searched(file, found), argv);
	PATCHED_ENV(env, environ, loader_argv != NULL);
	if (loader_argv) return REAL(execve)(loader_path, loader_argv, env);
	return REAL(execvpe)(file, argv, env);
}

WRAPPER(fexecve)
{
	pid_before_exec();
	PATCHED_ENV(env, envp, 0);
	return REAL(fexecve)(fd, argv, env);
}

WRAPPER(posix_spawn)
{
	REDIRECT(path, errno); /* posix_spawn returns its error */
	NOTIFIED_ARGV(loader_argv, path, argv);
	PATCHED_SPAWN_ENV(env, envp, before, want, loader_argv != NULL);
	int r = REAL(posix_spawn)(pid, loader_argv ? loader_path : path, actions, attr, loader_argv ? loader_argv : argv, env);
	if (r == 0) shim_fault_point(FAULT_AFTER_SPAWN);
	if (r == 0 && pid) *pid = pid_record_child(*pid, before, want);
	return r;
}

WRAPPER(posix_spawnp)
{
	REDIRECT_FILE(file, errno);
	char found[PATH_MAX];
	NOTIFIED_ARGV(loader_argv, searched(file, found), argv);
	PATCHED_SPAWN_ENV(env, envp, before, want, loader_argv != NULL);
	int r = loader_argv ? REAL(posix_spawn)(pid, loader_path, actions, attr, loader_argv, env)
			    : REAL(posix_spawnp)(pid, file, actions, attr, argv, env);
	if (r == 0) shim_fault_point(FAULT_AFTER_SPAWN);
	if (r == 0 && pid) *pid = pid_record_child(*pid, before, want);
	return r;
}

/* system() spawns and reaps its shell inside libc, past the wrappers, so
 * the shell's row would outlive it: done here through them, with
 * system()'s own signal handling (SIGINT and SIGQUIT ignored and SIGCHLD
 * blocked in the caller while it waits; the shell gets them as they were). */
WRAPPER(system)
{
	if (!shim_active) return REAL(system)(command);
	if (!command) return 1; /* the shell exists: it runs every program of the application */
	struct sigaction ignore = { .sa_handler = SIG_IGN }, old_int, old_quit;
	sigset_t chld, old_mask, defaults;
	sigemptyset(&ignore.sa_mask);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	REAL(sigaction)(SIGINT, &ignore, &old_int);
	REAL(sigaction)(SIGQUIT, &ignore, &old_quit);
	sigprocmask(SIG_BLOCK, &chld, &old_mask);
	sigemptyset(&defaults);
	if (old_int.sa_handler != SIG_IGN) sigaddset(&defaults, SIGINT);
	if (old_quit.sa_handler != SIG_IGN) sigaddset(&defaults, SIGQUIT);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &old_mask);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *argv[] = { "sh", "-c", (char *)command, NULL };
	pid_t child;
	int status = -1, e = posix_spawn(&child, "/bin/sh", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (e == 0) {
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	} else {
		status = 127 << 8; /* as system() reports a shell that could not run */
	}
	REAL(sigaction)(SIGINT, &old_int, NULL);
	REAL(sigaction)(SIGQUIT, &old_quit, NULL);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	return status;
}

/* execl, execlp and execle build an argv from their arguments. */
#define COLLECT_ARGS(first, argv_name, after)                        \
	va_list ap;                                                  \
	size_t argc = 1;                                             \
	va_start(ap, first);                                         \
	while (va_arg(ap, char *)) argc++;                           \
	va_end(ap);                                                  \
	char *argv_name[argc + 1];                                   \
	argv_name[0] = (char *)(first);                              \
	va_start(ap, first);                                         \
	for (size_t i = 1; i <= argc; i++) argv_name[i] = va_arg(ap, char *); \
	after;                                                       \
	va_end(ap)

WRAPPER(execl)
{
	COLLECT_ARGS(arg, argv, (void)0);
	return execv(path, argv);
}

WRAPPER(execlp)
{
	COLLECT_ARGS(arg, argv, (void)0);
	return execvp(file, argv);
}

WRAPPER(execle)
{
	char *const *envp;
	COLLECT_ARGS(arg, argv, envp = va_arg(ap, char *const *));
	return execve(path, argv, envp);
}
