/* Pointers to the real libc functions behind the wrappers, and WRAPPER(name),
 * every wrapper's first line (wrapped.h, generated from wrapped.def). */
#ifndef APPSHOT_REAL_H
#define APPSHOT_REAL_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/msg.h>
#include <spawn.h>
#include <time.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <utime.h>
#include <termios.h>
#include <sys/uio.h>
#include <sys/pidfd.h>
#include <sys/ptrace.h>
#include <linux/capability.h>

#include "shim.h"
#include "wrapped.h"

void *real_require(const char *name);

/* For each wrapped function with a real one behind it (wrapped.def): the
 * pointer, and real_fn_NAME() returning it, resolved on first use. Not all
 * at start: each dlsym costs about a microsecond and a program calls few of
 * the wrapped functions, while every program start (sh -c, make's recipes)
 * would pay for all of them. */
#define REAL_POINTER(ret, name, params)                                        \
	extern ret (*real_##name) params;                                      \
	static inline ret (*real_fn_##name(void)) params                       \
	{                                                                      \
		if (__builtin_expect(!real_##name, 0))                         \
			real_##name = (ret(*) params)real_require(#name);      \
		return real_##name;                                            \
	}
WRAPPED_REAL(REAL_POINTER)
#undef REAL_POINTER

/* real_require gives the real function, or ends the process with a
 * message if the C library lacks it (an older glibc without closefrom, say):
 * only a program that calls it stops, not every program. */
#define REAL(name) (real_fn_##name())

/* With the trap on: REAL(x) of a trapped system call made from the shim's
 * own instruction instead of libc's (real.c). Called once at start. */
void real_use_kernel(void);

#endif
