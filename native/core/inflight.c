#define _GNU_SOURCE
#include "inflight.h"
#include "guardmap.h"
#include "home.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { CREATING = 1, CREATED = 2 };

struct inflight_rec {
	_Atomic uint64_t token; /* 0 when free; the owner's token while in flight */
	uint32_t spid;
	uint8_t type, state;
	uint32_t skey, srid;
	uint64_t started_s;
	char aid[APPSHOT_AID_MAX + 1];
};

int inflight_open(struct inflight_file *f, const char *home)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s/%s", home, APPSHOT_INFLIGHT_FILE) >= (int)sizeof path)
		return ENAMETOOLONG;
	/* Never through a link: the record is mapped and written. */
	int fd = home_path_open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) return errno;
	int e = inflight_map_fd(f, fd);
	close(fd);
	return e;
}

/* Whether the file's first len bytes are there and hold no hole: then
 * posix_fallocate would change nothing, and it is not cheap (a journal
 * transaction on ext4, at every program's start; issue 21). */
static int has_blocks(int fd, off_t len);

int inflight_reserve(int fd, off_t len)
{
	/* Blocks, not a hole: a write to a mapped hole the full filesystem
	 * cannot fill is SIGBUS, an error here is a message. */
	return has_blocks(fd, len) ? 0 : posix_fallocate(fd, 0, len);
}

/* Whether the file's extents cover [0, len) without a gap: 1 or 0, -1
 * when the filesystem cannot say (no FIEMAP) or the range is in more
 * pieces than asked for. One lookup in the extent tree, where SEEK_HOLE
 * over fallocated (unwritten) extents walks the page cache of the whole
 * file: the journal's megabyte, twice at every program's start (~60 us of
 * a spawn's CPU here; issue 21). An unwritten or delayed extent is blocks
 * reserved: written through a mapping, no SIGBUS. */
static int extents_cover(int fd, off_t len)
{
	enum { PIECES = 8 };
	struct {
		struct fiemap map;
		struct fiemap_extent extent[PIECES];
	} f = { .map = { .fm_start = 0, .fm_length = (uint64_t)len, .fm_extent_count = PIECES } };
	if (ioctl(fd, FS_IOC_FIEMAP, &f) != 0) return -1;
	uint64_t covered = 0;
	for (uint32_t i = 0; i < f.map.fm_mapped_extents && covered < (uint64_t)len; i++) {
		if (f.extent[i].fe_logical > covered) return 0; /* a hole before this piece */
		uint64_t end = f.extent[i].fe_logical + f.extent[i].fe_length;
		if (end > covered) covered = end;
	}
	if (covered >= (uint64_t)len) return 1;
	return f.map.fm_mapped_extents < PIECES ? 0 : -1;
}

static int has_blocks(int fd, off_t len)
{
	struct stat st;
	/* Blocks counted too: where a filesystem cannot tell holes, lseek
	 * calls the whole file data. */
	if (fstat(fd, &st) != 0 || st.st_size < len || (off_t)st.st_blocks * 512 < len) return 0;
	int covered = extents_cover(fd, len);
	return covered >= 0 ? covered : lseek(fd, 0, SEEK_HOLE) >= len;
}

int inflight_map_fd(struct inflight_file *f, int fd)
{
	int e = inflight_reserve(fd, sizeof(struct inflight_rec));
	if (e) return e;
	void *p = appshot_guarded_mmap(NULL, sizeof(struct inflight_rec), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) return errno;
	f->rec = p;
	return 0;
}

void inflight_close(struct inflight_file *f)
{
	if (f->rec) appshot_guarded_munmap(f->rec, sizeof(struct inflight_rec));
	f->rec = NULL;
}

static uint64_t next_token(pid_t spid)
{
	static _Atomic uint32_t counter;
	return ((uint64_t)spid << 32) | (atomic_fetch_add(&counter, 1) + 1u);
}

void inflight_begin(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type, uint32_t skey)
{
	struct inflight_rec *r = f->rec;
	r->spid = (uint32_t)spid;
	r->type = type;
	r->state = CREATING;
	r->skey = skey;
	r->srid = 0;
	r->started_s = (uint64_t)time(NULL);
	strncpy(r->aid, aid, APPSHOT_AID_MAX);
	r->aid[APPSHOT_AID_MAX] = 0;
	f->token = next_token(spid);
	atomic_store(&r->token, f->token);
}

void inflight_created(struct inflight_file *f, uint32_t srid)
{
	f->rec->srid = srid;
	f->rec->state = CREATED;
}

void inflight_clear(struct inflight_file *f)
{
	uint64_t mine = f->token;
	/* Only our own record: a later writer may already have replaced it. */
	atomic_compare_exchange_strong(&f->rec->token, &mine, 0);
	f->token = 0;
}

/* Created in [from_s, to_s] and never used: what a creator that died
 * before its commit leaves. */
static int fresh_between(const struct kernel_ops *k, uint8_t type, uint64_t from_s, uint64_t to_s, int id)
{
	struct sysv_stat st;
	return sysv_stat(k, type, id, &st) == 0 && !st.used && st.ctime >= (time_t)from_s && st.ctime <= (time_t)to_s;
}

static int fresh_since(const struct kernel_ops *k, uint8_t type, uint64_t started_s, int id)
{
	return fresh_between(k, type, started_s, started_s + 5, id);
}

int inflight_fresh_private(const struct kernel_ops *k, uint8_t type, uint64_t from_s, uint64_t to_s, is_mapped_fn mapped,
			   void *ctx, int *ids, int max)
{
	FILE *fp = sysv_open_listing(type);
	if (!fp) return 0;
	char line[512];
	int found = 0;
	if (!fgets(line, sizeof line, fp)) { fclose(fp); return 0; }
	while (fgets(line, sizeof line, fp)) {
		long long key, id;
		if (sscanf(line, "%lld %lld", &key, &id) != 2 || key != 0) continue;
		if (mapped(ctx, type, (uint32_t)id) || !fresh_between(k, type, from_s, to_s, (int)id)) continue;
		if (found < max) ids[found] = (int)id;
		found++;
	}
	fclose(fp);
	return found;
}

/* A private (IPC_PRIVATE) object has no key to find it by: look for the
 * one unmapped, fresh object of its family. Two such (a program outside
 * appshot made one in the same seconds) and neither is touched: better a
 * leak than removing someone else's object. */
static int find_private(uint8_t type, uint64_t started_s, const struct kernel_ops *k, is_mapped_fn mapped,
			void *ctx, int *found_id)
{
	return inflight_fresh_private(k, type, started_s, started_s + 5, mapped, ctx, found_id, 1);
}

/* The keyed object the record names, if it looks like the one being created. */
static int fresh_keyed(uint8_t type, uint32_t skey, uint64_t started_s, const struct kernel_ops *k)
{
	int id = sysv_get(k, type, (key_t)skey, 0, 0);
	return id >= 0 && fresh_since(k, type, started_s, id) ? id : -1;
}

int inflight_orphan(const struct kernel_ops *k, uint8_t type, uint32_t skey, uint64_t started_s, int created,
		    uint32_t srid, is_mapped_fn mapped, void *ctx)
{
	int id = -1;
	if (created) id = (int)srid;
	else if (skey != IPC_PRIVATE) id = fresh_keyed(type, skey, started_s, k);
	else if (find_private(type, started_s, k, mapped, ctx, &id) != 1) id = -1;
	return id >= 0 && !mapped(ctx, type, (uint32_t)id) ? id : -1;
}

int inflight_recover(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped,
		     void *ctx, char *report, size_t reportlen)
{
	struct inflight_rec *r = f->rec;
	uint64_t token = atomic_load(&r->token);
	if (report && reportlen) report[0] = 0;
	if (token == 0 || !sysv_is_ipc(r->type)) {
		if (token) atomic_compare_exchange_strong(&r->token, &token, 0);
		return 0;
	}
	int removed = 0;
	int id = inflight_orphan(k, r->type, r->skey, r->started_s, r->state == CREATED, r->srid, mapped, ctx);
	if (id >= 0 && sysv_rmid(k, r->type, id) == 0) {
		removed = 1;
		if (report)
			snprintf(report, reportlen,
				 "removed %s %d that process %u of application '%s' created and did not record before it died",
				 sysv_noun(r->type), id, r->spid, r->aid);
	}
	atomic_compare_exchange_strong(&r->token, &token, 0);
	return removed;
}
