/*
 * Descriptors in a whole-process snapshot: every open file description of
 * the application once (the files section), each process's table of
 * descriptor numbers pointing at them, and their making again on restore.
 */
#ifndef APPSHOT_CKPT_FDS_H
#define APPSHOT_CKPT_FDS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"

/* Dump: every process of the application is ptrace-stopped by the caller. */
struct fds_capture;
struct fds_capture *fds_capture_new(const struct ckpt_ctx *ctx);
/* Describes every descriptor of process spid. 0, or -1 with err set to a
 * refusal naming the process (vpid and command), the descriptor number and
 * its kind; nothing about the process has been changed either way. */
int fds_capture_process(struct fds_capture *c, pid_t spid, uint32_t vpid, const char *comm, char *err, size_t errlen);
/* After every process (and while they are still stopped): the files
 * section's JSON, and spid's descriptor table
 * ([{"fd":N,"ofd":ID,"cloexec":bool}], an epoll's entry also with
 * "epoll":[{tfd,ofd,events,data}]) for its proc section. */
cJSON *fds_capture_files(struct fds_capture *c);
cJSON *fds_capture_table(struct fds_capture *c, pid_t spid);
void fds_capture_free(struct fds_capture *c);

/* Restore, in the restorer before any stub is forked: makes every open file
 * description of the files section at a descriptor >= base, which the
 * restorer and the stubs it forks all inherit (the i-th at base+i; the
 * range must be free: it is refused, not overwritten). Ports are bound
 * here, through ctx->tables when set. */
struct fds_restore;
struct fds_restore *fds_restore_open(const cJSON *files, int base, const struct ckpt_ctx *ctx, char *err, size_t errlen);
/* In a stub (a fork of the restorer) before its memory is replaced: puts
 * table in place (each descriptor at its number, with its close-on-exec
 * flag), registers its epoll interest lists, and closes every other
 * descriptor below keep_from (and below base). 0, or -1 with err set. */
int fds_install(struct fds_restore *r, const cJSON *table, int keep_from, char *err, size_t errlen);
/* In a stub, once it has installed its table and forked the stubs it
 * parents: closes its copies of the restorer's descriptors (base..), which
 * would otherwise keep pipes open (no end of file) and sockets alive. */
void fds_close_base(struct fds_restore *r);
/* The highest descriptor this process has open (at least 2). */
int fds_highest_fd(void);
/* The highest descriptor number a table uses (-1 for none). */
int fds_table_max(const cJSON *table);
/* In the restorer, once every stub is forked (or on failure): closes its
 * own copies, for the same reason as fds_close_base, and frees r. */
void fds_restore_free(struct fds_restore *r);

#endif
