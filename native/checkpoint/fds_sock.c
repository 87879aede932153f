/*
 * Sockets (fds_int.h). Early version: every socket is refused.
 */
#define _GNU_SOURCE
#include "fds_int.h"

int fds_describe_socket(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
			const char *fdinfo, char *err, size_t errlen)
{
	(void)c, (void)st, (void)flags, (void)fdinfo;
	fds_err(err, errlen, "process %u (%s): descriptor %d is a socket, which this snapshot cannot capture yet; close it before the snapshot, or use --ipc-only",
		p->vpid, p->comm, fd);
	return -1;
}
