/* The application's own view of /proc/sysvipc: a program of the
 * application that opens /proc/sysvipc/sem, shm or msg reads the kernel's
 * listing, in the kernel's format, cut down to the application's own
 * objects with their virtual keys and IDs. So ipcs under appshot lists what
 * the application has, as the application names it. */
#define _GNU_SOURCE
#include "ipc.h"
#include "procview.h"
#include "real.h"
#include "pid.h"
#include "path.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SYSVIPC_DIR "/proc/sysvipc/"

/* RT_SEM, RT_SHM or RT_MSG for one of the three listings, else 0. Every
 * open of the program passes here, so a mismatch costs one comparison. */
static uint8_t listing_type(const char *path)
{
	if (!path || path[0] != '/' || path[1] != 'p' || strncmp(path, SYSVIPC_DIR, sizeof SYSVIPC_DIR - 1))
		return 0;
	const char *name = path + sizeof SYSVIPC_DIR - 1;
	return !strcmp(name, "sem") ? RT_SEM : !strcmp(name, "shm") ? RT_SHM : !strcmp(name, "msg") ? RT_MSG : 0;
}

/* One line of a listing: its key and ID, and where the rest begins. */
static int parse_row(const char *line, long *key, long *id, const char **rest)
{
	char *end;
	*key = strtol(line, &end, 10);
	if (end == line) return -1;
	const char *p = end;
	*id = strtol(p, &end, 10);
	if (end == p) return -1;
	*rest = end;
	return 0;
}

/* What the application sees of one of its objects beyond its key and ID:
 * a segment it removed that lives on is marked for destruction; a
 * template's segment, which every clone attaches, shows only the
 * application's own attachments. */
struct seen {
	int removed, template;
	uint32_t srid;
};

/* The rest of a shm or msg line (after key and ID) with its PID columns
 * as the application names the processes, in the kernel's own format:
 * shm "  %4o %21lu %5u %5u  %5lu..." (cpid, lpid, nattch), msg "  %4o
 * %10lu %10lu %5u %5u..." (lspid, lrpid). */
static void write_rest(uint8_t type, const char *rest, const struct seen *seen, FILE *out)
{
	unsigned perms;
	unsigned long a, b;
	int p1, p2, n = 0;
	if (type == RT_SHM && sscanf(rest, " %o %lu %d %d %lu%n", &perms, &a, &p1, &p2, &b, &n) == 5 && n) {
		if (seen->removed) perms |= SHM_DEST;
		if (seen->template) b = ipc_shm_attachments(seen->srid);
		fprintf(out, "  %4o %21lu %5u %5u  %5lu%s", perms, a, (unsigned)pid_to_virtual(p1),
			(unsigned)pid_to_virtual(p2), b, rest + n);
	} else if (type == RT_MSG && sscanf(rest, " %o %lu %lu %d %d%n", &perms, &a, &b, &p1, &p2, &n) == 5 && n)
		fprintf(out, "  %4o  %10lu %10lu %5u %5u%s", perms, a, b, (unsigned)pid_to_virtual(p1),
			(unsigned)pid_to_virtual(p2), rest + n);
	else
		fputs(rest, out);
}

/* Writes the kernel's listing of this family, cut down to the
 * application's objects, into out. Returns 0, or an errno. */
static int write_view(uint8_t type, FILE *out)
{
	ipc_settle(); /* the reverse lookups below read LMDB alone */
	FILE *in = sysv_open_listing(type);
	if (!in) return errno;
	char *line = NULL;
	size_t cap = 0;
	if (getline(&line, &cap, in) > 0) fputs(line, out); /* the header, as is */
	while (getline(&line, &cap, in) > 0) {
		long key, id;
		const char *rest;
		uint32_t vrid, skey;
		if (parse_row(line, &key, &id, &rest) || sr_to_vr(type, (uint32_t)id, &vrid)) continue;
		struct seen seen = { .removed = vr_to_skey(type, vrid, &skey) == 0 && skey == SKEY_REMOVED,
				     .template = type == RT_SHM && vr_is_template(type, vrid),
				     .srid = (uint32_t)id };
		/* The kernel prints both as %10d. */
		fprintf(out, "%10d %10d", seen.removed ? IPC_PRIVATE : (int)ipc_virtual_key(type, (key_t)key), (int)vrid);
		write_rest(type, rest, &seen, out);
	}
	free(line);
	fclose(in);
	return 0;
}

/* A descriptor reading the application's view: an anonymous memory file
 * holding it, positioned at its start. */
static int view_fd(uint8_t type, int flags)
{
	int fd = memfd_create("appshot-sysvipc", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) return -1;
	int dupfd = dup(fd);
	FILE *out = dupfd >= 0 ? fdopen(dupfd, "w") : NULL;
	int err = out ? write_view(type, out) : errno;
	if (out && fclose(out) != 0 && !err) err = errno;
	else if (!out && dupfd >= 0) REAL(close)(dupfd);
	if (err || lseek(fd, 0, SEEK_SET) != 0) {
		REAL(close)(fd);
		return shim_fail(err ? err : errno);
	}
	return fd;
}

/* Only an open for reading gets the view; any other (for writing, or
 * O_PATH, or O_DIRECTORY) gets what the kernel gives it. */
static int wants_view(const char *path, int flags)
{
	return shim_active && (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_PATH | O_DIRECTORY)) &&
	       listing_type(path);
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

static FILE *fopen_view(const char *path, const char *mode)
{
	int fd = view_fd(listing_type(path), strchr(mode, 'e') ? O_CLOEXEC : 0);
	if (fd < 0) return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f) REAL(close)(fd);
	return f;
}

static int fopen_wants_view(const char *path, const char *mode)
{
	return shim_active && mode && mode[0] == 'r' && !strchr(mode, '+') && listing_type(path);
}

/* In an open wrapper: its path redirected first, relative to directory
 * at (AT_FDCWD for the calls without one), /proc/<vpid>/... made
 * /proc/<spid>/... with it (path.c); then the view for a listing. */
#define OPEN_PATH(at)                                                          \
	REDIRECT_AT(at, path, -1);                                             \
	if (wants_view(path, flags)) return view_fd(listing_type(path), flags)

/* Policy PROCFS_OPEN (wrapped.def): open, openat and their 64-bit names;
 * the mode is read only when the flags say there is one, as libc does, and
 * passed on after the other arguments. */
#define WITH_MODE(...) (__VA_ARGS__, mode)
#define PROCFS_OPEN_WRAPPER(ret, name, args, fail, at)                         \
	WRAPPER(name)                                                          \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode_t mode = mode_arg(flags, ap);                             \
		va_end(ap);                                                    \
		OPEN_PATH(at);                                                 \
		return REAL(name) WITH_MODE args;                              \
	}
WRAPPED_PROCFS_OPEN(PROCFS_OPEN_WRAPPER)

/* Policy PROCFS_OPEN_FORTIFIED: the entry points _FORTIFY_SOURCE builds
 * call instead, which take no mode. */
#define PROCFS_OPEN_FORTIFIED_WRAPPER(ret, name, args, fail, at)               \
	WRAPPER(name)                                                          \
	{                                                                      \
		OPEN_PATH(at);                                                 \
		return REAL(name) args;                                        \
	}
WRAPPED_PROCFS_OPEN_FORTIFIED(PROCFS_OPEN_FORTIFIED_WRAPPER)

/* Policy PROCFS_FOPEN: fopen and fopen64. */
#define PROCFS_FOPEN_WRAPPER(ret, name, args, fail)                            \
	WRAPPER(name)                                                          \
	{                                                                      \
		REDIRECT(path, NULL);                                          \
		if (fopen_wants_view(path, mode)) return fopen_view(path, mode); \
		return REAL(name) args;                                        \
	}
WRAPPED_PROCFS_FOPEN(PROCFS_FOPEN_WRAPPER)

/* The links /proc/self and /proc/thread-self name the caller by its kernel
 * PID ("1234", "1234/task/1235"): read as its vpid and vtid, so that they
 * agree with getpid and gettid. Returns the new length, or r as it was
 * when the path is neither. Written as readlink writes: no NUL, cut at
 * len. */
static ssize_t self_link(const char *path, char *buf, size_t len, ssize_t r)
{
	if (!shim_active || r <= 0 || strncmp(path, "/proc/", 6)) return r;
	char v[48];
	int n;
	if (!strcmp(path + 6, "self")) n = snprintf(v, sizeof v, "%d", (int)getpid());
	else if (!strcmp(path + 6, "thread-self")) n = snprintf(v, sizeof v, "%d/task/%d", (int)getpid(), (int)gettid());
	else return r;
	size_t k = (size_t)n < len ? (size_t)n : len;
	memcpy(buf, v, k);
	return (ssize_t)k;
}

/* Policy PROCFS_READLINK: the readlink family. */
#define PROCFS_READLINK_WRAPPER(ret, name, args, fail, at)                     \
	WRAPPER(name)                                                          \
	{                                                                      \
		REDIRECT_AT(at, path, -1);                                     \
		return self_link(path, buf, len, REAL(name) args);             \
	}
WRAPPED_PROCFS_READLINK(PROCFS_READLINK_WRAPPER)

void sysvipc_shm_usage(struct sysvipc_shm_usage *u)
{
	ipc_settle();
	FILE *in = sysv_open_listing(RT_SHM);
	if (!in) return;
	unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE);
	char *line = NULL;
	size_t cap = 0;
	if (getline(&line, &cap, in) < 0) goto out;
	while (getline(&line, &cap, in) > 0) {
		long key, id;
		const char *rest;
		uint32_t vrid;
		unsigned long size, rss, swap;
		if (parse_row(line, &key, &id, &rest) || sr_to_vr(RT_SHM, (uint32_t)id, &vrid)) continue;
		/* perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap */
		if (sscanf(rest, "%*o %lu %*d %*d %*u %*u %*u %*u %*u %*u %*u %*u %lu %lu", &size, &rss, &swap) != 3)
			continue;
		u->ids++;
		u->pages += (size + page - 1) / page;
		u->rss += rss / page;
		u->swap += swap / page;
	}
out:
	free(line);
	fclose(in);
}
