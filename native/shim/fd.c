/* The descriptors LMDB and the open lock use belong to the shim, but a
 * program may close every descriptor it did not open (daemons do). These
 * wrappers count such calls, so the write path re-checks its descriptors
 * (a few fstat calls) after one happened, not on every write; and they
 * tell port.c which numbers no longer name a pool channel.
 *
 * The descriptors appshot keeps in the process (the application's
 * descriptors of the home's files, which a process that changed its user
 * cannot open again, and LMDB's; core/home.h) sit high and are guarded: to
 * the program they are numbers it does not have. close gives EBADF for
 * them, close_range and closefrom close around them, dup2 and dup3 onto
 * one first move the application's descriptor elsewhere (LMDB's are given
 * up and the tables opened again), and dup2 and dup3 from one give EBADF.
 * A listing of /proc/self/fd still shows them (it is not filtered): a
 * program that closes what it lists gets EBADF for them, as it would for
 * a descriptor another thread closed meanwhile. */
#define _GNU_SOURCE
#include "shim.h"
#include "../core/home.h"
#include "real.h"

#include <limits.h>
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
	if (appshot_fd_guarded(fd)) return shim_fail(EBADF);
	fds_may_have_changed((unsigned)fd, (unsigned)fd);
	return REAL(close)(fd);
}

/* close_range over first..last less the guarded descriptors; closefrom
 * (last == UINT_MAX, to_end) closes the open-ended rest with closefrom. */
static int close_around(unsigned first, unsigned last, int flags, int to_end)
{
	int guarded[32], n = appshot_fds_guarded_in(first, last, guarded, 32), rc = 0;
	unsigned from = first;
	for (int i = 0; i <= n; i++) {
		int end = i == n;
		unsigned to = end ? last : (unsigned)guarded[i] - 1;
		if (end && to_end) {
			REAL(closefrom)((int)from);
			break;
		}
		if (from <= to && (end || guarded[i] > 0) && REAL(close_range)(from, to, flags) && !rc) rc = -1;
		if (end || (unsigned)guarded[i] == UINT_MAX) break;
		from = (unsigned)guarded[i] + 1;
	}
	return rc;
}

WRAPPER(close_range)
{
	fds_may_have_changed(first, last);
	return close_around(first, last, flags, 0);
}

WRAPPER(closefrom)
{
	if (lowfd < 0) lowfd = 0;
	fds_may_have_changed((unsigned)lowfd, ~0u);
	close_around((unsigned)lowfd, UINT_MAX, 0, 1);
}

/* Before the program's dup2/dup3 onto newfd: a guarded newfd stops being
 * appshot's. 0, or -1 with errno when oldfd is appshot's. */
static int make_room(int oldfd, int newfd)
{
	if (appshot_fd_guarded(oldfd)) return shim_fail(EBADF);
	if (!appshot_fd_guarded(newfd)) return 0;
	struct home_fds *fds = shim_home_fds();
	if (!fds || home_fds_which(fds, newfd) < 0 || home_fds_move(fds, newfd) != 0) appshot_fd_unguard(newfd);
	struct tabledb *t = shim_tables_if_open();
	if (t) __atomic_store_n(&t->lost, 1, __ATOMIC_RELAXED);
	return 0;
}

WRAPPER(dup2)
{
	if (make_room(oldfd, newfd)) return -1;
	fds_may_have_changed((unsigned)newfd, (unsigned)newfd);
	return REAL(dup2)(oldfd, newfd);
}

WRAPPER(dup3)
{
	if (make_room(oldfd, newfd)) return -1;
	fds_may_have_changed((unsigned)newfd, (unsigned)newfd);
	return REAL(dup3)(oldfd, newfd, flags);
}
