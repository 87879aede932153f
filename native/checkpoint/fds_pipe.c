/*
 * Pipes and FIFOs (fds_int.h). A pipe is described once, with the bytes
 * buffered in it, read without taking them: tee(2) from a copy of a read
 * end (pidfd_getfd) into a pipe of our own, which we then read.
 * Each end the application holds is an ofd naming the pipe.
 *
 * A pipe with one end outside the application (the harness's pipe on a
 * program's stdout): at a standard descriptor (0-2) it becomes the
 * restorer's own descriptor of that number ("inherit"); elsewhere it comes
 * back as a pipe whose other end is closed (the reader sees the buffered
 * bytes, then end of file; the writer gets EPIPE), as if the outside had
 * gone away.
 *
 * A FIFO is opened again by its name: the same FIFO, if anyone outside
 * still has it open (then its bytes are there already), else a new one
 * that gets the saved bytes.
 */
#define _GNU_SOURCE
#include "fds_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The bytes buffered in the pipe behind fd (ours), without taking them. */
static int peek_pipe(int fd, struct fds_pipe *pp, char *err, size_t errlen)
{
	int queued = 0, t[2];
	if (ioctl(fd, FIONREAD, &queued) || queued <= 0) return 0;
	if (pipe2(t, O_CLOEXEC | O_NONBLOCK)) return fds_err(err, errlen, "cannot make a pipe: %s", strerror(errno)), -1;
	if (pp->size > 0 && fcntl(t[1], F_GETPIPE_SZ) < pp->size) fcntl(t[1], F_SETPIPE_SZ, pp->size);
	/* One tee: it copies every buffer it can from the start of the pipe;
	 * a second would copy the same bytes again. */
	ssize_t n = tee(fd, t[1], (size_t)queued, SPLICE_F_NONBLOCK);
	if (n != queued) {
		fds_err(err, errlen, "cannot read the %d bytes buffered in a pipe (got %zd): %s", queued, n, n < 0 ? strerror(errno) : "short copy");
		close(t[0]), close(t[1]);
		return -1;
	}
	pp->data = malloc((size_t)queued);
	size_t got = 0;
	ssize_t r;
	while (pp->data && got < (size_t)queued && (r = read(t[0], pp->data + got, (size_t)queued - got)) > 0) got += (size_t)r;
	close(t[0]), close(t[1]);
	if (!pp->data || got != (size_t)queued) return fds_err(err, errlen, "cannot copy the bytes buffered in a pipe"), -1;
	pp->len = got;
	return 0;
}

static struct fds_pipe *new_pipe(struct fds_capture *c, ino_t ino)
{
	if (c->npipes == c->cappipes) {
		int cap = c->cappipes ? 2 * c->cappipes : 16;
		struct fds_pipe *m = realloc(c->pipes, (size_t)cap * sizeof *m);
		if (!m) return NULL;
		c->pipes = m;
		c->cappipes = cap;
	}
	struct fds_pipe *pp = &c->pipes[c->npipes++];
	memset(pp, 0, sizeof *pp);
	pp->ino = ino;
	return pp;
}

int fds_describe_pipe(struct fds_capture *c, struct fds_proc *p, int fd, const char *link, const struct stat *st, int flags,
		      char *err, size_t errlen)
{
	int k, mode = flags & O_ACCMODE, fresh = 0;
	for (k = 0; k < c->npipes && c->pipes[k].ino != st->st_ino; k++)
		;
	if (k == c->npipes) {
		struct fds_pipe *pp = new_pipe(c, st->st_ino);
		if (!pp) return fds_err(err, errlen, "out of memory"), -1;
		struct stat fst;
		/* A FIFO that still has its name is opened by it again. */
		if (link[0] == '/' && !stat(link, &fst) && fst.st_ino == st->st_ino && fst.st_dev == st->st_dev)
			pp->path = strdup(link);
		fresh = 1;
	}
	struct fds_pipe *pp = &c->pipes[k];
	/* Its size, and the bytes in it, which matter only to a reader of the
	 * application: read at the first end that can read (a pipe only
	 * written to by the application comes back without a reader). A copy
	 * of the very descriptor (pidfd_getfd) needs no permission on the pipe,
	 * only to trace the process. */
	if (fresh || (!pp->captured && mode != O_WRONLY)) {
		int own = fds_pidfd_getfd(p->spid, fd), rc = 0;
		if (own < 0) {
			fds_err(err, errlen, "process %u (%s): cannot take a copy of its pipe at descriptor %d: %s", p->vpid, p->comm, fd, strerror(errno));
			rc = -1;
		} else {
			if (fresh) pp->size = fcntl(own, F_GETPIPE_SZ);
			if (mode != O_WRONLY && (rc = peek_pipe(own, pp, err, errlen)) == 0) pp->captured = 1;
			close(own);
		}
		if (rc) {
			char what[PATH_MAX + 80];
			snprintf(what, sizeof what, "process %u (%s): descriptor %d (a pipe): %s", p->vpid, p->comm, fd, err);
			if (own >= 0) fds_err(err, errlen, "%s", what);
			if (fresh) fds_pipes_drop(c, k);
			return -1;
		}
	}
	struct ofd *o = fds_new_ofd(c, p, fd, st, "pipe", flags);
	if (!o) return fds_err(err, errlen, "out of memory"), -1;
	o->pipe = k;
	o->mode = mode;
	if (o->mode != O_WRONLY) pp->readers++;
	if (o->mode != O_RDONLY) pp->writers++;
	cJSON_AddNumberToObject(o->json, "pipe", k);
	cJSON_AddStringToObject(o->json, "end", o->mode == O_RDONLY ? "r" : o->mode == O_WRONLY ? "w" : "rw");
	return 0;
}

void fds_pipes_drop(struct fds_capture *c, int from)
{
	while (c->npipes > from) {
		struct fds_pipe *pp = &c->pipes[--c->npipes];
		free(pp->data);
		free(pp->path);
	}
}

/* Once every process is described: the ends at a standard descriptor
 * whose other end is not the application's become the restorer's. */
void fds_pipes_finish(struct fds_capture *c)
{
	for (int i = 0; i < c->n; i++) {
		struct ofd *o = &c->ofds[i];
		const char *kind = json_str(o->json, "kind");
		if (!kind || strcmp(kind, "pipe") || o->minfd > 2) continue;
		struct fds_pipe *pp = &c->pipes[o->pipe];
		if ((o->mode == O_WRONLY && pp->readers == 0) || (o->mode == O_RDONLY && pp->writers == 0)) {
			cJSON_ReplaceItemInObjectCaseSensitive(o->json, "kind", cJSON_CreateString("inherit"));
			cJSON_AddNumberToObject(o->json, "from", o->minfd);
		}
	}
}

cJSON *fds_pipes_json(struct fds_capture *c)
{
	cJSON *a = cJSON_CreateArray();
	for (int k = 0; k < c->npipes; k++) {
		struct fds_pipe *pp = &c->pipes[k];
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "ino", (double)pp->ino);
		cJSON_AddNumberToObject(j, "size", pp->size);
		char *d = fds_b64_encode(pp->data ? pp->data : (const unsigned char *)"", pp->len);
		cJSON_AddStringToObject(j, "data", d ? d : "");
		free(d);
		if (pp->path) cJSON_AddStringToObject(j, "path", pp->path);
		cJSON_AddItemToArray(a, j);
	}
	return a;
}

/* --- restore ------------------------------------------------------------ */

static int fill_pipe(int wfd, const unsigned char *data, size_t len)
{
	size_t put = 0;
	ssize_t n;
	while (put < len && (n = write(wfd, data + put, len - put)) > 0) put += (size_t)n;
	return put == len ? 0 : -1;
}

/* Pipe k made again: its read and write end (and a FIFO's holder) in
 * r->pipe_fd[3k..3k+2], the saved bytes written into it. */
static int make_pipe(struct fds_restore *r, int k, const cJSON *pj, char *err, size_t errlen)
{
	int *pf = &r->pipe_fd[3 * k];
	const char *path = json_str(pj, "path");
	int size = (int)fds_get_num(pj, "size", 0);
	size_t len = 0;
	const char *b = json_str(pj, "data");
	unsigned char *data = fds_b64_decode(b ? b : "", &len);
	if (!data) return fds_err(err, errlen, "the image's files section is damaged: pipe %d's bytes are not base64", k), -1;
	if (path) {
		struct stat st;
		/* Read-write: a FIFO open that never waits for the other side. */
		pf[2] = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (pf[2] < 0 || fstat(pf[2], &st) || !S_ISFIFO(st.st_mode)) {
			fds_err(err, errlen, "the FIFO %s the snapshot's program had open is %s; make it again (mkfifo) before the restore",
				path, pf[2] < 0 ? strerror(errno) : "no longer a FIFO");
			free(data);
			return -1;
		}
		pf[0] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		pf[1] = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	} else if (pipe2(pf, O_CLOEXEC | O_NONBLOCK)) {
		pf[0] = pf[1] = -1;
	}
	if (pf[0] < 0 || pf[1] < 0) {
		fds_err(err, errlen, "cannot make a pipe again: %s", strerror(errno));
		free(data);
		return -1;
	}
	if (size > 0 && fcntl(pf[1], F_GETPIPE_SZ) != size && fcntl(pf[1], F_SETPIPE_SZ, size) < 0 && (size_t)fcntl(pf[1], F_GETPIPE_SZ) < len) {
		fds_err(err, errlen, "cannot make a pipe of %d bytes again: %s", size, strerror(errno));
		free(data);
		return -1;
	}
	/* A FIFO others kept open (the original application, still running)
	 * holds its bytes still: they are not put in a second time. */
	int queued = 0;
	if (path && ioctl(pf[2], FIONREAD, &queued) == 0 && queued > 0) len = 0;
	int rc = fill_pipe(pf[1], data, len);
	free(data);
	if (rc) return fds_err(err, errlen, "cannot put %zu saved bytes back into a pipe: %s", len, strerror(errno)), -1;
	return 0;
}

/* Every pipe, and each ofd of one (an open of the pipe's own end, so that
 * two ofds of one end stay two): in r->fd. */
int fds_pipes_open(struct fds_restore *r, char *err, size_t errlen)
{
	const cJSON *pipes = cJSON_GetObjectItemCaseSensitive(r->files, "pipes"), *pj;
	r->npipes = cJSON_GetArraySize(pipes);
	r->pipe_fd = malloc(3 * ((size_t)r->npipes + 1) * sizeof *r->pipe_fd);
	if (!r->pipe_fd) return fds_err(err, errlen, "out of memory"), -1;
	for (int k = 0; k < 3 * r->npipes; k++) r->pipe_fd[k] = -1;
	int k = 0;
	cJSON_ArrayForEach(pj, pipes)
		if (make_pipe(r, k++, pj, err, errlen)) return -1;
	for (int i = 0; i < r->n; i++) {
		const char *kind = json_str(r->ofd[i], "kind"), *end = json_str(r->ofd[i], "end");
		if (!kind || strcmp(kind, "pipe")) continue;
		int pk = (int)fds_get_num(r->ofd[i], "pipe", -1);
		if (pk < 0 || pk >= r->npipes || !end) return fds_err(err, errlen, "the image's files section is damaged: descriptor %d names pipe %d", i + 1, pk), -1;
		int mode = !strcmp(end, "r") ? O_RDONLY : !strcmp(end, "w") ? O_WRONLY : O_RDWR;
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", r->pipe_fd[3 * pk + (mode == O_WRONLY)]);
		if ((r->fd[i] = open(path, mode | O_NONBLOCK | O_CLOEXEC)) < 0)
			return fds_err(err, errlen, "cannot open a pipe's end again: %s", strerror(errno)), -1;
	}
	return 0;
}

/* The pipes' own ends, once every ofd has its own. */
void fds_pipes_close_spare(struct fds_restore *r)
{
	for (int k = 0; r->pipe_fd && k < 3 * r->npipes; k++)
		if (r->pipe_fd[k] >= 0) {
			close(r->pipe_fd[k]);
			r->pipe_fd[k] = -1;
		}
}
