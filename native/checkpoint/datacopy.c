/* Copying a process's pages into the image (see datacopy.h). */
#define _GNU_SOURCE
#include "datacopy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/snapshot.h"
#include "image.h"
#include "trace.h"

#define CHUNK ((uint64_t)1 << 20) /* the copy and its checksum stay in the cache */
#define WORKERS 2
#define STAGE_HUGE ((uint64_t)128 << 20)

struct chunk {
	uint64_t addr, len, off; /* in the process; in the data */
	uint32_t crc;
};

struct job {
	pid_t pid;
	const char *staged; /* the data already copied out (data_stage), or NULL */
	char *stage;        /* data_stage: where the chunks go */
	int fd;
	uint64_t at;
	struct chunk *chunks;
	size_t n;
	size_t next; /* taken atomically */
	int error;
};

/* One chunk: read from the process into this thread's buffer (or taken
 * from the staged copy), summed while it is in the cache, written where
 * the file's space was allocated; or (staging) only read from the process
 * into the stage. */
static int copy_chunk(struct job *j, struct chunk *c, char **buf)
{
	uint64_t at = j->at + c->off;
	if (j->stage) return mem_read(j->pid, c->addr, j->stage + c->off, c->len);
	if (!j->staged) {
		if (!*buf && posix_memalign((void **)buf, 4096, CHUNK) != 0) return -ENOMEM;
		int rc = mem_read(j->pid, c->addr, *buf, c->len);
		if (rc) return rc;
	}
	const char *src = j->staged ? j->staged + c->off : *buf;
	c->crc = crc32c(0, src, c->len);
	return img_pwrite_all(j->fd, src, c->len, at);
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

/* The plan's runs cut into chunks, at their offsets in the data. */
static uint64_t plan_chunks(struct job *j, const struct mem_plan *plan)
{
	size_t cap = 0;
	uint64_t off = 0;
	for (size_t r = 0; r < plan->n; r++)
		for (uint64_t done = 0; done < plan->runs[r].len; done += CHUNK) {
			if (j->n == cap) j->chunks = realloc(j->chunks, (cap = cap ? cap * 2 : 64) * sizeof *j->chunks);
			uint64_t len = plan->runs[r].len - done < CHUNK ? plan->runs[r].len - done : CHUNK;
			j->chunks[j->n++] = (struct chunk){plan->runs[r].addr + done, len, off, 0};
			off += len;
		}
	return off;
}

/* Both threads through the chunks; the first error, or 0. */
static int run_job(struct job *j)
{
	pthread_t helper;
	int helped = j->n > 1 && pthread_create(&helper, NULL, worker, j) == 0;
	worker(j);
	if (helped) pthread_join(helper, NULL);
	return j->error;
}

int data_stage(pid_t pid, const struct mem_plan *plan, char **out, uint64_t *len)
{
	struct job j = {.pid = pid};
	uint64_t bytes = plan_chunks(&j, plan);
	*out = NULL, *len = bytes;
	if (!bytes) return free(j.chunks), 0;
	char *stage = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stage == MAP_FAILED) return free(j.chunks), -ENOMEM;
	/* Huge pages: a page fault and a cleared page per 2 MB, not per 4 KB;
	 * for the first STAGE_HUGE bytes only (as the restore's copy, see
	 * mem_restore.c: on the VM this was measured on, huge-page faults
	 * beyond a few hundred MB at once were slower than 4 KB ones). */
	madvise(stage, bytes < STAGE_HUGE ? bytes : STAGE_HUGE, MADV_HUGEPAGE);
	j.stage = stage;
	int rc = run_job(&j);
	free(j.chunks);
	if (rc) return munmap(stage, bytes), rc;
	*out = stage;
	return 0;
}

int data_copy(pid_t pid, const struct mem_plan *plan, const char *staged, int fd, uint64_t at, uint32_t *crc)
{
	struct job j = {.pid = pid, .staged = staged, .fd = fd, .at = at};
	uint64_t off = plan_chunks(&j, plan);
	/* The file's space in one call, before the copy (best effort: not every
	 * file system has it): on tmpfs allocating pages is most of a dump's
	 * cost, per call and per page; on a tmpfs with huge pages (huge=) one
	 * call allocates them 2 MB at a time. */
	if (off) fallocate(fd, 0, (off_t)at, (off_t)off);
	run_job(&j);
	uint32_t sum = 0;
	for (size_t i = 0; i < j.n; i++) sum = i ? img_crc_combine(sum, j.chunks[i].crc, j.chunks[i].len) : j.chunks[i].crc;
	*crc = sum;
	free(j.chunks);
	return j.error;
}
