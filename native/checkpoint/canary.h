/*
 * The shim's canary page (native/shim/canary.h, owned by the shim): the
 * restorer's way into the shim of a restored process. Restored with the
 * rest of memory (the dump keeps this one wipe-on-fork page), then told the
 * new AID and home, marked restored, and its entry function called in the
 * main thread before the program resumes.
 */
#ifndef APPSHOT_CKPT_CANARY_H
#define APPSHOT_CKPT_CANARY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"

/* Layout shared with the shim. */
#define CANARY_MAGIC 0x31544f4853505041ULL /* "APPSHOT1" little-endian */
#define CANARY_OFF_CANARY 0
#define CANARY_OFF_MAGIC 8
#define CANARY_OFF_ENTRY 16
#define CANARY_OFF_RESTORED 24
#define CANARY_OFF_IN_TABLES 28
#define CANARY_OFF_AID 32
#define CANARY_AID_MAX 256
#define CANARY_OFF_HOME 288
#define CANARY_HOME_MAX 3808

/* The canary page of a dumped process's mappings (0: none). */
uint64_t canary_find(const cJSON *mappings);

/* In restored process tid (its main thread, stopped, memory in place,
 * every thread made): writes the AID and home, restored = 1, canary = 0,
 * and runs the shim's entry with a return into the gadget's int3 (at
 * trap). 0 when there is no canary page; -1 with err set on failure. */
int canary_restore(pid_t tid, const cJSON *p, const struct ckpt_ctx *ctx, uint64_t trap, char *err, size_t errlen);

#endif
