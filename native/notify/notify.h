/* The supervisor's side of static and Go programs (issue 20).
 *
 * A program that does not load the shim (no PT_INTERP, or a Go program,
 * core/elfkind.h) is started through appshot-notify (loader.c), which
 * installs a seccomp filter whose SECCOMP_RET_USER_NOTIF calls the
 * supervisor of its application answers (serve.c), and hands it the
 * filter's listener over the supervisor's socket (APPSHOT_NOTIFY). The
 * calls are answered from outside the process, one file per family:
 * port.c (bind, connect, accept, getsockname, getpeername on the
 * program's socket, taken with pidfd_getfd), pid.c (getpid, getppid,
 * gettid, kill, tgkill, tkill), ipc.c (SysV IPC). The filter is the same
 * for every descendant of the program; a descendant that loads the shim
 * (a dynamic program it runs) keeps the in-process path: its calls are
 * let through as they are. */
#ifndef APPSHOT_NOTIFY_H
#define APPSHOT_NOTIFY_H

#include <stdint.h>

/* The environment variable naming the supervisor's socket (an abstract
 * Unix socket name, '@' for its leading zero byte). */
#define NOTIFY_ENV "APPSHOT_NOTIFY"
/* The loader's file name, beside the shim and the supervisor. */
#define NOTIFY_LOADER "appshot-notify"

/* What the supervisor asks the loader's filter to notify, as the first
 * byte it sends: the socket calls always; the PID calls only in a
 * remapped application (elsewhere vpid == spid: nothing to answer). */
#define NOTIFY_PIDS 1u
#define NOTIFY_IPC 2u
/* listen, in an application that publishes a port (APPSHOT_PUBLISH). */
#define NOTIFY_LISTEN 4u

/* Builds the filter for what (NOTIFY_*) into insns (room for max): the
 * number of instructions. */
struct sock_filter;
unsigned notify_filter(struct sock_filter *insns, unsigned max, unsigned what);

/* Starts the serving thread and its socket; sets NOTIFY_ENV in this
 * process's environment for the command. shim: the shim's path (a process
 * that maps it keeps the in-process path). 0, or -1 with a message printed
 * (the application then runs as before: static programs untranslated). */
int notify_start(const char *shim);

/* The supervisor's one handle of the application's tables, shared by its
 * threads (LMDB must not be opened twice in one process): NULL when they
 * cannot be opened. Every use between lock and unlock. */
struct tabledb;
struct tabledb *notify_tables_lock(void);
void notify_tables_unlock(void);
/* Closes them (opened again by the next notify_tables_lock). */
void notify_tables_close(void);

#endif
