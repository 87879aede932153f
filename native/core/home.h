/* The home rules of ts/home.ts, for the shim and the native tools. */
#ifndef APPSHOT_HOME_H
#define APPSHOT_HOME_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* appshot's own opens and stats of the home's paths (and LMDB's, routed):
 * raw system calls, never the shim's path wrappers, which a --redir
 * covering the home would point at other files, and which cost a program's
 * start a libc lookup each (issue 21). libc's convention: -1 and errno. */
int home_path_open(const char *path, int flags, mode_t mode);
/* stat, or with nofollow lstat. */
int home_path_stat(const char *path, struct stat *st, int nofollow);

/* Whether APPSHOT_HOME may be used by this process: the directory and its
 * folders (pools/, templates/) belong to the process's user and no one else
 * can write them, and its files (tables.mdb and its LMDB lock file, which
 * LMDB opens itself, following links; inflight; open.lock) are absent or
 * regular files of that user, not links. Whoever could
 * write there could plant links that make appshot write where they choose.
 * Returns 0, or EACCES with a sentence naming the path, the owner and the
 * fix in err. A handful of stat calls: run once per open of the tables. */
int home_check(const char *home, char *err, size_t errlen);
/* home_check for a process that opens the tables through the application's
 * descriptors (below): the home must be owner's, and what this process
 * cannot look at (it changed its user) passes. With dirs_only, only the
 * directory and its folders: the caller has just found each of the home's
 * files at its path to be the checked descriptor's (home_fds_adopt). */
int home_check_for(const char *home, uid_t owner, int dirs_only, char *err, size_t errlen);

#endif

/*
 * The home's descriptors. A process of an application may change its user
 * (setuid, setpriv, Apache's children): it can no longer open the home's
 * files, which stay its owner's alone. So the first process of the
 * application that opens them keeps them open, at high numbers and not
 * close-on-exec; fork children inherit them, and the exec wrappers name them
 * in the environment (HOME_FDS_ENV: "fd.dev.ino" for each, in enum order)
 * for the next program, which opens the tables through them after checking
 * that each still is the file it was (home_fds_adopt).
 */
enum { HOMEFD_DATA, HOMEFD_LOCK, HOMEFD_INFLIGHT, HOMEFD_OPENLOCK, HOMEFD_COUNT };
#define HOME_FDS_ENV "APPSHOT_HOME_FDS"

struct home_fds {
	uid_t owner; /* the files' */
	/* Set by home_fds_adopt: each file was just found at its path in the
	 * home and checked (issue 21: an exec'd program's start need not look
	 * at them twice). Its holder clears it once the tables are open. */
	int fresh;
	int fd[HOMEFD_COUNT];
	dev_t dev[HOMEFD_COUNT];
	ino_t ino[HOMEFD_COUNT];
};

/* The file's name in the home (tables.mdb, tables.mdb-lock, ...). */
const char *home_fd_name(int which);
/* Opens the home's files by path (call after home_check), as high,
 * inheritable descriptors that appshot_fd_guarded answers for. */
int home_fds_open(struct home_fds *h, const char *home, char *err, size_t errlen);
/* Takes the descriptors HOME_FDS_ENV names: each must still be the file
 * (device and inode) the value says, a regular file of the home's owner
 * that no one else can write, and, where this process can still look into
 * the home, the very file there. 0, or an errno and a sentence in err. */
int home_fds_adopt(struct home_fds *h, const char *home, const char *spec, char *err, size_t errlen);
/* "fd.dev.ino:..." into buf; the length, or 0 if it does not fit. */
size_t home_fds_format(const struct home_fds *h, char *buf, size_t len);
/* Whether each of h's descriptors still is its file (the program may have
 * closed one past the wrappers, with a raw system call). */
int home_fds_valid(const struct home_fds *h);
/* Gives h's descriptors up: closes those that still are their files and
 * stops guarding every number (the others are the program's now). */
void home_fds_release(struct home_fds *h);
/* The index of fd among h's, or -1. */
int home_fds_which(const struct home_fds *h, int fd);
/* Moves h's descriptor fd to another high number (the program is about to
 * take fd with dup2): 0, or -1 when no number was to be had. */
int home_fds_move(struct home_fds *h, int fd);

/*
 * Descriptors appshot keeps in a program's process (the home's, LMDB's).
 * With appshot_fd_band set (the shim sets it), appshot_fd_high moves a
 * descriptor to the top of the descriptor table, where a program's own
 * open calls do not reach (they take the lowest free number), and guards
 * it: fd.c then keeps the program's close, close_range, closefrom, dup2
 * and dup3 away from it.
 */
extern int appshot_fd_band;
/* fd at a high number (fd itself if none is free or no band is set), the
 * old number closed; guarded. */
int appshot_fd_high(int fd, int cloexec);
/* A close-on-exec duplicate of fd, straight at a high number (any number
 * if none is free there); guarded when a band is set. -1 with errno. */
int appshot_fd_dup_high(int fd);
void appshot_fd_guard(int fd);
void appshot_fd_unguard(int fd);
int appshot_fd_guarded(int fd);
/* The guarded descriptors in first..last, ascending, into out (up to max);
 * the count. */
int appshot_fds_guarded_in(unsigned first, unsigned last, int *out, int max);
