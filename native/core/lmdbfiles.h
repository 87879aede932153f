/* Where LMDB's open() and close() go (core/lmdbfiles.c). */
#ifndef APPSHOT_LMDBFILES_H
#define APPSHOT_LMDBFILES_H

#include <sys/types.h>

int appshot_lmdb_open(const char *path, int flags, ...);
int appshot_lmdb_close(int fd);
/* Set by tabledb.c; NULL: plain open and close. */
extern int (*appshot_lmdb_open_route)(const char *path, int flags, mode_t mode);
extern void (*appshot_lmdb_close_route)(int fd);

#endif
