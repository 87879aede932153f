/* The restore (see restore.h). */
#define _GNU_SOURCE
#include "restore.h"
#include "phases.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "canary.h"
#include "creds.h"
#include "image.h"
#include "mem.h"
#include "procstate.h"
#include "restart.h"
#include "rows.h"
#include "shared.h"
#include "../../tables/schema.h"
#include "threads.h"
#include "trace.h"

#define THREAD_CLONE_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)

static char err[1400];

static const char *comm_of(const struct rproc *p)
{
	const char *c = json_str(p->json, "comm");
	return c ? c : "?";
}

/* ---- Reading and checking the image ---- */

/* The files of the saved application's home that its shim maps shared
 * (the LMDB data and lock files) are the restored one's: same names under
 * the home restored into. Anything else there (a program copied into the
 * home) is an ordinary file. */
static void rehome(struct restorer *R, struct rproc *p)
{
	const char *old = json_str(p->json, "home");
	if (!old || !R->ctx.home) return;
	size_t n = strlen(old);
	cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItem(p->json, "mappings"))
	{
		const char *path = json_str(m, "path");
		const char *kind = json_str(m, "kind");
		if (!path || !kind || strcmp(kind, "shared") || strncmp(path, old, n) || path[n] != '/') continue;
		char *moved;
		if (asprintf(&moved, "%s%s", R->ctx.home, path + n) < 0) continue;
		cJSON_ReplaceItemInObject(m, "path", cJSON_CreateString(moved));
		cJSON_AddBoolToObject(m, "home", 1);
		free(moved);
	}
}

/* Each SysV attachment's segment as restored: the vrid saved, the srid
 * the tables give it now (without tables, the same segment). */
static int resysv(struct restorer *R, struct rproc *p)
{
	cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItem(p->json, "mappings"))
	{
		const char *kind = json_str(m, "kind");
		if (!kind || strcmp(kind, "sysv")) continue;
		uint32_t vrid = (uint32_t)json_int(m, "shmid"), srid = vrid;
		if (R->ctx.tables && ckpt_rows_srid(&R->ctx, RT_SHM, vrid, &srid) != 0) {
			snprintf(err, sizeof err, "cannot restore process %u (%s): its SysV segment %u (attached at %s) was not restored with it", p->vpid, comm_of(p), vrid,
				 json_str(m, "start"));
			return -1;
		}
		cJSON_AddNumberToObject(m, "srid", srid);
	}
	return 0;
}

static int load(struct restorer *R)
{
	struct img_section *s;
	int n;
	char why[1024];
	if (img_read_sections(R->image_fd, R->checked, &s, &n, why, sizeof why) != 0) {
		snprintf(err, sizeof err, "%s is not a usable snapshot: %s; nothing was restored", R->image_path, why);
		return -1;
	}
	cJSON *files = NULL;
	R->procs = calloc((size_t)n, sizeof *R->procs);
	R->shm_fds = cJSON_CreateObject();
	for (int i = 0; i < n; i++) {
		if (s[i].kind == CKPT_SECTION_FILES) {
			cJSON_Delete(files);
			if (!(files = img_section_json(R->image_fd, &s[i], NULL, why, sizeof why))) goto bad;
		} else if (s[i].kind == CKPT_SECTION_PROC) {
			struct rproc *p = &R->procs[R->n];
			if (!(p->json = img_section_json(R->image_fd, &s[i], &p->data_at, why, sizeof why))) goto bad;
			p->vpid = (uint32_t)json_int(p->json, "vpid");
			R->n++;
		}
	}
	if (!R->n) {
		snprintf(err, sizeof err, "%s holds no process to restore (it was taken with --ipc-only?); nothing was restored", R->image_path);
		return -1;
	}
	for (int i = 0; i < R->n; i++) {
		rehome(R, &R->procs[i]);
		if (resysv(R, &R->procs[i]) != 0) return -1;
		R->procs[i].parent = -1;
		for (int j = 0; j < i; j++)
			if (R->procs[j].vpid == (uint32_t)json_int(R->procs[i].json, "ppid")) R->procs[i].parent = j;
	}
	if (R->own_stdio || R->moves.n) {
		cJSON **jsons = calloc(R->n > 0 ? (size_t)R->n : 1, sizeof *jsons);
		for (int i = 0; jsons && i < R->n; i++) jsons[i] = R->procs[i].json;
		if (jsons) clonefix_apply(files, jsons, R->n, &R->moves, R->own_stdio);
		free(jsons);
	}
	R->files = files ? files : cJSON_CreateArray();
	R->sections = s, R->nsections = n;
	return 0;
bad:
	snprintf(err, sizeof err, "%s is not a usable snapshot: %s; nothing was restored", R->image_path, why);
	free(s);
	return -1;
}

/* Once the image is known good: the restorer's own descriptors above
 * everything, the shared memory objects, every open file description. */
static int prepare(struct restorer *R)
{
	char why[1024];
	cJSON *files = R->files;
	struct img_section *s = R->sections;
	int n = R->nsections;
	int maxfd = 2;
	for (int i = 0; i < R->n; i++) {
		int m = fds_table_max(cJSON_GetObjectItem(R->procs[i].json, "fds"));
		if (m > maxfd) maxfd = m;
	}
	/* Ours above everything, the image's and ours alike: the image fd and
	 * the report pipe at keep_from.., the files' descriptors from there. */
	int mine = fds_highest_fd();
	R->keep_from = (maxfd > mine ? maxfd : mine) + 1;
	int pfd[2], image = fcntl(R->image_fd, F_DUPFD_CLOEXEC, R->keep_from);
	if (image < 0 || pipe(pfd) != 0 || (R->report[0] = fcntl(pfd[0], F_DUPFD_CLOEXEC, R->keep_from)) < 0 ||
	    (R->report[1] = fcntl(pfd[1], F_DUPFD_CLOEXEC, R->keep_from)) < 0) {
		snprintf(err, sizeof err, "cannot set up the restore: %s", strerror(errno));
		return -1;
	}
	close(R->image_fd), close(pfd[0]), close(pfd[1]);
	R->image_fd = image;
	for (int i = 0; i < n; i++)
		if (s[i].kind == CKPT_SECTION_SHARED && shared_make(R->image_fd, &s[i], R->keep_from, R->shm_fds, why, sizeof why) != 0) {
			snprintf(err, sizeof err, "cannot restore from %s: %s; nothing was restored", R->image_path, why);
			return -1;
		}
	free(s);
	/* The files' descriptors at base + i, past everything we hold. */
	int base = fds_highest_fd() + 1;
	R->fds = fds_restore_open(files, base, &R->ctx, why, sizeof why);
	cJSON_Delete(files);
	if (!R->fds) {
		snprintf(err, sizeof err, "cannot restore from %s: %s; nothing was restored", R->image_path, why);
		return -1;
	}
	R->files = NULL;
	return 0;
}

/* Set by check when the image asks what this restorer may not do (another
 * user's process): a refusal, not a failure. */
static int refused;

static int check(struct restorer *R)
{
	char why[1024];
	for (int i = 0; i < R->n; i++) {
		struct rproc *p = &R->procs[i];
		const cJSON *threads = cJSON_GetObjectItem(p->json, "threads");
		int bad = mem_check_files(cJSON_GetObjectItem(p->json, "mappings"), why, sizeof why) != 0 || mem_check_vdso(p->json, why, sizeof why) != 0;
		if (!bad && cJSON_GetArraySize(threads) < 1) bad = snprintf(why, sizeof why, "the image holds no thread for it");
		/* Every thread: one that never touched AVX-512 says nothing of another. */
		for (int k = 0; !bad && k < cJSON_GetArraySize(threads); k++) bad = thread_check_xstate(cJSON_GetArrayItem(threads, k), why, sizeof why) != 0;
		if (!bad) bad = refused = creds_check(p->json, why, sizeof why) != 0;
		if (bad) {
			snprintf(err, sizeof err, "cannot restore process %u (%s) from %s: %s; nothing was restored", p->vpid, comm_of(p), R->image_path, why);
			return -1;
		}
	}
	return 0;
}

/* An address free in this process (so in every stub, its fork) and in
 * every saved layout, for the gadget region. */
static int choose_gadget(struct restorer *R)
{
	const uint64_t len = GADGET_PAGES * 4096ULL;
	for (uint64_t a = 0x1000000; a < 0x7f0000000000ULL; a += 0x1000000) {
		int free_here = 1;
		for (int i = 0; i < R->n && free_here; i++) free_here = !mem_overlaps(cJSON_GetObjectItem(R->procs[i].json, "mappings"), a, a + len);
		if (!free_here) continue;
		void *p = mmap((void *)a, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED) continue;
		munmap(p, len);
		R->gadget = a;
		return 0;
	}
	snprintf(err, sizeof err, "no free place for the restorer's gadget page in the saved memory layout; nothing was restored");
	return -1;
}

/* ---- The stubs ---- */

static void kill_stubs(struct restorer *R)
{
	for (int i = 0; i < R->n; i++)
		if (R->procs[i].spid > 0) kill(R->procs[i].spid, SIGKILL);
}

/* Forks the roots (their stubs fork the rest) and reads every stub's
 * "R idx pid" line, or the first "E idx why". */
static int make_stubs(struct restorer *R)
{
	for (int i = 0; i < R->n; i++) {
		if (R->procs[i].parent != -1) continue;
		pid_t me = getpid(), pid = fork();
		if (pid < 0) {
			snprintf(err, sizeof err, "cannot fork a process to restore into: %s", strerror(errno));
			return -1;
		}
		if (pid == 0) stub_main(R, i, me);
		R->procs[i].spid = pid;
	}
	close(R->report[1]);
	R->report[1] = -1;
	FILE *f = fdopen(R->report[0], "r");
	char line[1400];
	if (!f) {
		snprintf(err, sizeof err, "cannot read the stubs' reports: %s", strerror(errno));
		return -1;
	}
	int ready = 0;
	while (ready < R->n && fgets(line, sizeof line, f)) {
		int idx, pid, at = 0;
		if (sscanf(line, "R %d %d", &idx, &pid) == 2 && idx >= 0 && idx < R->n) {
			R->procs[idx].spid = pid;
			ready++;
		} else if (sscanf(line, "E %d %n", &idx, &at) == 1 && idx >= 0 && idx < R->n) {
			line[strcspn(line, "\n")] = 0;
			snprintf(err, sizeof err, "cannot restore process %u (%s): %s", R->procs[idx].vpid, comm_of(&R->procs[idx]), line + at);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	if (ready < R->n) {
		snprintf(err, sizeof err, "a process restored into died before it was ready");
		return -1;
	}
	return 0;
}

static int bound;

/* Each restored process bound to its saved vpid in the tables. */
static int bind_pids(struct restorer *R)
{
	char why[1024];
	if (!R->ctx.tables) return 0;
	for (bound = 0; bound < R->n; bound++) {
		struct rproc *p = &R->procs[bound];
		if (ckpt_rows_bind_pid(&R->ctx, p->spid, p->vpid, why, sizeof why) != 0) {
			snprintf(err, sizeof err, "cannot restore process %u (%s): %s", p->vpid, comm_of(p), why);
			return -1;
		}
	}
	return 0;
}

static void forget_pids(struct restorer *R)
{
	for (int i = 0; i < bound; i++) ckpt_rows_forget_pid(&R->ctx, R->procs[i].spid);
	bound = 0;
}

static int failed(struct rproc *p, const char *what)
{
	char copy[1024];
	snprintf(copy, sizeof copy, "%s", what);
	snprintf(err, sizeof err, "cannot restore process %u (%s): %s", p->vpid, comm_of(p), copy);
	return -1;
}

static uint64_t scratch(struct restorer *R) { return R->gadget + 4096; }

/* Process groups as saved, among the restored processes. */
static int set_groups(struct restorer *R, struct inj *ins)
{
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < R->n; i++) {
			struct rproc *p = &R->procs[i];
			uint32_t pgid = (uint32_t)json_int(p->json, "pgid");
			if (!pgid || (pass == 0) != (pgid == p->vpid)) continue;
			pid_t leader = 0;
			for (int j = 0; j < R->n; j++)
				if (R->procs[j].vpid == pgid) leader = R->procs[j].spid;
			if (!leader || json_int(p->json, "sid") == p->vpid) continue;
			long rc = inj_call(&ins[i], SYS_setpgid, 0, leader == p->spid ? 0 : leader);
			if (rc != 0) {
				char why[128];
				snprintf(why, sizeof why, "setpgid to the group of %u failed: %s", pgid, strerror((int)-rc));
				return failed(p, why);
			}
		}
	return 0;
}

/* The threads after the first: made by clone in the main thread (the
 * kernel attaches them to us), each given its state. */
static int restore_threads(struct restorer *R, struct rproc *p, struct inj *main_in, long tcb)
{
	const cJSON *threads = cJSON_GetObjectItem(p->json, "threads");
	char why[1024];
	p->ntids = cJSON_GetArraySize(threads);
	p->tids = calloc((size_t)p->ntids, sizeof *p->tids);
	p->tids[0] = p->spid;
	for (int k = 1; k < p->ntids; k++) {
		long tid = inj_call(main_in, SYS_clone, THREAD_CLONE_FLAGS, 0, 0, 0, 0);
		if (tid <= 0) return failed(p, "making a thread failed");
		p->tids[k] = (pid_t)tid;
		struct inj in;
		if (trace_wait_stopped((pid_t)tid, NULL, NULL) != 0 || inj_begin(&in, (pid_t)tid, R->gadget, scratch(R)) != 0 ||
		    inj_batch_start(&in, R->gadget + INJ_BATCH_CODE_OFF) != 0)
			return failed(p, "a new thread could not be stopped");
		cJSON *t = cJSON_GetArrayItem(threads, k);
		int bad = restart_translate(&R->ctx, t, why, sizeof why) != 0 || thread_restore_state(&in, p->spid, t, tcb, why, sizeof why) != 0 ||
			  inj_flush_or_say(&in, why, sizeof why) != 0 || thread_restore_regs((pid_t)tid, t, why, sizeof why) != 0;
		inj_batch_stop(&in);
		if (bad) return failed(p, why);
	}
	return 0;
}

static int restore_proc(struct restorer *R, struct rproc *p, struct inj *in, struct phases *ph)
{
	char why[1024];
	const cJSON *threads = cJSON_GetObjectItem(p->json, "threads");
	long tcb = json_int(p->json, "tcb_tid");
	/* Mapped from the image only where the process's shim answers for it
	 * (pages given back read zeros); any other process is copied. */
	int map_pages = R->map_pages && canary_zeroes(p->json, &R->ctx, R->image_fd, p->data_at);
	uint64_t mapped_at;
	if (mem_restore(in, cJSON_GetObjectItem(p->json, "mappings"), R->gadget, GADGET_PAGES * 4096ULL, R->image_fd, p->data_at, map_pages, R->shm_fds,
			&mapped_at, why, sizeof why) != 0)
		return failed(p, why);
	phase(ph, "memory");
	/* The calls below are queued (mem_restore began the batch) and made
	 * in a few stops: each flush says which call failed. The threads are
	 * made by direct calls: the actions are made before them. */
	int threaded = cJSON_GetArraySize(threads) > 1;
	if (proc_restore_mm(in, p->json, why, sizeof why) != 0 || proc_restore_sigactions(in, p->json, why, sizeof why) != 0 ||
	    (threaded && inj_flush_or_say(in, why, sizeof why) != 0))
		return failed(p, why);
	if (restore_threads(R, p, in, tcb) != 0) return -1;
	if (thread_restore_state(in, p->spid, cJSON_GetArrayItem(threads, 0), tcb, why, sizeof why) != 0 ||
	    thread_restore_pending(in, p->spid, cJSON_GetObjectItem(p->json, "pending"), 1, why, sizeof why) != 0 ||
	    proc_restore_itimers(in, p->json, why, sizeof why) != 0 || inj_flush_or_say(in, why, sizeof why) != 0)
		return failed(p, why);
	if (canary_restore(p->spid, p->json, &R->ctx, R->gadget + 2, mapped_at, why, sizeof why) != 0) return failed(p, why);
	/* The restorer's descriptors go; pdeathsig was the stub's, not the
	 * program's (neither can fail in a way that matters). */
	struct inj_why tidy = {"tidying the stub", 0, NULL};
	inj_queue(in, &tidy, INJ_MAY_FAIL, SYS_close_range, R->keep_from, ~0U, 0);
	inj_queue(in, &tidy, INJ_MAY_FAIL, SYS_prctl, PR_SET_PDEATHSIG, 0);
	if (inj_flush_or_say(in, why, sizeof why) != 0 || proc_restore_sigaction(in, p->json, SIGTRAP, why, sizeof why) != 0) return failed(p, why);
	proc_restore_rlimits(p->spid, p->json, why, sizeof why);
	/* After everything a stub of the restorer's user may set from outside
	 * (rlimits) and the shim's entry (its filters, as the restorer's user). */
	if (creds_restore(in, p->json, p->tids, p->ntids, R->gadget, scratch(R), why, sizeof why) != 0) return failed(p, why);
	long rc = inj_call(in, SYS_munmap, R->gadget, GADGET_PAGES * 4096ULL);
	if (rc != 0) return failed(p, "removing the gadget page failed");
	if (restart_translate(&R->ctx, cJSON_GetArrayItem(threads, 0), why, sizeof why) != 0 ||
	    thread_restore_regs(p->spid, cJSON_GetArrayItem(threads, 0), why, sizeof why) != 0)
		return failed(p, why);
	return 0;
}

/* For the tests of a restore killed part way: APPSHOT_RESTORE_DELAY_AT=STAGE
 * (stubs: every stub ready and bound, none traced; memory: every process
 * whole and traced, none resumed; resumed: the first process let go, the
 * others not yet) holds the restorer APPSHOT_RESTORE_DELAY_MS there. */
static void test_delay(const char *stage)
{
	const char *at = getenv("APPSHOT_RESTORE_DELAY_AT"), *ms = getenv("APPSHOT_RESTORE_DELAY_MS");
	if (!at || !ms || strcmp(at, stage)) return;
	long n = atol(ms);
	struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void resume_all(struct restorer *R)
{
	/* A process stopped (SIGSTOP) when it was saved comes back stopped. */
	for (int i = 0; i < R->n; i++)
		if (cJSON_IsTrue(cJSON_GetObjectItem(R->procs[i].json, "stopped"))) kill(R->procs[i].spid, SIGSTOP);
	for (int i = 0; i < R->n; i++) {
		for (int k = R->procs[i].ntids - 1; k >= 0; k--) ptrace(PTRACE_DETACH, R->procs[i].tids[k], 0, 0);
		if (i == 0) test_delay("resumed");
	}
}

int restore_run(struct restorer *R, int report_fd, int wait)
{
	struct inj *ins = NULL;
	struct phases ph;
	phases_start(&ph);
	if (load(R) != 0 || check(R) != 0 || choose_gadget(R) != 0 || prepare(R) != 0) goto bad;
	phase(&ph, "image read");
	if (make_stubs(R) != 0) goto bad_stubs;
	phase(&ph, "stubs");
	/* The stubs hold what they need; our copies would keep pipes open. */
	fds_restore_free(R->fds);
	R->fds = NULL;
	if (bind_pids(R) != 0) goto bad_stubs;
	test_delay("stubs");
	ins = calloc(R->n > 0 ? (size_t)R->n : 1, sizeof *ins);
	for (int i = 0; i < R->n; i++) {
		struct rproc *p = &R->procs[i];
		if (trace_seize(p->spid, PTRACE_O_EXITKILL) != 0 || trace_wait_stopped(p->spid, NULL, NULL) != 0 || inj_begin(&ins[i], p->spid, R->gadget, scratch(R)) != 0) {
			failed(p, "the process restored into could not be traced");
			goto bad_stubs;
		}
	}
	if (set_groups(R, ins) != 0) goto bad_stubs;
	phase(&ph, "seized");
	for (int i = 0; i < R->n; i++)
		if (restore_proc(R, &R->procs[i], &ins[i], &ph) != 0) goto bad_stubs;
	test_delay("memory");
	resume_all(R);
	free(ins);
	phase(&ph, "resumed");
	if (report_fd >= 0) dprintf(report_fd, "root %d\n", R->procs[0].spid);
	phases_print(&ph, "restore");
	if (!wait) return 0;
	int st;
	while (waitpid(R->procs[0].spid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
bad_stubs:
	kill_stubs(R);
	forget_pids(R);
bad:
	free(ins);
	fprintf(stderr, "appshot: %s\n", err);
	return refused ? CKPT_EXIT_REFUSED : CKPT_EXIT_FAILURE;
}
