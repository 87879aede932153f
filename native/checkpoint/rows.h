/*
 * The tables side of a whole-process snapshot: what appshot-checkpoint asks
 * of the application's translation rows. A restored process keeps the
 * virtual IDs it saw (its vpid, its IPC vrids) and gets new system ones;
 * these bind and look them up. Every call is a short LMDB transaction of its
 * own (the engine calls them a few times per process, never on a hot path).
 */
#ifndef APPSHOT_CKPT_ROWS_H
#define APPSHOT_CKPT_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"

/* Opens the tables of ctx->aid under ctx->home into ctx->tables (allocated
 * here) and sets ctx->identity from the application's flags. The
 * application must be registered and running (the harness registers a
 * restored one before it starts the restorer). 0, or -1 with err set. */
int ckpt_rows_open(struct ckpt_ctx *ctx, char *err, size_t errlen);
void ckpt_rows_close(struct ckpt_ctx *ctx);
/* Folds the journal of new objects (core/journal.h) into the tables, so
 * that the rows read next are all of them: once the processes are frozen,
 * none of them inside the table code. 0, or -1 with err set. */
int ckpt_rows_fold(const struct ckpt_ctx *ctx, char *err, size_t errlen);

/* Binds a restored process (kernel pid spid, alive: its start time is read
 * now) to its saved vpid: its pid row and its procs row, as the shim makes
 * for a fork child. Refused (-1, err naming the vpid) when the application
 * maps that vpid to another live process already. A vpid in the remapped
 * range also moves the application's next remapped vpid past it, so a
 * process forked later never gets it. */
int ckpt_rows_bind_pid(const struct ckpt_ctx *ctx, pid_t spid, uint32_t vpid, char *err, size_t errlen);
/* Undoes ckpt_rows_bind_pid for a process a failed restore killed. */
int ckpt_rows_forget_pid(const struct ckpt_ctx *ctx, pid_t spid);

/* The application's translations, type one of RT_SEM, RT_SHM, RT_MSG,
 * RT_PID, ... (tables/schema.h): the system ID of a virtual one (a blocked
 * semop's semid, a waited-for pid, a SysV segment to attach again), and
 * back (a segment's ID in /proc/PID/maps at dump). 0, or -1 when it is not
 * mapped (or the tables cannot be read). */
int ckpt_rows_srid(const struct ckpt_ctx *ctx, uint8_t type, uint32_t vrid, uint32_t *srid);
int ckpt_rows_vrid(const struct ckpt_ctx *ctx, uint8_t type, uint32_t srid, uint32_t *vrid);

#endif
