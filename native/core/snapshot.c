#define _GNU_SOURCE /* MSG_COPY */
#include "snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

/* ---- CRC-32C ---- */

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, bit-reversed */

/* Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes,
 * so eight bytes cost eight lookups and no shifting loop. */
static uint32_t crc_table[8][256];

static void make_crc_table(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++) c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][b] = c;
	}
	for (int k = 1; k < 8; k++)
		for (int b = 0; b < 256; b++)
			crc_table[k][b] = (crc_table[k - 1][b] >> 8) ^ crc_table[0][crc_table[k - 1][b] & 0xff];
}

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t w = 0;
	for (int i = 7; i >= 0; i--) w = (w << 8) | p[i];
	return w;
}

/* The running (uninverted) CRC over p, in software. */
static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t w = load_le64(p) ^ c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
	}
	while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* The same with SSE4.2's crc32 instruction, which computes exactly this
 * polynomial: eight bytes per instruction. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
	for (; n && ((uintptr_t)p & 7); n--) c = _mm_crc32_u8(c, *p++);
	uint64_t c64 = c;
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = _mm_crc32_u64(c64, w);
	}
	c = (uint32_t)c64;
	while (n--) c = _mm_crc32_u8(c, *p++);
	return c;
}
#endif

static uint32_t (*crc_impl)(uint32_t, const uint8_t *, size_t);
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void choose_crc(void)
{
	crc_impl = crc_soft;
	make_crc_table();
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2")) crc_impl = crc_hw;
#endif
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, choose_crc);
	return ~crc_impl(~crc, buf, len);
}

/* ---- Shared memory to and from files ---- */

/* Big enough that the system calls cost nothing, small enough that a chunk
 * just checksummed is still in the cache when write copies it. */
#define CHUNK ((size_t)8 << 20)

/* Attaches shmid once [offset, offset + len) is known to lie inside it:
 * past its end the copy would fault, not fail. */
static int attach_range(int shmid, int flags, uint64_t offset, uint64_t len, uint8_t **base)
{
	struct shmid_ds ds;
	if (shmctl(shmid, IPC_STAT, &ds) != 0) return errno;
	if (offset > ds.shm_segsz || len > ds.shm_segsz - offset) return EINVAL;
	void *p = shmat(shmid, NULL, flags);
	if (p == (void *)-1) return errno;
	*base = p;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return errno;
		if (w == 0) return EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static size_t chunk_of(uint64_t left) { return left < CHUNK ? (size_t)left : CHUNK; }

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

/* Maps the pages of [p, p+n) in one call: a copy that faults them in one
 * by one inside read() or write() runs several times slower here. An older
 * kernel without the advice just faults. */
static void populate(const uint8_t *p, size_t n, int advice)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)p & ~(page - 1);
	madvise((void *)start, (uintptr_t)p + n - start, advice);
}

int snap_shm_to_fd(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc)
{
	uint8_t *base;
	int rc = attach_range(shmid, SHM_RDONLY, offset, len, &base);
	if (rc) return rc;
	uint32_t c = *crc;
	for (uint64_t done = 0; done < len && !rc;) {
		const uint8_t *p = base + offset + done;
		size_t n = chunk_of(len - done);
		populate(p, n, MADV_POPULATE_READ);
		c = crc32c(c, p, n); /* first, so write copies from a warm cache */
		rc = write_all(fd, p, n);
		done += n;
	}
	shmdt(base);
	if (!rc) *crc = c;
	return rc;
}

int snap_fd_to_shm(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc)
{
	uint8_t *base;
	int rc = attach_range(shmid, 0, offset, len, &base);
	if (rc) return rc;
	uint32_t c = *crc;
	for (uint64_t done = 0; done < len;) {
		uint8_t *p = base + offset + done;
		populate(p, chunk_of(len - done), MADV_POPULATE_WRITE);
		ssize_t r = read(fd, p, chunk_of(len - done));
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) {
			rc = r < 0 ? errno : ENODATA;
			break;
		}
		c = crc32c(c, p, (size_t)r); /* while the bytes read are in the cache */
		done += (uint64_t)r;
	}
	shmdt(base);
	if (!rc) *crc = c;
	return rc;
}

/* ---- Message queues ---- */

struct msg_any {
	long mtype;
	char mtext[];
};

static int send_msg(int msqid, const struct msg_any *m, size_t len)
{
	while (msgsnd(msqid, m, len, IPC_NOWAIT) != 0)
		if (errno != EINTR) return errno;
	return 0;
}

int snap_msg_send(int msqid, long mtype, const void *data, size_t len)
{
	struct msg_any *m = malloc(sizeof *m + len);
	if (!m) return ENOMEM;
	m->mtype = mtype;
	if (len) memcpy(m->mtext, data, len);
	int rc = send_msg(msqid, m, len);
	free(m);
	return rc;
}

/* MSG_COPY reads the message at an index and leaves it queued. MSG_NOERROR
 * is left out on purpose: a truncated message would go into a snapshot
 * silently, and the buffer is sized so that none is. *unsupported is set
 * when the kernel refuses the very first copy (no CONFIG_CHECKPOINT_RESTORE:
 * ENOSYS; EINVAL from kernels that reject the flags). */
static int walk_copies(int msqid, struct msg_any *m, size_t size, snap_msg_fn fn, void *ctx, int *unsupported)
{
	*unsupported = 0;
	for (long i = 0;; i++) {
		ssize_t n = msgrcv(msqid, m, size, i, IPC_NOWAIT | MSG_COPY);
		if (n < 0 && errno == EINTR) {
			i--;
			continue;
		}
		if (n < 0) {
			*unsupported = i == 0 && (errno == ENOSYS || errno == EINVAL);
			return errno == ENOMSG ? 0 : errno;
		}
		int rc = fn(ctx, m->mtype, m->mtext, (size_t)n);
		if (rc) return rc;
	}
}

struct held {
	size_t len;
	struct msg_any *msg;
};

/* Receives the next message into a buffer of its own (allocated before the
 * receive, so a failed allocation loses nothing). 0, ENOMSG or an errno. */
static int take_one(int msqid, size_t size, struct held *h)
{
	struct msg_any *m = malloc(sizeof *m + size);
	if (!m) return ENOMEM;
	ssize_t n;
	while ((n = msgrcv(msqid, m, size, 0, IPC_NOWAIT)) < 0 && errno == EINTR)
		;
	if (n < 0) {
		int e = errno;
		free(m);
		return e;
	}
	struct msg_any *small = realloc(m, sizeof *m + (size_t)n);
	*h = (struct held){ (size_t)n, small ? small : m };
	return 0;
}

/* Without MSG_COPY: takes every message, sends them all back in order,
 * and only then shows them to fn, so fn cannot leave the queue short. */
static int walk_by_requeue(int msqid, size_t size, size_t expect, snap_msg_fn fn, void *ctx)
{
	struct held *held = malloc((expect + 1) * sizeof *held);
	if (!held) return ENOMEM;
	size_t count = 0;
	int rc = 0;
	/* expect (the queue's msg_qnum) bounds the walk: the caller keeps
	 * everyone else off the queue. */
	while (count < expect && !(rc = take_one(msqid, size, &held[count])))
		count++;
	if (rc == ENOMSG) rc = 0;
	/* Every message goes back even after a failure: a message sent out of
	 * order is better than one lost. */
	for (size_t i = 0; i < count; i++) {
		int e = send_msg(msqid, held[i].msg, held[i].len);
		if (e && !rc) rc = e;
	}
	for (size_t i = 0; i < count && !rc; i++) rc = fn(ctx, held[i].msg->mtype, held[i].msg->mtext, held[i].len);
	for (size_t i = 0; i < count; i++) free(held[i].msg);
	free(held);
	return rc;
}

int snap_msg_copy(int msqid, snap_msg_fn fn, void *ctx, int *copied)
{
	struct msqid_ds ds;
	if (msgctl(msqid, IPC_STAT, &ds) != 0) return errno;
	/* No message is larger than the queue's bytes all together. */
	size_t size = ds.msg_cbytes;
	struct msg_any *m = malloc(sizeof *m + size);
	if (!m) return ENOMEM;
	int unsupported;
	int rc = walk_copies(msqid, m, size, fn, ctx, &unsupported);
	free(m);
	if (copied) *copied = !unsupported;
	if (unsupported) rc = walk_by_requeue(msqid, size, ds.msg_qnum, fn, ctx);
	return rc;
}
