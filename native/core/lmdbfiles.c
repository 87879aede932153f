/* LMDB's open() and close(), which native/CMakeLists.txt renames to these
 * in mdb.c: tabledb.c routes them (core/tabledb.h) so that a process that
 * changed its user opens the tables from its application's descriptors
 * (core/home.h) and the shim places LMDB's descriptors out of the
 * program's way. Unrouted (the addon, the tools), they are open and close. */
#define _GNU_SOURCE
#include "lmdbfiles.h"

#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

int (*appshot_lmdb_open_route)(const char *path, int flags, mode_t mode);
void (*appshot_lmdb_close_route)(int fd);

int appshot_lmdb_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	/* Close-on-exec always: a process that keeps the tables open (the
	 * supervisor) must not hand them to the programs it starts. */
	return appshot_lmdb_open_route ? appshot_lmdb_open_route(path, flags, mode) : open(path, flags | O_CLOEXEC, mode);
}

int appshot_lmdb_close(int fd)
{
	if (appshot_lmdb_close_route) {
		appshot_lmdb_close_route(fd);
		return 0;
	}
	return close(fd);
}
