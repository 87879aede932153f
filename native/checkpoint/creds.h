/*
 * A process's credentials: its threads' real, effective, saved and file
 * system uids and gids, supplementary groups, capability sets (inheritable,
 * permitted, effective, bounding, ambient) and no_new_privs, as
 * /proc/PID/task/TID/status shows them; its securebits and dumpable flag,
 * asked by calls in it. A program that changed its user (Apache's workers,
 * a fork child that became nobody) must come back as that user: restored as
 * the restorer's, it would hold privileges it gave up.
 */
#ifndef APPSHOT_CKPT_CREDS_H
#define APPSHOT_CKPT_CREDS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "inject.h"

/* Dump: the process's credentials as "creds" in p (its main thread's),
 * and in each of p's "threads" whose own differ. 0, or -1 with err set. */
int creds_capture(pid_t pid, cJSON *p, char *err, size_t errlen);
/* Dump, by calls in the main thread (in): securebits and dumpable, added
 * to p's "creds". 0, or -1 (the thread could not be driven). */
int creds_capture_by_calls(struct inj *in, cJSON *p);

/* Restore, before anything is made: whether this restorer can give every
 * thread of p its saved credentials (root can; another user only its
 * own). 0, or -1 with a sentence naming the user in err. An image without
 * credentials (written before they were saved) passes. */
int creds_check(const cJSON *p, char *err, size_t errlen);

/* Restore, last in each process (after the shim's entry and the rlimits,
 * before the gadget goes): every thread's saved credentials, set by calls
 * in it (groups, gids, bounding set, uids, capabilities, securebits,
 * no_new_privs; the dumpable flag in main), then read back and compared.
 * main: the main thread's session; tids[1..n) the other threads, stopped
 * with their registers set; gadget and scratch as inj_begin's. */
int creds_restore(struct inj *main, const cJSON *p, const pid_t *tids, int ntids, uint64_t gadget, uint64_t scratch, char *err, size_t errlen);

#endif
