/* The descriptors LMDB and the open lock use belong to the shim, but a
 * program may close every descriptor it did not open (daemons do). These
 * wrappers only count such calls, so the write path re-checks its
 * descriptors (two fstat calls) after one happened, not on every write. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"

#include <stdatomic.h>

_Atomic uint64_t shim_fd_epoch;

static void fds_may_have_changed(void)
{
	atomic_fetch_add_explicit(&shim_fd_epoch, 1, memory_order_relaxed);
}

SHIM_EXPORT int close(int fd)
{
	fds_may_have_changed();
	return REAL(close)(fd);
}

SHIM_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	fds_may_have_changed();
	return REAL(close_range)(first, last, flags);
}

SHIM_EXPORT void closefrom(int lowfd)
{
	fds_may_have_changed();
	REAL(closefrom)(lowfd);
}

SHIM_EXPORT int dup2(int oldfd, int newfd)
{
	fds_may_have_changed();
	return REAL(dup2)(oldfd, newfd);
}

SHIM_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	fds_may_have_changed();
	return REAL(dup3)(oldfd, newfd, flags);
}
