/* Calls that do not pass through the wrappers (trap.c): raw system calls,
 * glibc's internal calls, libraries bound straight to libc (RTLD_DEEPBIND).
 * A seccomp filter traps the translated system calls when they come from the
 * program's or a library's code, and the SIGSYS handler completes them with
 * the wrappers' translation. */
#ifndef APPSHOT_SHIM_TRAP_H
#define APPSHOT_SHIM_TRAP_H

#include <signal.h>

/* At start, in a process of an application: the handler, the shim's kernel
 * calls made from its own instruction (real.c), then the filter. Off when
 * APPSHOT_TRAP=off (appshot run --no-trap). */
void trap_init(void);

/* In a restored process (no filter: filters are not restored): the filter
 * built at start installed again on every thread (TSYNC). Async-signal-safe
 * (a few system calls). 0, or -1 when it could not be installed. */
int trap_reinstall(void);

/* In a restored process whose private memory is mapped from an image: a
 * second filter, trapping madvise that gives memory back and mremap from
 * the code the first traps from, for memory.c. Async-signal-safe. 0, or -1
 * when it could not be installed (or the trap is off). */
int trap_memory_install(void);

/* Nonzero once the filter is installed in this process. */
extern int trap_on;

/* The sigaction wrapper's part (pid.c): SIGSYS is the shim's while the trap
 * is on, so the program's SIGSYS action is kept here and shown back; and no
 * handler may block SIGSYS while it runs. trap_sigaction returns 1 when it
 * answered the call (in *r), else 0 with act possibly replaced by a copy in
 * *fixed without SIGSYS in its mask. */
int trap_sigaction(int sig, const struct sigaction **act, struct sigaction *old, struct sigaction *fixed, int *r);

#endif
