#include "home.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum kind { DIRECTORY, FOLDER, FILE_ };

/* One entry of the home: absent (allowed for all but the home itself), or
 * what it must be, the caller's, and (a directory) unwritable by others. */
static int check_entry(const char *path, enum kind kind, char *err, size_t errlen)
{
	struct stat st;
	/* The home may be reached through a link; nothing inside it may. */
	if ((kind == DIRECTORY ? stat(path, &st) : lstat(path, &st)) != 0) {
		if (errno == ENOENT && kind != DIRECTORY) return 0;
		int e = errno;
		snprintf(err, errlen, "cannot check %s: %s; set APPSHOT_HOME to a directory of your own", path,
			 e == EACCES ? "permission denied" : strerror(e));
		return e;
	}
	const char *what = kind == DIRECTORY ? "APPSHOT_HOME " : "";
	if (S_ISLNK(st.st_mode) || (kind == FILE_ ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))) {
		snprintf(err, errlen, "%s%s is %s; appshot follows no links in its home (someone may have planted it): remove it",
			 what, path, S_ISLNK(st.st_mode) ? "a symbolic link" : kind == FILE_ ? "not a regular file" : "not a directory");
		return EACCES;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s%s belongs to uid %u, not to this process's user (uid %u); set APPSHOT_HOME to a directory of your own",
			 what, path, (unsigned)st.st_uid, (unsigned)geteuid());
		return EACCES;
	}
	if (kind != FILE_ && (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(err, errlen, "%s%s (mode %04o) can be written by other users, who could plant links there; check what it holds and run 'chmod 700 %s'",
			 what, path, (unsigned)(st.st_mode & 07777), path);
		return EACCES;
	}
	return 0;
}

int home_check(const char *home, char *err, size_t errlen)
{
	static const struct { const char *name; enum kind kind; } inside[] = {
		{ "pools", FOLDER },
		{ "templates", FOLDER },
		{ "stops", FOLDER },
		{ APPSHOT_TABLES_FILE, FILE_ },
		{ APPSHOT_TABLES_FILE "-lock", FILE_ },
		{ APPSHOT_INFLIGHT_FILE, FILE_ },
		{ APPSHOT_OPEN_LOCK_FILE, FILE_ },
	};
	char path[4096];
	int rc = check_entry(home, DIRECTORY, err, errlen);
	for (size_t i = 0; !rc && i < sizeof inside / sizeof *inside; i++) {
		if (snprintf(path, sizeof path, "%s/%s", home, inside[i].name) >= (int)sizeof path) {
			snprintf(err, errlen, "APPSHOT_HOME %s is too long a path", home);
			return ENAMETOOLONG;
		}
		rc = check_entry(path, inside[i].kind, err, errlen);
	}
	return rc;
}
