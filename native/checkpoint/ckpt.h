/*
 * appshot-checkpoint: the whole-process snapshot (dump) and restore of an
 * application's processes. What the parts share. The image layout is in
 * README "How it works" and ts/snapfile.ts (framing); see fds.h for the
 * descriptors, and native/shim/process.c for the page through which a
 * restored shim learns it was restored.
 */
#ifndef APPSHOT_CKPT_H
#define APPSHOT_CKPT_H

#include <stdint.h>
#include <sys/types.h>

struct tabledb;

/* The application a dump reads or a restore writes: NULL tables when the
 * tool runs alone on a plain process (tests of the engine). */
struct ckpt_ctx {
	const char *home;
	const char *aid;
	struct tabledb *tables;
	int identity; /* the application runs in identity mode */
};

/* Section kinds of the snapshot file, after ts/snapfile.ts SECTION. */
enum ckpt_section {
	CKPT_SECTION_FILES = 6,  /* JSON: every open file description, once */
	CKPT_SECTION_SHARED = 7, /* u32 JSON length, JSON, pad to a page, bytes */
	CKPT_SECTION_PROC = 8,   /* u32 JSON length, JSON, pad to a page, pages */
	CKPT_SECTION_END = 0xffff,
};

/* Exit codes of appshot-checkpoint, as ts/errors.ts EXIT. */
enum ckpt_exit { CKPT_EXIT_FAILURE = 1, CKPT_EXIT_USAGE = 2, CKPT_EXIT_REFUSED = 3 };

#endif
