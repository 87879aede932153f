/* What the kernel says of a process, from /proc/<spid>/stat, read with
 * raw system calls: in a process under the shim, open translates /proc
 * paths as the application names processes. */
#ifndef APPSHOT_PROCINFO_H
#define APPSHOT_PROCINFO_H

#include <stdint.h>
#include <sys/types.h>

/* Its start time in clock ticks since boot (field 22), which tells a
 * process from a later one that got its number. Returns 0, or -1 if it
 * is gone. */
int proc_start_ticks(pid_t spid, uint64_t *ticks);

#endif
