/*
 * Anonymous-inode descriptors (fds_int.h). Early version: refused.
 */
#define _GNU_SOURCE
#include "fds_int.h"

int fds_describe_anon(struct fds_capture *c, struct fds_proc *p, int fd, const char *what, const struct stat *st, int flags,
		      const char *fdinfo, char *err, size_t errlen)
{
	(void)c, (void)st, (void)flags, (void)fdinfo;
	fds_err(err, errlen, "process %u (%s): descriptor %d is a %s, which a snapshot cannot capture; close it before the snapshot, or use --ipc-only",
		p->vpid, p->comm, fd, what);
	return -1;
}

int fds_make_other(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen)
{
	(void)r, (void)o;
	fds_err(err, errlen, "descriptor %d of the image is of a kind this restore does not know (%s)", i + 1, kind);
	return -1;
}

int fds_register_epolls(struct fds_restore *r, const cJSON *table, char *err, size_t errlen)
{
	(void)r, (void)table, (void)err, (void)errlen;
	return 0;
}
