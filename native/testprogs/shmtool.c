/*
 * shmtool: runs a list of shared memory operations and prints one line per
 * result, so tests can assert what a program sees. Each argument is one
 * command; the "current" segment is the last one got or chosen with use,
 * the "current" address the last one attached.
 *
 *   get KEY SIZE FLAGS    shmget; FLAGS is a mix of c (IPC_CREAT), x (IPC_EXCL), - (none)
 *   private SIZE          shmget(IPC_PRIVATE)
 *   use ID
 *   attach FLAGS          shmat(cur, NULL, ...); FLAGS: r (SHM_RDONLY), - (none)
 *   attachat ADDR FLAGS   shmat at ADDR ("last" for the last address, "last+N"
 *                         for N bytes past it); FLAGS adds n (SHM_RND), m (SHM_REMAP);
 *                         prints where it attached, relative to the last address
 *   protect OFFSET LEN PROT  mprotect LEN bytes at OFFSET past the current address;
 *                         PROT: r (read), rw (read and write), - (none)
 *   detach | detachat ADDR
 *   write TEXT | read     at the current address
 *   stat                  IPC_STAT: key, size, nattch, mode, removed, cpid, lpid
 *   listed                the current segment's line of /proc/sysvipc/shm: key, perms, nattch
 *   rmid | lock | unlock | setmode MODE
 *   info | shminfo | statidx I | statany I | statall
 *   fork                  the rest runs in a child; the parent waits and exits with its status
 *   loop N                attach, write, read and detach N times (forever if 0)
 *   waitfile PATH         waits until PATH exists
 *   overrun FILE N        a program's bug: attaches the current segment where a kernel placing
 *                         mappings top-down would, right below the mapping of FILE (a path
 *                         ending in FILE in /proc/self/maps) if that range is free, else where
 *                         the kernel chooses; prints "attached below FILE" or "attached
 *                         elsewhere", then writes N bytes of 'A' past the segment's end (PHP 8.2
 *                         writes 1 MiB past a segment so)
 *   statcur               SHM_STAT and SHM_STAT_ANY given the current full ID and its index
 *   mine                  SHM_STAT_ANY of every index up to SHM_INFO's: "found N of M"
 *   bad WHAT              the call with a bad pointer: stat set info shminfo statidx statany
 *                         (the buffer), detach (shmdt of an address nothing is attached at)
 *   setuid UID            drop privileges
 *   system CMD            system(CMD) with the current ID in $ID; prints "status N"
 *   rmmine                IPC_RMID of every ID this run got and did not remove; "removed N"
 *   sleep MS | pid
 * Output: "id N", "ok", "data TEXT", "err ENAME", ...
 */
#define _GNU_SOURCE
#include "tool.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int cur = -1;
static char *addr;

static int attach_flags(const char *s)
{
	int f = 0;
	for (; *s; s++) {
		if (*s == 'r') f |= SHM_RDONLY;
		if (*s == 'n') f |= SHM_RND;
		if (*s == 'm') f |= SHM_REMAP;
	}
	return f;
}

static void *address_of(const char *s)
{
	if (!strncmp(s, "last", 4)) return addr + (s[4] == '+' ? num(s + 5) : 0);
	return (void *)(uintptr_t)strtoull(s, NULL, 0);
}

static void attach(void *at, int flags)
{
	char *p = shmat(cur, at, flags);
	if (p == (void *)-1) {
		result(-1, "ok");
		return;
	}
	if (at) printf("attached at last%+ld\n", (long)(p - addr));
	else printf("attached ok\n");
	addr = p;
}

static void print_stat(void)
{
	struct shmid_ds ds;
	if (result(shmctl(cur, IPC_STAT, &ds), "ok") < 0) return;
	printf("key 0x%08x size %zu nattch %lu mode %o removed %d cpid %d lpid %d\n", (unsigned)ds.shm_perm.__key,
	       ds.shm_segsz, (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777, !!(ds.shm_perm.mode & SHM_DEST),
	       ds.shm_cpid, ds.shm_lpid);
}

/* What ipcs reads: the kernel's listing, a line per segment. */
static void print_listed(void)
{
	FILE *f = fopen("/proc/sysvipc/shm", "r");
	if (!f) {
		result(-1, "listed");
		return;
	}
	char line[512];
	int found = 0;
	while (!found && fgets(line, sizeof line, f)) {
		int key, id;
		unsigned perms;
		unsigned long size, nattch;
		int cpid, lpid;
		if (sscanf(line, "%d %d %o %lu %d %d %lu", &key, &id, &perms, &size, &cpid, &lpid, &nattch) == 7 && id == cur) {
			printf("listed key 0x%08x perms %o nattch %lu\n", (unsigned)key, perms, nattch);
			found = 1;
		}
	}
	fclose(f);
	if (!found) printf("not listed\n");
}

static void stat_index(int index, int cmd)
{
	struct shmid_ds ds;
	if (result(shmctl(index, cmd, &ds), "id") >= 0) printf("key 0x%08x size %zu\n", (unsigned)ds.shm_perm.__key, ds.shm_segsz);
}

/* What ipcs does without /proc: SHM_INFO for the highest index, then SHM_STAT each. */
static void stat_all(void)
{
	struct shm_info si;
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&si);
	for (int k = 0; k <= max; k++) {
		struct shmid_ds ds;
		int id = shmctl(k, SHM_STAT, &ds);
		if (id >= 0) printf("segment %d key 0x%08x\n", id, (unsigned)ds.shm_perm.__key);
	}
	printf("end\n");
}

/* Where the first mapping of a file whose path ends in name begins, or NULL. */
static char *mapping_of(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	char *at = NULL;
	size_t n = strlen(name);
	while (f && !at && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		size_t len = strlen(line);
		if (len > n && !strcmp(line + len - n, name)) at = (char *)(uintptr_t)strtoull(line, NULL, 16);
	}
	if (f) fclose(f);
	return at;
}

static void overrun(const char *file, long n)
{
	struct shmid_ds ds;
	if (result(shmctl(cur, IPC_STAT, &ds), "ok") < 0) return;
	char *above = mapping_of(file), *p = (void *)-1;
	if (above) p = shmat(cur, above - ds.shm_segsz, 0);
	printf("attached %s%s\n", p != (void *)-1 ? "below " : "elsewhere", p != (void *)-1 ? file : "");
	if (p == (void *)-1) p = shmat(cur, NULL, 0);
	if (p == (void *)-1) {
		result(-1, "ok");
		return;
	}
	memset(p + ds.shm_segsz, 'A', (size_t)n);
	printf("overran %ld\n", n);
}

static int loop(long n)
{
	for (long k = 0; n == 0 || k < n; k++) {
		char *p = shmat(cur, NULL, 0);
		if (p == (void *)-1) return result(-1, "ok"), 1;
		snprintf(p, 32, "round %ld", k);
		if (strtol(p + 6, NULL, 10) != k) return printf("bad data\n"), 1;
		if (shmdt(p) != 0) return result(-1, "ok"), 1;
	}
	printf("looped %ld\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		if (!strcmp(c, "get")) {
			int r = shmget((key_t)num(argv[i + 1]), (size_t)num(argv[i + 2]), flags_of(argv[i + 3]));
			if (r >= 0) cur = r;
			if (r >= 0 && !tool_is_mine(r)) tool_got(r);
			result(r, "id");
			i += 3;
		} else if (!strcmp(c, "private")) {
			int r = shmget(IPC_PRIVATE, (size_t)num(argv[++i]), 0600);
			if (r >= 0) cur = r;
			tool_got(r);
			result(r, "id");
		} else if (!strcmp(c, "use")) {
			cur = (int)num(argv[++i]);
		} else if (!strcmp(c, "attach")) {
			attach(NULL, attach_flags(argv[++i]));
		} else if (!strcmp(c, "attachat")) {
			attach(address_of(argv[i + 1]), attach_flags(argv[i + 2]));
			i += 2;
		} else if (!strcmp(c, "protect")) {
			const char *p = argv[i + 3];
			int prot = (strchr(p, 'r') ? PROT_READ : 0) | (strchr(p, 'w') ? PROT_WRITE : 0);
			result(mprotect(addr + num(argv[i + 1]), (size_t)num(argv[i + 2]), prot), "ok");
			i += 3;
		} else if (!strcmp(c, "detach")) {
			result(shmdt(addr), "ok");
		} else if (!strcmp(c, "detachat")) {
			result(shmdt(address_of(argv[++i])), "ok");
		} else if (!strcmp(c, "write")) {
			strcpy(addr, argv[++i]);
			printf("ok 0\n");
		} else if (!strcmp(c, "read")) {
			printf("data %s\n", addr);
		} else if (!strcmp(c, "stat")) {
			print_stat();
		} else if (!strcmp(c, "listed")) {
			print_listed();
		} else if (!strcmp(c, "rmid")) {
			if (result(shmctl(cur, IPC_RMID, NULL), "ok") == 0) tool_drop(cur);
		} else if (!strcmp(c, "lock") || !strcmp(c, "unlock")) {
			result(shmctl(cur, !strcmp(c, "lock") ? SHM_LOCK : SHM_UNLOCK, NULL), "ok");
		} else if (!strcmp(c, "setmode")) {
			struct shmid_ds ds;
			if (shmctl(cur, IPC_STAT, &ds) == 0) ds.shm_perm.mode = (unsigned short)num(argv[i + 1]);
			result(shmctl(cur, IPC_SET, &ds), "ok");
			i++;
		} else if (!strcmp(c, "info")) {
			struct shminfo si;
			if (result(shmctl(0, IPC_INFO, (struct shmid_ds *)&si), "maxidx") >= 0)
				printf("shmmni %lu\n", si.shmmni);
		} else if (!strcmp(c, "shminfo")) {
			struct shm_info si;
			if (result(shmctl(0, SHM_INFO, (struct shmid_ds *)&si), "maxidx") >= 0)
				printf("used_ids %d shm_tot %lu shm_rss %lu\n", si.used_ids, si.shm_tot, si.shm_rss);
		} else if (!strcmp(c, "statidx") || !strcmp(c, "statany")) {
			stat_index((int)num(argv[++i]), !strcmp(c, "statidx") ? SHM_STAT : SHM_STAT_ANY);
		} else if (!strcmp(c, "statcur")) {
			struct shmid_ds ds;
			stat_result("stat", shmctl(cur, SHM_STAT, &ds), cur);
			stat_result("statany", shmctl(cur, SHM_STAT_ANY, &ds), cur);
			stat_result("stat index", shmctl(index_of(cur), SHM_STAT, &ds), cur);
			stat_result("statany index", shmctl(index_of(cur), SHM_STAT_ANY, &ds), cur);
		} else if (!strcmp(c, "mine")) {
			struct shm_info si;
			int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&si), found = 0, misplaced = 0;
			for (int k = 0; k <= max; k++) {
				struct shmid_ds ds;
				int id = shmctl(k, SHM_STAT_ANY, &ds);
				if (id >= 0 && tool_is_mine(id)) found++, misplaced |= index_of(id) != k;
			}
			found_result(found, misplaced);
		} else if (!strcmp(c, "bad")) {
			const char *w = argv[++i];
			long r;
			if (!strcmp(w, "stat")) r = shmctl(cur, IPC_STAT, BAD_POINTER);
			else if (!strcmp(w, "set")) r = shmctl(cur, IPC_SET, BAD_POINTER);
			else if (!strcmp(w, "info")) r = shmctl(0, IPC_INFO, BAD_POINTER);
			else if (!strcmp(w, "shminfo")) r = shmctl(0, SHM_INFO, BAD_POINTER);
			else if (!strcmp(w, "statidx")) r = shmctl(index_of(cur), SHM_STAT, BAD_POINTER);
			else if (!strcmp(w, "statany")) r = shmctl(index_of(cur), SHM_STAT_ANY, BAD_POINTER);
			else if (!strcmp(w, "detach")) r = shmdt(BAD_POINTER);
			else return fprintf(stderr, "shmtool: unknown bad call %s\n", w), 2;
			result(r, w);
		} else if (!strcmp(c, "system")) {
			char id[32];
			snprintf(id, sizeof id, "%d", cur);
			setenv("ID", id, 1);
			printf("status %d\n", status_of(system(argv[++i])));
		} else if (!strcmp(c, "rmmine")) {
			int n = 0;
			while (tool_n_ids > 0) {
				n += shmctl(tool_ids[0], IPC_RMID, NULL) == 0;
				tool_drop(tool_ids[0]);
			}
			printf("removed %d\n", n);
		} else if (!strcmp(c, "setuid")) {
			result(setuid((uid_t)num(argv[++i])), "ok");
		} else if (!strcmp(c, "statall")) {
			stat_all();
		} else if (!strcmp(c, "fork")) {
			fork_rest();
		} else if (!strcmp(c, "loop")) {
			if (loop(num(argv[++i]))) return 1;
		} else if (!strcmp(c, "overrun")) {
			overrun(argv[i + 1], num(argv[i + 2]));
			i += 2;
		} else if (!strcmp(c, "waitfile")) {
			while (access(argv[i + 1], F_OK) != 0) usleep(10000);
			i++;
		} else if (!strcmp(c, "sleep")) {
			usleep((useconds_t)num(argv[++i]) * 1000);
		} else if (!strcmp(c, "pid")) {
			printf("pid %d\n", getpid());
		} else {
			fprintf(stderr, "shmtool: unknown command %s\n", c);
			return 2;
		}
	}
	return 0;
}
