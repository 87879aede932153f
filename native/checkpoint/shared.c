/* Shared memory objects without a name (see shared.h). */
#define _GNU_SOURCE
#include "shared.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/snapshot.h"
#include "trace.h"

#define COPY_CHUNK ((size_t)1 << 20)

struct shared_obj {
	char id[64];
	char name[256];
	pid_t pid; /* a process that maps it, where */
	uint64_t start, end, offset;
	uint64_t size; /* the furthest byte any mapping reaches */
};

struct shared_set {
	struct shared_obj *v;
	size_t n, cap;
};

struct shared_set *shared_new(void) { return calloc(1, sizeof(struct shared_set)); }

void shared_free(struct shared_set *s)
{
	if (s) free(s->v);
	free(s);
}

const char *shared_note(struct shared_set *s, pid_t pid, uint64_t start, uint64_t end, uint64_t offset, unsigned major, unsigned minor, uint64_t ino,
			const char *path)
{
	char id[64];
	snprintf(id, sizeof id, "%x:%x:%llu", major, minor, (unsigned long long)ino);
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].id, id)) {
			if (offset + (end - start) > s->v[i].size) s->v[i].size = offset + (end - start);
			return s->v[i].id;
		}
	if (s->n == s->cap) s->v = realloc(s->v, (s->cap = s->cap ? s->cap * 2 : 8) * sizeof *s->v);
	struct shared_obj *o = &s->v[s->n++];
	memset(o, 0, sizeof *o);
	snprintf(o->id, sizeof o->id, "%s", id);
	snprintf(o->name, sizeof o->name, "%s", path);
	o->pid = pid, o->start = start, o->end = end, o->offset = offset, o->size = offset + (end - start);
	return o->id;
}

/* The object's bytes [off, off + len): from the object itself through
 * /proc/PID/map_files (privileged), else from the one mapping seen (the
 * bytes it does not cover read as zeros). */
static int read_object(const struct shared_obj *o, int fd, char *buf, uint64_t off, size_t len)
{
	if (fd >= 0) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0) return -errno;
		memset(buf + n, 0, len - (size_t)n);
		return 0;
	}
	memset(buf, 0, len);
	uint64_t lo = off > o->offset ? off : o->offset, hi = off + len < o->offset + (o->end - o->start) ? off + len : o->offset + (o->end - o->start);
	return lo < hi ? mem_read(o->pid, o->start + (lo - o->offset), buf + (lo - off), hi - lo) : 0;
}

static int write_object(const struct shared_obj *o, struct img_writer *w, char *buf)
{
	char path[96];
	snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", o->pid, (unsigned long long)o->start, (unsigned long long)o->end);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "id", o->id);
	cJSON_AddStringToObject(j, "name", o->name);
	json_add_addr(j, "size", o->size);
	struct img_data d;
	int rc = img_data_begin(w, &d, 7 /* CKPT_SECTION_SHARED */, j);
	cJSON_Delete(j);
	uint64_t total = (o->size + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);
	for (uint64_t off = 0; off < total && !rc; off += COPY_CHUNK) {
		size_t len = total - off < COPY_CHUNK ? total - off : COPY_CHUNK;
		rc = read_object(o, fd, buf, off, len);
		if (!rc) rc = img_data_append(w, &d, buf, len);
	}
	if (fd >= 0) close(fd);
	return rc ? rc : img_data_end(w, &d);
}

int shared_write(struct shared_set *s, struct img_writer *w)
{
	char *buf = malloc(COPY_CHUNK);
	int rc = buf ? 0 : -ENOMEM;
	for (size_t i = 0; i < s->n && !rc; i++) rc = write_object(&s->v[i], w, buf);
	free(buf);
	return rc;
}

int shared_make(int image_fd, const struct img_section *sec, int min_fd, cJSON *fds, char *err, size_t errlen)
{
	uint64_t data_at;
	cJSON *j = img_section_json(image_fd, sec, &data_at, err, errlen);
	if (!j) return -1;
	const char *id = json_str(j, "id");
	uint64_t size = json_addr(j, "size"), total = (size + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);
	int rc = -1, mfd = memfd_create("appshot-shared", MFD_CLOEXEC), fd = -1;
	char *buf = malloc(COPY_CHUNK);
	if (!id || data_at + total > sec->offset + sec->length) {
		snprintf(err, errlen, "a shared memory section is damaged (its size passes its end)");
		goto out;
	}
	if (mfd < 0 || !buf || ftruncate(mfd, (off_t)size) != 0) {
		snprintf(err, errlen, "cannot make shared memory again: %s", strerror(errno));
		goto out;
	}
	for (uint64_t off = 0; off < total; off += COPY_CHUNK) {
		size_t len = total - off < COPY_CHUNK ? total - off : COPY_CHUNK;
		if (pread(image_fd, buf, len, (off_t)(data_at + off)) != (ssize_t)len || pwrite(mfd, buf, len < size - off ? len : size - off, (off_t)off) < 0) {
			snprintf(err, errlen, "cannot fill shared memory again: %s", strerror(errno ? errno : EIO));
			goto out;
		}
	}
	if ((fd = fcntl(mfd, F_DUPFD_CLOEXEC, min_fd)) < 0) {
		snprintf(err, errlen, "cannot place shared memory's descriptor: %s", strerror(errno));
		goto out;
	}
	cJSON_AddNumberToObject(fds, id, fd);
	rc = 0;
out:
	if (mfd >= 0) close(mfd);
	free(buf);
	cJSON_Delete(j);
	return rc;
}
