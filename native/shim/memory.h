/* Private memory mapped from a snapshot's image (memory.c): in a process
 * restored with its pages mapped copy-on-write from the image, madvise and
 * mremap answer as they would over the anonymous memory it was. */
#ifndef APPSHOT_SHIM_MEMORY_H
#define APPSHOT_SHIM_MEMORY_H

#include <stdint.h>

/* From shim_restored_entry: the image's file as /proc/self/maps names it
 * (ino 0: memory was copied, nothing to answer for), and the filter that
 * traps the calls installed. Async-signal-safe. 0, or -1 when the filter
 * could not be installed. */
int memory_restored_entry(uint32_t major, uint32_t minor, uint64_t ino);

/* A trapped madvise (MADV_DONTNEED, MADV_FREE, MADV_DONTNEED_LOCKED) or
 * mremap, completed; the kernel's answer (a result or -errno). Runs in the
 * SIGSYS handler, perhaps inside malloc: system calls only. */
long memory_trapped(long nr, const long a[6]);

#endif
