/*
 * A thread stopped inside a system call makes it again on restore (the
 * kernel's restart rule, trace_restart_fixup). When the call names a kernel
 * object by its system ID (semop on a semid, msgrcv on a msqid, wait4 on a
 * pid), that ID is the old kernel's: the dump notes the virtual ID behind
 * it, the restore puts the restored object's system ID in the register.
 */
#ifndef APPSHOT_CKPT_RESTART_H
#define APPSHOT_CKPT_RESTART_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "ckpt.h"

/* Dump (tables open): adds "restart": {reg, type, vrid} to thread t. */
void restart_note(const struct ckpt_ctx *ctx, cJSON *t);
/* Restore (tables open): rewrites the noted register of t's "regs". 0, or
 * -1 with err set when the object was not restored. */
int restart_translate(const struct ckpt_ctx *ctx, cJSON *t, char *err, size_t errlen);

#endif
