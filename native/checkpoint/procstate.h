/*
 * A process's state beyond its memory and threads: signal dispositions,
 * interval timers, the mm's fields (code/data/brk/stack/args/env bounds,
 * auxv, exe), cwd, umask, rlimits, and its command as /proc shows it.
 */
#ifndef APPSHOT_CKPT_PROCSTATE_H
#define APPSHOT_CKPT_PROCSTATE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "inject.h"

/* Dump: adds the fields to p (the process is stopped; main is its main
 * thread, syscall_at as inj_find_syscall). 0, or -1 with err set. */
int proc_capture_state(pid_t pid, uint64_t syscall_at, cJSON *p, char *err, size_t errlen);
/* The spids of a process's parent, process group and session (/proc stat). */
int proc_links(pid_t pid, pid_t *ppid, pid_t *pgid, pid_t *sid);

/* Restore, by calls in the stub's main thread once its memory is in place:
 * the mm's fields (PR_SET_MM_MAP; the exe link too when privileged) and the
 * signal dispositions. */
int proc_restore_mm(struct inj *in, const cJSON *p, char *err, size_t errlen);
int proc_restore_sigactions(struct inj *in, const cJSON *p, char *err, size_t errlen);
/* One signal's saved action again (none saved: left as it is), by a call
 * that ends in a syscall stop, not at an int3. An int3 (a batch's end, the
 * canary call's return) raises SIGTRAP by force_sig: while SIGTRAP is
 * blocked (inj_begin blocks every signal) the kernel resets its action to
 * SIG_DFL and unblocks it. Whether that happens after the saved actions are
 * set depends on which int3 comes first, so SIGTRAP's is put back once the
 * last one is done. */
int proc_restore_sigaction(struct inj *in, const cJSON *p, int sig, char *err, size_t errlen);
/* Last before the resume: interval timers, then rlimits (from outside). */
int proc_restore_itimers(struct inj *in, const cJSON *p, char *err, size_t errlen);
int proc_restore_rlimits(pid_t pid, const cJSON *p, char *err, size_t errlen);

#endif
