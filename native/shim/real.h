/* Pointers to the real libc functions behind every wrapper. */
#ifndef APPSHOT_REAL_H
#define APPSHOT_REAL_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <spawn.h>
#include <time.h>

#define WRAP(ret, name, params) extern ret (*real_##name) params;
#include "wrapped.def"
#undef WRAP

/* Resolves every pointer the C library has; safe to call more than once. */
void real_resolve(void);
/* The real function, or the end of the process with a message if the C
 * library lacks it (an older glibc without closefrom, say): only a program
 * that calls it stops, not every program. */
void *real_require(const char *name);

#define REAL(name) \
	(real_##name ? real_##name : (real_##name = (__typeof__(real_##name))real_require(#name)))

#endif
