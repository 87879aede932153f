/* The kernel's PID for LMDB, which native/CMakeLists.txt compiles with
 * getpid renamed to this: in a process under the shim getpid gives the
 * vpid, and LMDB marks its reader slots and lock file with the PID. Made by
 * appshot's own instruction (rawcall.h): a getpid through libc is trapped
 * and translated like a program's. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/types.h>
#include "rawcall.h"

pid_t appshot_kernel_getpid(void);

pid_t appshot_kernel_getpid(void) { return (pid_t)raw_call(SYS_getpid); }
