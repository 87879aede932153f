#define _GNU_SOURCE
#include "tablespace.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What new tables write first: the two header pages and the pages of the
 * first commits (the named databases, the first applications' rows). */
#define DATA_RESERVE (256u * 1024u)
/* LMDB's lock file: a header smaller than a page, then one 64-byte reader
 * slot (a cache line) per reader. */
#define LOCK_RESERVE (APPSHOT_MAX_READERS * 64u + 64u * 1024u)
/* The inflight record is one small struct: a block holds it. */
#define INFLIGHT_RESERVE 4096u

static const struct {
	const char *name;
	off_t bytes;
	int keep_size; /* LMDB must find an empty file to set up as new */
} reserved[] = {
	{ APPSHOT_TABLES_FILE, DATA_RESERVE, 1 },
	{ APPSHOT_TABLES_FILE "-lock", LOCK_RESERVE, 1 },
	{ APPSHOT_INFLIGHT_FILE, INFLIGHT_RESERVE, 1 },
};
#define NRESERVED (sizeof reserved / sizeof *reserved)

static int file_path(char *path, size_t len, const char *home, const char *name)
{
	return snprintf(path, len, "%s/%s", home, name) >= (int)len ? ENAMETOOLONG : 0;
}

/* Allocates blocks for bytes of the file, leaving its size alone when asked. */
static int allocate(int fd, off_t bytes, int keep_size)
{
	int rc;
	while ((rc = fallocate(fd, keep_size ? FALLOC_FL_KEEP_SIZE : 0, 0, bytes)) != 0 && errno == EINTR)
		;
	if (rc == 0) return 0;
	/* A filesystem without fallocate: writing zeros allocates as surely.
	 * The data and lock files must stay empty, so they go unreserved. */
	if (errno != EOPNOTSUPP) return errno;
	return keep_size ? 0 : posix_fallocate(fd, 0, bytes);
}

/* Opens a file to reserve, making it if it is not there: *made says so. */
static int open_reserved(const char *path, int *made)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	*made = fd >= 0;
	if (fd < 0 && errno == EEXIST) fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	return fd;
}

/* Removes the files whose bit is set in made. */
static void remove_made(const char *home, unsigned made)
{
	char path[4096];
	for (size_t i = 0; i < NRESERVED; i++)
		if (made & (1u << i) && !file_path(path, sizeof path, home, reserved[i].name)) unlink(path);
}

int tabledb_reserve(const char *home, char *err, size_t errlen)
{
	char path[4096];
	unsigned made = 0;
	for (size_t i = 0; i < NRESERVED; i++) {
		int rc = file_path(path, sizeof path, home, reserved[i].name), fresh = 0;
		int fd = rc ? -1 : open_reserved(path, &fresh);
		if (!rc && fd < 0) rc = errno;
		made |= (unsigned)fresh << i;
		if (!rc) rc = allocate(fd, reserved[i].bytes, reserved[i].keep_size);
		if (fd >= 0) close(fd);
		if (rc) {
			off_t need = 0;
			for (size_t j = 0; j < NRESERVED; j++) need += reserved[j].bytes;
			snprintf(err, errlen, "cannot make new tables in %s: %s (new tables need %lld KiB to start)", home,
				 strerror(rc), (long long)need / 1024);
			remove_made(home, made);
			return rc;
		}
	}
	return 0;
}

void tabledb_unreserve(const char *home)
{
	remove_made(home, (1u << NRESERVED) - 1);
}
