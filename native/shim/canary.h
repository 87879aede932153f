/* The shim's canary page: one MADV_WIPEONFORK page per process, which the
 * kernel empties in the child of any fork, and through which a restorer
 * (native/checkpoint) tells the shim inside a restored process that it was
 * restored. The layout is shared with the restorer: it finds the page (a
 * 4096-byte private anonymous mapping with VmFlags `wf` whose magic is
 * SHIM_CANARY_MAGIC), restores it with the rest of memory, then writes the
 * new application's AID and home and `restored` = 1, `canary` = 0, and
 * calls the function at `entry` in the main thread before it resumes.
 *
 * `features` tells a restorer, which reads the page from the image before
 * it makes the process's memory, what this shim can do: with
 * SHIM_CANARY_ZEROES the restorer may map private memory from the image
 * copy-on-write and names the image's file in `image_*`; the shim then
 * makes pages given back read zeros, as anonymous memory does (memory.c). */
#ifndef APPSHOT_SHIM_CANARY_H
#define APPSHOT_SHIM_CANARY_H

#include <stddef.h>
#include <stdint.h>

#define SHIM_CANARY_MAGIC 0x31544f4853505041ull /* "APPSHOT1" little-endian */
#define SHIM_CANARY_AID_MAX 256
#define SHIM_CANARY_HOME_MAX 3792
/* features: the shim answers for memory mapped from an image (memory.c). */
#define SHIM_CANARY_ZEROES 1u

struct shim_canary {
	/* 1 while this process's shim state is its own; 0 in a fork child
	 * (the kernel wiped the page) or after a restore. */
	volatile int32_t canary;
	uint32_t features; /* SHIM_CANARY_* */
	uint64_t magic;
	/* void shim_restored_entry(void): async-signal-safe. */
	uint64_t entry;
	/* 1: written by the restorer; 2 while the shim renews; 0 otherwise. */
	volatile uint32_t restored;
	/* Threads inside the shim's table code now (an LMDB transaction, the
	 * write lock, opening the tables; memory.c changing its ranges). A dumper that froze the process
	 * with this nonzero lets it run a moment and freezes it again: a
	 * thread stopped there would go on with its transaction in the
	 * restored process, whose tables are another process's. */
	volatile uint32_t in_tables;
	char aid[SHIM_CANARY_AID_MAX];   /* NUL-terminated */
	char home[SHIM_CANARY_HOME_MAX]; /* NUL-terminated, absolute */
	/* Written by a restorer that mapped private memory from its image:
	 * the image's file as /proc/PID/maps names it (all 0: copied). */
	uint32_t image_major, image_minor;
	uint64_t image_ino;
};

_Static_assert(offsetof(struct shim_canary, magic) == 8, "canary layout");
_Static_assert(offsetof(struct shim_canary, entry) == 16, "canary layout");
_Static_assert(offsetof(struct shim_canary, restored) == 24, "canary layout");
_Static_assert(offsetof(struct shim_canary, in_tables) == 28, "canary layout");
_Static_assert(offsetof(struct shim_canary, aid) == 32, "canary layout");
_Static_assert(offsetof(struct shim_canary, home) == 288, "canary layout");
_Static_assert(offsetof(struct shim_canary, features) == 4, "canary layout");
_Static_assert(offsetof(struct shim_canary, image_major) == 4080, "canary layout");
_Static_assert(offsetof(struct shim_canary, image_ino) == 4088, "canary layout");
_Static_assert(sizeof(struct shim_canary) == 4096, "one page");

#endif
