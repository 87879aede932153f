/*
 * Descriptors in a whole-process snapshot (fds.h).
 *
 * Dump: every descriptor of a stopped process is looked at from outside,
 * through /proc/PID/fd (what it is), /proc/PID/fdinfo (flags, offset, and the
 * kind's own state) and, where the object itself must be asked (sockets, the
 * bytes in a pipe), a copy of the descriptor taken with pidfd_getfd or a new
 * open of /proc/PID/fd/N. Two descriptors are one open file description when
 * kcmp(KCMP_FILE) says so: it is described once (an "ofd", with an id) and
 * each process's table names it by id, so a shared offset stays shared.
 *
 * Restore: fds_restore_open makes every ofd once in the restorer, at base+i
 * for the i-th, close-on-exec (stubs inherit them through fork, an exec drops
 * them); fds_install in each stub dup3s its table's ofds to their numbers.
 *
 * Files section JSON:
 *   {"ofds":[{"id":N,"kind":K,"flags":F,...}], "pipes":[{"ino":I,"size":S,"data":B64,"path"?:P}]}
 */
#define _GNU_SOURCE
#include "fds.h"
#include "fds_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kcmp.h>

/* The whole of a /proc text file, in c's buffer (valid until the next
 * call): an epoll's fdinfo has a line per entry, thousands for a busy
 * server. NULL on failure. */
static const char *read_text(struct fds_capture *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return NULL;
	size_t got = 0;
	ssize_t n;
	for (;;) {
		if (got + 4096 + 1 > c->textcap) {
			size_t cap = c->textcap ? 2 * c->textcap : 16384;
			char *m = realloc(c->text, cap);
			if (!m) {
				close(fd);
				errno = ENOMEM;
				return NULL;
			}
			c->text = m;
			c->textcap = cap;
		}
		if ((n = read(fd, c->text + got, c->textcap - 1 - got)) <= 0) break;
		got += (size_t)n;
	}
	int e = errno;
	close(fd);
	c->text[got] = 0;
	errno = e;
	return n < 0 ? NULL : c->text;
}

/* --- capture ---------------------------------------------------------- */

/* The words a refusal uses for what a descriptor is. */
static const char *kind_words(const char *link, const struct stat *st)
{
	if (!strncmp(link, "anon_inode:", 11)) return link + 11;
	if (S_ISCHR(st->st_mode)) return "character device";
	if (S_ISBLK(st->st_mode)) return "block device";
	if (S_ISSOCK(st->st_mode)) return "socket";
	return link;
}

static int is_terminal(dev_t rdev)
{
	unsigned ma = major(rdev), mi = minor(rdev);
	/* pts (136-143), virtual consoles and serial ttys (4), /dev/tty and
	 * /dev/console (5:0, 5:1; 5:2 is the pty master multiplexer). */
	return (ma >= 136 && ma <= 143) || ma == 4 || (ma == 5 && mi <= 1);
}

/* /dev/zero, /dev/full, /dev/random, /dev/urandom: no state of their own,
 * opened again by path like /dev/null. */
static int is_memdev(dev_t rdev)
{
	unsigned mi = minor(rdev);
	return major(rdev) == 1 && (mi == 5 || mi == 7 || mi == 8 || mi == 9);
}

/* The ofd spid's fd already is (an earlier descriptor of this or another
 * process shares its open file description), or NULL; *at: where a new
 * one goes in c->order. */
static struct ofd *same_ofd(struct fds_capture *c, pid_t spid, int fd, int *at)
{
	int key[2] = { spid, fd }, found = fds_order_find(c, fds_file_vs, key, at);
	if (found > 0) return &c->ofds[c->order[*at]];
	if (found == 0) return NULL;
	/* kcmp refused (a descriptor gone): one by one. */
	*at = c->norder;
	for (int i = 0; i < c->n; i++)
		if (fds_file_vs(&c->ofds[i], key) == 0) return &c->ofds[i];
	return NULL;
}

/* The new last ofd into c->order at at. */
static int order_insert(struct fds_capture *c, int at)
{
	if (c->norder == c->caporder) {
		int cap = c->caporder ? 2 * c->caporder : 64, *m = realloc(c->order, (size_t)cap * sizeof *m);
		if (!m) return -1;
		c->order = m;
		c->caporder = cap;
	}
	memmove(&c->order[at + 1], &c->order[at], (size_t)(c->norder - at) * sizeof *c->order);
	c->order[at] = c->n - 1;
	c->norder++;
	return 0;
}

/* A regular file or directory by path; the application's home's files by
 * their name there (a restore opens them in its own home). */
static int describe_path(struct fds_capture *c, struct fds_proc *p, int fd, const char *link, const struct stat *st,
			 int flags, const char *fdinfo, char *err, size_t errlen)
{
	const char *pos = fds_field(fdinfo, "pos:");
	size_t hl = c->ctx && c->ctx->home ? strlen(c->ctx->home) : 0;
	if (link[0] != '/' || st->st_nlink == 0 || strstr(link, " (deleted)")) {
		fds_err(err, errlen, "process %u (%s): descriptor %d is a file that no longer has a name (%s): a restore could not open it again; close it before the snapshot, or use --ipc-only",
			p->vpid, p->comm, fd, link);
		return -1;
	}
	int home = hl && !strncmp(link, c->ctx->home, hl) && link[hl] == '/' && !strchr(link + hl + 1, '/');
	struct ofd *o = fds_new_ofd(c, p, fd, st, home ? "home" : S_ISDIR(st->st_mode) ? "dir" : "file", flags);
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	cJSON_AddStringToObject(o->json, home ? "name" : "path", home ? link + hl + 1 : link);
	cJSON_AddNumberToObject(o->json, "pos", pos ? (double)strtoll(pos, NULL, 10) : 0);
	return 0;
}

static int describe_chr(struct fds_capture *c, struct fds_proc *p, int fd, const char *link, const struct stat *st,
			int flags, char *err, size_t errlen)
{
	const char *kind = st->st_rdev == makedev(1, 3) ? "null" : is_terminal(st->st_rdev) ? "tty" : is_memdev(st->st_rdev) ? "memdev" : NULL;
	if (!kind) {
		fds_err(err, errlen, "process %u (%s): descriptor %d is the device %s (%u:%u), which a snapshot cannot capture (only /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom and the terminal); close it before the snapshot, or use --ipc-only",
			p->vpid, p->comm, fd, link, major(st->st_rdev), minor(st->st_rdev));
		return -1;
	}
	struct ofd *o = fds_new_ofd(c, p, fd, st, kind, flags);
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	if (strcmp(kind, "null")) cJSON_AddStringToObject(o->json, "path", link);
	if (!strcmp(kind, "memdev")) json_add_addr(o->json, "rdev", st->st_rdev);
	return 0;
}

static int describe(struct fds_capture *c, struct fds_proc *p, int fd, char *err, size_t errlen)
{
	char path[64], link[PATH_MAX];
	const char *fdinfo;
	struct stat st;
	snprintf(path, sizeof path, "/proc/%d/fd/%d", p->spid, fd);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n < 0 || stat(path, &st)) {
		if (errno == ENOENT) return 0; /* closed meanwhile (not while stopped: by a thread we do not stop) */
		fds_err(err, errlen, "process %u (%s): cannot look at descriptor %d: %s", p->vpid, p->comm, fd, strerror(errno));
		return -1;
	}
	link[n] = 0;
	snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", p->spid, fd);
	if (!(fdinfo = read_text(c, path))) {
		fds_err(err, errlen, "process %u (%s): cannot read %s: %s", p->vpid, p->comm, path, strerror(errno));
		return -1;
	}
	const char *fl = fds_field(fdinfo, "flags:");
	int flags = fl ? (int)strtol(fl, NULL, 8) : 0;
	int cloexec = !!(flags & O_CLOEXEC);
	flags &= ~O_CLOEXEC;

	int at;
	struct ofd *o = same_ofd(c, p->spid, fd, &at);
	if (!o) {
		int rc;
		/* An O_PATH descriptor names a file without opening it, whatever
		 * the file is (a FIFO, a socket, a device): by path again. */
		if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || ((flags & O_PATH) && link[0] == '/'))
			rc = describe_path(c, p, fd, link, &st, flags, fdinfo, err, errlen);
		else if (S_ISCHR(st.st_mode)) rc = describe_chr(c, p, fd, link, &st, flags, err, errlen);
		else if (S_ISFIFO(st.st_mode)) rc = fds_describe_pipe(c, p, fd, link, &st, flags, err, errlen);
		else if (S_ISSOCK(st.st_mode)) rc = fds_describe_socket(c, p, fd, &st, flags, fdinfo, err, errlen);
		else if (!strncmp(link, "anon_inode:", 11)) rc = fds_describe_anon(c, p, fd, link + 11, &st, flags, fdinfo, err, errlen);
		else {
			fds_err(err, errlen, "process %u (%s): descriptor %d is a %s, which a snapshot cannot capture; close it before the snapshot, or use --ipc-only",
				p->vpid, p->comm, fd, kind_words(link, &st));
			rc = -1;
		}
		if (rc) return -1;
		if (order_insert(c, at)) return fds_err(err, errlen, "out of memory"), -1;
		o = &c->ofds[c->n - 1];
	}
	if (fd < o->minfd) o->minfd = fd;
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "fd", fd);
	cJSON_AddNumberToObject(e, "ofd", o->id);
	cJSON_AddBoolToObject(e, "cloexec", cloexec);
	cJSON_AddItemToArray(p->table, e);
	if (!o->entry) o->entry = e;
	return 0;
}

struct fds_capture *fds_capture_new(const struct ckpt_ctx *ctx)
{
	struct fds_capture *c = calloc(1, sizeof *c);
	if (c) c->ctx = ctx;
	return c;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The descriptor numbers of spid, in order (malloc'd), or NULL. */
static int *fd_numbers(pid_t spid, int *count)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", spid);
	DIR *d = opendir(path);
	if (!d) return NULL;
	int n = 0, cap = 64, *v = malloc(cap * sizeof *v);
	struct dirent *de;
	while (v && (de = readdir(d))) {
		if (de->d_name[0] == '.') continue;
		if (n == cap) {
			int *m = realloc(v, (size_t)(cap *= 2) * sizeof *v);
			if (!m) break;
			v = m;
		}
		v[n++] = atoi(de->d_name);
	}
	closedir(d);
	if (v) qsort(v, (size_t)n, sizeof *v, cmp_int);
	*count = n;
	return v;
}

/* Undoes a refused process's part: its ofds (the last ones) and table. */
static void drop_process(struct fds_capture *c, int first_ofd, int first_pipe)
{
	while (c->n > first_ofd) {
		struct ofd *o = &c->ofds[--c->n];
		const char *kind = json_str(o->json, "kind");
		if (kind && !strcmp(kind, "pipe") && o->pipe < first_pipe) {
			if (o->mode != O_WRONLY) c->pipes[o->pipe].readers--;
			if (o->mode != O_RDONLY) c->pipes[o->pipe].writers--;
		}
		cJSON_Delete(o->json);
		cJSON_Delete(o->pending);
	}
	fds_socks_drop(c, first_ofd);
	int k = 0;
	for (int i = 0; i < c->norder; i++)
		if (c->order[i] < first_ofd) c->order[k++] = c->order[i];
	c->norder = k;
	fds_pipes_drop(c, first_pipe);
	struct fds_proc *p = &c->procs[--c->nprocs];
	cJSON_Delete(p->table);
}

int fds_capture_process(struct fds_capture *c, pid_t spid, uint32_t vpid, const char *comm, char *err, size_t errlen)
{
	if (c->nprocs == c->capprocs) {
		int cap = c->capprocs ? 2 * c->capprocs : 16;
		struct fds_proc *m = realloc(c->procs, (size_t)cap * sizeof *m);
		if (!m) return fds_err(err, errlen, "out of memory"), -1;
		c->procs = m;
		c->capprocs = cap;
	}
	struct fds_proc *p = &c->procs[c->nprocs++];
	memset(p, 0, sizeof *p);
	p->spid = spid;
	p->vpid = vpid;
	snprintf(p->comm, sizeof p->comm, "%s", comm ? comm : "?");
	p->table = cJSON_CreateArray();
	int first_ofd = c->n, first_pipe = c->npipes, n = 0;
	int *fds = fd_numbers(spid, &n);
	if (!fds) {
		fds_err(err, errlen, "process %u (%s): cannot list its descriptors in /proc/%d/fd: %s", vpid, p->comm, spid, strerror(errno));
		drop_process(c, first_ofd, first_pipe);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (describe(c, p, fds[i], err, errlen)) {
			free(fds);
			drop_process(c, first_ofd, first_pipe);
			return -1;
		}
	free(fds);
	fds_epolls_resolve(c, 0);
	return 0;
}

/* What needs every process seen (which pipe and socket ends have their
 * other end outside, epoll targets), once, before the files or a table. */
static void finish(struct fds_capture *c)
{
	if (c->finished) return;
	c->finished = 1;
	fds_pipes_finish(c);
	fds_socks_finish(c);
	fds_epolls_resolve(c, 1);
	/* A file at 0-2 (the launcher's redirection) the restorer may not be
	 * allowed to open (a process that changed its user): it may stand in. */
	for (int i = 0; i < c->n; i++) {
		const char *kind = json_str(c->ofds[i].json, "kind");
		if (c->ofds[i].minfd <= 2 && kind && !strcmp(kind, "file")) cJSON_AddNumberToObject(c->ofds[i].json, "std", c->ofds[i].minfd);
	}
}

cJSON *fds_capture_files(struct fds_capture *c)
{
	cJSON *files = cJSON_CreateObject(), *ofds = cJSON_AddArrayToObject(files, "ofds");
	finish(c);
	for (int i = 0; i < c->n; i++) cJSON_AddItemToArray(ofds, cJSON_Duplicate(c->ofds[i].json, 1));
	cJSON_AddItemToObject(files, "pipes", fds_pipes_json(c));
	return files;
}

cJSON *fds_capture_table(struct fds_capture *c, pid_t spid)
{
	finish(c);
	for (int i = 0; i < c->nprocs; i++)
		if (c->procs[i].spid == spid) return cJSON_Duplicate(c->procs[i].table, 1);
	return cJSON_CreateArray();
}

void fds_capture_free(struct fds_capture *c)
{
	if (!c) return;
	for (int i = 0; i < c->n; i++) cJSON_Delete(c->ofds[i].json), cJSON_Delete(c->ofds[i].pending);
	for (int i = 0; i < c->nprocs; i++) cJSON_Delete(c->procs[i].table);
	fds_pipes_drop(c, 0);
	free(c->ofds);
	free(c->procs);
	free(c->pipes);
	free(c->socks);
	free(c->order);
	free(c->text);
	free(c);
}

/* --- restore ------------------------------------------------------------ */

/* The restorer's terminal, for a descriptor that was one: the first of its
 * standard descriptors that is a terminal, opened again with the saved
 * flags. Without one, /dev/null: the program's terminal output goes
 * nowhere rather than the restore failing. */
static int open_tty(int flags)
{
	char path[32];
	for (int i = 0; i < 3; i++)
		if (isatty(i)) {
			snprintf(path, sizeof path, "/proc/self/fd/%d", i);
			int fd = open(path, (flags & ~O_CREAT) | O_NOCTTY | O_CLOEXEC);
			if (fd >= 0) return fd;
		}
	return open("/dev/null", (flags & O_ACCMODE) | O_CLOEXEC);
}

static int open_path(struct fds_restore *r, const cJSON *o, const char *kind, int flags, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	const char *path = json_str(o, "path");
	if (!strcmp(kind, "home")) {
		const char *name = json_str(o, "name");
		if (!name || !r->ctx || !r->ctx->home) return fds_err(err, errlen, "a descriptor of the application's home (%s) but no home to restore into", name ? name : "?"), -1;
		snprintf(buf, sizeof buf, "%s/%s", r->ctx->home, name);
		path = buf;
	}
	if (!path) return fds_err(err, errlen, "descriptor %d of the image has no path", (int)fds_get_num(o, "id", 0)), -1;
	int fd = open(path, (flags & ~(O_CREAT | O_TRUNC | O_EXCL)) | O_NOCTTY | O_CLOEXEC);
	int std = (int)fds_get_num(o, "std", -1);
	if (fd < 0 && errno == EACCES && std >= 0 && (fd = fcntl(std, F_DUPFD_CLOEXEC, 3)) >= 0) return fd; /* the restorer's own */
	if (fd < 0) return fds_err(err, errlen, "cannot open %s again: %s; the snapshot's process had it open", path, strerror(errno)), -1;
	off_t pos = (off_t)fds_get_num(o, "pos", 0);
	/* A directory's offset is its file system's cookie: best effort. */
	if (pos && lseek(fd, pos, SEEK_SET) < 0 && strcmp(kind, "dir")) {
		fds_err(err, errlen, "cannot move to offset %lld of %s: %s", (long long)pos, path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A memory device by its path, checked to be the same device. */
static int open_memdev(const cJSON *o, int flags, char *err, size_t errlen)
{
	const char *path = json_str(o, "path");
	struct stat st;
	int fd = path ? open(path, (flags & ~O_CREAT) | O_CLOEXEC) : -1;
	if (fd >= 0 && !fstat(fd, &st) && S_ISCHR(st.st_mode) && st.st_rdev == (dev_t)json_addr(o, "rdev")) return fd;
	if (fd >= 0) close(fd);
	fds_err(err, errlen, "cannot open the device %s again%s", path ? path : "?", fd >= 0 ? ": it is another device here" : "");
	return -1;
}

/* The descriptor for ofd o (its kind's making), or -1 with err set. Pipes
 * are made beforehand (fds_pipes_open) and are found in r->fd. */
static int make_ofd(struct fds_restore *r, int i, const cJSON *o, char *err, size_t errlen)
{
	const char *kind = json_str(o, "kind");
	int flags = (int)fds_get_num(o, "flags", O_RDONLY);
	if (!kind) return fds_err(err, errlen, "descriptor %d of the image has no kind", i + 1), -1;
	if (!strcmp(kind, "file") || !strcmp(kind, "dir") || !strcmp(kind, "home")) return open_path(r, o, kind, flags, err, errlen);
	if (!strcmp(kind, "null")) return open("/dev/null", (flags & ~O_CREAT) | O_CLOEXEC);
	if (!strcmp(kind, "memdev")) return open_memdev(o, flags, err, errlen);
	if (!strcmp(kind, "tty")) return open_tty(flags);
	if (!strcmp(kind, "inherit")) {
		int from = (int)fds_get_num(o, "from", -1), fd = fcntl(from, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) fds_err(err, errlen, "the restored program's descriptor %d was the snapshot's own (outside the application) and this restore has none: %s", from, strerror(errno));
		return fd;
	}
	if (!strcmp(kind, "pipe")) return r->fd[i]; /* made with its pipe */
	return fds_make_other(r, i, kind, o, err, errlen);
}

struct fds_restore *fds_restore_open(const cJSON *files, int base, const struct ckpt_ctx *ctx, char *err, size_t errlen)
{
	const cJSON *ofds = cJSON_GetObjectItemCaseSensitive(files, "ofds");
	if (!cJSON_IsArray(ofds)) return fds_err(err, errlen, "the image's files section has no list of descriptors"), NULL;
	struct fds_restore *r = calloc(1, sizeof *r);
	if (!r) return fds_err(err, errlen, "out of memory"), NULL;
	r->ctx = ctx;
	r->base = base;
	r->files = files;
	r->n = cJSON_GetArraySize(ofds);
	r->fd = malloc(((size_t)r->n + 1) * sizeof *r->fd);
	r->ofd = malloc(((size_t)r->n + 1) * sizeof *r->ofd);
	if (!r->fd || !r->ofd) goto oom;
	for (int i = 0; i < r->n; i++) r->fd[i] = -1;
	const cJSON *each;
	int i = 0;
	cJSON_ArrayForEach(each, ofds) r->ofd[i++] = each;
	for (i = 0; i < r->n; i++) {
		if ((int)fds_get_num(r->ofd[i], "id", 0) != i + 1) {
			fds_err(err, errlen, "the image's files section is damaged: descriptor %d has id %d", i + 1, (int)fds_get_num(r->ofd[i], "id", 0));
			goto fail;
		}
	}
	/* Enough descriptors for every ofd above base, and the tables' numbers. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < (rlim_t)base + 2 * (rlim_t)r->n + 64 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && (rlim_t)base + 2 * (rlim_t)r->n + 16 > rl.rlim_cur) {
		fds_err(err, errlen, "the restore needs descriptor numbers up to %d (two for each of the image's %d open files, above its highest number), more than its limit of open files (%llu); raise it (ulimit -n)",
			base + 2 * r->n + 16, r->n, (unsigned long long)rl.rlim_cur);
		goto fail;
	}
	/* The range is ours alone: a descriptor of the caller's there would be
	 * replaced without a word. */
	for (i = 0; i < r->n; i++)
		if (fcntl(base + i, F_GETFD) >= 0) {
			fds_err(err, errlen, "descriptor %d, in the range the restore keeps its %d open files in (from %d), is already in use", base + i, r->n, base);
			goto fail;
		}
	if (fds_pipes_open(r, err, errlen)) goto fail;
	/* Made at whatever numbers the kernel gives (the lowest free, which in a
	 * restorer holding everything below base lie inside the range), each
	 * moved above the range at once; then put in place, where nothing of
	 * ours can be in the way any more. */
	for (i = 0; i < r->n; i++) {
		int fd = make_ofd(r, i, r->ofd[i], err, errlen);
		if (fd < 0) goto fail;
		r->fd[i] = fd;
		int fl = (int)fds_get_num(r->ofd[i], "flags", 0);
		/* The status flags an open did not set (a pipe, a socket, a dup). */
		int now = fcntl(fd, F_GETFL);
		int want = (now & ~(O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME)) | (fl & (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME));
		if (now >= 0 && now != want) fcntl(fd, F_SETFL, want);
		if (fd >= base && fd < base + r->n) {
			int above = fcntl(fd, F_DUPFD_CLOEXEC, base + r->n);
			if (above < 0) {
				fds_err(err, errlen, "cannot move a restored descriptor out of the way: %s", strerror(errno));
				goto fail;
			}
			close(fd);
			r->fd[i] = above;
		}
	}
	fds_pipes_close_spare(r);
	for (i = 0; i < r->n; i++) {
		if (dup3(r->fd[i], base + i, O_CLOEXEC) < 0) {
			fds_err(err, errlen, "cannot place the restored descriptor %d at %d: %s", i + 1, base + i, strerror(errno));
			goto fail;
		}
		close(r->fd[i]);
		r->fd[i] = base + i;
	}
	return r;
oom:
	fds_err(err, errlen, "out of memory");
fail:
	fds_restore_free(r);
	return NULL;
}

/* The index of the ofd a table entry names, or -1. */
static int entry_ofd(const struct fds_restore *r, const cJSON *e)
{
	int id = (int)fds_get_num(e, "ofd", 0);
	return id >= 1 && id <= r->n ? id - 1 : -1;
}

int fds_install(struct fds_restore *r, const cJSON *table, int keep_from, char *err, size_t errlen)
{
	const cJSON *e;
	int max = fds_table_max(table);
	if (max >= r->base) return fds_err(err, errlen, "descriptor %d of the image lies in the restorer's own range (from %d)", max, r->base), -1;
	unsigned char *used = calloc((size_t)(keep_from > max ? keep_from : max + 1) + 1, 1);
	if (!used) return fds_err(err, errlen, "out of memory"), -1;
	cJSON_ArrayForEach(e, table) {
		int fd = (int)fds_get_num(e, "fd", -1), i = entry_ofd(r, e);
		if (fd < 0 || i < 0) {
			free(used);
			return fds_err(err, errlen, "the image's descriptor table is damaged (fd %d, ofd %d)", fd, (int)fds_get_num(e, "ofd", 0)), -1;
		}
		const cJSON *ce = cJSON_GetObjectItemCaseSensitive(e, "cloexec");
		if (dup3(r->fd[i], fd, cJSON_IsTrue(ce) ? O_CLOEXEC : 0) < 0) {
			free(used);
			return fds_err(err, errlen, "cannot put descriptor %d in place: %s", fd, strerror(errno)), -1;
		}
		used[fd] = 1;
	}
	/* Never the restorer's own range: the stub may still fork children
	 * that need it (fds_close_base gives it up). */
	for (int fd = 0; fd < keep_from && fd < r->base; fd++)
		if (!used[fd]) close(fd);
	free(used);
	return fds_register_epolls(r, table, err, errlen);
}

int fds_table_max(const cJSON *table)
{
	int max = -1;
	const cJSON *e;
	cJSON_ArrayForEach(e, table) {
		int fd = (int)fds_get_num(e, "fd", -1);
		if (fd > max) max = fd;
	}
	return max;
}

void fds_close_base(struct fds_restore *r)
{
	for (int i = 0; i < r->n; i++)
		if (r->fd[i] >= 0) close(r->fd[i]);
}

void fds_restore_free(struct fds_restore *r)
{
	if (!r) return;
	for (int i = 0; r->fd && i < r->n; i++)
		if (r->fd[i] >= 0) close(r->fd[i]);
	fds_pipes_close_spare(r);
	free(r->pipe_fd);
	free(r->fd);
	free(r->ofd);
	free(r);
}
