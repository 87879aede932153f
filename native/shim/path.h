/* Path redirection (path.c), for the files whose wrappers take paths too:
 * the open family (procview.c), the exec family (exec.c) and AF_UNIX
 * socket addresses (port.c). */
#ifndef APPSHOT_SHIM_PATH_H
#define APPSHOT_SHIM_PATH_H

#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* How many redirections this process's application has. Set once at
 * start, before main, and never changed: 0 (no redirections, or no
 * application) makes every path wrapper one predictable branch. */
extern size_t redirect_count;

int redirect_path_slow(const char **path, char *buf);
int redirect_path_at_slow(int dirfd, const char **path, char *buf);

/* A path that may name a process or thread by its PID: /proc/ and a
 * digit, or /proc/s (/proc/self/task/<tid>). A remapped application names
 * them by vpid there, the kernel by spid (pid_proc_path, pid.c). One or
 * two comparisons for most other paths. */
static inline int names_proc_pid(const char *p)
{
	return p && p[0] == '/' && p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c' && p[5] == '/' &&
	       ((p[6] >= '1' && p[6] <= '9') || p[6] == 's');
}

/* Points *path at the path the kernel must get: itself, or the redirected
 * path written into buf (PATH_MAX bytes), or /proc/<vpid>/... as
 * /proc/<spid>/... (there too). -1 with errno ENAMETOOLONG when the
 * redirected path would not fit, as the kernel would say of it. Every
 * wrapper that takes a path comes here: the one place for both. */
static inline int redirect_path(const char **path, char *buf)
{
	if (__builtin_expect(redirect_count == 0, 1) && !names_proc_pid(*path)) return 0;
	return redirect_path_slow(path, buf);
}

/* The same for a path relative to a directory descriptor (the *at calls). */
static inline int redirect_path_at(int dirfd, const char **path, char *buf)
{
	if (__builtin_expect(redirect_count == 0, 1) && !names_proc_pid(*path)) return 0;
	return redirect_path_at_slow(dirfd, path, buf);
}

/* In a wrapper: redirects its parameter p in place (through a buffer on
 * the wrapper's stack), or returns fail from the wrapper. */
#define REDIRECT(p, fail)                                                  \
	char p##_redirected[PATH_MAX];                                     \
	if (redirect_path(&(p), p##_redirected)) return (fail)
#define REDIRECT_AT(dirfd, p, fail)                                        \
	char p##_redirected[PATH_MAX];                                     \
	if (redirect_path_at((dirfd), &(p), p##_redirected)) return (fail)

/* At start: the application's redirections, read once from the tables;
 * none read when none says the starter had none (pid_read_start). */
void path_init(int none);
/* In a fork child, from the atfork handler: the working-directory record,
 * which a thread of the parent may have been writing, made again. */
void path_after_fork_child(void);
/* After a restore (process.c): the restored application's redirections. */
void path_restored(void);

/* --- AF_UNIX socket addresses (path.c, for port.c's bind and connect) --- */

int unix_redirect_slow(const struct sockaddr **addr, socklen_t *len, struct sockaddr_un *b);

/* A pathname AF_UNIX address under a redirection is rewritten into b (and
 * *len with it), so each instance of a program gets its own socket file.
 * -1 with errno set when the rewritten path does not fit in sun_path. */
static inline int unix_redirect(const struct sockaddr **addr, socklen_t *len, struct sockaddr_un *b)
{
	if (__builtin_expect(redirect_count == 0, 1) || !*addr || (*addr)->sa_family != AF_UNIX) return 0;
	return unix_redirect_slow(addr, len, b);
}

#endif
