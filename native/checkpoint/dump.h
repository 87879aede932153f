/*
 * The dump: every thread of the application's processes seized and
 * stopped (and whatever they fork meanwhile), everything checked and
 * described before anything is written, then the FILES and PROC sections
 * written, then the processes let go or killed.
 */
#ifndef APPSHOT_CKPT_DUMP_H
#define APPSHOT_CKPT_DUMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"

struct dumper;

/* Seizes and describes processes pids[0..n). NULL with err set (a refusal
 * names the process; everything seized is let go again). */
struct dumper *dump_freeze(const struct ckpt_ctx *ctx, const pid_t *pids, int n, char *err, size_t errlen);
int dump_count(const struct dumper *d);
pid_t dump_pid(const struct dumper *d, int i);
/* Writes FILES and a PROC section per process (parents first) at *offset
 * of fd; *offset moves past them, *sections counts them. early: the
 * processes go on as soon as their state is copied out, before the
 * file is written (when the memory for the copy is there). 0 or -errno. */
int dump_write(struct dumper *d, int fd, uint64_t *offset, int *sections, int early);
/* Lets every process go on (kill: SIGKILL them) unless dump_write did
 * already, and frees d. */
void dump_release(struct dumper *d, int kill);

#endif
