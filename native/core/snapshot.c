#define _GNU_SOURCE /* MSG_COPY */
#include "snapshot.h"
#include "populate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/vfs.h>
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

/* The crc32 instruction takes three cycles to give its result and can
 * start one every cycle, so one chain of them uses a third of the unit:
 * three blocks checksummed side by side, then joined (crc_shift), run at
 * nearly three times the speed (measured 7.6 -> 20+ GB/s here). */
#define CRC_BLOCK 8192
static const uint8_t crc_zeros[CRC_BLOCK];
/* shift_tab[k][b]: the register b << 8k after CRC_BLOCK zero bytes. A
 * register run over zero bytes is linear in its start, so these four
 * tables take any register across CRC_BLOCK bytes. */
static uint32_t shift_tab[4][256];

static uint32_t crc_shift(uint32_t c)
{
	return shift_tab[0][c & 0xff] ^ shift_tab[1][(c >> 8) & 0xff] ^ shift_tab[2][(c >> 16) & 0xff] ^ shift_tab[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw3(uint32_t c, const uint8_t *p, size_t n)
{
	for (; n >= 3 * CRC_BLOCK; p += 3 * CRC_BLOCK, n -= 3 * CRC_BLOCK) {
		uint64_t a = c, b = 0, d = 0;
		for (size_t i = 0; i < CRC_BLOCK; i += 8) {
			uint64_t wa, wb, wd;
			memcpy(&wa, p + i, 8);
			memcpy(&wb, p + CRC_BLOCK + i, 8);
			memcpy(&wd, p + 2 * CRC_BLOCK + i, 8);
			a = _mm_crc32_u64(a, wa);
			b = _mm_crc32_u64(b, wb);
			d = _mm_crc32_u64(d, wd);
		}
		/* raw(c, A B C) = shift(shift(raw(c, A)) ^ raw(0, B)) ^ raw(0, C) */
		c = crc_shift(crc_shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
	}
	return crc_hw(c, p, n);
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
	if (__builtin_cpu_supports("sse4.2")) {
		uint32_t basis[32];
		for (int i = 0; i < 32; i++) basis[i] = crc_hw(1u << i, crc_zeros, CRC_BLOCK);
		for (int k = 0; k < 4; k++)
			for (int b = 0; b < 256; b++) {
				uint32_t v = 0;
				for (int j = 0; j < 8; j++)
					if (b >> j & 1) v ^= basis[8 * k + j];
				shift_tab[k][b] = v;
			}
		crc_impl = crc_hw3;
	}
#endif
}

/* The running (uninverted) CRC over p. */
static uint32_t crc_raw(uint32_t c, const void *p, size_t n)
{
	pthread_once(&crc_once, choose_crc);
	return crc_impl(c, p, n);
}

/* The running CRC c carried across n zero bytes: what joins the CRC of
 * one range to the CRC (from 0) of the range after it. */
static uint32_t crc_raw_zeros(uint32_t c, uint64_t n)
{
	pthread_once(&crc_once, choose_crc);
#if defined(__x86_64__)
	if (crc_impl == crc_hw3)
		for (; n >= CRC_BLOCK; n -= CRC_BLOCK) c = crc_shift(c);
#endif
	for (; n >= CRC_BLOCK; n -= CRC_BLOCK) c = crc_impl(c, crc_zeros, CRC_BLOCK);
	return crc_impl(c, crc_zeros, (size_t)n);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~crc_raw(~crc, buf, len);
}

/* ---- Shared memory to and from files ---- */

/* Big enough that the system calls cost nothing, small enough that a chunk
 * just checksummed is still in the cache when write copies it. */
#define CHUNK ((size_t)2 << 20)
/* What a copy through the segment's file (segment_file) moves at a time
 * through a buffer of its own: read, checksummed and written while it
 * stays in the CPU's cache. */
#define BOUNCE ((size_t)256 << 10)
/* A segment this large is copied by several threads, each its own range of
 * the segment and of the file: in this VM a page the kernel hands out costs
 * ~2.5-4 us of CPU (the file's pages on snapshot, the segment's on
 * restore), most of the copy, and each CPU pays for its own pages. */
#define SPLIT_MIN ((uint64_t)64 << 20)
#define MAX_THREADS 4
/* Below this a segment is copied through its mapping: opening its file
 * costs more than the pages save. */
#define BY_FILE_MIN ((uint64_t)1 << 20)

struct segment {
	uint8_t *base;
	uint64_t size;
};

/* Attaches shmid once [offset, offset + len) is known to lie inside it:
 * past its end the copy would fault, not fail. */
static int attach_range(int shmid, int flags, uint64_t offset, uint64_t len, struct segment *seg)
{
	struct shmid_ds ds;
	if (shmctl(shmid, IPC_STAT, &ds) != 0) return errno;
	if (offset > ds.shm_segsz || len > ds.shm_segsz - offset) return EINVAL;
	void *p = shmat(shmid, NULL, flags);
	if (p == (void *)-1) return errno;
	*seg = (struct segment){ p, ds.shm_segsz };
	return 0;
}

/*
 * The segment's own file (the shmem file behind it, whose inode number is
 * the segment's ID), opened through /proc/self/map_files. Copied through
 * it, by read and write into a small buffer, no page of the segment is
 * touched by this process: in this VM the first touch of a page from user
 * space costs 4-6 us even when the kernel has mapped it already
 * (MADV_POPULATE), so a checksum read over the mapping cost as much as the
 * copy itself. Measured for 256 MiB on /dev/shm, two threads: a snapshot
 * 62-70 ms through the file against 130-570 ms through the mapping, a
 * restore 52-57 ms against 310-330 ms; and a page made by writing into the
 * file is neither cleared first nor mapped here. Opening it needs
 * CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN): -1 without, and the copy goes
 * through the mapping.
 */
static int segment_file(int shmid, const struct segment *seg, int flags)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)seg->base;
	uintptr_t end = start + (uintptr_t)((seg->size + page - 1) & ~(page - 1));
	char path[64];
	snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)start, (unsigned long)end);
	int fd = open(path, flags | O_CLOEXEC);
	struct stat st;
	struct statfs fs;
	/* A SHM_HUGETLB segment's file is hugetlbfs's, which takes no write. */
	if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != (ino_t)shmid || (uint64_t)st.st_size < seg->size ||
			fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC)) {
		close(fd); /* not the segment's shmem file after all: through the mapping */
		fd = -1;
	}
	return fd;
}

static size_t chunk_of(uint64_t left, size_t chunk) { return left < chunk ? (size_t)left : chunk; }

/* Maps the pages of [p, p+n) in one call: a copy that faults them in one
 * by one inside read() or write() runs several times slower here. An older
 * kernel without the advice just faults. */
static void populate(const uint8_t *p, size_t n, int advice)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)p & ~(page - 1);
	madvise((void *)start, (uintptr_t)p + n - start, advice);
}

/* One thread's part of a copy: bytes [p, p + len) of the attached segment
 * (at seg_at in it) and the file at at (-1: the descriptor's own position,
 * one thread only), and the running CRC of its bytes. With seg_fd >= 0
 * (the segment's file) the bytes go through it, not through p. */
struct part {
	int fd, to_fd;
	int seg_fd;
	uint8_t *p;
	uint64_t seg_at;
	uint64_t len;
	off_t at;
	uint32_t crc;
	int rc;
};

/* All n bytes written to or read from fd (at its position when at < 0):
 * 0, or an errno (EIO: a write of nothing, ENODATA: the file ended first). */
static int io_all(int fd, int to_fd, uint8_t *p, size_t n, off_t at)
{
	while (n) {
		ssize_t r = to_fd ? (at < 0 ? write(fd, p, n) : pwrite(fd, p, n, at)) : (at < 0 ? read(fd, p, n) : pread(fd, p, n, at));
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) return errno;
		if (r == 0) return to_fd ? EIO : ENODATA;
		p += r;
		n -= (size_t)r;
		if (at >= 0) at += r;
	}
	return 0;
}

static off_t at_of(const struct part *w, uint64_t done) { return w->at < 0 ? -1 : w->at + (off_t)done; }

/* A snapshot's part through the mapping: the segment's pages mapped,
 * checksummed, written. */
static void save_by_mapping(struct part *w)
{
	for (uint64_t done = 0; done < w->len && !w->rc; done += chunk_of(w->len - done, CHUNK)) {
		uint8_t *p = w->p + done;
		size_t n = chunk_of(w->len - done, CHUNK);
		populate(p, n, MADV_POPULATE_READ);
		w->crc = crc_raw(w->crc, p, n); /* first, so write copies from a warm cache */
		w->rc = io_all(w->fd, 1, p, n, at_of(w, done));
	}
}

/* A restore's part through the mapping: the pages made in one call per
 * chunk, then read into. */
static void fill_by_mapping(struct part *w)
{
	for (uint64_t done = 0; done < w->len && !w->rc; done += chunk_of(w->len - done, CHUNK)) {
		uint8_t *p = w->p + done;
		size_t n = chunk_of(w->len - done, CHUNK);
		populate(p, n, MADV_POPULATE_WRITE);
		w->rc = io_all(w->fd, 0, p, n, at_of(w, done));
		if (!w->rc) w->crc = crc_raw(w->crc, p, n); /* while the bytes read are in the cache */
	}
}

/* A part between its file and the segment's file, either way: read into
 * a small buffer, checksummed while it is in the cache, written. */
static void copy_by_file(struct part *w)
{
	uint8_t *buf = malloc(BOUNCE);
	if (!buf) {
		w->rc = ENOMEM;
		return;
	}
	for (uint64_t done = 0; done < w->len && !w->rc; done += chunk_of(w->len - done, BOUNCE)) {
		size_t n = chunk_of(w->len - done, BOUNCE);
		off_t at = at_of(w, done), seg_at = (off_t)(w->seg_at + done);
		w->rc = w->to_fd ? io_all(w->seg_fd, 0, buf, n, seg_at) : io_all(w->fd, 0, buf, n, at);
		if (w->rc) break;
		w->crc = crc_raw(w->crc, buf, n);
		w->rc = w->to_fd ? io_all(w->fd, 1, buf, n, at) : io_all(w->seg_fd, 1, buf, n, seg_at);
	}
	free(buf);
}

static void *copy_part(void *arg)
{
	struct part *w = arg;
	if (w->seg_fd >= 0) copy_by_file(w);
	else if (w->to_fd) save_by_mapping(w);
	else fill_by_mapping(w);
	return NULL;
}

static int threads_for(uint64_t len)
{
	if (len < SPLIT_MIN) return 1;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 2 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
}

/* Where part i of n equal ones begins, at a page boundary. */
static uint64_t part_start(uint64_t len, int i, int n)
{
	uint64_t lo = ((len / (uint64_t)n) * (uint64_t)i + 4095) & ~(uint64_t)4095;
	return lo < len ? lo : len;
}

/* The snapshot file's pages for [pos, pos + len) made in one call before
 * anything is written, on tmpfs: each made without being cleared, none
 * made under the file's lock by a write (two writers spin on it less:
 * measured 172-210 ms of CPU for 256 MiB against 296-316), and a full
 * tmpfs found before the first byte. Not elsewhere: on ext4 (with the
 * fsync after) it measured slower. 0, or ENOSPC / EDQUOT. */
static int reserve(int fd, off_t pos, uint64_t len)
{
	struct statfs fs;
	if (pos < 0 || fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC || fallocate(fd, 0, pos, (off_t)len) == 0) return 0;
	return errno == ENOSPC || errno == EDQUOT ? errno : 0;
}

/* Copies len bytes at seg_at of the attached segment to or from fd at its
 * position, split among threads at page boundaries when it is large and fd
 * can seek, then moves fd's position past it and continues *crc. */
static int copy_parts(int fd, int to_fd, int seg_fd, uint8_t *base, uint64_t seg_at, uint64_t len, uint32_t *crc)
{
	off_t start = lseek(fd, 0, SEEK_CUR);
	int n = start < 0 ? 1 : threads_for(len);
	if (to_fd) {
		int rc = reserve(fd, start, len);
		if (rc) return rc;
	}
	struct part parts[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	for (int i = 0; i < n; i++) {
		uint64_t lo = part_start(len, i, n), hi = i + 1 < n ? part_start(len, i + 1, n) : len;
		off_t at = n == 1 ? -1 : start + (off_t)lo;
		parts[i] = (struct part){ fd, to_fd, seg_fd, base + seg_at + lo, seg_at + lo, hi - lo, at, i ? 0 : ~*crc, 0 };
	}
	int started = 1;
	for (; started < n; started++)
		if (pthread_create(&tids[started], NULL, copy_part, &parts[started])) break;
	/* Parts whose thread could not start are done here, after the first. */
	copy_part(&parts[0]);
	for (int i = started; i < n; i++) copy_part(&parts[i]);
	for (int i = 1; i < started; i++) pthread_join(tids[i], NULL);
	uint32_t c = parts[0].crc;
	int rc = parts[0].rc;
	for (int i = 1; i < n; i++) {
		c = crc_raw_zeros(c, parts[i].len) ^ parts[i].crc;
		if (!rc) rc = parts[i].rc;
	}
	if (!rc && n > 1 && lseek(fd, start + (off_t)len, SEEK_SET) < 0) rc = errno;
	if (!rc) *crc = ~c;
	return rc;
}

int snap_shm_to_fd(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc)
{
	struct segment seg;
	int rc = attach_range(shmid, SHM_RDONLY, offset, len, &seg);
	if (rc) return rc;
	int seg_fd = len >= BY_FILE_MIN ? segment_file(shmid, &seg, O_RDONLY) : -1;
	rc = copy_parts(fd, 1, seg_fd, seg.base, offset, len, crc);
	if (seg_fd >= 0) close(seg_fd);
	shmdt(seg.base);
	return rc;
}

int snap_fd_to_shm(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc)
{
	struct segment seg;
	int rc = attach_range(shmid, 0, offset, len, &seg);
	if (rc) return rc;
	int seg_fd = len >= BY_FILE_MIN ? segment_file(shmid, &seg, O_RDWR) : -1;
	rc = copy_parts(fd, 0, seg_fd, seg.base, offset, len, crc);
	if (seg_fd >= 0) close(seg_fd);
	shmdt(seg.base);
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
