/*
 * The descriptor part of the whole-process snapshot on its own
 * (test/checkpoint-fds.test.ts), without the engine: stops the given live
 * processes with ptrace, captures their descriptors (fds.h), ends or
 * releases them, then makes the descriptors again in one child per process
 * and execs a checker there, which reports what it sees.
 *
 *   fdsdriver [--home H --aid A [--restore-aid B]] [--keep] [--json FILE] [--time] --pids P1,P2,... -- CHECKER ARGS...
 *   fdsdriver [--home H --aid A] [--keep] --capture-only --json FILE --pids P1,...   (capture, then stop)
 *   fdsdriver [--home H --aid B] --from FILE -- CHECKER ARGS...                     (restore a capture)
 *
 * --aid: the application the processes belong to (its tables give the
 * virtual ports); --restore-aid: the application the descriptors are made
 * again for (its tables get the ports' rows), A by default.
 *
 * Each child runs CHECKER ARGS... INDEX (its process's place in --pids).
 * Exit: 0 when every checker exited 0; 3 when the capture refused (the
 * message on stderr, the processes left running); 1 otherwise.
 */
#define _GNU_SOURCE
#include "../checkpoint/fds.h"
#include "../core/tabledb.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define MAXP 16
#define MAXT 256

static pid_t tids[MAXT];
static int ntids;

/* Every thread of pid stopped (PTRACE_SEIZE, PTRACE_INTERRUPT). */
static int freeze(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	DIR *d = opendir(path);
	struct dirent *de;
	if (!d) return -1;
	while ((de = readdir(d)) && ntids < MAXT) {
		if (de->d_name[0] == '.') continue;
		pid_t tid = atoi(de->d_name);
		if (ptrace(PTRACE_SEIZE, tid, 0, 0) || ptrace(PTRACE_INTERRUPT, tid, 0, 0)) {
			closedir(d);
			return -1;
		}
		int st;
		waitpid(tid, &st, __WALL);
		tids[ntids++] = tid;
	}
	closedir(d);
	return 0;
}

static void detach_all(void)
{
	for (int i = 0; i < ntids; i++) ptrace(PTRACE_DETACH, tids[i], 0, 0);
}

static void comm_of(pid_t pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, (int)len, f)) snprintf(buf, len, "?");
	else buf[strcspn(buf, "\n")] = 0;
	if (f) fclose(f);
}

static double clock_s(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static int open_tables(struct ckpt_ctx *ctx, struct tabledb *t, const char *home, const char *aid)
{
	char err[4096];
	if (tabledb_open(t, home, aid, err, sizeof err)) {
		fprintf(stderr, "appshot: %s\n", err);
		return -1;
	}
	ctx->aid = aid;
	ctx->tables = t;
	ctx->identity = !(t->app_flags & APP_FLAG_NO_IDENTITY);
	return 0;
}

/* Stops and captures the processes, ends them (or lets them go on): the
 * capture as JSON text ({"files":..., "tables":[...]}), or NULL (*code set). */
static char *capture(const struct ckpt_ctx *ctx, const pid_t *pids, int npids, int keep, int timed, int *code)
{
	char err[4096];
	int i;
	for (i = 0; i < npids; i++)
		if (freeze(pids[i])) {
			fprintf(stderr, "appshot: cannot stop process %d: %s\n", pids[i], strerror(errno));
			detach_all();
			return *code = 1, NULL;
		}
	double t0 = now_s(), c0 = cpu_s();
	struct fds_capture *c = fds_capture_new(ctx);
	for (i = 0; i < npids; i++) {
		char comm[64];
		comm_of(pids[i], comm, sizeof comm);
		if (fds_capture_process(c, pids[i], (uint32_t)pids[i], comm, err, sizeof err)) {
			fprintf(stderr, "appshot: %s\n", err);
			detach_all();
			fds_capture_free(c);
			return *code = 3, NULL;
		}
	}
	cJSON *files = fds_capture_files(c), *tables = cJSON_CreateArray();
	for (i = 0; i < npids; i++) cJSON_AddItemToArray(tables, fds_capture_table(c, pids[i]));
	cJSON *all = cJSON_CreateObject();
	cJSON_AddItemToObject(all, "files", files);
	cJSON_AddItemToObject(all, "tables", tables);
	char *text = cJSON_PrintUnformatted(all);
	cJSON_Delete(all);
	fds_capture_free(c);
	if (timed) fprintf(stderr, "capture %.2f ms (cpu %.2f; JSON %zu bytes)\n", (now_s() - t0) * 1e3, (cpu_s() - c0) * 1e3, strlen(text));
	if (keep) detach_all();
	else {
		for (i = 0; i < npids; i++) kill(pids[i], SIGKILL);
		/* Every tracee's end (a thread group's leader is reported last). */
		while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
			;
	}
	return text;
}

/* Makes the captured descriptors again, one child per process running
 * CHECKER ARGS... INDEX: 0 when every checker exited 0. */
static int restore(const struct ckpt_ctx *rctx, const char *text, char **checker, int timed)
{
	char err[4096];
	double r0 = now_s(), rc0 = cpu_s();
	cJSON *all = cJSON_Parse(text), *files = cJSON_GetObjectItem(all, "files"), *tables = cJSON_GetObjectItem(all, "tables"), *table;
	int max = 2, n = 0, i;
	cJSON_ArrayForEach(table, tables) {
		int m = fds_table_max(table);
		if (m > max) max = m;
		n++;
	}
	/* As tight as the engine may choose it: just above every descriptor
	 * the image and this process use, so that the files' own making
	 * (at the lowest free numbers) happens inside the range. */
	int mine = fds_highest_fd(), base = (max > mine ? max : mine) + 1;
	/* Every free number below base taken, as in a restorer that holds
	 * them all: whatever fds.c opens on its way lands inside its range. */
	int filled[4096], nfilled = 0;
	for (int fd = 3; fd < base && nfilled < 4096; fd++)
		if (fcntl(fd, F_GETFD) < 0 && dup2(0, fd) == fd) filled[nfilled++] = fd;
	struct fds_restore *r = fds_restore_open(files, base, rctx, err, sizeof err);
	for (i = 0; i < nfilled; i++) close(filled[i]);
	if (!r) {
		fprintf(stderr, "appshot: %s\n", err);
		cJSON_Delete(all);
		return 1;
	}
	if (timed) fprintf(stderr, "restore %.2f ms (cpu %.2f)\n", (now_s() - r0) * 1e3, (cpu_s() - rc0) * 1e3);
	int nargs = 0;
	while (checker[nargs]) nargs++;
	pid_t kids[MAXP];
	for (i = 0; i < n && i < MAXP; i++) {
		fflush(NULL);
		if ((kids[i] = fork()) == 0) {
			if (fds_install(r, cJSON_GetArrayItem(tables, i), base, err, sizeof err)) {
				dprintf(2, "appshot: %s\n", err);
				_exit(1);
			}
			fds_close_base(r);
			char **av = calloc((size_t)nargs + 2, sizeof *av), idx[16];
			memcpy(av, checker, (size_t)nargs * sizeof *av);
			snprintf(idx, sizeof idx, "%d", i);
			av[nargs] = idx;
			execv(av[0], av);
			_exit(127);
		}
	}
	fds_restore_free(r);
	cJSON_Delete(all);
	int failed = 0;
	for (i = 0; i < n && i < MAXP; i++) {
		int st;
		if (waitpid(kids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) failed = 1;
	}
	return failed;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) return NULL;
	size_t cap = 1 << 16, len = 0, got;
	char *buf = malloc(cap + 1);
	while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0)
		if ((len += got) == cap) buf = realloc(buf, (cap *= 2) + 1);
	fclose(f);
	if (buf) buf[len] = 0;
	return buf;
}

int main(int argc, char **argv)
{
	const char *home = NULL, *aid = NULL, *raid = NULL, *json = NULL, *from = NULL;
	pid_t pids[MAXP];
	int npids = 0, keep = 0, timed = 0, capture_only = 0, i;
	for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--home") && i + 1 < argc) home = argv[++i];
		else if (!strcmp(argv[i], "--aid") && i + 1 < argc) aid = argv[++i];
		else if (!strcmp(argv[i], "--restore-aid") && i + 1 < argc) raid = argv[++i];
		else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
		else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
		else if (!strcmp(argv[i], "--capture-only")) capture_only = 1;
		else if (!strcmp(argv[i], "--keep")) keep = 1;
		else if (!strcmp(argv[i], "--time")) timed = 1;
		else if (!strcmp(argv[i], "--pids") && i + 1 < argc) {
			for (char *s = argv[++i], *t; npids < MAXP && (t = strsep(&s, ","));) pids[npids++] = atoi(t);
		} else {
			fprintf(stderr, "fdsdriver: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	char **checker = i < argc ? argv + i + 1 : NULL;
	if ((!npids && !from) || (!capture_only && (!checker || !*checker)) || (capture_only && !json)) {
		fprintf(stderr, "usage: fdsdriver [--home H --aid A [--restore-aid B]] [--keep] [--json FILE] [--time] --pids P,... -- CHECKER ARGS...\n"
				"       fdsdriver [--home H --aid A] [--keep] --capture-only --json FILE --pids P,...\n"
				"       fdsdriver [--home H --aid A] --from FILE -- CHECKER ARGS...\n");
		return 2;
	}
	struct tabledb t, rt;
	struct ckpt_ctx ctx = { .home = home, .aid = aid, .tables = NULL, .identity = 1 }, rctx;
	if (home && aid && open_tables(&ctx, &t, home, aid)) return 1;
	rctx = ctx;
	if (home && raid && open_tables(&rctx, &rt, home, raid)) return 1;
	int code = 0;
	char *text = from ? read_all(from) : capture(&ctx, pids, npids, keep, timed, &code);
	if (!text && from) {
		fprintf(stderr, "appshot: cannot read %s: %s\n", from, strerror(errno));
		code = 1;
	}
	if (text && json && !from) {
		FILE *f = fopen(json, "w");
		if (f) fputs(text, f), fclose(f);
	}
	if (text && !capture_only) code = restore(&rctx, text, checker, timed);
	free(text);
	if (rctx.tables && rctx.tables != ctx.tables) tabledb_close(&rt);
	if (ctx.tables) tabledb_close(&t);
	return code;
}
