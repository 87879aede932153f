/* What the supervisor's notification files share (serve.c runs them). */
#ifndef APPSHOT_NOTIFY_INT_H
#define APPSHOT_NOTIFY_INT_H

#include "notify.h"
#include "../core/tabledb.h"

#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A process seen through the filter (by its thread group). */
enum proc_kind { KIND_UNKNOWN, KIND_NOTIFIED, KIND_SHIM };
struct proc {
	pid_t tgid;         /* 0: a free slot */
	int pidfd;
	uint64_t ticks;     /* its start, which tells it from a later one */
	enum proc_kind kind;
	uint32_t vpid;      /* 0 until asked (pid.c) */
};

/* One notified call being answered. */
struct call {
	int listener;
	struct seccomp_notif *req;
	struct proc *proc;
};

/* The application's settings, read once the tables are open. */
extern uint16_t notify_range_lo, notify_range_hi;
/* What the filters notify (NOTIFY_*). */
extern unsigned notify_what;

/* Answers: a result (val) or an error (a positive errno), or "make the call
 * as it is" (the kernel's own, arguments untouched). */
void notify_answer(const struct call *c, long val, int err);
void notify_continue(const struct call *c);
/* A call whose answer has to wait (a blocking connect, sendto or accept on
 * a pool channel; a semop, msgsnd or msgrcv that waits): run(call, arg,
 * &val) in a thread of its own, which answers with val or the errno run
 * returns (NOTIFY_ANSWERED: run answered itself), then done(arg). The call
 * run gets is the thread's copy (its own listener, no proc), good for
 * notify_read and notify_write. 0, or ENOMEM when no thread could be
 * started: the caller answers, and still owns arg. */
#define NOTIFY_ANSWERED (-1)
typedef int notify_later_fn(struct call *c, void *arg, long *val);
int notify_answer_later(const struct call *c, notify_later_fn *run, void (*done)(void *arg), void *arg);
/* Whether the call is still waiting (its process not gone and not
 * interrupted): checked after reading the caller's memory, whose address
 * could otherwise belong to a process that took the caller's number. */
int notify_valid(const struct call *c);
/* The caller's memory: 0, or -1 (EFAULT: the kernel's answer for it). */
int notify_read(const struct call *c, uint64_t addr, void *buf, size_t n);
int notify_write(const struct call *c, uint64_t addr, const void *buf, size_t n);
/* Two pieces at once (an address and its length): one system call. */
int notify_write2(const struct call *c, uint64_t addr, const void *buf, size_t n, uint64_t addr2, const void *buf2, size_t n2);
/* A copy of the caller's descriptor fd in the supervisor, or -1. */
int notify_getfd(const struct call *c, int fd);
/* "appshot: <message>" on the caller's standard error. */
__attribute__((format(printf, 2, 3))) void notify_warn(const struct call *c, const char *fmt, ...);

/* Each family: 1 when it answered the call (its number is the family's). */
int port_call(struct call *c);
int pid_call(struct call *c);
int ipc_call(struct call *c);

/* The process seen with this thread group ID, or NULL; its kind, read from
 * its maps the first time after an exec. */
struct proc *notify_proc_find(pid_t tgid);
enum proc_kind notify_kind(struct proc *p);

/* The vpid of the caller's process, recording it on first sight (pid.c). */
uint32_t notify_vpid(struct call *c);

#endif
