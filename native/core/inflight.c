#include "inflight.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
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
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) return errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size < (off_t)sizeof(struct inflight_rec) &&
	    ftruncate(fd, sizeof(struct inflight_rec)) != 0) {
		int e = errno;
		close(fd);
		return e;
	}
	void *p = mmap(NULL, sizeof(struct inflight_rec), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED) return e;
	f->rec = p;
	return 0;
}

void inflight_close(struct inflight_file *f)
{
	if (f->rec) munmap(f->rec, sizeof(struct inflight_rec));
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

/* A private (IPC_PRIVATE) semaphore set has no key to find it by: look for
 * the one unmapped, never-used set created since the record. Two such sets
 * (a program outside appshot made one in the same seconds) and neither is
 * touched: better a leak than removing someone else's set. */
static int find_private_sem(const struct inflight_rec *r, is_mapped_fn mapped, void *ctx, int *semid)
{
	FILE *fp = fopen("/proc/sysvipc/sem", "re");
	if (!fp) return 0;
	char line[512];
	int found = 0;
	if (!fgets(line, sizeof line, fp)) { fclose(fp); return 0; }
	while (fgets(line, sizeof line, fp)) {
		long long key, id, perms, nsems, uid, gid, cuid, cgid, otime, ctime;
		if (sscanf(line, "%lld %lld %llo %lld %lld %lld %lld %lld %lld %lld", &key, &id, &perms,
			   &nsems, &uid, &gid, &cuid, &cgid, &otime, &ctime) != 10)
			continue;
		if (key != 0 || otime != 0) continue;
		if (ctime < (long long)r->started_s || ctime > (long long)r->started_s + 5) continue;
		if (mapped(ctx, RT_SEM, (uint32_t)id)) continue;
		*semid = (int)id;
		found++;
	}
	fclose(fp);
	return found;
}

/* The keyed set the record names, if it looks like the one being created:
 * created since the record and never operated on. */
static int fresh_keyed_sem(const struct inflight_rec *r, const struct kernel_ops *k)
{
	int semid = k->get_set((key_t)r->skey, 0, 0);
	struct semid_ds ds;
	if (semid < 0 || k->control_set(semid, 0, IPC_STAT, &ds) != 0) return -1;
	if (ds.sem_otime != 0 || ds.sem_ctime < (time_t)r->started_s)
		return -1;
	return semid;
}

int inflight_recover(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped,
		     void *ctx, char *report, size_t reportlen)
{
	struct inflight_rec *r = f->rec;
	uint64_t token = atomic_load(&r->token);
	if (report && reportlen) report[0] = 0;
	if (token == 0 || r->type != RT_SEM) {
		if (token) atomic_compare_exchange_strong(&r->token, &token, 0);
		return 0;
	}
	int semid = -1, removed = 0;
	if (r->state == CREATED) semid = (int)r->srid;
	else if (r->skey != IPC_PRIVATE) semid = fresh_keyed_sem(r, k);
	else if (find_private_sem(r, mapped, ctx, &semid) != 1) semid = -1;
	if (semid >= 0 && !mapped(ctx, RT_SEM, (uint32_t)semid) &&
	    k->control_set(semid, 0, IPC_RMID) == 0) {
		removed = 1;
		if (report)
			snprintf(report, reportlen,
				 "removed semaphore set %d that process %u of application '%s' created and did not record before it died",
				 semid, r->spid, r->aid);
	}
	atomic_compare_exchange_strong(&r->token, &token, 0);
	return removed;
}
