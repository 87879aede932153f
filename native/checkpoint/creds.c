/* A process's credentials (see creds.h). */
#define _GNU_SOURCE
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"

/* Supplementary groups kept: what setgroups takes from one scratch page.
 * A process with more is refused at dump, by name. */
#define MAX_GROUPS 1024

enum { SET_INH, SET_PRM, SET_EFF, SET_BND, SET_AMB, NSETS };
static const char *const set_field[NSETS] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
static const char *const set_key[NSETS] = {"inh", "prm", "eff", "bnd", "amb"};

struct creds {
	uint32_t uid[4], gid[4]; /* real, effective, saved, file system */
	int ngroups;
	uint32_t groups[MAX_GROUPS]; /* ascending, as the kernel keeps them */
	uint64_t cap[NSETS];
	int nnp;
};

/* ---- Reading them: /proc/.../status ---- */

/* The value of "Name:" in a status text, NUL-terminated at its line's end
 * (the text is ours to cut). */
static char *field(char *buf, const char *name)
{
	size_t n = strlen(name);
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, name, n) && l[n] == ':') return l + n + 1;
	return NULL;
}

static char *line_of(char *v)
{
	if (v) v[strcspn(v, "\n")] = 0;
	return v;
}

/* 0; -1 unreadable; -2 more groups than MAX_GROUPS. */
static int read_creds(const char *path, struct creds *c)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = 0, r;
	while (n < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += r;
	close(fd);
	buf[n] = 0;
	memset(c, 0, sizeof *c);
	/* Found before any line is cut short. */
	char *u = field(buf, "Uid"), *g = field(buf, "Gid"), *gr = field(buf, "Groups"), *nnp = field(buf, "NoNewPrivs"), *caps[NSETS];
	for (int i = 0; i < NSETS; i++) caps[i] = field(buf, set_field[i]);
	if (!line_of(u) || sscanf(u, "%u %u %u %u", &c->uid[0], &c->uid[1], &c->uid[2], &c->uid[3]) != 4) return -1;
	if (!line_of(g) || sscanf(g, "%u %u %u %u", &c->gid[0], &c->gid[1], &c->gid[2], &c->gid[3]) != 4) return -1;
	if (!line_of(gr)) return -1;
	for (char *s = gr, *end;; s = end) {
		unsigned long v = strtoul(s, &end, 10);
		if (end == s) break;
		if (c->ngroups == MAX_GROUPS) return -2;
		c->groups[c->ngroups++] = (uint32_t)v;
	}
	for (int i = 0; i < NSETS; i++) c->cap[i] = caps[i] ? strtoull(line_of(caps[i]), NULL, 16) : 0;
	c->nnp = nnp && atoi(line_of(nnp)) == 1;
	return 0;
}

static int task_creds(pid_t pid, pid_t tid, struct creds *c)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
	return read_creds(path, c);
}

static int same_ids(const struct creds *a, const struct creds *b) { return !memcmp(a->uid, b->uid, sizeof a->uid) && !memcmp(a->gid, b->gid, sizeof a->gid); }

static int same_groups(const struct creds *a, const struct creds *b)
{
	return a->ngroups == b->ngroups && !memcmp(a->groups, b->groups, (size_t)a->ngroups * sizeof *a->groups);
}

static int same_creds(const struct creds *a, const struct creds *b)
{
	return same_ids(a, b) && same_groups(a, b) && !memcmp(a->cap, b->cap, sizeof a->cap) && a->nnp == b->nnp;
}

/* ---- In the image ---- */

static cJSON *numbers(const uint32_t *v, int n)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
	return a;
}

static cJSON *creds_json(const struct creds *c)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddItemToObject(o, "uid", numbers(c->uid, 4));
	cJSON_AddItemToObject(o, "gid", numbers(c->gid, 4));
	cJSON_AddItemToObject(o, "groups", numbers(c->groups, c->ngroups));
	for (int i = 0; i < NSETS; i++) json_add_addr(o, set_key[i], c->cap[i]);
	cJSON_AddBoolToObject(o, "nnp", c->nnp);
	return o;
}

static int get_numbers(const cJSON *o, const char *name, uint32_t *v, int max)
{
	const cJSON *a = cJSON_GetObjectItem(o, name), *x;
	int n = 0;
	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > max) return -1;
	cJSON_ArrayForEach(x, a)
	{
		if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 4294967295.0) return -1;
		v[n++] = (uint32_t)x->valuedouble;
	}
	return n;
}

/* 1 and c filled; 0 when o holds none; -1 when they are damaged. */
static int creds_of_json(const cJSON *o, struct creds *c)
{
	if (!o) return 0;
	memset(c, 0, sizeof *c);
	if (get_numbers(o, "uid", c->uid, 4) != 4 || get_numbers(o, "gid", c->gid, 4) != 4 || (c->ngroups = get_numbers(o, "groups", c->groups, MAX_GROUPS)) < 0) return -1;
	for (int i = 0; i < NSETS; i++) c->cap[i] = json_addr(o, set_key[i]);
	c->nnp = cJSON_IsTrue(cJSON_GetObjectItem(o, "nnp"));
	return 1;
}

/* ---- Dump ---- */

int creds_capture(pid_t pid, cJSON *p, char *err, size_t errlen)
{
	static struct creds main_creds, c;
	int rc = task_creds(pid, pid, &main_creds);
	const cJSON *t;
	if (!rc) cJSON_AddItemToObject(p, "creds", creds_json(&main_creds));
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(p, "threads"))
	{
		pid_t tid = (pid_t)json_int(t, "stid");
		if (rc || tid == pid) continue;
		/* A thread may have changed its own with a raw system call. */
		if (!(rc = task_creds(pid, tid, &c)) && !same_creds(&c, &main_creds)) cJSON_AddItemToObject((cJSON *)t, "creds", creds_json(&c));
	}
	if (rc == -2) snprintf(err, errlen, "it is in more than %d supplementary groups, more than appshot saves", MAX_GROUPS);
	else if (rc) snprintf(err, errlen, "its credentials cannot be read from /proc/%d/status", pid);
	return rc ? -1 : 0;
}

int creds_capture_by_calls(struct inj *in, cJSON *p)
{
	long bits = inj_call(in, SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
	long dumpable = inj_call(in, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0);
	if (bits == -ESRCH || dumpable == -ESRCH) return -1;
	cJSON *c = cJSON_GetObjectItem(p, "creds");
	if (bits >= 0) cJSON_AddNumberToObject(c, "securebits", (double)bits);
	if (dumpable >= 0) cJSON_AddNumberToObject(c, "dumpable", (double)dumpable);
	return 0;
}

/* ---- Restore: what this restorer can give ---- */

static int has_cap(const struct creds *c, int cap) { return (int)(c->cap[SET_EFF] >> cap & 1); }

static int one_of(uint32_t v, const uint32_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == v) return 1;
	return 0;
}

static const char *user_name(uint32_t uid)
{
	struct passwd *pw = getpwuid(uid);
	return pw ? pw->pw_name : "without a name";
}

/* Why me (the restorer) cannot give a thread want, or NULL. */
static const char *cannot_give(const struct creds *me, long my_bits, const struct creds *want, long bits, char *buf, size_t len)
{
	int ids = 1;
	for (int i = 0; i < 4; i++) ids &= (has_cap(me, CAP_SETUID) || one_of(want->uid[i], me->uid, 4)) && (has_cap(me, CAP_SETGID) || one_of(want->gid[i], me->gid, 4));
	if (!ids || (!same_groups(me, want) && !has_cap(me, CAP_SETGID))) {
		char mine[128];
		snprintf(mine, sizeof mine, "%s", user_name(me->uid[1]));
		snprintf(buf, len, "it runs as user %s (uid %u, gid %u%s), which this restorer (user %s, uid %u) cannot become; restore it as root", user_name(want->uid[1]),
			 want->uid[1], want->gid[1], same_groups(me, want) ? "" : ", its own groups", mine, me->uid[1]);
		return buf;
	}
	uint64_t inh_ok = (me->cap[SET_INH] | me->cap[SET_PRM]) & (me->cap[SET_INH] | me->cap[SET_BND]);
	uint64_t more = (want->cap[SET_PRM] & ~me->cap[SET_PRM]) | (want->cap[SET_INH] & ~inh_ok);
	if (more) {
		snprintf(buf, len, "it holds capabilities (mask 0x%llx) this restorer does not have; restore it as root", (unsigned long long)more);
		return buf;
	}
	int pcap = has_cap(me, CAP_SETPCAP);
	if (!pcap && ((me->cap[SET_BND] & ~want->cap[SET_BND]) || (bits >= 0 && ((bits ^ my_bits) & ~(long)SECBIT_KEEP_CAPS)))) {
		snprintf(buf, len, "its capability bounding set or securebits are narrower than this restorer's, and narrowing them needs CAP_SETPCAP; restore it as root");
		return buf;
	}
	return NULL;
}

int creds_check(const cJSON *p, char *err, size_t errlen)
{
	static struct creds me, want;
	const cJSON *pc = cJSON_GetObjectItem(p, "creds"), *t;
	long bits = cJSON_GetObjectItem(pc, "securebits") ? json_int(pc, "securebits") : -1;
	int has = creds_of_json(pc, &want);
	if (has == 0) return 0; /* an image from before credentials were saved */
	if (has < 0 || read_creds("/proc/thread-self/status", &me) != 0) {
		snprintf(err, errlen, has < 0 ? "its saved credentials are damaged" : "this restorer cannot read its own credentials");
		return -1;
	}
	long my_bits = prctl(PR_GET_SECUREBITS);
	char why[512];
	const char *no = cannot_give(&me, my_bits, &want, bits, why, sizeof why);
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(p, "threads"))
	{
		struct creds *own = &want;
		static struct creds tc;
		int h = creds_of_json(cJSON_GetObjectItem(t, "creds"), &tc);
		if (h < 0) no = "the saved credentials of one of its threads are damaged";
		if (h > 0) own = &tc;
		if (!no && own != &want) no = cannot_give(&me, my_bits, own, bits, why, sizeof why);
	}
	if (no) snprintf(err, errlen, "%s", no);
	return no ? -1 : 0;
}

/* ---- Restore: setting them ---- */

static int failed(char *err, size_t errlen, pid_t tid, const char *what, long rc)
{
	snprintf(err, errlen, "the credentials of its thread %d cannot be set: %s failed: %s", tid, what, rc == -ESRCH ? "the thread could not be driven" : strerror((int)-rc));
	return -1;
}

static long capset_in(struct inj *in, uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{(uint32_t)eff, (uint32_t)prm, (uint32_t)inh}, {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)}};
	uint64_t ha = inj_put(in, 0, &h, sizeof h), da = inj_put(in, 64, d, sizeof d);
	return inj_call(in, SYS_capset, ha, da);
}

/* Groups and gids first (setting them needs CAP_SETGID, which the uids'
 * change takes away), the bounding set while CAP_SETPCAP is effective,
 * then the uids with the permitted set kept (PR_SET_KEEPCAPS), then the
 * capability sets: all permitted ones effective for a moment, so that
 * securebits may be set, then the saved ones. */
static int set_ids(struct inj *in, pid_t tid, const struct creds *now, const struct creds *want, char *err, size_t errlen)
{
	long rc = 0;
	if (!same_groups(now, want)) {
		uint64_t list = want->ngroups ? inj_put(in, 0, want->groups, (size_t)want->ngroups * sizeof *want->groups) : 0;
		if ((rc = inj_call(in, SYS_setgroups, want->ngroups, list))) return failed(err, errlen, tid, "setgroups", rc);
	}
	if (memcmp(now->gid, want->gid, sizeof now->gid)) {
		if ((rc = inj_call(in, SYS_setresgid, want->gid[0], want->gid[1], want->gid[2]))) return failed(err, errlen, tid, "setresgid", rc);
		inj_call(in, SYS_setfsgid, want->gid[3]); /* answers the old one: the read back says */
	}
	for (int cap = 0; cap < 64; cap++)
		if ((now->cap[SET_BND] & ~want->cap[SET_BND]) >> cap & 1 && (rc = inj_call(in, SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0)))
			return failed(err, errlen, tid, "PR_CAPBSET_DROP", rc);
	if (memcmp(now->uid, want->uid, sizeof now->uid)) {
		inj_call(in, SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0); /* refused only when locked */
		if ((rc = inj_call(in, SYS_setresuid, want->uid[0], want->uid[1], want->uid[2]))) return failed(err, errlen, tid, "setresuid", rc);
		inj_call(in, SYS_setfsuid, want->uid[3]);
	}
	return 0;
}

static int set_caps(struct inj *in, pid_t tid, const struct creds *now, const struct creds *want, long bits, char *err, size_t errlen)
{
	long rc, my_bits = inj_call(in, SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
	if (my_bits == -ESRCH) return failed(err, errlen, tid, "PR_GET_SECUREBITS", my_bits);
	int bits_differ = bits >= 0 && my_bits != bits;
	if (!memcmp(now->cap, want->cap, sizeof now->cap) && !bits_differ) return 0;
	if ((rc = capset_in(in, now->cap[SET_PRM], now->cap[SET_PRM], want->cap[SET_INH]))) return failed(err, errlen, tid, "capset", rc);
	if (now->cap[SET_AMB] != want->cap[SET_AMB]) {
		if ((rc = inj_call(in, SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))) return failed(err, errlen, tid, "PR_CAP_AMBIENT_CLEAR_ALL", rc);
		for (int cap = 0; cap < 64; cap++)
			if (want->cap[SET_AMB] >> cap & 1 && (rc = inj_call(in, SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)))
				return failed(err, errlen, tid, "PR_CAP_AMBIENT_RAISE", rc);
	}
	if (bits_differ) {
		/* Only keep_caps apart (ours, from set_ids): no privilege needed. */
		rc = ((my_bits ^ bits) & ~(long)SECBIT_KEEP_CAPS) == 0 ? inj_call(in, SYS_prctl, PR_SET_KEEPCAPS, !!(bits & SECBIT_KEEP_CAPS), 0, 0, 0)
								       : inj_call(in, SYS_prctl, PR_SET_SECUREBITS, bits, 0, 0, 0);
		if (rc) return failed(err, errlen, tid, "PR_SET_SECUREBITS", rc);
	}
	if ((rc = capset_in(in, want->cap[SET_EFF], want->cap[SET_PRM], want->cap[SET_INH]))) return failed(err, errlen, tid, "capset", rc);
	return 0;
}

static void describe(const struct creds *c, char *buf, size_t len)
{
	snprintf(buf, len, "uid %u/%u/%u/%u gid %u/%u/%u/%u, %d group(s), capabilities %llx/%llx/%llx", c->uid[0], c->uid[1], c->uid[2], c->uid[3], c->gid[0], c->gid[1], c->gid[2],
		 c->gid[3], c->ngroups, (unsigned long long)c->cap[SET_PRM], (unsigned long long)c->cap[SET_EFF], (unsigned long long)c->cap[SET_BND]);
}

static int set_thread(struct inj *in, pid_t pid, pid_t tid, const struct creds *want, long bits, char *err, size_t errlen)
{
	static struct creds now;
	if (task_creds(pid, tid, &now) != 0) return snprintf(err, errlen, "the credentials of its thread %d cannot be read", tid), -1;
	if (set_ids(in, tid, &now, want, err, errlen) != 0) return -1;
	if (task_creds(pid, tid, &now) != 0) return snprintf(err, errlen, "the credentials of its thread %d cannot be read", tid), -1;
	if (set_caps(in, tid, &now, want, bits, err, errlen) != 0) return -1;
	long rc;
	if (want->nnp && !now.nnp && (rc = inj_call(in, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))) return failed(err, errlen, tid, "PR_SET_NO_NEW_PRIVS", rc);
	/* Read back: a process never goes on with other credentials than its own. */
	if (task_creds(pid, tid, &now) != 0 || !same_creds(&now, want)) {
		char a[256], b[256];
		describe(&now, a, sizeof a), describe(want, b, sizeof b);
		snprintf(err, errlen, "its thread %d has %s after its credentials were set, not the saved %s", tid, a, b);
		return -1;
	}
	return 0;
}

int creds_restore(struct inj *main, const cJSON *p, const pid_t *tids, int ntids, uint64_t gadget, uint64_t scratch, char *err, size_t errlen)
{
	static struct creds want, own;
	const cJSON *pc = cJSON_GetObjectItem(p, "creds");
	if (creds_of_json(pc, &want) <= 0) return 0; /* creds_check refused damaged ones */
	long bits = cJSON_GetObjectItem(pc, "securebits") ? json_int(pc, "securebits") : -1;
	const cJSON *threads = cJSON_GetObjectItem(p, "threads");
	/* The other threads first: the main thread's session stays open. */
	for (int k = 1; k < ntids; k++) {
		struct inj in;
		int h = creds_of_json(cJSON_GetObjectItem(cJSON_GetArrayItem(threads, k), "creds"), &own);
		if (inj_begin(&in, tids[k], gadget, scratch) != 0) return snprintf(err, errlen, "its thread %d could not be driven to set its credentials", tids[k]), -1;
		int rc = set_thread(&in, tids[0], tids[k], h > 0 ? &own : &want, bits, err, errlen);
		if (inj_end(&in) != 0 && !rc) return snprintf(err, errlen, "its thread %d could not be put back after its credentials were set", tids[k]), -1;
		if (rc) return -1;
	}
	if (set_thread(main, tids[0], tids[0], &want, bits, err, errlen) != 0) return -1;
	/* Last: a change of user made the process undumpable; as saved. */
	long dumpable = cJSON_GetObjectItem(pc, "dumpable") ? json_int(pc, "dumpable") : -1;
	long now = inj_call(main, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0);
	if ((dumpable == 0 || dumpable == 1) && now >= 0 && now != dumpable) {
		long rc = inj_call(main, SYS_prctl, PR_SET_DUMPABLE, dumpable, 0, 0, 0);
		if (rc) return failed(err, errlen, tids[0], "PR_SET_DUMPABLE", rc);
	}
	return 0;
}
