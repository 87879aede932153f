/*
 * Memory shared between mappings through an object with no name left:
 * shared anonymous memory (/dev/zero (deleted)), memfds, deleted files
 * mapped shared. Each object is captured once (a SHARED section: JSON
 * {id, name, size}, then its bytes) however many processes map it, and made
 * again once on restore as a memfd that every stub maps MAP_SHARED.
 */
#ifndef APPSHOT_CKPT_SHARED_H
#define APPSHOT_CKPT_SHARED_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

struct shared_set;
struct shared_set *shared_new(void);
/* The object a shared mapping of pid shows (device, inode from its maps
 * line): registered once; its id for the mapping's JSON. */
const char *shared_note(struct shared_set *s, pid_t pid, uint64_t start, uint64_t end, uint64_t offset, unsigned major, unsigned minor, uint64_t ino,
			const char *path);
/* One SHARED section per object. 0 or -errno. */
int shared_write(struct shared_set *s, struct img_writer *w);
void shared_free(struct shared_set *s);

/* Restore: the object of a SHARED section as a new memfd at a descriptor
 * >= min_fd, its number added to fds under the object's id. 0, or -1 with
 * err set. */
int shared_make(int image_fd, const struct img_section *sec, int min_fd, cJSON *fds, char *err, size_t errlen);

#endif
