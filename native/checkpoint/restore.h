/*
 * The restore: a tree of stubs (forks of the restorer, parents before
 * children) that put their descriptors, sessions, cwd and umask in place
 * themselves and wait; then, stub by stub under ptrace, their memory is
 * replaced by the saved one and the rest of the state set by system calls
 * made in them from a gadget page; then all are let go together.
 */
#ifndef APPSHOT_CKPT_RESTORE_H
#define APPSHOT_CKPT_RESTORE_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/types.h>

#include "clonefix.h"
#include "ckpt.h"
#include "fds.h"
#include "image.h"

/* The gadget region the stubs map at an address free everywhere: a page
 * with `syscall; int3` and the batch routine (inject.h), scratch pages (3
 * for paths and preadv's iovecs, 4 for a batch), room to move the vDSO
 * through (from its 16th page). */
#define GADGET_PAGES 64
#define GADGET_SCRATCH_PAGES 7

struct rproc {
	cJSON *json;
	uint64_t data_at;
	int parent; /* index, -1 outside the image */
	uint32_t vpid;
	pid_t spid;
	pid_t *tids; /* restored threads, the main one first */
	int ntids;
};

struct restorer {
	struct ckpt_ctx ctx;
	const char *image_path;
	int image_fd;   /* at keep_from or above: the stubs inherit it */
	int report[2];  /* the stubs' "ready" lines */
	int keep_from;  /* descriptors below are the application's */
	uint64_t gadget;
	int map_pages;  /* private anonymous pages mapped from the image (--map-pages), not copied */
	int checked;    /* the caller checked every section's checksum */
	int own_stdio;  /* a clone's: files at 0-2 become the restorer's own (clonefix.h) */
	struct clone_moves moves; /* a clone's redirected paths (clonefix.h) */
	struct fds_restore *fds;
	cJSON *shm_fds; /* shared memory objects' memfds by id */
	cJSON *files;   /* the FILES section, until its descriptors are made */
	struct img_section *sections;
	int nsections;
	struct rproc *procs;
	int n;
};

/* In a forked stub: never returns. */
void stub_main(struct restorer *R, int idx, pid_t parent) __attribute__((noreturn));

/* opts: report_fd (-1: none), wait (stay the root's parent and return its
 * exit status). Exit code of appshot-checkpoint restore. */
int restore_run(struct restorer *R, int report_fd, int wait);

#endif
