/* The kernel's PID for LMDB, which native/CMakeLists.txt compiles with
 * getpid renamed to this: in a process under the shim getpid gives the
 * vpid, and LMDB marks its reader slots and lock file with the PID. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

pid_t appshot_kernel_getpid(void);

pid_t appshot_kernel_getpid(void) { return (pid_t)syscall(SYS_getpid); }
