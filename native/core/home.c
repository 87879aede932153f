#define _GNU_SOURCE
#include "home.h"
#include "rawcall.h"
#include "text.h"
#include "afterfork.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int home_path_open(const char *path, int flags, mode_t mode)
{
	return (int)raw_call(SYS_openat, AT_FDCWD, path, flags, mode);
}

int home_path_stat(const char *path, struct stat *st, int nofollow)
{
	return (int)raw_call(SYS_newfstatat, AT_FDCWD, path, st, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
}

enum kind { DIRECTORY, FOLDER, FILE_ };

/* One entry of the home: absent (allowed for all but the home itself), or
 * what it must be, the caller's, and (a directory) unwritable by others. */
/* owner: whose the home must be; blind: a process that changed its user
 * and may not look into the home (EACCES) passes, its descriptors were
 * opened by one that could. */
static int check_entry(const char *path, enum kind kind, uid_t owner, int blind, char *err, size_t errlen)
{
	struct stat st;
	/* The home may be reached through a link; nothing inside it may. */
	if (home_path_stat(path, &st, kind != DIRECTORY) != 0) {
		if (errno == ENOENT && kind != DIRECTORY) return 0;
		if (errno == EACCES && blind) return 0;
		int e = errno;
		snprintf(err, errlen, "cannot check %s: %s; set APPSHOT_HOME to a directory of your own", path,
			 e == EACCES ? "permission denied" : strerror(e));
		return e;
	}
	const char *what = kind == DIRECTORY ? "APPSHOT_HOME " : "";
	if (S_ISLNK(st.st_mode) || (kind == FILE_ ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))) {
		snprintf(err, errlen, "%s%s is %s; appshot follows no links in its home (someone may have planted it): remove it",
			 what, path, S_ISLNK(st.st_mode) ? "a symbolic link" : kind == FILE_ ? "not a regular file" : "not a directory");
		return EACCES;
	}
	if (st.st_uid != owner) {
		snprintf(err, errlen, "%s%s belongs to uid %u, not to this process's user (uid %u); set APPSHOT_HOME to a directory of your own",
			 what, path, (unsigned)st.st_uid, (unsigned)owner);
		return EACCES;
	}
	if (kind != FILE_ && (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "%s%s (mode %04o) can be written by other users, who could plant links there; check what it holds and run 'chmod 700 %s'",
			 what, path, (unsigned)(st.st_mode & 07777), path);
		return EACCES;
	}
	return 0;
}

static int check_home(const char *home, uid_t owner, int blind, int dirs_only, char *err, size_t errlen);

int home_check(const char *home, char *err, size_t errlen)
{
	return check_home(home, geteuid(), 0, 0, err, errlen);
}

int home_check_for(const char *home, uid_t owner, int dirs_only, char *err, size_t errlen)
{
	return check_home(home, owner, 1, dirs_only, err, errlen);
}

static int check_home(const char *home, uid_t owner, int blind, int dirs_only, char *err, size_t errlen)
{
	static const struct { const char *name; enum kind kind; } inside[] = {
		{ "pools", FOLDER },
		{ "templates", FOLDER },
		{ "stops", FOLDER },
		{ APPSHOT_TABLES_FILE, FILE_ },
		{ APPSHOT_TABLES_FILE "-lock", FILE_ },
		{ APPSHOT_INFLIGHT_FILE, FILE_ },
		{ APPSHOT_OPEN_LOCK_FILE, FILE_ },
	};
	char path[4096];
	int rc = check_entry(home, DIRECTORY, owner, blind, err, errlen);
	for (size_t i = 0; !rc && i < sizeof inside / sizeof *inside; i++) {
		if (dirs_only && inside[i].kind == FILE_) continue;
		if (snprintf(path, sizeof path, "%s/%s", home, inside[i].name) >= (int)sizeof path) {
			snprintf(err, errlen, "APPSHOT_HOME %s is too long a path", home);
			return ENAMETOOLONG;
		}
		rc = check_entry(path, inside[i].kind, owner, blind, err, errlen);
	}
	return rc;
}

/* ---- Descriptors appshot keeps in a program's process ---- */

int appshot_fd_band;

#define GUARD_MAX 32
/* fd + 1, 0 when free: lock-free, since fd.c asks on every close. */
/* On the after-fork page: a fork child unguards the parent's lock
 * descriptor as it closes it. */
static _Atomic int guarded[GUARD_MAX] APPSHOT_AFTER_FORK;
/* No guarded descriptor is below it (it only goes down): most closes are
 * told "not appshot's" by one compare. */
static _Atomic int guarded_lo = 1 << 30;

void appshot_fd_guard(int fd)
{
	if (fd < 0 || appshot_fd_guarded(fd)) return;
	int lo = atomic_load(&guarded_lo);
	while (fd < lo && !atomic_compare_exchange_weak(&guarded_lo, &lo, fd))
		;
	for (int i = 0; i < GUARD_MAX; i++) {
		int free_slot = 0;
		if (atomic_compare_exchange_strong(&guarded[i], &free_slot, fd + 1)) return;
	}
}

APPSHOT_AFTER_FORK_CODE void appshot_fd_unguard(int fd)
{
	if (fd < 0) return;
	for (int i = 0; i < GUARD_MAX; i++) {
		int mine = fd + 1;
		/* Read first: a compare-and-swap that fails still writes. */
		if (atomic_load_explicit(&guarded[i], memory_order_relaxed) == mine &&
		    atomic_compare_exchange_strong(&guarded[i], &mine, 0))
			return;
	}
}

int appshot_fd_guarded(int fd)
{
	if (fd < atomic_load_explicit(&guarded_lo, memory_order_relaxed)) return 0;
	for (int i = 0; i < GUARD_MAX; i++)
		if (atomic_load_explicit(&guarded[i], memory_order_relaxed) == fd + 1) return 1;
	return 0;
}

int appshot_fds_guarded_in(unsigned first, unsigned last, int *out, int max)
{
	int n = 0;
	for (int i = 0; i < GUARD_MAX; i++) {
		int fd = atomic_load(&guarded[i]) - 1;
		if (fd < 0 || (unsigned)fd < first || (unsigned)fd > last) continue;
		int at = n < max ? n++ : max - 1;
		while (at > 0 && out[at - 1] > fd) out[at] = out[at - 1], at--;
		out[at] = fd;
	}
	return n;
}

/* The lowest number of the band: 64 below the descriptor limit, or below
 * 1024 when the limit is higher (a larger table costs every process
 * memory, and select() only reaches 1024). 0 when the limit is too low to
 * spare a band. Asked by a raw call: glibc's getrlimit is prlimit64,
 * which the shim's filter traps (it takes a PID), and a trapped call costs
 * a signal; every descriptor the shim opens at start asks (issue 21). */
static int band_base(void)
{
	struct rlimit rl;
	/* From the shim's own instruction: libc's getrlimit is prlimit64 from
	 * libc's code, which the trap catches (a signal round trip, ~10 us in a
	 * new process, four times at every shim start). */
	if (raw_call(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) != 0) return 0;
	rlim_t top = rl.rlim_cur < 1024 ? rl.rlim_cur : 1024;
	return top >= 256 ? (int)top - 64 : 0;
}

int appshot_fd_dup_high(int fd)
{
	int base = appshot_fd_band ? band_base() : 0;
	int high = fcntl(fd, F_DUPFD_CLOEXEC, base > 0 ? base : 0);
	if (high >= 0 && appshot_fd_band) appshot_fd_guard(high);
	return high;
}

int appshot_fd_high(int fd, int cloexec)
{
	if (fd < 0 || !appshot_fd_band) return fd;
	int base = band_base(), high = -1;
	if (base > fd) high = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, base);
	if (high >= 0) {
		raw_call(SYS_close, fd); /* appshot's own: no wrapper counts it */
		fd = high;
	} else if (!cloexec) {
		fcntl(fd, F_SETFD, 0);
	}
	appshot_fd_guard(fd);
	return fd;
}

/* ---- The home's descriptors ---- */

static const char *const home_names[HOMEFD_COUNT] = {
	[HOMEFD_DATA] = APPSHOT_TABLES_FILE,
	[HOMEFD_LOCK] = APPSHOT_TABLES_FILE "-lock",
	[HOMEFD_INFLIGHT] = APPSHOT_INFLIGHT_FILE,
	[HOMEFD_OPENLOCK] = APPSHOT_OPEN_LOCK_FILE,
};

const char *home_fd_name(int which) { return home_names[which]; }

static void home_fds_reset(struct home_fds *h)
{
	h->fresh = 0;
	for (int i = 0; i < HOMEFD_COUNT; i++) h->fd[i] = -1;
}

static void home_fds_drop(struct home_fds *h)
{
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		if (h->fd[i] < 0) continue;
		appshot_fd_unguard(h->fd[i]);
		raw_call(SYS_close, h->fd[i]);
	}
	home_fds_reset(h);
}

int home_fds_open(struct home_fds *h, const char *home, char *err, size_t errlen)
{
	char path[4096];
	home_fds_reset(h);
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", home, home_names[i]);
		/* The inflight record and the open lock are made on first use. */
		int creat = i == HOMEFD_INFLIGHT || i == HOMEFD_OPENLOCK ? O_CREAT : 0;
		int fd = home_path_open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | creat, 0600);
		if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			int e = fd < 0 || errno == 0 ? errno : EINVAL;
			snprintf(err, errlen, "cannot open %s: %s", path, fd >= 0 && e == EINVAL ? "not a regular file" : strerror(e));
			if (fd >= 0) raw_call(SYS_close, fd);
			home_fds_drop(h);
			return e ? e : EINVAL;
		}
		h->fd[i] = appshot_fd_high(fd, 0);
		h->owner = st.st_uid;
		h->dev[i] = st.st_dev;
		h->ino[i] = st.st_ino;
	}
	return 0;
}

/* Whether fd is the regular file dev/ino of owner uid, unwritable by others. */
static int fd_is_home_file(int fd, dev_t dev, ino_t ino, uid_t *owner)
{
	struct stat st;
	/* The system call: libc's fstat is fstatat(fd, "", ...), whose code a
	 * program's start would page in for this alone (text.h). */
	if (fd < 0 || raw_call(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != dev || st.st_ino != ino)
		return 0;
	if (st.st_mode & (S_IWGRP | S_IWOTH)) return 0;
	if (*owner == (uid_t)-1) *owner = st.st_uid;
	return st.st_uid == *owner;
}

int home_fds_adopt(struct home_fds *h, const char *home, const char *spec, char *err, size_t errlen)
{
	home_fds_reset(h);
	const char *p = spec;
	uid_t owner = (uid_t)-1;
	char path[4096];
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		uint64_t fd, dev, ino;
		if (!(p = text_decimal(p, 0x7fffffff, &fd)) || *p != '.' || !(p = text_decimal(p + 1, UINT64_MAX, &dev)) ||
		    *p != '.' || !(p = text_decimal(p + 1, UINT64_MAX, &ino)) || *p != (i + 1 < HOMEFD_COUNT ? ':' : '\0'))
			goto malformed;
		p++;
		if (!fd_is_home_file((int)fd, (dev_t)dev, (ino_t)ino, &owner)) {
			snprintf(err, errlen, "%s names descriptor %d for %s/%s, but it is not that file (now)", HOME_FDS_ENV, (int)fd, home, home_names[i]);
			home_fds_reset(h);
			return ESTALE;
		}
		/* Where this process can still see the home, it must be the home's. */
		struct stat st;
		if (text_join(path, sizeof path, home, "/", home_names[i]) != 0 ||
		    (home_path_stat(path, &st, 1) == 0 ? st.st_dev != (dev_t)dev || st.st_ino != (ino_t)ino : errno != EACCES)) {
			snprintf(err, errlen, "%s names descriptor %d, which is not %s/%s", HOME_FDS_ENV, (int)fd, home, home_names[i]);
			home_fds_reset(h);
			return ESTALE;
		}
		h->fd[i] = (int)fd;
		h->dev[i] = (dev_t)dev;
		h->ino[i] = (ino_t)ino;
	}
	for (int i = 0; i < HOMEFD_COUNT; i++) appshot_fd_guard(h->fd[i]);
	h->owner = owner;
	h->fresh = 1;
	return 0;
malformed:
	snprintf(err, errlen, "%s is not a list of descriptors ('%s')", HOME_FDS_ENV, spec);
	home_fds_reset(h);
	return EINVAL;
}

size_t home_fds_format(const struct home_fds *h, char *buf, size_t len)
{
	size_t n = 0;
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		int w = snprintf(buf + n, n < len ? len - n : 0, "%s%d.%ju.%ju", i ? ":" : "", h->fd[i],
				 (uintmax_t)h->dev[i], (uintmax_t)h->ino[i]);
		if (w < 0) return 0;
		n += (size_t)w;
	}
	return n < len ? n : 0;
}

int home_fds_valid(const struct home_fds *h)
{
	uid_t owner = (uid_t)-1;
	for (int i = 0; i < HOMEFD_COUNT; i++)
		if (!fd_is_home_file(h->fd[i], h->dev[i], h->ino[i], &owner)) return 0;
	return 1;
}

void home_fds_release(struct home_fds *h)
{
	for (int i = 0; i < HOMEFD_COUNT; i++) {
		struct stat st;
		if (h->fd[i] < 0) continue;
		appshot_fd_unguard(h->fd[i]);
		if (fstat(h->fd[i], &st) == 0 && st.st_dev == h->dev[i] && st.st_ino == h->ino[i])
			raw_call(SYS_close, h->fd[i]);
	}
	home_fds_reset(h);
}

int home_fds_which(const struct home_fds *h, int fd)
{
	for (int i = 0; fd >= 0 && i < HOMEFD_COUNT; i++)
		if (h->fd[i] == fd) return i;
	return -1;
}

int home_fds_move(struct home_fds *h, int fd)
{
	int which = home_fds_which(h, fd);
	if (which < 0) return 0;
	int base = band_base();
	int moved = fcntl(fd, F_DUPFD, base > 0 ? base : 3);
	if (moved < 0) return -1;
	appshot_fd_guard(moved);
	h->fd[which] = moved;
	appshot_fd_unguard(fd);
	return 0;
}
