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
#define CANARY_OFF_FEATURES 4
#define CANARY_FEATURE_ZEROES 1u
#define CANARY_OFF_MAGIC 8
#define CANARY_OFF_ENTRY 16
#define CANARY_OFF_RESTORED 24
#define CANARY_OFF_IN_TABLES 28
#define CANARY_OFF_AID 32
#define CANARY_AID_MAX 256
#define CANARY_OFF_HOME 288
#define CANARY_HOME_MAX 3792
#define CANARY_OFF_IMAGE 4080 /* u32 major, u32 minor, u64 inode */

/* The canary page of a dumped process's mappings (0: none). */
uint64_t canary_find(const cJSON *mappings);

/* Whether process p's private memory may be mapped from the image (fd,
 * its data at data_at): its saved canary page, read from the image, says
 * that its shim makes pages given back read zeros there, and the restore
 * has an application (the shim's entry is called). */
int canary_zeroes(const cJSON *p, const struct ckpt_ctx *ctx, int image_fd, uint64_t data_at);

/* In restored process tid (its main thread, stopped, memory in place,
 * every thread made): writes the AID and home, restored = 1, canary = 0,
 * and runs the shim's entry with a return into the gadget's int3 (at
 * trap); with mapped_at (an address mapped from the image, else 0) the
 * image's file named on the page too. 0 when there is no canary page; -1
 * with err set on failure. */
int canary_restore(pid_t tid, const cJSON *p, const struct ckpt_ctx *ctx, uint64_t trap, uint64_t mapped_at, char *err, size_t errlen);

#endif
