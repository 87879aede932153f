/*
 * A session of system calls made in one stopped thread: its registers and
 * signal mask are kept at the start, every signal is blocked meanwhile (a
 * signal arriving mid-way stays pending instead of being delivered at a
 * borrowed instruction), and both are put back at the end.
 */
#ifndef APPSHOT_CKPT_INJECT_H
#define APPSHOT_CKPT_INJECT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "trace.h"

struct inj {
	pid_t tid;
	uint64_t at;      /* a `syscall` instruction in the tracee */
	uint64_t scratch; /* writable tracee memory the calls use */
	struct user_regs_struct regs;
	uint64_t mask;
	int called; /* a call was made: the thread stands in a syscall-exit stop */
};

/* scratch 0: 1 KB below the thread's stack pointer, past the red zone (the
 * dump's calls need a few hundred bytes). */
int inj_begin(struct inj *in, pid_t tid, uint64_t at, uint64_t scratch);
/* The kernel's result, or -ESRCH when the thread could not be driven. */
long inj_call6(struct inj *in, long nr, long a1, long a2, long a3, long a4, long a5, long a6);
#define INJ_(in, nr, a1, a2, a3, a4, a5, a6, ...) inj_call6(in, nr, (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6))
#define inj_call(in, ...) INJ_(in, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
/* Writes len bytes to the scratch area at off and returns their address. */
uint64_t inj_put(struct inj *in, size_t off, const void *buf, size_t len);
int inj_get(struct inj *in, size_t off, void *buf, size_t len);
/* Puts the thread back as it was (a live thread: its interrupted call is
 * restarted as the kernel would). */
int inj_end(struct inj *in);

/* The address of a `syscall` instruction in process pid's [vdso] (or any
 * executable mapping), 0 if none. */
uint64_t inj_find_syscall(pid_t pid);

#endif
