/*
 * One thread's state: registers (general and XSAVE), signal mask and the
 * signals pending on it alone, alternate signal stack, and the kernel
 * registrations glibc makes for it (rseq area, robust futex list,
 * clear-child-tid address), and its name.
 */
#ifndef APPSHOT_CKPT_THREADS_H
#define APPSHOT_CKPT_THREADS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "inject.h"

/* Dump: thread tid of process pid, stopped; syscall_at as inj_find_syscall.
 * NULL with err set. The thread is put back as it was. */
cJSON *thread_capture(pid_t pid, pid_t tid, uint64_t syscall_at, char *err, size_t errlen);

/* The offset in glibc's thread control block (at fs_base) of the word that
 * caches the thread's kernel TID: the same offset in every thread. -1 if
 * none is found. */
long thread_tcb_tid_offset(pid_t pid, const cJSON *threads);

/* Restore, in new thread in->tid of process tgid whose memory is in place:
 * the kernel registrations, altstack, name, pending signals and the TCB's
 * TID. 0, or -1 with err set. */
int thread_restore_state(struct inj *in, pid_t tgid, const cJSON *t, long tcb_tid_offset, char *err, size_t errlen);
/* Last: XSAVE state, registers (an interrupted system call made again) and
 * the signal mask. */
int thread_restore_regs(pid_t tid, const cJSON *t, char *err, size_t errlen);

/* Signals pending on thread tid (shared: on its whole process), read
 * without taking them, and queued again in a restored thread. */
cJSON *thread_pending(pid_t tid, int shared);
int thread_restore_pending(struct inj *in, pid_t tgid, const cJSON *pending, int shared, char *err, size_t errlen);

/* Refuses an image whose XSAVE state this CPU cannot take (a feature it
 * lacks, or another layout size). 0, or -1 with err set. */
int thread_check_xstate(const cJSON *t, char *err, size_t errlen);

#endif
