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
/* Whether spid has ended: gone, or a zombie its parent has not reaped
 * (which kill(spid, 0) still finds). */
int proc_ended(pid_t spid);
/* Its parent's kernel PID (field 4), or -1 if it is gone. */
pid_t proc_parent(pid_t spid);
/* The kernel PID of the process tracing thread tid (/proc/<tid>/status,
 * TracerPid), 0 if none, -1 if it is gone. */
pid_t proc_tracer(pid_t tid);

/* Calls fn once for each attachment of a SysV segment the process holds,
 * with the segment's ID and whether its first part is writable: the kernel
 * names such a mapping in /proc/<spid>/maps by the segment's ID, in the
 * inode column. A mapping that mprotect split shows more than once, so
 * only the part at offset 0 counts. The one reading of maps for attachments,
 * C's and (through the addon) Node's. -1 if the process is gone. */
typedef void proc_shm_fn(void *arg, uint32_t shmid, int writable);
int proc_shm_each(pid_t spid, proc_shm_fn *fn, void *arg);
/* How many attachments of segment shmid the process holds (0 if it is gone). */
unsigned proc_shm_attachments(pid_t spid, uint32_t shmid);

#endif
