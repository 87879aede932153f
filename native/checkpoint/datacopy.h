/*
 * Copying a process's pages into the image fast: the data is cut into
 * chunks that two threads copy at once, each straight from the process
 * (process_vm_readv) into the file's pages mapped shared (one copy, no
 * bounce buffer), with the file's space allocated ahead (fallocate: on
 * tmpfs, allocating page by page on write costs more than the copy). Each
 * chunk's checksum is its own; they are combined in order afterwards.
 */
#ifndef APPSHOT_CKPT_DATACOPY_H
#define APPSHOT_CKPT_DATACOPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mem.h"

/* Writes plan's runs of process pid to fd at [at, at + plan bytes);
 * *crc = crc32c(0, those bytes). 0 or -errno. */
int data_copy(pid_t pid, const struct mem_plan *plan, int fd, uint64_t at, uint32_t *crc);

#endif
