/*
 * A process's memory in the image. Each mapping of /proc/PID/smaps is
 * described by kind:
 *   anon    private anonymous memory (incl. [heap]), and private mappings of
 *           deleted files or of appshot images, stored whole
 *   stack   the [stack] (grows down): made anonymous with MAP_GROWSDOWN
 *   file    a private file mapping: the file by path and identity, plus
 *           the pages the process wrote (anonymous, per pagemap)
 *   shared  a shared mapping of a file, by path and identity
 *   shm     shared memory with no name left (shared anonymous, memfd, a
 *           deleted file): its object in a SHARED section (shared.h)
 *   sysv    a SysV segment attached (its bytes are the IPC sections'):
 *           attached again at the same address to the restored segment
 *   vdso, vvar, vvar_vclock, vsyscall: the kernel's own
 * Stored pages are runs [first page, count, data page] into the data that
 * follows the process's JSON in its PROC section, page-aligned in the file.
 */
#ifndef APPSHOT_CKPT_MEM_H
#define APPSHOT_CKPT_MEM_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"
#include "image.h"
#include "inject.h"
#include "shared.h"

/* The bytes to copy, in data order. */
struct mem_run {
	uint64_t addr, len;
};
struct mem_plan {
	struct mem_run *runs;
	size_t n, cap;
	uint64_t pages; /* data pages so far */
};

/* Dump: the mappings of stopped process pid, as JSON, with the runs to
 * store appended to plan. NULL with err set to a refusal (a mapping that
 * cannot be captured). */
cJSON *mem_capture(pid_t pid, struct mem_plan *plan, struct shared_set *shared, const struct ckpt_ctx *ctx, char *err, size_t errlen);
/* Copies the plan's runs from pid (or from staged, their copy made by
 * data_stage) into the data section. 0 or -errno. */
int mem_write_data(pid_t pid, const struct mem_plan *plan, const char *staged, struct img_writer *w, struct img_data *d);
void mem_plan_free(struct mem_plan *plan);

/* The shim's canary page in process pid (0: none), see canary.h. */
uint64_t mem_find_canary(pid_t pid);

/* Restore: checks that every file a mapping names is still the one it was
 * (size, mtime; inode on the same device). 0, or -1 with err naming it. */
int mem_check_files(const cJSON *mappings, char *err, size_t errlen);
/* The saved [vdso] must be this kernel's: same size and contents. */
int mem_check_vdso(const cJSON *p, char *err, size_t errlen);
/* Adds the vdso's identity to a dumped process's JSON. */
void mem_note_vdso(pid_t pid, cJSON *p);

/* In the stub (in->tid, the main thread, stopped with the gadget at keep):
 * removes the stub's own memory but [keep, keep + keep_len) and the
 * kernel's mappings, moves the vDSO to its saved place, and makes every
 * saved mapping: stored pages copied from the image (stub_image_fd, the
 * image's descriptor in the stub; data at data_at) into fresh anonymous
 * memory, or with map_pages private anonymous ones mapped straight from it
 * (copy-on-write: fast; only for a process whose shim makes pages given
 * back read zeros there, canary_zeroes), *mapped_at then one address so
 * mapped (0: none); shared objects from the memfds shm_fds names by id
 * (inherited from us). */
int mem_restore(struct inj *in, const cJSON *mappings, uint64_t keep, uint64_t keep_len, int stub_image_fd, uint64_t data_at, int map_pages, const cJSON *shm_fds,
		uint64_t *mapped_at, char *err, size_t errlen);

/* Every saved range, for choosing a place free in all of them. */
int mem_overlaps(const cJSON *mappings, uint64_t start, uint64_t end);

#endif
