/*
 * The inflight record: every kernel object is created while its creator
 * holds the LMDB write lock, and the creator fills this record (a small
 * shared file beside the tables) before the kernel call and clears it after
 * the commit. Whoever next holds the write lock and finds the record of a
 * creator that is gone removes the object that creator may have left
 * unmapped, so a SIGKILL between the kernel call and the commit leaks
 * nothing.
 */
#ifndef APPSHOT_INFLIGHT_H
#define APPSHOT_INFLIGHT_H

#include <stdint.h>
#include <sys/types.h>
#include "sysv.h"

typedef int (*is_mapped_fn)(void *ctx, uint8_t type, uint32_t srid);

struct inflight_file {
	struct inflight_rec *rec;
	uint64_t token;
};

int inflight_open(struct inflight_file *f, const char *home);
/* The record from a descriptor of the file (core/home.h), which stays open. */
int inflight_map_fd(struct inflight_file *f, int fd);
void inflight_close(struct inflight_file *f);
/* Makes the file's first len bytes blocks on disk (no hole), unless they are. */
int inflight_reserve(int fd, off_t len);
void inflight_begin(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type, uint32_t skey);
void inflight_created(struct inflight_file *f, uint32_t srid);
void inflight_clear(struct inflight_file *f);
/* Call with the write lock held. Returns the number of objects removed,
 * writing a line about each into report. */
/* The object a creator that died while creating may have left unmapped:
 * its ID when it was created (created, srid), else the fresh unused object
 * under skey, or the one such private object; -1 if none or mapped. */
int inflight_orphan(const struct kernel_ops *k, uint8_t type, uint32_t skey, uint64_t started_s, int created,
		    uint32_t srid, is_mapped_fn mapped, void *ctx);
/* The private objects of type created in [from_s, to_s], never used and
 * not mapped: how many, the first max of them in ids. */
int inflight_fresh_private(const struct kernel_ops *k, uint8_t type, uint64_t from_s, uint64_t to_s, is_mapped_fn mapped,
			   void *ctx, int *ids, int max);
int inflight_recover(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped,
		     void *ctx, char *report, size_t reportlen);

#endif
