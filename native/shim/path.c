/* Path redirection ("dynamic symbolic links"): an application may carry
 * redirections FROM -> TO (the paths table). In every process of it, a
 * path that FROM covers (FROM itself, or under it) reaches the kernel with
 * that prefix replaced by TO, so clones of one program built around fixed
 * paths each get their own files. What the kernel hands back as a path
 * (getcwd, realpath) goes the other way: the program sees its own paths.
 *
 * The redirections are read once at start into an array that is never
 * changed afterwards (an exec reads them again; a fork child inherits
 * them), so the wrappers take no lock and allocate nothing: they are safe
 * in threads, signal handlers and vfork children. Without redirections a
 * wrapper costs one predictable branch before the real call.
 *
 * Matching is lexical and makes no system call: the path's '//' and '/./'
 * are skipped as the kernel would, '..' is not resolved (it depends on
 * symbolic links), and the content of a symbolic link is the kernel's to
 * follow, not redirected. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"
#include "path.h"
#include "../core/afterfork.h"
#include "pid.h"
#include "../core/rawcall.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

struct redirect {
	const char *from, *to; /* normalized: absolute, no '//', '.', '..' or trailing '/' */
	size_t from_len, to_len;
};

size_t redirect_count;
static const struct redirect *redirects;

/* --- matching ------------------------------------------------------------ */

/* p moved past the '/' and '.' components that name nothing new. */
static const char *skip_redundant(const char *p)
{
	for (;;) {
		while (*p == '/') p++;
		if (p[0] != '.' || (p[1] != '/' && p[1] != 0)) return p;
		p++;
	}
}

/* Where the rest of path p begins when p names dir or something under it,
 * else NULL. dir is normalized; the rest is "" or begins with '/'. One
 * pass over both, with no calls: every path of the program comes here. */
static const char *covered(const char *p, const char *dir, size_t dir_len)
{
	const char *d = dir, *end = dir + dir_len;
	while (d < end) { /* d is at the '/' before one of dir's components */
		p = skip_redundant(p);
		for (d++; d < end && *d != '/'; d++, p++)
			if (*p != *d) return NULL;
		if (*p && *p != '/') return NULL; /* p's component is longer */
	}
	return p;
}

/* prefix followed by rest, into buf (PATH_MAX bytes). */
static int join(char *buf, const char *prefix, size_t prefix_len, const char *rest)
{
	size_t rest_len = strlen(rest);
	if (prefix_len + rest_len >= PATH_MAX) return shim_fail(ENAMETOOLONG);
	memcpy(buf, prefix, prefix_len);
	memcpy(buf + prefix_len, rest, rest_len + 1);
	return 0;
}

/* An absolute path: the first redirection covering it applies. */
static int redirect_absolute(const char **path, char *buf)
{
	for (size_t i = 0; i < redirect_count; i++) {
		const struct redirect *r = &redirects[i];
		const char *rest = covered(*path, r->from, r->from_len);
		if (!rest) continue;
		if (join(buf, r->to, r->to_len, rest)) return -1;
		*path = buf;
		return 0;
	}
	return 0;
}

/* A system path as the program names it: under its FROM when it lies
 * under a TO, written into buf; else path itself (also when the virtual
 * one would not fit). */
static const char *redirect_back(const char *path, char *buf)
{
	for (size_t i = 0; i < redirect_count; i++) {
		const struct redirect *r = &redirects[i];
		const char *rest = covered(path, r->to, r->to_len);
		if (rest) return join(buf, r->from, r->from_len, rest) ? path : buf;
	}
	return path;
}

/* --- the working directory ----------------------------------------------- */

/* A relative path is the kernel's to resolve against the working
 * directory, which a redirected chdir already made the system one. But
 * when a FROM lies below the working directory, a relative path can walk
 * into it (coreutils' mkdir -p goes down from '/' by relative names), and
 * when the working directory is inside a FROM that exists on disk, every
 * relative path lies under FROM: in those two cases only, a relative path
 * is joined to the working directory as the program names it and
 * redirected if that is covered. chdir and fchdir keep this record; a
 * sequence count lets every thread read it without a lock. */
static struct {
	_Atomic unsigned seq; /* odd while written */
	int reaches;          /* one of the two cases above */
	size_t len;
	char path[PATH_MAX]; /* the working directory as the program names it */
} cwd;

/* The working directory joined with rel into out, when the record says
 * relative paths may need redirecting; 0 when they do not. */
static int cwd_join(const char *rel, char *out)
{
	for (;;) {
		unsigned seq = atomic_load_explicit(&cwd.seq, memory_order_acquire);
		if (seq & 1) continue;
		int ok = cwd.reaches;
		if (ok) {
			size_t len = cwd.len, rel_len = strlen(rel);
			if ((ok = len + 1 + rel_len < PATH_MAX)) {
				memcpy(out, cwd.path, len);
				out[len] = '/';
				memcpy(out + len + 1, rel, rel_len + 1);
			}
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&cwd.seq, memory_order_relaxed) == seq) return ok;
	}
}

static int relative_needs_redirect(const char *vcwd, size_t len, int on_disk)
{
	for (size_t i = 0; i < redirect_count; i++) {
		const struct redirect *r = &redirects[i];
		const char *rest = covered(r->from, vcwd, len);
		if ((rest && *rest) || (on_disk && covered(vcwd, r->from, r->from_len))) return 1;
	}
	return 0;
}

/* Writes the record from the working directory the kernel has. */
static void cwd_record(void)
{
	int saved = errno;
	char real[PATH_MAX], virt[PATH_MAX];
	const char *v = REAL(getcwd)(real, sizeof real) ? redirect_back(real, virt) : NULL;
	size_t len = v ? strlen(v) : 0;
	int reaches = v && relative_needs_redirect(v, len, v == real);
	/* No signal handler of this thread may find the record half written
	 * (it would wait for it forever). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	unsigned seq;
	do seq = atomic_load_explicit(&cwd.seq, memory_order_relaxed) & ~1u;
	while (!atomic_compare_exchange_weak_explicit(&cwd.seq, &seq, seq + 1, memory_order_acquire, memory_order_relaxed));
	cwd.reaches = reaches;
	cwd.len = len;
	if (v) memcpy(cwd.path, v, len + 1);
	atomic_store_explicit(&cwd.seq, seq + 2, memory_order_release);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = saved;
}

/* After a chdir or fchdir (and at start): the record made again. */
static void cwd_changed(void)
{
	if (!redirect_count) return;
	shim_check_fork();
	/* A vfork child shares its parent's memory: its chdir must not move
	 * the parent's record (it is about to exec, and reads it again then). */
	if ((pid_t)raw_call(SYS_getpid) != shim_pid) return;
	cwd_record();
}

APPSHOT_AFTER_FORK_CODE void path_after_fork_child(void)
{
	if (!redirect_count) return;
	/* Another thread of the parent may have been writing the record when
	 * it forked: the child has no such thread to finish it, and the
	 * count would stay odd, so its first relative path would wait
	 * forever. The child's record starts again, from its own directory. */
	atomic_store_explicit(&cwd.seq, 0, memory_order_relaxed);
	cwd_record();
}

static int redirect_relative(const char **path, char *buf)
{
	char joined[PATH_MAX];
	const char *p = joined;
	if (!cwd_join(*path, joined)) return 0;
	if (redirect_absolute(&p, buf)) return -1;
	if (p == buf) *path = buf; /* else the relative path, as given */
	return 0;
}

int redirect_path_slow(const char **path, char *buf)
{
	const char *p = *path;
	if (!p || !*p) return 0;
	if (redirect_count && (p[0] == '/' ? redirect_absolute(path, buf) : redirect_relative(path, buf))) return -1;
	/* A redirected path is the application's choice of a file, not a
	 * process: /proc/<pid> is translated only as the program wrote it. */
	if (*path == p && names_proc_pid(p)) *path = pid_proc_path(p, buf, PATH_MAX);
	return 0;
}

int redirect_path_at_slow(int dirfd, const char **path, char *buf)
{
	/* A path relative to a directory descriptor is left alone: the
	 * descriptor was opened through a redirected path already. */
	if (dirfd != AT_FDCWD && *path && **path != '/') return 0;
	return redirect_path_slow(path, buf);
}

/* --- loading ------------------------------------------------------------- */

struct load {
	size_t count, bytes;
	struct redirect *list;
	char *strings;
	const char *bad; /* why a row is unusable */
};

static int count_row(void *arg, const char *from, size_t from_len, const char *to, size_t to_len)
{
	struct load *l = arg;
	(void)from, (void)to;
	l->count++;
	l->bytes += from_len + to_len + 2;
	return 0;
}

static const char *row_problem(const char *from, size_t from_len, const char *to, size_t to_len)
{
	if (from_len < 2 || from[0] != '/' || to_len < 1 || to[0] != '/') return "FROM and TO must be absolute and FROM not '/'";
	if (from_len >= PATH_MAX || to_len >= PATH_MAX) return "a path is longer than PATH_MAX";
	if (memchr(to, 0, to_len)) return "TO holds a NUL byte";
	return NULL;
}

static char *copy(struct load *l, const char *s, size_t len)
{
	char *out = l->strings;
	memcpy(out, s, len);
	out[len] = 0;
	l->strings += len + 1;
	return out;
}

static int copy_row(void *arg, const char *from, size_t from_len, const char *to, size_t to_len)
{
	struct load *l = arg;
	if ((l->bad = row_problem(from, from_len, to, to_len))) return EINVAL;
	struct redirect *r = &l->list[l->count++];
	r->from = copy(l, from, from_len);
	r->to = copy(l, to, to_len);
	r->from_len = from_len;
	r->to_len = to_len;
	return 0;
}

static int load_in(MDB_txn *txn, void *arg)
{
	struct load *l = arg;
	const struct tabledb *t = shim_tables();
	int rc = tabledb_redirects(t, txn, count_row, l);
	if (rc || !l->count) return rc;
	if (!(l->list = malloc(l->count * sizeof *l->list + l->bytes))) return ENOMEM;
	l->strings = (char *)(l->list + l->count);
	l->count = 0;
	return tabledb_redirects(t, txn, copy_row, l);
}

/* The application's redirections from its tables, or the process stops. */
static struct load load_redirects(void)
{
	struct load l = { 0 };
	const struct tabledb *t = shim_tables();
	int rc = with_read_txn(load_in, &l);
	/* Running on with a redirection missing would put files where the
	 * application's other instances keep theirs. */
	if (rc)
		shim_fatal("cannot read the path redirections of application '%s' from the tables at %s: %s; "
			   "end the application and run it again with valid --redir FROM=TO options",
			   t->aid, t->path,
			   l.bad ? l.bad : rc == MDB_CORRUPTED ? "a row is not FROM, a NUL byte and TO" : rc > 0 ? strerror(rc) : mdb_strerror(rc));
	return l;
}

void path_init(int none)
{
	/* none: the program that started this one had no redirections, and
	 * they are the application's, which it shares. */
	struct load l = none ? (struct load){ 0 } : load_redirects();
	redirects = l.list;
	redirect_count = l.count;
	cwd_changed();
}

static int same_redirects(const struct load *l)
{
	if (l->count != redirect_count) return 0;
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->list[i].from, redirects[i].from) || strcmp(l->list[i].to, redirects[i].to)) return 0;
	return 1;
}

/* After a restore: the restored application's redirections (a clone's
 * rules may give it others). Most often they are the ones the process had,
 * and the array stays; else the new one is published count first, so a
 * thread reading meanwhile sees none rather than a count the array lacks
 * (the old array is never freed: a reader may still hold it). */
void path_restored(void)
{
	struct load l = load_redirects();
	if (same_redirects(&l)) {
		free(l.list);
	} else {
		__atomic_store_n(&redirect_count, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&redirects, l.list, __ATOMIC_RELEASE);
		__atomic_store_n(&redirect_count, l.count, __ATOMIC_RELEASE);
	}
	cwd_changed();
}

/* --- the wrappers that redirect and call ---------------------------------- */

/* One per line of these policies in wrapped.def: the path parameters it
 * names redirected, then the real call. */
#define PATH_ARG_WRAPPER(ret, name, args, fail, p)                             \
	WRAPPER(name) { REDIRECT(p, fail); return REAL(name) args; }
#define PATH_AT_WRAPPER(ret, name, args, fail, dirfd, p)                       \
	WRAPPER(name) { REDIRECT_AT(dirfd, p, fail); return REAL(name) args; }
#define TWO_PATHS_WRAPPER(ret, name, args, fail, a, b)                         \
	WRAPPER(name) { REDIRECT(a, fail); REDIRECT(b, fail); return REAL(name) args; }
#define TWO_PATHS_AT_WRAPPER(ret, name, args, fail, dirfd_a, a, dirfd_b, b)    \
	WRAPPER(name)                                                          \
	{                                                                      \
		REDIRECT_AT(dirfd_a, a, fail);                                 \
		REDIRECT_AT(dirfd_b, b, fail);                                 \
		return REAL(name) args;                                        \
	}
WRAPPED_PATH_ARG(PATH_ARG_WRAPPER)
WRAPPED_PATH_AT(PATH_AT_WRAPPER)
WRAPPED_TWO_PATHS(TWO_PATHS_WRAPPER)
WRAPPED_TWO_PATHS_AT(TWO_PATHS_AT_WRAPPER)

WRAPPER(chdir)
{
	REDIRECT(path, -1);
	int rc = REAL(chdir)(path);
	if (rc == 0) cwd_changed();
	return rc;
}

WRAPPER(fchdir)
{
	int rc = REAL(fchdir)(fd);
	if (rc == 0) cwd_changed();
	return rc;
}

/* --- temporary files ----------------------------------------------------- */

/* The real call fills in the redirected copy of the template; the
 * characters it chose (the last `tail` of both) go back into the
 * caller's template, as the real call would have written them there. */
static void copy_tail(char *template, const char *redirected, size_t tail)
{
	size_t n = strlen(template), m = strlen(redirected);
	if (n >= tail && m >= tail) memcpy(template + n - tail, redirected + m - tail, tail);
}

/* The template redirected into buf: path is buf then, else the template. */
#define REDIRECT_TEMPLATE(fail)                                            \
	const char *path = template;                                       \
	char buf[PATH_MAX];                                                \
	if (redirect_path(&path, buf)) return (fail)

/* Policy TEMPLATE: the call's arguments name the template, so it is
 * pointed at the redirected copy for the call. */
#define TEMPLATE_WRAPPER(ret, name, args, fail, tail)                          \
	WRAPPER(name)                                                          \
	{                                                                      \
		REDIRECT_TEMPLATE(fail);                                       \
		if (path == template) return REAL(name) args;                  \
		char *caller = template;                                       \
		template = buf;                                                \
		int fd = REAL(name) args;                                      \
		if (fd >= 0) copy_tail(caller, buf, tail);                     \
		return fd;                                                     \
	}
WRAPPED_TEMPLATE(TEMPLATE_WRAPPER)

WRAPPER(mkdtemp)
{
	REDIRECT_TEMPLATE(NULL);
	if (path == template) return REAL(mkdtemp)(template);
	if (!REAL(mkdtemp)(buf)) return NULL;
	copy_tail(template, buf, 6);
	return template;
}

/* --- paths the kernel gives back ----------------------------------------- */

/* What getcwd does with its result: into buf if the caller gave one (EINVAL
 * for size 0, ERANGE if too small), else into memory of size bytes, or of
 * the length needed when size is 0. */
static char *give_path(const char *s, char *buf, size_t size)
{
	size_t n = strlen(s) + 1;
	if (buf && size == 0) return shim_fail(EINVAL), NULL;
	if (size && size < n) return shim_fail(ERANGE), NULL;
	if (!buf && !(buf = malloc(size ? size : n))) return NULL;
	return memcpy(buf, s, n);
}

static char *virtual_getcwd(char *buf, size_t size)
{
	char real[PATH_MAX], virt[PATH_MAX];
	/* Longer than PATH_MAX, or gone: as the real call says. */
	if (!REAL(getcwd)(real, sizeof real)) return REAL(getcwd)(buf, size);
	return give_path(redirect_back(real, virt), buf, size);
}

WRAPPER(getcwd)
{
	if (__builtin_expect(redirect_count == 0, 1)) return REAL(getcwd)(buf, size);
	return virtual_getcwd(buf, size);
}

WRAPPER(get_current_dir_name)
{
	char *s = REAL(get_current_dir_name)(), virt[PATH_MAX];
	if (!s || redirect_count == 0) return s;
	const char *v = redirect_back(s, virt);
	if (v == s) return s;
	free(s);
	return strdup(v);
}

static char *virtual_realpath(const char *path, char *resolved)
{
	REDIRECT(path, NULL);
	char real[PATH_MAX] = "", virt[PATH_MAX];
	char *r = REAL(realpath)(path, real);
	/* On failure glibc leaves in resolved the part it got through. */
	if (!r && (!resolved || !real[0])) return NULL;
	const char *v = redirect_back(real, virt);
	/* /proc/self and /proc/<vpid> resolve to the kernel's /proc/<spid>. */
	if (v == real) v = pid_proc_path_virtual(real, virt, sizeof virt);
	if (!resolved) return strdup(v);
	strcpy(resolved, v);
	return r ? resolved : NULL;
}

WRAPPER(realpath)
{
	if (__builtin_expect(redirect_count == 0, 1) && !names_proc_pid(path)) return REAL(realpath)(path, resolved);
	return virtual_realpath(path, resolved);
}

WRAPPER(canonicalize_file_name)
{
	if (__builtin_expect(redirect_count == 0, 1) && !names_proc_pid(path)) return REAL(realpath)(path, NULL);
	return virtual_realpath(path, NULL);
}

/* --- the entry points _FORTIFY_SOURCE builds call instead ----------------- */

/* (make, less and cmake here among them; __readlink_chk and
 * __readlinkat_chk redirect and call, above.) A buffer too small for what
 * the caller says it holds is the real call's to report: it ends the
 * process. */
WRAPPER(__getcwd_chk)
{
	if (__builtin_expect(redirect_count == 0, 1) || size > buflen) return REAL(__getcwd_chk)(buf, size, buflen);
	return virtual_getcwd(buf, size);
}

WRAPPER(__realpath_chk)
{
	if ((__builtin_expect(redirect_count == 0, 1) && !names_proc_pid(path)) || resolvedlen < PATH_MAX)
		return REAL(__realpath_chk)(path, resolved, resolvedlen);
	return virtual_realpath(path, resolved);
}

/* --- AF_UNIX socket addresses (bind and connect, in port.c) --------------- */

int unix_redirect_slow(const struct sockaddr **addr, socklen_t *len, struct sockaddr_un *b)
{
	const size_t off = offsetof(struct sockaddr_un, sun_path);
	const struct sockaddr_un *un = (const struct sockaddr_un *)*addr;
	/* Unnamed and abstract sockets have no path. */
	if (*len <= off || *len > sizeof *b || un->sun_path[0] == 0) return 0;
	char name[sizeof un->sun_path + 1], buf[PATH_MAX];
	size_t n = strnlen(un->sun_path, *len - off);
	memcpy(name, un->sun_path, n);
	name[n] = 0;
	const char *path = name;
	if (redirect_path(&path, buf)) return -1;
	if (path == name) return 0;
	n = strlen(path);
	if (n > sizeof b->sun_path) return shim_fail(ENAMETOOLONG);
	b->sun_family = AF_UNIX;
	memcpy(b->sun_path, path, n);
	if (n < sizeof b->sun_path) b->sun_path[n++] = 0;
	*addr = (const struct sockaddr *)b;
	*len = (socklen_t)(off + n);
	return 0;
}
