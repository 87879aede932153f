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

/* Resolves every pointer; safe to call more than once. */
void real_resolve(void);

#define REAL(name) (real_##name ? real_##name : (real_resolve(), real_##name))

#endif
