/*
 * pathtool DIR LONG: calls every function the shim redirects paths for on
 * paths under DIR (which must exist and be empty), and prints one line per
 * call: its name, then "ok" and what it gave, or "err" and the errno's
 * name. Paths it prints are written with DIR as "D", and it prints no
 * addresses, descriptors or inode numbers, so a run on a directory and a
 * run under `appshot run --redir VIRT=DIR` on VIRT print the same lines.
 * LONG is PATH_MAX less the length of the directory the kernel sees: a
 * path of DIR and LONG more bytes is one byte too long for it.
 *
 * `pathtool DIR LONG exec` (run by itself through exec) makes a few calls
 * in a new program of the application.
 */
#define _GNU_SOURCE
#include "tool.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <utime.h>

/* Gone from glibc's headers, still exported for programs built before 2.33. */
int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen);
ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t len, size_t buflen);
char *__getcwd_chk(char *buf, size_t size, size_t buflen);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
#define STAT_VER 1 /* _STAT_VER_LINUX on x86-64 */

extern char **environ;

static const char *dir;
static size_t dir_len;

/* DIR/rel, in one of a few rotating buffers. */
static const char *at(const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, PATH_MAX, "%s/%s", dir, rel);
	return b;
}

/* A path as printed: DIR written as D ("!" first if it is not under DIR). */
static const char *shown(const char *path)
{
	static char b[PATH_MAX + 2];
	if (!strncmp(path, dir, dir_len) && (path[dir_len] == '/' || !path[dir_len]))
		snprintf(b, sizeof b, "D%s", path + dir_len);
	else
		snprintf(b, sizeof b, "!%s", path);
	return b;
}

static void line(const char *name, int ok, const char *fmt, ...)
{
	int err = errno;
	printf("%s ", name);
	if (!ok) {
		printf("err %s\n", strerrorname_np(err));
		return;
	}
	printf("ok");
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		putchar(' ');
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
}

static void rc(const char *name, long r) { line(name, r >= 0, NULL); }

/* A descriptor: ok or not, then closed. */
static void fd(const char *name, int f)
{
	line(name, f >= 0, NULL);
	if (f >= 0) close(f);
}

static void stream(const char *name, FILE *f)
{
	line(name, f != NULL, NULL);
	if (f) fclose(f);
}

static const char *kind(mode_t m)
{
	return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "link" : S_ISFIFO(m) ? "fifo" :
	       S_ISSOCK(m) ? "socket" : S_ISCHR(m) ? "chr" : "other";
}

/* What a stat result says that does not change from one run to another. */
static void st(const char *name, int r, const struct stat *s)
{
	if (r < 0) line(name, 0, NULL);
	else if (S_ISREG(s->st_mode)) line(name, 1, "%s %04o size %lld", kind(s->st_mode), s->st_mode & 07777, (long long)s->st_size);
	else line(name, 1, "%s %04o", kind(s->st_mode), s->st_mode & 07777);
}

static void st64(const char *name, int r, const struct stat64 *s)
{
	struct stat t = { .st_mode = s->st_mode, .st_size = s->st_size };
	st(name, r, &t);
}

/* The modification time, which attrs() sets. */
static void mtime(const char *name, const char *path)
{
	struct stat s;
	int r = stat(path, &s);
	line(name, r == 0, "mtime %lld", r == 0 ? (long long)s.st_mtime : 0LL);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f)) {
		perror(path);
		exit(1);
	}
}

static void opens(void)
{
	rc("mkdir", mkdir(at("sub"), 0755));
	rc("mkdir(existing)", mkdir(at("sub"), 0755));
	int f = open(at("sub/f"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	line("open(O_CREAT)", f >= 0, NULL);
	if (f >= 0) {
		rc("write", write(f, "hello", 5));
		close(f);
	}
	fd("open", open(at("sub/f"), O_RDONLY));
	fd("open64", open64(at("sub/f"), O_RDONLY));
	fd("openat", openat(AT_FDCWD, at("sub/f"), O_RDONLY));
	fd("openat64", openat64(AT_FDCWD, at("sub/f"), O_RDONLY));
	fd("__open_2", __open_2(at("sub/f"), O_RDONLY));
	fd("__open64_2", __open64_2(at("sub/f"), O_RDONLY));
	fd("__openat_2", __openat_2(AT_FDCWD, at("sub/f"), O_RDONLY));
	fd("__openat64_2", __openat64_2(AT_FDCWD, at("sub/f"), O_RDONLY));
	fd("creat", creat(at("sub/c1"), 0600));
	fd("creat64", creat64(at("sub/c2"), 0600));
	FILE *s = fopen(at("sub/f"), "r");
	char text[16] = "";
	line("fopen", s && fgets(text, sizeof text, s), "read '%s'", text);
	if (s) {
		stream("freopen", freopen(at("sub/c1"), "w", s));
	}
	stream("fopen64", fopen64(at("sub/f"), "r"));
	s = fopen(at("sub/f"), "r");
	if (s) stream("freopen64", freopen64(at("sub/c2"), "a", s));
	/* A directory descriptor opened through a redirected path: what is
	 * relative to it is the kernel's to find. */
	int d = open(at("sub"), O_RDONLY | O_DIRECTORY);
	fd("openat(dirfd, relative)", openat(d, "f", O_RDONLY));
	close(d);
}

static void stats(void)
{
	struct stat s;
	struct stat64 s64;
	struct statx sx;
	st("stat", stat(at("sub/f"), &s), &s);
	st64("stat64", stat64(at("sub/f"), &s64), &s64);
	st("lstat", lstat(at("sub/f"), &s), &s);
	st64("lstat64", lstat64(at("sub/f"), &s64), &s64);
	st("fstatat", fstatat(AT_FDCWD, at("sub/f"), &s, 0), &s);
	st64("fstatat64", fstatat64(AT_FDCWD, at("sub/f"), &s64, 0), &s64);
	st("__xstat", __xstat(STAT_VER, at("sub/f"), &s), &s);
	st64("__xstat64", __xstat64(STAT_VER, at("sub/f"), &s64), &s64);
	st("__lxstat", __lxstat(STAT_VER, at("sub/f"), &s), &s);
	st64("__lxstat64", __lxstat64(STAT_VER, at("sub/f"), &s64), &s64);
	st("__fxstatat", __fxstatat(STAT_VER, AT_FDCWD, at("sub/f"), &s, 0), &s);
	st64("__fxstatat64", __fxstatat64(STAT_VER, AT_FDCWD, at("sub/f"), &s64, 0), &s64);
	int r = statx(AT_FDCWD, at("sub/f"), 0, STATX_BASIC_STATS, &sx);
	line("statx", r == 0, "size %llu", (unsigned long long)sx.stx_size);
	struct statfs fs;
	struct statfs64 fs64;
	struct statvfs vfs;
	struct statvfs64 vfs64;
	/* Each call before its line: arguments are evaluated in no set order. */
	r = statfs(at("sub"), &fs);
	line("statfs", r == 0, "type %lx", (long)fs.f_type);
	r = statfs64(at("sub"), &fs64);
	line("statfs64", r == 0, "type %lx", (long)fs64.f_type);
	r = statvfs(at("sub"), &vfs);
	line("statvfs", r == 0, "namemax %lu", vfs.f_namemax);
	r = statvfs64(at("sub"), &vfs64);
	line("statvfs64", r == 0, "namemax %lu", vfs64.f_namemax);
	rc("access", access(at("sub/f"), R_OK));
	rc("faccessat", faccessat(AT_FDCWD, at("sub/f"), R_OK, 0));
	rc("euidaccess", euidaccess(at("sub/f"), R_OK));
	rc("eaccess", eaccess(at("sub/f"), W_OK));
	rc("access(missing)", access(at("sub/missing"), F_OK));
	/* DIR written with '//' and '/./' between its components names it too;
	 * a name that merely begins with DIR's does not. */
	char odd[PATH_MAX * 2] = "", *o = odd;
	for (const char *c = dir; *c; c++) o += *c == '/' ? sprintf(o, "//./") : sprintf(o, "%c", *c);
	strcat(odd, "//sub/./f");
	st("stat(with // and /./)", stat(odd, &s), &s);
	snprintf(odd, sizeof odd, "%s/.", dir);
	st("stat(DIR/.)", stat(odd, &s), &s);
	snprintf(odd, sizeof odd, "%sx/sub/f", dir);
	st("stat(DIRx)", stat(odd, &s), &s);
}

static void names(void)
{
	char buf[PATH_MAX];
	rc("rename", rename(at("sub/c1"), at("sub/r1")));
	rc("renameat", renameat(AT_FDCWD, at("sub/r1"), AT_FDCWD, at("sub/r2")));
	rc("renameat2", renameat2(AT_FDCWD, at("sub/r2"), AT_FDCWD, at("sub/r3"), 0));
	rc("renameat2(RENAME_NOREPLACE)", renameat2(AT_FDCWD, at("sub/r3"), AT_FDCWD, at("sub/f"), RENAME_NOREPLACE));
	rc("link", link(at("sub/f"), at("sub/hard1")));
	rc("linkat", linkat(AT_FDCWD, at("sub/f"), AT_FDCWD, at("sub/hard2"), 0));
	rc("symlink", symlink("f", at("sub/soft1")));
	rc("symlinkat", symlinkat(at("sub/f"), AT_FDCWD, at("sub/soft2")));
	ssize_t n = readlink(at("sub/soft1"), buf, sizeof buf - 1);
	line("readlink", n >= 0, "'%.*s'", (int)(n < 0 ? 0 : n), buf);
	/* The content stays what the program wrote, virtual path and all. */
	n = readlinkat(AT_FDCWD, at("sub/soft2"), buf, sizeof buf - 1);
	if (n >= 0) buf[n] = 0;
	line("readlinkat", n >= 0, "'%s'", n >= 0 ? shown(buf) : "");
	n = __readlink_chk(at("sub/soft1"), buf, sizeof buf - 1, sizeof buf);
	line("__readlink_chk", n >= 0, "'%.*s'", (int)(n < 0 ? 0 : n), buf);
	n = __readlinkat_chk(AT_FDCWD, at("sub/soft1"), buf, sizeof buf - 1, sizeof buf);
	line("__readlinkat_chk", n >= 0, "'%.*s'", (int)(n < 0 ? 0 : n), buf);
	struct stat s;
	st("stat(through soft1)", stat(at("sub/soft1"), &s), &s);
	rc("unlink", unlink(at("sub/hard1")));
	rc("unlinkat", unlinkat(AT_FDCWD, at("sub/hard2"), 0));
	rc("mkdirat", mkdirat(AT_FDCWD, at("sub/d1"), 0700));
	rc("mkdir(d2)", mkdir(at("sub/d2"), 0700));
	rc("rmdir", rmdir(at("sub/d2")));
	rc("unlinkat(AT_REMOVEDIR)", unlinkat(AT_FDCWD, at("sub/d1"), AT_REMOVEDIR));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int no_dots(const struct dirent *e) { return strcmp(e->d_name, ".") && strcmp(e->d_name, ".."); }
static int no_dots64(const struct dirent64 *e) { return strcmp(e->d_name, ".") && strcmp(e->d_name, ".."); }

static void dirs(void)
{
	DIR *d = opendir(at("sub"));
	char *names[64], list[1024] = "";
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) && n < 64)
		if (no_dots(e)) names[n++] = strdup(e->d_name);
	qsort(names, n, sizeof *names, by_name);
	for (int i = 0; i < n; i++) {
		strcat(list, " ");
		strcat(list, names[i]);
		free(names[i]);
	}
	line("opendir", d != NULL, "%d:%s", n, list);
	if (d) closedir(d);
	struct dirent **l;
	n = scandir(at("sub"), &l, no_dots, alphasort);
	line("scandir", n >= 0, "%d first %s", n, n > 0 ? l[0]->d_name : "-");
	while (n > 0) free(l[--n]);
	if (n == 0) free(l);
	struct dirent64 **l64;
	n = scandir64(at("sub"), &l64, no_dots64, alphasort64);
	line("scandir64", n >= 0, "%d", n);
	while (n > 0) free(l64[--n]);
	line("opendir(missing)", opendir(at("nodir")) != NULL, NULL);
}

/* The working directory, and paths the kernel hands back. */
static void cwd(void)
{
	char buf[PATH_MAX];
	rc("chdir", chdir(at("sub")));
	char *g = getcwd(buf, sizeof buf);
	line("getcwd", g != NULL, "%s", g ? shown(g) : "");
	size_t len = g ? strlen(g) : 0;
	line("getcwd(exact size)", getcwd(buf, len + 1) != NULL, NULL);
	line("getcwd(one byte short)", getcwd(buf, len) != NULL, NULL);
	line("getcwd(size 0)", getcwd(buf, 0) != NULL, NULL);
	g = __getcwd_chk(buf, sizeof buf, sizeof buf);
	line("__getcwd_chk", g != NULL, "%s", g ? shown(g) : "");
	g = getcwd(NULL, 0);
	line("getcwd(NULL, 0)", g != NULL, "%s", g ? shown(g) : "");
	free(g);
	unsetenv("PWD");
	g = get_current_dir_name();
	line("get_current_dir_name", g != NULL, "%s", g ? shown(g) : "");
	free(g);
	struct stat s;
	st("stat(relative)", stat("f", &s), &s);
	fd("open(relative)", open("f", O_RDONLY));
	g = realpath(at("sub/../sub/./soft1"), buf);
	line("realpath", g != NULL, "%s", g ? shown(g) : "");
	g = __realpath_chk(at("sub/soft1"), buf, sizeof buf);
	line("__realpath_chk", g != NULL, "%s", g ? shown(g) : "");
	g = realpath("f", NULL);
	line("realpath(relative, NULL)", g != NULL, "%s", g ? shown(g) : "");
	free(g);
	g = canonicalize_file_name(at("sub//f"));
	line("canonicalize_file_name", g != NULL, "%s", g ? shown(g) : "");
	free(g);
	line("realpath(missing)", realpath(at("sub/missing/x"), buf) != NULL, NULL);
	/* From above DIR, relative names lead into it (as mkdir -p walks). */
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s/..", dir);
	rc("chdir(parent)", chdir(parent));
	const char *base = strrchr(dir, '/') + 1;
	char rel[PATH_MAX];
	snprintf(rel, sizeof rel, "%s/sub/f", base);
	st("stat(relative, from the parent)", stat(rel, &s), &s);
	snprintf(rel, sizeof rel, "%s/sub/made-from-parent", base);
	rc("mkdir(relative, from the parent)", mkdir(rel, 0755));
	int d = open(dir, O_RDONLY | O_DIRECTORY);
	rc("fchdir", fchdir(d));
	close(d);
	g = getcwd(buf, sizeof buf);
	line("getcwd(after fchdir)", g != NULL, "%s", g ? shown(g) : "");
	rc("chdir(/)", chdir("/"));
}

static void attrs(void)
{
	struct stat s;
	rc("chmod", chmod(at("sub/f"), 0640));
	rc("fchmodat", fchmodat(AT_FDCWD, at("sub/c2"), 0604, 0));
	rc("chown", chown(at("sub/f"), getuid(), getgid()));
	rc("lchown", lchown(at("sub/soft1"), getuid(), getgid()));
	rc("fchownat", fchownat(AT_FDCWD, at("sub/f"), getuid(), getgid(), 0));
	rc("truncate", truncate(at("sub/f"), 3));
	rc("truncate64", truncate64(at("sub/c2"), 7));
	struct utimbuf ut = { 1000000000, 1000000000 };
	rc("utime", utime(at("sub/f"), &ut));
	struct timeval tv[2] = { { 1100000000, 0 }, { 1100000000, 0 } };
	rc("utimes", utimes(at("sub/c2"), tv));
	rc("lutimes", lutimes(at("sub/soft1"), tv));
	rc("futimesat", futimesat(AT_FDCWD, at("sub/r3"), tv));
	struct timespec ts[2] = { { 1200000000, 0 }, { 1200000000, 0 } };
	rc("utimensat", utimensat(AT_FDCWD, at("sub/c2"), ts, 0));
	st("stat(f)", stat(at("sub/f"), &s), &s);
	mtime("stat(f)", at("sub/f"));
	st("stat(c2)", stat(at("sub/c2"), &s), &s);
	mtime("stat(c2)", at("sub/c2"));
	mtime("stat(r3)", at("sub/r3"));
	rc("mknod", mknod(at("sub/fifo1"), S_IFIFO | 0600, 0));
	rc("mknodat", mknodat(AT_FDCWD, at("sub/fifo2"), S_IFIFO | 0600, 0));
	rc("mkfifo", mkfifo(at("sub/fifo3"), 0600));
	rc("mkfifoat", mkfifoat(AT_FDCWD, at("sub/fifo4"), 0600));
	st("lstat(fifo4)", lstat(at("sub/fifo4"), &s), &s);
	char v[64] = "";
	rc("setxattr", setxattr(at("sub/f"), "user.appshot", "yes", 3, 0));
	rc("lsetxattr", lsetxattr(at("sub/c2"), "user.appshot", "no", 2, 0));
	ssize_t n = getxattr(at("sub/f"), "user.appshot", v, sizeof v);
	line("getxattr", n >= 0, "'%.*s'", (int)(n < 0 ? 0 : n), v);
	n = lgetxattr(at("sub/c2"), "user.appshot", v, sizeof v);
	line("lgetxattr", n >= 0, "'%.*s'", (int)(n < 0 ? 0 : n), v);
	char list[256];
	n = listxattr(at("sub/f"), list, sizeof list);
	line("listxattr", n >= 0, "%zd", n);
	n = llistxattr(at("sub/c2"), list, sizeof list);
	line("llistxattr", n >= 0, "%zd", n);
	rc("removexattr", removexattr(at("sub/f"), "user.appshot"));
	rc("lremovexattr", lremovexattr(at("sub/c2"), "user.appshot"));
}

/* A template's suffix was filled in, and the file it names exists. */
static void temp(const char *name, int ok, char *template, const char *suffix)
{
	struct stat s;
	int err = errno;
	size_t n = strlen(template), k = strlen(suffix);
	int filled = !strstr(template, "XXXXXX") && !strcmp(template + n - k, suffix);
	int exists = stat(template, &s) == 0;
	errno = err;
	line(name, ok, "filled %d exists %d", filled, exists);
}

static void temps(void)
{
	char t[PATH_MAX];
	strcpy(t, at("sub/tmp-XXXXXX"));
	int f = mkstemp(t);
	temp("mkstemp", f >= 0, t, "");
	strcpy(t, at("sub/tmp-XXXXXX"));
	f = mkstemp64(t);
	temp("mkstemp64", f >= 0, t, "");
	strcpy(t, at("sub/tmp-XXXXXX"));
	f = mkostemp(t, O_CLOEXEC);
	temp("mkostemp", f >= 0, t, "");
	strcpy(t, at("sub/tmp-XXXXXX"));
	f = mkostemp64(t, O_CLOEXEC);
	temp("mkostemp64", f >= 0, t, "");
	strcpy(t, at("sub/tmp-XXXXXX.txt"));
	f = mkstemps(t, 4);
	temp("mkstemps", f >= 0, t, ".txt");
	strcpy(t, at("sub/tmp-XXXXXX.log"));
	f = mkostemps(t, 4, 0);
	temp("mkostemps", f >= 0, t, ".log");
	strcpy(t, at("sub/dtmp-XXXXXX"));
	temp("mkdtemp", mkdtemp(t) != NULL, t, "");
	strcpy(t, at("sub/no-template"));
	rc("mkstemp(bad template)", mkstemp(t));
}

/* What the kernel says of a path, redirected or not. */
static void errors(long long_len)
{
	char path[PATH_MAX + 16];
	rc("open(missing)", open(at("sub/missing"), O_RDONLY));
	rc("open(ENOTDIR)", open(at("sub/f/x"), O_RDONLY));
	rc("open(directory for writing)", open(at("sub"), O_WRONLY));
	rc("mkdir(missing parent)", mkdir(at("sub/no/such"), 0755));
	rc("rmdir(not empty)", rmdir(at("sub")));
	rc("unlink(directory)", unlink(at("sub")));
	/* DIR and long_len bytes more: one over PATH_MAX for the kernel; one
	 * byte shorter, merely missing. */
	for (long len = long_len; len >= long_len - 1; len--) {
		size_t n = (size_t)snprintf(path, sizeof path, "%s", dir);
		while (n < dir_len + (size_t)len) {
			path[n++] = '/';
			for (int i = 0; i < 200 && n < dir_len + (size_t)len; i++) path[n++] = 'a';
		}
		path[n] = 0;
		const char *which = len == long_len ? "(PATH_MAX)" : "(PATH_MAX - 1)";
		struct stat s;
		char name[64];
		snprintf(name, sizeof name, "stat%s", which);
		rc(name, stat(path, &s));
		snprintf(name, sizeof name, "open%s", which);
		rc(name, open(path, O_CREAT | O_WRONLY, 0644));
		snprintf(name, sizeof name, "mkdir%s", which);
		rc(name, mkdir(path, 0755));
	}
}

/* Programs started by their paths, and a program of the application that
 * the exec starts calling the wrappers itself. */
static void execs(const char *self, long long_len)
{
	write_file(at("sub/script.sh"), "#!/bin/sh\necho \"script ran: $1\"\n");
	chmod(at("sub/script.sh"), 0755);
	const char *script = at("sub/script.sh");
	char *argv[] = { "script.sh", "execve", NULL };
	int status;
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		execve(script, argv, environ);
		_exit(127);
	}
	waitpid(p, &status, 0);
	line("execve", 1, "status %d", status_of(status));
	argv[1] = "execv";
	fflush(stdout);
	if ((p = fork()) == 0) {
		execv(script, argv);
		_exit(127);
	}
	waitpid(p, &status, 0);
	line("execv", 1, "status %d", status_of(status));
	argv[1] = "execvp";
	fflush(stdout);
	if ((p = fork()) == 0) {
		execvp(script, argv);
		_exit(127);
	}
	waitpid(p, &status, 0);
	line("execvp", 1, "status %d", status_of(status));
	argv[1] = "posix_spawn";
	int r = posix_spawn(&p, script, NULL, NULL, argv, environ);
	if (r == 0) waitpid(p, &status, 0);
	errno = r;
	line("posix_spawn", r == 0, "status %d", status_of(status));
	argv[1] = "posix_spawnp";
	r = posix_spawnp(&p, script, NULL, NULL, argv, environ);
	if (r == 0) waitpid(p, &status, 0);
	errno = r;
	line("posix_spawnp", r == 0, "status %d", status_of(status));
	char n[32];
	snprintf(n, sizeof n, "%ld", long_len);
	char *again[] = { (char *)self, (char *)dir, n, "exec", NULL };
	fflush(stdout);
	if ((p = fork()) == 0) {
		execv(self, again);
		_exit(127);
	}
	waitpid(p, &status, 0);
	line("exec(pathtool)", 1, "status %d", status_of(status));
}

static void *in_thread(void *arg)
{
	(void)arg;
	struct stat s;
	st("thread: stat", stat(at("sub/f"), &s), &s);
	fd("thread: open(O_CREAT)", open(at("sub/from-thread"), O_CREAT | O_WRONLY, 0644));
	return NULL;
}

static void concurrency(void)
{
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		struct stat s;
		st("child: stat", stat(at("sub/f"), &s), &s);
		fd("child: open(O_CREAT)", open(at("sub/from-child"), O_CREAT | O_WRONLY, 0644));
		fflush(stdout);
		_exit(0);
	}
	int status;
	waitpid(p, &status, 0);
	pthread_t t;
	pthread_create(&t, NULL, in_thread, NULL);
	pthread_join(t, NULL);
}

/* A named AF_UNIX socket: bound, connected to, and found under its path. */
static void sockets(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", at("sub/sock"));
	if (strlen(at("sub/sock")) >= sizeof a.sun_path) {
		line("bind(AF_UNIX)", 1, "skipped: the path is too long for sun_path");
		return;
	}
	int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
	rc("bind(AF_UNIX)", bind(l, (struct sockaddr *)&a, sizeof a));
	rc("listen(AF_UNIX)", listen(l, 1));
	rc("connect(AF_UNIX)", connect(c, (struct sockaddr *)&a, sizeof a));
	struct stat s;
	st("stat(socket)", stat(at("sub/sock"), &s), &s);
	close(c);
	close(l);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(a.sun_path, sizeof a.sun_path, "%s", at("sub/nosock"));
	rc("connect(AF_UNIX, missing)", connect(c, (struct sockaddr *)&a, sizeof a));
	close(c);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pathtool DIR LONG [exec]\n");
		return 2;
	}
	dir = argv[1];
	dir_len = strlen(dir);
	long long_len = strtol(argv[2], NULL, 10);
	if (argc > 3 && !strcmp(argv[3], "exec")) {
		struct stat s;
		st("exec: stat", stat(at("sub/f"), &s), &s);
		fd("exec: open(O_CREAT)", open(at("sub/from-exec"), O_CREAT | O_WRONLY, 0644));
		return 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	opens();
	stats();
	names();
	dirs();
	cwd();
	attrs();
	temps();
	errors(long_len);
	execs(argv[0][0] == '/' ? argv[0] : "/proc/self/exe", long_len);
	concurrency();
	sockets();
	return 0;
}
