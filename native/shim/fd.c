/* The descriptors LMDB and the open lock use belong to the shim, but a
 * program may close every descriptor it did not open (daemons do). These
 * wrappers only count such calls, so the write path re-checks its
 * descriptors (two fstat calls) after one happened, not on every write;
 * and they tell port.c which numbers no longer name a pool channel. */
#define _GNU_SOURCE
#include "shim.h"
#include "real.h"

#include <stdatomic.h>

_Atomic uint64_t shim_fd_epoch;

void port_fds_closed(unsigned first, unsigned last);

/* first..last closed or about to name something else. */
static void fds_may_have_changed(unsigned first, unsigned last)
{
	atomic_fetch_add_explicit(&shim_fd_epoch, 1, memory_order_relaxed);
	port_fds_closed(first, last);
}

WRAPPER(close)
{
	fds_may_have_changed((unsigned)fd, (unsigned)fd);
	return REAL(close)(fd);
}

WRAPPER(close_range)
{
	fds_may_have_changed(first, last);
	return REAL(close_range)(first, last, flags);
}

WRAPPER(closefrom)
{
	fds_may_have_changed((unsigned)lowfd, ~0u);
	REAL(closefrom)(lowfd);
}

WRAPPER(dup2)
{
	fds_may_have_changed((unsigned)newfd, (unsigned)newfd);
	return REAL(dup2)(oldfd, newfd);
}

WRAPPER(dup3)
{
	fds_may_have_changed((unsigned)newfd, (unsigned)newfd);
	return REAL(dup3)(oldfd, newfd, flags);
}
