/*
 * appshot-checkpoint: dumps running processes from outside with ptrace and
 * restores them under new kernel PIDs, continuing where they stood.
 *
 *   dump --pids P,... --out FILE [--kill]          a whole image (tests)
 *   dump --pids P,... --home H --aid A --image-fd FD
 *        the harness's protocol on stdin/stdout (DESIGN: "frozen N",
 *        "dump OFFSET [go]" -> "written NEWOFFSET SECTIONS", "detach" | "kill";
 *        with go the processes go on as soon as their state is copied out,
 *        before the file is written: the pause they see is shorter)
 *   restore --image FILE [--home H --aid A] [--report-fd FD] [--wait] [--map-pages] [--checked]
 *        private memory is copied from the image into anonymous memory
 *        (--copy-pages, the default, still accepted);
 *        --map-pages: private anonymous memory mapped from the image
 *        (copy-on-write, for clones that share one image; MADV_DONTNEED then
 *        brings back the image's bytes, not zeros, which allocators that
 *        count on zeros after it do not expect);
 *        --checked: the caller checked every section's checksum already;
 *        --own-stdio, --moved OLD=NEW: a template's warm clone (clonefix.h)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "dump.h"
#include "image.h"
#include "phases.h"
#include "restore.h"
#include "rows.h"

static int usage(const char *why)
{
	fprintf(stderr,
		"appshot: %s\n"
		"usage: appshot-checkpoint dump --pids P,... (--out FILE [--kill] | --home H --aid A --image-fd FD)\n"
		"       appshot-checkpoint restore --image FILE [--home H --aid A] [--report-fd FD] [--wait] [--map-pages] [--checked] [--own-stdio] [--moved OLD=NEW]...\n",
		why);
	return CKPT_EXIT_USAGE;
}

/* The application's tables when it has them (--home and --aid). */
static int open_tables(struct ckpt_ctx *ctx)
{
	char err[1024];
	if (!ctx->home != !ctx->aid) {
		fprintf(stderr, "appshot: --home and --aid go together (the application's tables)\n");
		return -1;
	}
	if (!ctx->home) return 0;
	if (ckpt_rows_open(ctx, err, sizeof err) != 0) {
		fprintf(stderr, "appshot: %s\n", err);
		return -1;
	}
	return 0;
}

static int parse_pids(const char *s, pid_t **out)
{
	int n = 0;
	pid_t *pids = calloc(strlen(s) / 2 + 2, sizeof *pids);
	for (char *end; *s; s = *end == ',' ? end + 1 : end) {
		long v = strtol(s, &end, 10);
		if (end == s || v <= 0 || (*end && *end != ',')) return free(pids), -1;
		pids[n++] = (pid_t)v;
	}
	*out = pids;
	return n;
}

/* A whole image to a file: header, FILES, PROC..., END. */
static int dump_to_file(struct dumper *d, const char *out, int early)
{
	int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* read too: pages are copied in mapped */
	if (fd < 0) {
		fprintf(stderr, "appshot: cannot write the image to %s: %s\n", out, strerror(errno));
		return -1;
	}
	struct img_writer w = {fd, 0, 0};
	int sections = 0, rc = img_write_header(&w);
	if (!rc) rc = dump_write(d, fd, &w.pos, &sections, early);
	cJSON *end = cJSON_CreateObject();
	cJSON_AddNumberToObject(end, "sections", sections);
	if (!rc) rc = img_write_json(&w, CKPT_SECTION_END, end);
	cJSON_Delete(end);
	if (close(fd) != 0 && !rc) rc = -errno;
	if (rc) fprintf(stderr, "appshot: cannot write the image to %s: %s\n", out, strerror(-rc));
	return rc ? -1 : 0;
}

/* The harness's protocol: stdin lines in, stdout lines out. */
static int dump_protocol(struct dumper *d, int fd)
{
	char line[256];
	printf("frozen %d pids ", dump_count(d));
	for (int i = 0; i < dump_count(d); i++) printf("%s%d", i ? "," : "", dump_pid(d, i));
	printf("\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		unsigned long long off;
		char go[8] = "";
		if (sscanf(line, "dump %llu %7s", &off, go) >= 1) {
			uint64_t pos = off;
			int sections;
			int rc = dump_write(d, fd, &pos, &sections, !strcmp(go, "go"));
			if (rc) {
				fprintf(stderr, "appshot: cannot write the image: %s\n", strerror(-rc));
				dump_release(d, 0);
				return CKPT_EXIT_FAILURE;
			}
			printf("written %llu %d\n", (unsigned long long)pos, sections);
			fflush(stdout);
		} else if (!strcmp(line, "detach\n") || !strcmp(line, "kill\n")) {
			dump_release(d, line[0] == 'k');
			return 0;
		}
	}
	dump_release(d, 0);
	return CKPT_EXIT_FAILURE;
}

static int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {{"pids", 1, 0, 'p'}, {"out", 1, 0, 'o'}, {"kill", 0, 0, 'k'}, {"home", 1, 0, 'h'},
					     {"aid", 1, 0, 'a'},  {"image-fd", 1, 0, 'f'}, {0, 0, 0, 0}};
	const char *pids_s = NULL, *out = NULL;
	int kill_them = 0, image_fd = -1, c;
	struct ckpt_ctx ctx = {0};
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p') pids_s = optarg;
		else if (c == 'o') out = optarg;
		else if (c == 'k') kill_them = 1;
		else if (c == 'h') ctx.home = optarg;
		else if (c == 'a') ctx.aid = optarg;
		else if (c == 'f') image_fd = atoi(optarg);
		else return usage("unknown option to dump");
	}
	pid_t *pids;
	int n = pids_s ? parse_pids(pids_s, &pids) : -1;
	if (n <= 0) return usage("dump needs --pids P,... (process IDs)");
	if (!out == (image_fd < 0)) return usage("dump needs either --out FILE or --image-fd FD");
	char err[1400];
	if (open_tables(&ctx) != 0) return CKPT_EXIT_FAILURE;
	struct phases ph;
	phases_start(&ph);
	struct dumper *d = dump_freeze(&ctx, pids, n, err, sizeof err);
	phase(&ph, "frozen");
	if (!d) {
		fprintf(stderr, "appshot: %s\n", err);
		return CKPT_EXIT_REFUSED;
	}
	if (image_fd >= 0) return dump_protocol(d, image_fd);
	/* Without --kill the processes go on once their state is copied out. */
	int rc = dump_to_file(d, out, !kill_them);
	phase(&ph, "written");
	dump_release(d, kill_them && rc == 0);
	phase(&ph, "let go");
	phases_print(&ph, "dump");
	return rc ? CKPT_EXIT_FAILURE : 0;
}

static int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {{"image", 1, 0, 'i'}, {"home", 1, 0, 'h'}, {"aid", 1, 0, 'a'}, {"report-fd", 1, 0, 'r'},
					     {"wait", 0, 0, 'w'},  {"copy-pages", 0, 0, 'c'}, {"map-pages", 0, 0, 'm'},
					     {"checked", 0, 0, 'k'},  {"own-stdio", 0, 0, 'o'}, {"moved", 1, 0, 'v'}, {0, 0, 0, 0}};
	struct restorer R = {0};
	int report_fd = -1, wait = 0, c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'i') R.image_path = optarg;
		else if (c == 'h') R.ctx.home = optarg;
		else if (c == 'a') R.ctx.aid = optarg;
		else if (c == 'r') report_fd = atoi(optarg);
		else if (c == 'w') wait = 1;
		else if (c == 'c') R.map_pages = 0;
		else if (c == 'm') R.map_pages = 1;
		else if (c == 'k') R.checked = 1;
		else if (c == 'o') R.own_stdio = 1;
		else if (c == 'v') {
			if (clonefix_add_move(&R.moves, optarg) != 0) return usage("--moved takes OLD=NEW, both absolute paths (at most 64)");
		} else return usage("unknown option to restore");
	}
	if (!R.image_path) return usage("restore needs --image FILE");
	if (open_tables(&R.ctx) != 0) return CKPT_EXIT_FAILURE;
	R.image_fd = open(R.image_path, O_RDONLY | O_CLOEXEC);
	if (R.image_fd < 0) {
		fprintf(stderr, "appshot: cannot read the snapshot %s: %s; give the path of an image appshot wrote\n", R.image_path, strerror(errno));
		return CKPT_EXIT_FAILURE;
	}
	return restore_run(&R, report_fd, wait);
}

int main(int argc, char **argv)
{
	if (argc < 2) return usage("say dump or restore");
	if (!strcmp(argv[1], "dump")) return cmd_dump(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore")) return cmd_restore(argc - 1, argv + 1);
	return usage("the first word must be dump or restore");
}
