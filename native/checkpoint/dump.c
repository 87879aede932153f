/* The dump (see dump.h). */
#define _GNU_SOURCE
#include "dump.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fds.h"
#include "canary.h"
#include "image.h"
#include "mem.h"
#include "procstate.h"
#include "datacopy.h"
#include "phases.h"
#include "restart.h"
#include "rows.h"
#include "../../tables/schema.h"
#include "threads.h"
#include "trace.h"

struct dthread {
	pid_t tid;
	int stopped;
};

struct dproc {
	pid_t pid;
	uint32_t vpid;
	char comm[64];
	struct dthread *threads;
	int nthreads, cap;
	pid_t links[3]; /* ppid, pgid, sid: spids */
	int stopped;     /* job-control stopped (SIGSTOP) before the freeze */
	cJSON *json;
	struct mem_plan plan;
	char *staged; /* its memory copied out before it was let go (data_stage) */
	uint64_t staged_len;
};

struct dumper {
	struct ckpt_ctx ctx;
	struct dproc *procs;
	int n, cap;
	struct fds_capture *fds;
	struct shared_set *shared;
	int released; /* the processes were let go (or killed) already */
};

static struct dproc *proc_of(struct dumper *d, pid_t pid)
{
	for (int i = 0; i < d->n; i++)
		if (d->procs[i].pid == pid) return &d->procs[i];
	return NULL;
}

static struct dproc *add_proc(struct dumper *d, pid_t pid)
{
	if (d->n == d->cap) d->procs = realloc(d->procs, (d->cap = d->cap ? d->cap * 2 : 8) * sizeof *d->procs);
	struct dproc *p = &d->procs[d->n++];
	memset(p, 0, sizeof *p);
	p->pid = p->vpid = pid;
	/* The vpid the application knows it by: its pid row; a process of
	 * no application (the engine's tests) is its own. */
	uint32_t vpid;
	if (d->ctx.tables && ckpt_rows_vrid(&d->ctx, RT_PID, (uint32_t)pid, &vpid) == 0) p->vpid = vpid;
	return p;
}

static int has_thread(const struct dproc *p, pid_t tid)
{
	for (int i = 0; i < p->nthreads; i++)
		if (p->threads[i].tid == tid) return 1;
	return 0;
}

static void add_thread(struct dproc *p, pid_t tid)
{
	if (has_thread(p, tid)) return;
	if (p->nthreads == p->cap) p->threads = realloc(p->threads, (p->cap = p->cap ? p->cap * 2 : 8) * sizeof *p->threads);
	p->threads[p->nthreads++] = (struct dthread){tid, 0};
}

/* A task made while we froze: a thread joins its process, a process
 * (already attached by the kernel) joins the application. */
static void born(void *ctx, pid_t parent, pid_t child, char kind)
{
	struct dumper *d = ctx;
	for (int i = 0; i < d->n; i++)
		if (has_thread(&d->procs[i], parent)) {
			if (kind == 't') add_thread(&d->procs[i], child);
			break;
		}
	if (kind == 'p' && !proc_of(d, child)) add_thread(add_proc(d, child), child);
}

static void read_comm(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	FILE *f = fopen(path, "re");
	snprintf(out, len, "?");
	if (f) {
		if (fgets(out, (int)len, f)) out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
}

static int tracer_of(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	int tracer = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "TracerPid:", 10)) tracer = atoi(line + 10);
	if (f) fclose(f);
	return tracer;
}

/* The state letter of /proc/PID/stat ('Z': exited, not yet collected). */
static char state_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f) fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static int refuse(struct dproc *p, char *err, size_t errlen, const char *why)
{
	char copy[1024];
	snprintf(copy, sizeof copy, "%s", why);
	snprintf(err, errlen, "cannot snapshot process %u (%s): %s; nothing was changed, the application runs on", p->vpid, p->comm, copy);
	return -1;
}

/* Whether task tid of pid is one of io_uring's kernel threads (iou-sqp,
 * iou-wrk: PF_IO_WORKER in stat's flags): they share the process's memory
 * but never stop for a tracer, so waiting for them would hang the freeze. */
static int io_uring_thread(pid_t pid, pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
	FILE *f = fopen(path, "re");
	if (!f) return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* flags is the 9th field, the 6th after the ')' that ends comm. */
	char *p = strrchr(buf, ')');
	unsigned long flags = 0;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1) return 0;
	return (flags & 0x10) != 0; /* PF_IO_WORKER */
}

/* Seizes every thread of p until its task list holds no new one. */
static int freeze_proc(struct dumper *d, int idx, char *err, size_t errlen)
{
	char path[64];
	for (int changed = 1; changed;) {
		changed = 0;
		struct dproc *p = &d->procs[idx];
		snprintf(path, sizeof path, "/proc/%d/task", p->pid);
		DIR *dir = opendir(path);
		if (!dir) return refuse(p, err, errlen, "it ended");
		struct dirent *e;
		while ((e = readdir(dir))) {
			pid_t tid = atoi(e->d_name);
			if (tid <= 0 || has_thread(p, tid)) continue;
			if (io_uring_thread(p->pid, tid)) {
				closedir(dir);
				char why[128];
				snprintf(why, sizeof why, "it uses io_uring (its kernel thread %d works for it), which a snapshot cannot capture", tid);
				return refuse(p, err, errlen, why);
			}
			/* No EXITKILL: a dumper that dies lets the application go. */
			int rc = trace_seize(tid, 0);
			if (rc == -ESRCH) continue;
			if (rc) {
				closedir(dir);
				return refuse(p, err, errlen, rc == -EPERM ? "it cannot be traced (permission denied, or another tracer)" : strerror(-rc));
			}
			add_thread(p, tid);
			changed = 1;
		}
		closedir(dir);
		for (int i = 0; i < d->procs[idx].nthreads; i++) {
			struct dthread *t = &d->procs[idx].threads[i];
			if (t->stopped) continue;
			int rc = trace_wait_stopped(t->tid, born, d);
			t = &d->procs[idx].threads[i]; /* born() may have moved the array */
			t->stopped = rc == 0 ? 1 : -1;
			changed = 1;
		}
	}
	return 0;
}

/* The main thread first, the dead ones out. */
static void tidy_threads(struct dproc *p)
{
	int n = 0;
	for (int i = 0; i < p->nthreads; i++)
		if (p->threads[i].stopped == 1) p->threads[n++] = p->threads[i];
	p->nthreads = n;
	for (int i = 1; i < n; i++)
		if (p->threads[i].tid == p->pid) {
			struct dthread t = p->threads[0];
			p->threads[0] = p->threads[i], p->threads[i] = t;
		}
}

/* A thread frozen inside the shim's table code (an LMDB transaction, the
 * write lock) would go on with it in the restored process, whose tables
 * are another process's: such a process is let run a moment and frozen
 * again, until none of its threads is in there. */
static int out_of_tables(struct dumper *d, int idx, char *err, size_t errlen)
{
	uint64_t page = mem_find_canary(d->procs[idx].pid);
	for (int tries = 0; page; tries++) {
		uint32_t inside = 0;
		if (mem_read(d->procs[idx].pid, page + CANARY_OFF_IN_TABLES, &inside, 4) != 0 || !inside) return 0;
		if (tries == 200) return refuse(&d->procs[idx], err, errlen, "a thread of it stayed inside appshot's table code for a second; try again");
		struct dproc *p = &d->procs[idx];
		for (int i = 0; i < p->nthreads; i++) ptrace(PTRACE_DETACH, p->threads[i].tid, 0, 0);
		p->nthreads = 0;
		usleep(5000);
		if (freeze_proc(d, idx, err, errlen) != 0) return -1;
	}
	return 0;
}

/* POSIX timers (timer_create) are not captured: refused, not lost. */
static int has_posix_timers(pid_t pid)
{
	char path[64], c;
	snprintf(path, sizeof path, "/proc/%d/timers", pid);
	FILE *f = fopen(path, "re");
	int yes = f && fread(&c, 1, 1, f) == 1;
	if (f) fclose(f);
	return yes;
}

static int describe(struct dumper *d, struct dproc *p, char *err, size_t errlen)
{
	char why[1024];
	if (has_posix_timers(p->pid)) return refuse(p, err, errlen, "it has POSIX timers (timer_create), which appshot does not capture yet");
	uint64_t at = inj_find_syscall(p->pid);
	if (!at) return refuse(p, err, errlen, "no system call instruction was found in its memory to ask it about its state");
	proc_links(p->pid, &p->links[0], &p->links[1], &p->links[2]);
	p->json = cJSON_CreateObject();
	cJSON_AddNumberToObject(p->json, "vpid", p->vpid);
	cJSON_AddNumberToObject(p->json, "spid", p->pid);
	if (p->stopped) cJSON_AddBoolToObject(p->json, "stopped", 1);
	if (d->ctx.home) cJSON_AddStringToObject(p->json, "home", d->ctx.home);
	/* Threads first: their registers as the freeze left them, before
	 * any call is made in them. */
	cJSON *threads = cJSON_AddArrayToObject(p->json, "threads");
	for (int i = 0; i < p->nthreads; i++) {
		cJSON *t = thread_capture(p->pid, p->threads[i].tid, at, why, sizeof why);
		if (!t) return refuse(p, err, errlen, why);
		restart_note(&d->ctx, t);
		cJSON_AddItemToArray(threads, t);
	}
	if (proc_capture_state(p->pid, at, p->json, why, sizeof why) != 0) return refuse(p, err, errlen, why);
	cJSON_AddNumberToObject(p->json, "tcb_tid", (double)thread_tcb_tid_offset(p->pid, threads));
	cJSON *maps = mem_capture(p->pid, &p->plan, d->shared, &d->ctx, why, sizeof why);
	if (!maps) return refuse(p, err, errlen, why);
	cJSON_AddItemToObject(p->json, "mappings", maps);
	json_add_addr(p->json, "bytes", p->plan.pages * CKPT_PAGE);
	mem_note_vdso(p->pid, p->json);
	if (fds_capture_process(d->fds, p->pid, p->vpid, p->comm, err, errlen) != 0) return -1;
	return 0;
}

static uint32_t vpid_of(struct dumper *d, pid_t spid)
{
	struct dproc *p = spid ? proc_of(d, spid) : NULL;
	return p ? p->vpid : 0;
}

struct dumper *dump_freeze(const struct ckpt_ctx *ctx, const pid_t *pids, int n, char *err, size_t errlen)
{
	struct dumper *d = calloc(1, sizeof *d);
	d->ctx = *ctx;
	for (int i = 0; i < n; i++) {
		struct dproc *p = add_proc(d, pids[i]);
		read_comm(pids[i], p->comm, sizeof p->comm);
		int tracer = tracer_of(pids[i]);
		if (kill(pids[i], 0) != 0) {
			refuse(p, err, errlen, "there is no such process");
			goto bad;
		}
		char st = state_of(pids[i]);
		p->stopped = st == 'T';
		if (st == 'Z' || st == 'X') {
			refuse(p, err, errlen, "it has exited and waits for its parent to collect its status (a zombie); snapshot again once its parent has");
			goto bad;
		}
		if (tracer) {
			char why[128];
			snprintf(why, sizeof why, "it is being traced by process %d (a debugger?); detach it first", tracer);
			refuse(p, err, errlen, why);
			goto bad;
		}
	}
	for (int i = 0; i < d->n; i++) {
		if (!d->procs[i].comm[0]) read_comm(d->procs[i].pid, d->procs[i].comm, sizeof d->procs[i].comm);
		if (freeze_proc(d, i, err, errlen) != 0 || out_of_tables(d, i, err, errlen) != 0) goto bad;
	}
	if (ckpt_rows_fold(ctx, err, errlen) != 0) goto bad;
	d->fds = fds_capture_new(ctx);
	d->shared = shared_new();
	for (int i = 0; i < d->n; i++) {
		tidy_threads(&d->procs[i]);
		if (describe(d, &d->procs[i], err, errlen) != 0) goto bad;
	}
	for (int i = 0; i < d->n; i++) {
		struct dproc *p = &d->procs[i];
		cJSON_AddNumberToObject(p->json, "ppid", vpid_of(d, p->links[0]));
		cJSON_AddNumberToObject(p->json, "pgid", vpid_of(d, p->links[1]));
		cJSON_AddNumberToObject(p->json, "sid", vpid_of(d, p->links[2]));
	}
	return d;
bad:
	dump_release(d, 0);
	return NULL;
}

int dump_count(const struct dumper *d) { return d->n; }
pid_t dump_pid(const struct dumper *d, int i) { return d->procs[i].pid; }

static int write_proc(struct dumper *d, struct dproc *p, struct img_writer *w)
{
	struct img_data data;
	int rc = img_data_begin(w, &data, CKPT_SECTION_PROC, p->json);
	if (!rc) rc = mem_write_data(p->pid, &p->plan, p->staged, w, &data);
	if (!rc) rc = img_data_end(w, &data);
	if (p->staged) munmap(p->staged, p->staged_len), p->staged = NULL;
	return rc;
}

/* Parents before children: each process after its parent's section. */
static int write_tree(struct dumper *d, struct dproc *p, struct img_writer *w)
{
	int rc = write_proc(d, p, w);
	for (int i = 0; i < d->n && !rc; i++)
		if (d->procs[i].links[0] == p->pid && &d->procs[i] != p) rc = write_tree(d, &d->procs[i], w);
	return rc;
}

static void let_go(struct dumper *d, int kill_them);

/* Memory this machine has to spare now (MemAvailable), in bytes; 0 if unknown. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long long kb = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
	if (f) fclose(f);
	return (uint64_t)kb << 10;
}

/* Every process's memory copied out of it, then every process let go: the
 * pause the application sees ends before the file is written. When the
 * copy would take more than half the memory the machine has to spare, or
 * cannot be made, they stay frozen and are written from directly, as
 * without early release. */
static void stage_and_let_go(struct dumper *d)
{
	struct phases ph;
	phases_start(&ph);
	uint64_t bytes = 0;
	for (int i = 0; i < d->n; i++) bytes += d->procs[i].plan.pages * CKPT_PAGE;
	if (bytes > mem_available() / 2) return;
	for (int i = 0; i < d->n; i++) {
		struct dproc *p = &d->procs[i];
		if (data_stage(p->pid, &p->plan, &p->staged, &p->staged_len) != 0) {
			for (int k = 0; k <= i; k++)
				if (d->procs[k].staged) munmap(d->procs[k].staged, d->procs[k].staged_len), d->procs[k].staged = NULL;
			return;
		}
	}
	phase(&ph, "memory copied out");
	let_go(d, 0);
	phase(&ph, "let go");
	phases_print(&ph, "dump, early release");
}

int dump_write(struct dumper *d, int fd, uint64_t *offset, int *sections, int early)
{
	struct img_writer w = {fd, *offset, 0};
	cJSON *files = fds_capture_files(d->fds);
	int rc = img_write_json(&w, CKPT_SECTION_FILES, files);
	cJSON_Delete(files);
	if (!rc) rc = shared_write(d->shared, &w);
	for (int i = 0; i < d->n; i++) cJSON_AddItemToObject(d->procs[i].json, "fds", fds_capture_table(d->fds, d->procs[i].pid));
	if (!rc && early) stage_and_let_go(d);
	for (int i = 0; i < d->n && !rc; i++)
		if (!proc_of(d, d->procs[i].links[0])) rc = write_tree(d, &d->procs[i], &w);
	*offset = w.pos;
	*sections = w.sections;
	return rc;
}

static void let_go(struct dumper *d, int kill_them)
{
	if (d->released) {
		/* Let go early; asked to end them after all. */
		for (int i = 0; i < d->n && kill_them; i++) kill(d->procs[i].pid, SIGKILL);
		return;
	}
	d->released = 1;
	for (int i = 0; i < d->n; i++) {
		struct dproc *p = &d->procs[i];
		if (kill_them) kill(p->pid, SIGKILL);
		/* The calls made in it ended its stop: it stops again once let go. */
		else if (p->stopped) kill(p->pid, SIGSTOP);
		for (int j = 0; j < p->nthreads; j++) ptrace(PTRACE_DETACH, p->threads[j].tid, 0, 0);
	}
}

void dump_release(struct dumper *d, int kill_them)
{
	let_go(d, kill_them);
	for (int i = 0; i < d->n; i++) {
		struct dproc *p = &d->procs[i];
		if (p->staged) munmap(p->staged, p->staged_len);
		cJSON_Delete(p->json);
		mem_plan_free(&p->plan);
		free(p->threads);
	}
	if (d->fds) fds_capture_free(d->fds);
	shared_free(d->shared);
	free(d->procs);
	free(d);
}
