/*
 * A session of system calls made in one stopped thread: its registers and
 * signal mask are kept at the start, every signal is blocked meanwhile (a
 * signal arriving mid-way stays pending instead of being delivered at a
 * borrowed instruction), and both are put back at the end.
 */
#ifndef APPSHOT_CKPT_INJECT_H
#define APPSHOT_CKPT_INJECT_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/user.h>

#include "trace.h"

struct inj_batch;

struct inj {
	pid_t tid;
	uint64_t at;      /* a `syscall` instruction in the tracee */
	uint64_t scratch; /* writable tracee memory the calls use */
	struct user_regs_struct regs;
	uint64_t mask;
	int called; /* a call was made: the thread stands in a syscall-exit stop */
	struct inj_batch *batch; /* queued calls (inj_queue), NULL when none */
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

/*
 * Batches: calls queued in the restorer and made by a small routine in the
 * tracee (the restore's gadget page holds it: inj_batch_code) one after
 * the other, with one stop at its end (an int3) instead of two ptrace stops
 * per call. Under CPU load every stop waits for the scheduler twice (the
 * tracee to run, then the tracer), so dozens of calls become a few stops.
 * The routine stops at the first call that fails (a result in -4095..-1)
 * unless the call may fail; a call may take an argument from an earlier
 * call's result (inj_ref: open -> mmap fd -> close).
 */
#define INJ_BATCH_MAX 128
#define INJ_BATCH_POOL 6144
/* Where the routine lies in the gadget page (after `syscall; int3`), and
 * the batch's table (then its string pool) in the scratch area: 16 KB. */
#define INJ_BATCH_CODE_OFF 16
#define INJ_BATCH_TABLE_OFF 12288
#define INJ_BATCH_BYTES 16384

/* Why a queued call is made, for the message when it fails. */
struct inj_why {
	const char *what; /* "mapping a file" ... */
	uint64_t addr;
	const char *path; /* an open: the file named instead */
	int64_t want;     /* not 0: the result it must give (a read's length) */
};
/* The flags of a queued call. */
#define INJ_MAY_FAIL 1

/* The routine's bytes, copied into the gadget page by the stub. */
extern const unsigned char inj_batch_code[], inj_batch_code_end[];

/* Calls are queued from now on (code: the routine's address in the tracee);
 * inj_end (or inj_batch_stop, for a thread never ended) lets it go. */
int inj_batch_start(struct inj *in, uint64_t code);
void inj_batch_stop(struct inj *in);
/* Queues a call; its index in the batch, -1 when the batch could not be
 * made room for (a flush failed: see inj_batch_failed). Room for `ops`
 * calls and `bytes` of strings is made first with inj_room. */
int inj_queue6(struct inj *in, const struct inj_why *why, int flags, long nr, long a1, long a2, long a3, long a4, long a5, long a6);
#define INJQ_(in, why, flags, nr, a1, a2, a3, a4, a5, a6, ...) \
	inj_queue6(in, why, flags, nr, (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6))
#define inj_queue(in, why, flags, ...) INJQ_(in, why, flags, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
/* Argument arg (0-5) of queued call op is the result of queued call from. */
void inj_ref(struct inj *in, int op, int arg, int from);
/* Flushes first unless `ops` calls and `bytes` of strings still fit. */
int inj_room(struct inj *in, int ops, size_t bytes);
/* Bytes (a string, a struct a call reads) in the batch's pool: their
 * address in the tracee, 0 if they do not fit or a flush for room failed.
 * Room is kept for one call after them (the call that reads them, queued
 * next); a call reading several pieces makes room for all first. */
uint64_t inj_bytes(struct inj *in, const void *buf, size_t len);
#define inj_string(in, s) inj_bytes(in, s, strlen(s) + 1)
/* Makes the queued calls: 0, or -1 with the failed call's why and result
 * (inj_batch_failed); -ESRCH there when the thread could not be driven. */
int inj_flush(struct inj *in);
const struct inj_why *inj_batch_failed(const struct inj *in, long *rc);
/* Flushes; on failure "WHAT failed: REASON" in err and -1. */
int inj_flush_or_say(struct inj *in, char *err, size_t errlen);

/* The address of a `syscall` instruction in process pid's [vdso] (or any
 * executable mapping), 0 if none. */
uint64_t inj_find_syscall(pid_t pid);

#endif
