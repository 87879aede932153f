/*
 * TEMPORARY stand-in for fds.c (branch ckpt-fds) until it is merged: the
 * restored process keeps the restorer's descriptors 0-2, and a process
 * holding any other descriptor is refused. Removed once fds.c lands.
 */
#define _GNU_SOURCE
#include "fds.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct fds_capture {
	int unused;
};
struct fds_restore {
	int unused;
};

struct fds_capture *fds_capture_new(const struct ckpt_ctx *ctx)
{
	(void)ctx;
	return calloc(1, sizeof(struct fds_capture));
}

int fds_capture_process(struct fds_capture *c, pid_t spid, uint32_t vpid, const char *comm, char *err, size_t errlen)
{
	char path[64], target[256];
	snprintf(path, sizeof path, "/proc/%d/fd", spid);
	DIR *d = opendir(path);
	struct dirent *e;
	int rc = 0;
	while (d && !rc && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd <= 2) continue;
		snprintf(path, sizeof path, "/proc/%d/fd/%d", spid, fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		snprintf(err, errlen, "cannot snapshot process %u (%s): descriptor %d (%s) is not captured yet; nothing was changed", vpid, comm, fd, target);
		rc = -1;
	}
	if (d) closedir(d);
	return rc;
}

cJSON *fds_capture_files(struct fds_capture *c) { return cJSON_CreateArray(); }
cJSON *fds_capture_table(struct fds_capture *c, pid_t spid) { return cJSON_CreateArray(); }
void fds_capture_free(struct fds_capture *c) { free(c); }

struct fds_restore *fds_restore_open(const cJSON *files, int base, const struct ckpt_ctx *ctx, char *err, size_t errlen)
{
	return calloc(1, sizeof(struct fds_restore));
}

int fds_install(struct fds_restore *r, const cJSON *table, int keep_from, char *err, size_t errlen)
{
	for (int fd = 3; fd < keep_from; fd++) close(fd);
	return 0;
}

int fds_table_max(const cJSON *table) { return -1; }
void fds_restore_free(struct fds_restore *r) { free(r); }
