/*
 * Copying a process's pages into the image fast: the data is cut into
 * 1 MB chunks that two threads copy at once, each read from the process
 * (process_vm_readv) into a buffer, checksummed while in the cache, and
 * written where the file's space was allocated just before (fallocate: on
 * tmpfs, allocating page by page on write costs more than the copy; mapping
 * the file and reading into it measured slower, mmap/munmap per chunk).
 * Each chunk's checksum is its own; they are combined in order afterwards.
 */
#ifndef APPSHOT_CKPT_DATACOPY_H
#define APPSHOT_CKPT_DATACOPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mem.h"

/* Writes plan's runs of process pid to fd at [at, at + plan bytes);
 * *crc = crc32c(0, those bytes). With staged (data_stage's copy) the bytes
 * come from there instead of the process. 0 or -errno. */
int data_copy(pid_t pid, const struct mem_plan *plan, const char *staged, int fd, uint64_t at, uint32_t *crc);

/* Copies plan's runs of process pid into fresh memory of this process
 * (*out, *len bytes, munmap it; NULL when there are none), so that the
 * process can go on before the file is written: that takes a copy into
 * memory with huge pages, not the file system's page allocation and the
 * checksums. 0 or -errno. */
int data_stage(pid_t pid, const struct mem_plan *plan, char **out, uint64_t *len);

#endif
