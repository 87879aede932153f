/* Copying a process's pages into the image (see datacopy.h). */
#define _GNU_SOURCE
#include "datacopy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/snapshot.h"
#include "image.h"
#include "trace.h"

#define CHUNK ((uint64_t)1 << 20) /* the copy and its checksum stay in the cache */
#define WORKERS 2

struct chunk {
	uint64_t addr, len, off; /* in the process; in the data */
	uint32_t crc;
};

struct job {
	pid_t pid;
	int fd;
	uint64_t at;
	struct chunk *chunks;
	size_t n;
	size_t next; /* taken atomically */
	int error;
};

static int pwrite_all(int fd, const char *p, size_t len, uint64_t at)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)at);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) return -errno;
		p += n, len -= (size_t)n, at += (uint64_t)n;
	}
	return 0;
}

/* One chunk: read from the process into this thread's buffer, summed
 * while it is in the cache, written where the file's space was just
 * allocated. */
static int copy_chunk(struct job *j, struct chunk *c, char **buf)
{
	uint64_t at = j->at + c->off;
	if (!*buf && posix_memalign((void **)buf, 4096, CHUNK) != 0) return -ENOMEM;
	int rc = mem_read(j->pid, c->addr, *buf, c->len);
	if (!rc) c->crc = crc32c(0, *buf, c->len);
	return rc ? rc : pwrite_all(j->fd, *buf, c->len, at);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	char *buf = NULL;
	for (;;) {
		size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (i >= j->n || __atomic_load_n(&j->error, __ATOMIC_RELAXED)) break;
		int rc = copy_chunk(j, &j->chunks[i], &buf);
		if (rc) __atomic_store_n(&j->error, rc, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

int data_copy(pid_t pid, const struct mem_plan *plan, int fd, uint64_t at, uint32_t *crc)
{
	struct job j = {.pid = pid, .fd = fd, .at = at};
	size_t cap = 0;
	uint64_t off = 0;
	for (size_t r = 0; r < plan->n; r++)
		for (uint64_t done = 0; done < plan->runs[r].len; done += CHUNK) {
			if (j.n == cap) j.chunks = realloc(j.chunks, (cap = cap ? cap * 2 : 64) * sizeof *j.chunks);
			uint64_t len = plan->runs[r].len - done < CHUNK ? plan->runs[r].len - done : CHUNK;
			j.chunks[j.n++] = (struct chunk){plan->runs[r].addr + done, len, off, 0};
			off += len;
		}
	/* The file's space in one call, before the copy (best effort: not every
	 * file system has it): on tmpfs allocating pages is most of a dump's
	 * cost, per call and per page; on a tmpfs with huge pages (huge=) one
	 * call allocates them 2 MB at a time. */
	if (off) fallocate(fd, 0, (off_t)at, (off_t)off);
	pthread_t helper;
	int helped = j.n > 1 && pthread_create(&helper, NULL, worker, &j) == 0;
	worker(&j);
	if (helped) pthread_join(helper, NULL);
	uint32_t sum = 0;
	for (size_t i = 0; i < j.n; i++) sum = i ? img_crc_combine(sum, j.chunks[i].crc, j.chunks[i].len) : j.chunks[i].crc;
	*crc = sum;
	free(j.chunks);
	return j.error;
}
