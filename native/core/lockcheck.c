/* The lock file's layout, in the lmdb package's LMDB built as appshot
 * builds it (MDB_USE_ROBUST, x86-64, glibc), all in native byte order:
 *
 *   0    magic u32 (MDB_MAGIC), format u32, last txnid u64, readers in use u32
 *   24   the reader table's mutex; 64 the write mutex; 104 the sync mutex:
 *        glibc mutexes, whose kind (at +16) LMDB sets to robust and
 *        process-shared
 *   208  the reader slots, 64 bytes each: txnid u64 (all ones when idle),
 *        pid u32, thread id u64 */
#define _GNU_SOURCE
#include "lockcheck.h"
#include "native_bytes.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_MAGIC 0xBEEFC0DEu
#define HEADER_BYTES 208u
#define SLOT_BYTES 64u
#define MUTEX_KIND_ROBUST_SHARED 0x90u /* PTHREAD_MUTEX_ROBUST_NORMAL_NP | PTHREAD_MUTEX_PSHARED_BIT */
static const unsigned mutex_kind_at[] = { 24 + 16, 64 + 16, 104 + 16 };


/* Whether another process holds LMDB's shared lock on byte 0: it has the
 * environment open. F_GETLK takes no lock (and this process's own locks
 * never conflict). */
static int used_by_others(int fd)
{
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	return fcntl(fd, F_GETLK, &l) == 0 && l.l_type != F_UNLCK;
}

static uint32_t pid_max(void)
{
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");
	unsigned long v = 4194304; /* the kernel's largest */
	if (f) {
		if (fscanf(f, "%lu", &v) != 1) v = 4194304;
		fclose(f);
	}
	return (uint32_t)v;
}

static const char *header_damage(const uint8_t *h, uint64_t slots)
{
	if (load_u32(h) != LOCK_MAGIC) return "its header is overwritten";
	if (load_u32(h + 16) > slots) return "its count of readers is past its reader table";
	for (size_t i = 0; i < sizeof mutex_kind_at / sizeof *mutex_kind_at; i++)
		if (load_u32(h + mutex_kind_at[i]) != MUTEX_KIND_ROBUST_SHARED) return "a lock in its header is overwritten";
	return NULL;
}

/* Clears the reader slots that no reader could have written: a pid past
 * pid_max, or a transaction id past the last committed one. Read a page of
 * slots at a time. */
static int clear_garbage_slots(int fd, const uint8_t *h, unsigned *cleared)
{
	enum { PER_READ = 64 };
	uint8_t slots[PER_READ * SLOT_BYTES];
	uint32_t n = load_u32(h + 16), maxpid = pid_max();
	uint64_t last = load_u64(h + 8);
	*cleared = 0;
	for (uint32_t first = 0; first < n; first += PER_READ) {
		uint32_t count = n - first < PER_READ ? n - first : PER_READ;
		off_t at = HEADER_BYTES + (off_t)first * SLOT_BYTES;
		if (pread(fd, slots, count * SLOT_BYTES, at) != (ssize_t)(count * SLOT_BYTES)) return errno ? errno : EIO;
		for (uint32_t i = 0; i < count; i++) {
			const uint8_t *slot = slots + i * SLOT_BYTES;
			uint64_t txnid = load_u64(slot);
			if (load_u32(slot + 8) <= maxpid && (txnid == UINT64_MAX || txnid <= last)) continue;
			uint8_t idle[24] = { 0 };
			memset(idle, 0xff, 8); /* txnid all ones: no snapshot held */
			if (pwrite(fd, idle, sizeof idle, at + (off_t)i * SLOT_BYTES) != (ssize_t)sizeof idle) return errno ? errno : EIO;
			(*cleared)++;
		}
	}
	return 0;
}

int lockcheck_fd(int fd, const char *path, char *msg, size_t msglen)
{
	struct stat st;
	uint8_t h[HEADER_BYTES];
	/* Empty or short: LMDB sets it up anew. */
	if (fstat(fd, &st) != 0 || st.st_size < (off_t)HEADER_BYTES || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
		return LOCKCHECK_OK;
	uint64_t slots = ((uint64_t)st.st_size - HEADER_BYTES) / SLOT_BYTES;
	const char *why = header_damage(h, slots);
	if (why) {
		int in_use = used_by_others(fd);
		snprintf(msg, msglen, "LMDB's lock file %s is damaged (%s, as by a program's stray write)%s", path, why,
			 in_use ? " while other processes use the tables" : "");
		return in_use ? LOCKCHECK_DAMAGED_IN_USE : LOCKCHECK_DAMAGED;
	}
	unsigned cleared;
	int rc = clear_garbage_slots(fd, h, &cleared);
	if (rc || !cleared) return rc;
	snprintf(msg, msglen, "cleared %u damaged reader slot(s) in LMDB's lock file %s", cleared, path);
	return LOCKCHECK_REPAIRED;
}

int lockcheck_file(const char *path, char *msg, size_t msglen)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) return errno == ENOENT ? LOCKCHECK_OK : errno;
	int rc = lockcheck_fd(fd, path, msg, msglen);
	/* Damaged but unused: LMDB, the only opener, rebuilds it at open. */
	if (rc == LOCKCHECK_DAMAGED) rc = LOCKCHECK_OK;
	else if (rc == LOCKCHECK_DAMAGED_IN_USE) rc = LOCKCHECK_DAMAGED;
	close(fd);
	return rc;
}
