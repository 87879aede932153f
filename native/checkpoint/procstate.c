/* A process's state beyond memory and threads (see procstate.h). */
#define _GNU_SOURCE
#include "procstate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "creds.h"
#include "image.h"
#include "threads.h"

/* The kernel's struct sigaction on x86-64 (what rt_sigaction takes). */
struct ksigaction {
	uint64_t handler, flags, restorer, mask;
};

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0) return -1;
	buf[n] = 0;
	return (int)n;
}

/* Fields of /proc/PID/stat, numbered as proc(5) does (1 = pid). */
static int stat_fields(pid_t pid, unsigned long long *f, int max)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (read_file(path, buf, sizeof buf) < 0) return -1;
	char *p = strrchr(buf, ')');
	if (!p) return -1;
	p += 2; /* field 3, the state letter */
	int i = 3;
	for (char *tok = strtok(p, " "); tok && i < max; tok = strtok(NULL, " "), i++) f[i] = i == 3 ? 0 : strtoull(tok, NULL, 10);
	return i;
}

int proc_links(pid_t pid, pid_t *ppid, pid_t *pgid, pid_t *sid)
{
	unsigned long long f[64] = {0};
	if (stat_fields(pid, f, 64) < 8) return -1;
	*ppid = (pid_t)f[4], *pgid = (pid_t)f[5], *sid = (pid_t)f[6];
	return 0;
}

static void add_link(cJSON *p, const char *name, pid_t pid, const char *what)
{
	char path[64], buf[PATH_MAX];
	snprintf(path, sizeof path, "/proc/%d/%s", pid, what);
	ssize_t n = readlink(path, buf, sizeof buf - 1);
	buf[n > 0 ? n : 0] = 0;
	cJSON_AddStringToObject(p, name, buf);
}

static void add_cmdline(cJSON *p, pid_t pid)
{
	char path[64];
	static char buf[65536];
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	int n = read_file(path, buf, sizeof buf);
	cJSON *a = cJSON_AddArrayToObject(p, "cmdline");
	for (int i = 0; i < n; i += (int)strlen(buf + i) + 1) cJSON_AddItemToArray(a, cJSON_CreateString(buf + i));
}

static void add_status(cJSON *p, pid_t pid)
{
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	if (read_file(path, buf, sizeof buf) < 0) return;
	char *u = strstr(buf, "\nUmask:");
	if (u) cJSON_AddNumberToObject(p, "umask", strtol(u + 7, NULL, 8));
	char *c = strstr(buf, "Name:\t");
	if (c) {
		c += 6;
		cJSON_AddItemToObject(p, "comm", cJSON_CreateString(strndup(c, strcspn(c, "\n"))));
	}
}

static void add_mm(cJSON *p, pid_t pid)
{
	unsigned long long f[64] = {0};
	stat_fields(pid, f, 64);
	cJSON *mm = cJSON_AddObjectToObject(p, "mm");
	json_add_addr(mm, "start_code", f[26]);
	json_add_addr(mm, "end_code", f[27]);
	json_add_addr(mm, "start_stack", f[28]);
	json_add_addr(mm, "start_data", f[45]);
	json_add_addr(mm, "end_data", f[46]);
	json_add_addr(mm, "start_brk", f[47]);
	json_add_addr(mm, "arg_start", f[48]);
	json_add_addr(mm, "arg_end", f[49]);
	json_add_addr(mm, "env_start", f[50]);
	json_add_addr(mm, "env_end", f[51]);
	char path[64], auxv[4096];
	snprintf(path, sizeof path, "/proc/%d/auxv", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, auxv, sizeof auxv) : -1;
	if (fd >= 0) close(fd);
	json_add_hex(p, "auxv", auxv, n > 0 ? (size_t)n : 0);
}

/* Dispositions, timers and brk, asked by calls in the main thread. */
static int capture_by_calls(pid_t pid, uint64_t syscall_at, cJSON *p, char *err, size_t errlen)
{
	struct inj in;
	if (inj_begin(&in, pid, syscall_at, 0) != 0) {
		snprintf(err, errlen, "its main thread cannot be read: %s", strerror(errno));
		return -1;
	}
	int rc = 0;
	cJSON *acts = cJSON_AddArrayToObject(p, "sigactions");
	for (int sig = 1; sig <= 64 && !rc; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP) continue;
		struct ksigaction a = {0};
		long r = inj_call(&in, SYS_rt_sigaction, sig, 0, in.scratch, 8);
		if (r == -ESRCH || (r == 0 && inj_get(&in, 0, &a, sizeof a) != 0)) rc = -1;
		if (r != 0 || (a.handler == 0 && a.flags == 0 && a.mask == 0)) continue;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "sig", sig);
		json_add_addr(o, "handler", a.handler);
		json_add_addr(o, "flags", a.flags);
		json_add_addr(o, "restorer", a.restorer);
		json_add_addr(o, "mask", a.mask);
		cJSON_AddItemToArray(acts, o);
	}
	cJSON *timers = cJSON_AddArrayToObject(p, "itimers");
	for (int which = 0; which < 3 && !rc; which++) {
		struct itimerval v = {0};
		long r = inj_call(&in, SYS_getitimer, which, in.scratch);
		if (r == -ESRCH || (r == 0 && inj_get(&in, 0, &v, sizeof v) != 0)) rc = -1;
		cJSON *o = cJSON_CreateObject();
		json_add_hex(o, "value", &v, sizeof v);
		cJSON_AddItemToArray(timers, o);
	}
	/* Asked in the process itself: prlimit on another process needs
	 * CAP_SYS_RESOURCE once it changed its user, which root may lack. */
	cJSON *limits = cJSON_AddArrayToObject(p, "rlimits");
	for (int r = 0; r < RLIM_NLIMITS && !rc; r++) {
		struct rlimit l = {0, 0};
		if (inj_call(&in, SYS_prlimit64, 0, r, 0, in.scratch) != 0 || inj_get(&in, 0, &l, sizeof l) != 0) rc = -1;
		cJSON *o = cJSON_CreateObject();
		json_add_addr(o, "cur", l.rlim_cur);
		json_add_addr(o, "max", l.rlim_max);
		cJSON_AddItemToArray(limits, o);
	}
	if (!rc && creds_capture_by_calls(&in, p) != 0) rc = -1;
	long brk = rc ? -ESRCH : inj_call(&in, SYS_brk, 0);
	if (brk < 0) rc = -1;
	else
		json_add_addr(cJSON_GetObjectItem(p, "mm"), "brk", (uint64_t)brk);
	if (inj_end(&in) != 0) rc = -1;
	if (rc) snprintf(err, errlen, "its signal dispositions, timers, limits, securebits or brk could not be read by calls in it");
	return rc;
}

int proc_capture_state(pid_t pid, uint64_t syscall_at, cJSON *p, char *err, size_t errlen)
{
	add_status(p, pid);
	add_cmdline(p, pid);
	add_link(p, "exe", pid, "exe");
	add_link(p, "cwd", pid, "cwd");
	add_mm(p, pid);
	cJSON_AddItemToObject(p, "pending", thread_pending(pid, 1));
	if (creds_capture(pid, p, err, errlen) != 0) return -1;
	return capture_by_calls(pid, syscall_at, p, err, errlen);
}

static int failed(char *err, size_t errlen, const char *what, long rc)
{
	snprintf(err, errlen, "%s failed: %s", what, rc == -ESRCH ? "the stub could not be driven" : strerror((int)-rc));
	return -1;
}

/* Queues a call of the restore's batch (inject.h); its why is what. */
#define QUEUE(in, what, ...) inj_queue(in, (&(struct inj_why){what, 0, NULL}), 0, __VA_ARGS__)

int proc_restore_mm(struct inj *in, const cJSON *p, char *err, size_t errlen)
{
	const cJSON *mm = cJSON_GetObjectItem(p, "mm");
	uint8_t auxv[4096];
	long auxlen = json_hex(p, "auxv", auxv, sizeof auxv);
	struct prctl_mm_map m = {
		.start_code = json_addr(mm, "start_code"), .end_code = json_addr(mm, "end_code"),
		.start_data = json_addr(mm, "start_data"), .end_data = json_addr(mm, "end_data"),
		.start_brk = json_addr(mm, "start_brk"), .brk = json_addr(mm, "brk"),
		.start_stack = json_addr(mm, "start_stack"),
		.arg_start = json_addr(mm, "arg_start"), .arg_end = json_addr(mm, "arg_end"),
		.env_start = json_addr(mm, "env_start"), .env_end = json_addr(mm, "env_end"),
		.auxv_size = auxlen > 0 ? (uint32_t)auxlen : 0, .exe_fd = (uint32_t)-1,
	};
	m.auxv = (__u64 *)inj_put(in, 1024, auxv, m.auxv_size);
	/* The exe link needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN: try it,
	 * and go without when refused (only /proc/PID/exe shows it). */
	const char *exe = json_str(p, "exe");
	long fd = exe && *exe ? inj_call(in, SYS_openat, AT_FDCWD, inj_put(in, 0, exe, strlen(exe) + 1), O_RDONLY | O_CLOEXEC) : -1;
	long rc = -EPERM;
	if (fd >= 0) {
		m.exe_fd = (uint32_t)fd;
		rc = inj_call(in, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, inj_put(in, 0, &m, sizeof m), sizeof m);
		inj_call(in, SYS_close, fd);
	}
	if (rc != 0) {
		m.exe_fd = (uint32_t)-1;
		rc = inj_call(in, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, inj_put(in, 0, &m, sizeof m), sizeof m);
	}
	return rc == 0 ? 0 : failed(err, errlen, "PR_SET_MM_MAP (the memory layout's bounds)", rc);
}

int proc_restore_sigactions(struct inj *in, const cJSON *p, char *err, size_t errlen)
{
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(p, "sigactions"))
	{
		struct ksigaction a = {json_addr(o, "handler"), json_addr(o, "flags"), json_addr(o, "restorer"), json_addr(o, "mask")};
		uint64_t at = inj_bytes(in, &a, sizeof a);
		if (!at || QUEUE(in, "rt_sigaction", SYS_rt_sigaction, json_int(o, "sig"), at, 0, 8) < 0)
			return inj_flush_or_say(in, err, errlen) ? -1 : failed(err, errlen, "rt_sigaction", -ESRCH);
	}
	return 0;
}

int proc_restore_sigaction(struct inj *in, const cJSON *p, int sig, char *err, size_t errlen)
{
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(p, "sigactions"))
	{
		if (json_int(o, "sig") != sig) continue;
		struct ksigaction a = {json_addr(o, "handler"), json_addr(o, "flags"), json_addr(o, "restorer"), json_addr(o, "mask")};
		long rc = inj_call(in, SYS_rt_sigaction, sig, inj_put(in, 0, &a, sizeof a), 0, 8);
		if (rc != 0) return failed(err, errlen, "rt_sigaction", rc);
	}
	return 0;
}

int proc_restore_itimers(struct inj *in, const cJSON *p, char *err, size_t errlen)
{
	int which = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(p, "itimers"))
	{
		struct itimerval v;
		if (json_hex(o, "value", &v, sizeof v) == sizeof v && (v.it_value.tv_sec || v.it_value.tv_usec)) {
			uint64_t at = inj_bytes(in, &v, sizeof v);
			if (!at || QUEUE(in, "setitimer", SYS_setitimer, which, at, 0) < 0)
				return inj_flush_or_say(in, err, errlen) ? -1 : failed(err, errlen, "setitimer", -ESRCH);
		}
		which++;
	}
	return 0;
}

int proc_restore_rlimits(pid_t pid, const cJSON *p, char *err, size_t errlen)
{
	int r = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(p, "rlimits"))
	{
		struct rlimit l = {json_addr(o, "cur"), json_addr(o, "max")};
		if (prlimit(pid, r, &l, NULL) != 0 && errno == EPERM) {
			/* Unprivileged: a hard limit cannot rise; keep ours. */
			struct rlimit now;
			prlimit(pid, r, NULL, &now);
			l.rlim_max = now.rlim_max;
			if (l.rlim_cur > l.rlim_max) l.rlim_cur = l.rlim_max;
			prlimit(pid, r, &l, NULL);
		}
		r++;
	}
	(void)err, (void)errlen;
	return 0;
}
