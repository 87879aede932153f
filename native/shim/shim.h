/* What every resource family of the shim shares: the process's link to its
 * application (process.c) and translation through the tables (translate.c). */
#ifndef APPSHOT_SHIM_H
#define APPSHOT_SHIM_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include "../core/tabledb.h"
#include "../core/inflight.h"
#include "../core/journal.h"

/* The wrappers are the only symbols the shim exports; LMDB and the core stay
 * hidden so they never interpose on a program's own copy. */
#define SHIM_EXPORT __attribute__((visibility("default")))

/* The code of a translated call the program may make at a high rate
 * (msgsnd, msgrcv): the compiler puts it in .text.hot, next to each
 * other, so such a call runs on one or two pages of the shim's text, not
 * one per file: in a VM each page is a TLB miss after the system call
 * before. */
#define SHIM_HOT __attribute__((hot))

/* A large array a program's start does not write (the thread list, the
 * memory ranges, what a restore keeps): shim/cold.ld puts these apart from
 * the shim's other variables, which then share a few pages that the start
 * maps in one call (shim_init) instead of a fault each (issue 21). */
#define SHIM_COLD __attribute__((section(".bss.appshot_cold")))

/* The page boundaries around an address. */
static inline uintptr_t page_down(uintptr_t a) { return a & ~(uintptr_t)4095; }
static inline uintptr_t page_up(uintptr_t a) { return page_down(a + 4095); }

/* Nonzero when this process belongs to an application (APPSHOT_AID set). */
extern int shim_active;

/* This process's kernel PID (getpid gives the vpid), kept current across
 * fork by the atfork handler. */
extern pid_t shim_pid;

/* The tables this process uses; after fork the child opens its own. A
 * program whose start left them for later (process.c, tables_deferred)
 * opens them here, at the first call that needs them. */
struct tabledb *shim_tables(void);
/* The same without opening: NULL while they are left for later. */
struct tabledb *shim_tables_if_open(void);
int shim_tables_deferred(void);
/* The deferred opening, under translate.c's lock: 1 if this call opened. */
int translate_open_deferred(void);
/* APPSHOT_HOME: the tables, and the pools' sockets (core/pool.h). */
const char *shim_home(void);
struct inflight_file *shim_inflight(void);
/* The home's journal of new objects (core/journal.h), set to this application. */
struct journal *shim_journal(void);
/* The application's descriptors of the home's files (core/home.h), or NULL. */
struct home_fds *shim_home_fds(void);
extern struct kernel_ops shim_kernel;

/* In the child of a fork libc did not make (a raw system call), does what
 * the atfork handler does; a load and a branch otherwise. */
void shim_check_fork(void);
/* shim_check_fork before a use of the tables: after a restore, also waits
 * while another thread renews them. */
void shim_check_tables(void);

/* Called by a restorer in a restored process (canary.h). */
SHIM_EXPORT void shim_restored_entry(void);
/* On a slow path of a thread: makes its per-thread state reachable by
 * shim_restored_entry (process.c). */
void shim_thread_seen(void);
/* translate.c's part of a restore: a thread's cache emptied (tp its thread
 * pointer, my_tp the caller's); the tables reopened by reopen under the lock. */
void translate_forget_thread(uintptr_t tp, uintptr_t my_tp);
void translate_restored(void (*reopen)(void));

/* Around every use of the tables (translate.c): counted on the canary
 * page (canary.h in_tables), where a dumper looks before it captures. */
void shim_tables_enter(void);
void shim_tables_leave(void);

/* Opens (or, in a fork child, reopens) this process's tables; fatal on failure. */
void shim_open_tables(void);
/* Called by shim_open_tables: the descriptors it just opened need no check
 * before the first read (translate.c checks them again once the program
 * may have closed one: shim_fd_epoch). */
void translate_tables_opened(void);

/* Prints "appshot: <message>" on stderr and ends the process: a program of
 * an application must not go on running untranslated. */
__attribute__((noreturn, format(printf, 1, 2))) void shim_fatal(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void shim_warn(const char *fmt, ...);

/* Fault injection for the crash tests: APPSHOT_FAULT=after-create kills the
 * process right after the kernel created an object and before the tables
 * recorded it, the window the inflight record exists for; after-spawn stops
 * a posix_spawn's caller before it writes the child's row. */
enum shim_fault { FAULT_NONE, FAULT_AFTER_CREATE, FAULT_AFTER_SPAWN };
extern enum shim_fault shim_fault;
void shim_fault_point(enum shim_fault where);

/* Bumped by every call that may close a descriptor (fd.c). */
extern _Atomic uint64_t shim_fd_epoch;

/* Fails a wrapped call with err, as the kernel would. */
static inline int shim_fail(int err)
{
	errno = err;
	return -1;
}

/* Virtual to system (FIG. 12) and system to virtual (FIG. 13) for this
 * application. Return 0 when a mapping exists, -1 when none does. */
int vr_to_sr(uint8_t type, uint32_t vrid, uint32_t *srid);
int sr_to_vr(uint8_t type, uint32_t srid, uint32_t *vrid);
/* vr_to_sr from LMDB alone: neither the cache nor the journal. */
int vr_to_sr_tables(uint8_t type, uint32_t vrid, uint32_t *srid);
/* sr_to_vr from the cache alone: what a signal handler may use. */
int sr_to_vr_cached(uint8_t type, uint32_t srid, uint32_t *vrid);
/* The system key recorded with an object (its fwd row's skey), cached like
 * the translations: shmdt asks it on every detach. */
int vr_to_skey(uint8_t type, uint32_t vrid, uint32_t *skey);
/* Whether vrid maps a template's shared segment (a clone's row with
 * creator CREATOR_TEMPLATE), cached like the translations. */
int vr_is_template(uint8_t type, uint32_t vrid);

/* Runs fn inside one read transaction of this process's tables. */
int with_read_txn(int (*fn)(MDB_txn *txn, void *arg), void *arg);
/* Whether this thread is inside the table code now (a wrapper reached from
 * LMDB's own libc calls): no translation may read the tables then. */
int shim_in_tables(void);

/* Allocation (FIG. 11) happens inside a write transaction, which also
 * serializes every creator on the host and recovers what a dead one left. */
MDB_txn *write_begin(void);
/* A write of no SysV object's row (a process's, a counter), or of an
 * object's row that is LMDB's alone (an IPC_RMID the journal has no row
 * for): the journal's rows stay in the journal. Folded by a fork's or a
 * reap's row, they made the removal of each of them an LMDB commit of its
 * own. */
MDB_txn *write_begin_unfolded(void);
int write_commit(MDB_txn *txn);
void write_abort(MDB_txn *txn);

/* Reserves up to n remapped vrids of type from the application's counter
 * (*count of them from *first), in a transaction of their own: 0 or -1. */
int vrids_reserve(uint8_t type, uint32_t n, uint32_t *first, uint32_t *count);
/* Reserves n to most remapped vrids of type (tabledb_reserve_block says
 * how many) for the block the application's processes share in the
 * journal, unless it has some (given while this process waited for the
 * write lock): 0 or -1. */
int journal_vrids_reserve(uint8_t type, uint32_t n, uint32_t most);
/* Remapped vrids a process reserved from its application's counter, a
 * block at a time (one transaction for many), handed out one by one. Each
 * lives on the after-fork page: a fork child starts with none. */
struct vrid_block {
	pthread_mutex_t lock;
	uint32_t next, left;
};
#define VRID_BLOCK_INIT { PTHREAD_MUTEX_INITIALIZER, 0, 0 }
/* The next of type's vrids from b, reserving n more when it is empty; 0
 * when the tables cannot be written. */
uint32_t vrid_block_take(struct vrid_block *b, uint8_t type, uint32_t n);

#endif
