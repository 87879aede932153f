/* Process IDs as the application sees them (pid.c), for the other
 * families' files: the PIDs in IPC stat results, posix_spawn's child, exec,
 * and /proc/<pid> paths. */
#ifndef APPSHOT_SHIM_PID_H
#define APPSHOT_SHIM_PID_H

#include "shim.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* At start, first: the start entry its starter left (below); 1 when
 * the start may leave the tables for their first use. */
int pid_read_start(void);
/* At start: this process's vpid, its row made if need be. */
void pid_init(void);
/* After a deferred start, the tables' first opening: the row checked. */
void pid_tables_opened(void);
void pid_after_fork_child(void);
/* The getpid wrapper, called without the loader: the trap's handler
 * answers ld.so's own getpid (its LD_DEBUG prefix) with it, and that may
 * interrupt ld.so in a lazy binding (trap.c, on_sigsys). */
pid_t pid_getpid(void);
/* A restore (process.c): from shim_restored_entry, async-signal-safe, the
 * memory of the old process forgotten; then, at the renewal, this process's
 * row in the restored application's tables. */
void pid_restored_entry(void);
void pid_forget_thread(uintptr_t tp, uintptr_t my_tp);
void pid_restored(void);
/* Before an exec: a fork child whose row its parent may not have
 * committed yet records it, so the new program finds its vpid. */
void pid_before_exec(void);
/* A child started by posix_spawn: recorded, and its vpid given; before is
 * pid_clock() read before it was started. */
uint64_t pid_clock(void);
/* The vpid a child posix_spawn starts will have, 0 for its kernel PID
 * (identity): reserved before, given in its start entry and its row. */
uint32_t pid_spawn_vpid(void);
pid_t pid_record_child(pid_t spid, uint64_t before, uint32_t want);
/* The environment entry that tells the program posix_spawn starts now its
 * start tick (before: pid_clock() read before the spawn), its vpid and its
 * parent's (pid.c, start_entry), and whether the application has path
 * redirections (redirected), into buf: 1, or 0 if it did not fit. */
#define SPAWN_START_ENV "APPSHOT_SPAWN_START"
int pid_spawn_start_entry(char *buf, size_t len, uint64_t before, uint32_t vpid, int redirected);
/* The same for the program an exec puts in this process. */
int pid_exec_start_entry(char *buf, size_t len, int redirected);
/* A kernel PID as the application names it: its vpid if it is one of the
 * application's processes, else the PID itself. */
pid_t pid_to_virtual(pid_t spid);
/* The kernel's PID for a PID the program passed, into *spid: <= 0 as it
 * is, an application's vpid its spid, any other number as it is (a
 * remapped vpid the application does not have names no kernel process, so
 * the kernel answers for it with its own errno, after its own checks).
 * Returns 0: it never fails (the int stays for the callers that test it). */
int pid_to_system(pid_t vpid, pid_t *spid);
/* The same for a kill-style argument: >0 a process, <-1 a process group,
 * 0, -1 and INT_MIN as they are. */
int pid_target_to_system(pid_t pid, pid_t *out);
/* path itself, or /proc/<spid>/... written into buf for /proc/<vpid>/...
 * (and /proc/<vpid>/task/<vtid>/...): path.c's redirect_path calls it for
 * every path a wrapper takes. */
const char *pid_proc_path(const char *path, char *buf, size_t len);
/* The other way, for a path the kernel gave back (realpath): /proc/<spid>
 * as /proc/<vpid>. */
const char *pid_proc_path_virtual(const char *path, char *buf, size_t len);

#endif
