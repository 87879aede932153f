/* Table access shared by the shim and the native tools: the LMDB
 * environment, forward and reverse translations, allocation counters. */
#ifndef APPSHOT_TABLES_H
#define APPSHOT_TABLES_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include "lmdb.h"
#include "../../tables/schema.h"

/* tabledb_rev() answers: the srid is mapped to this AID, to another, or not at all. */
enum { REV_MINE = 0, REV_NONE = 1, REV_FOREIGN = 2 };

struct tabledb {
	/* In LMDB's heap, which a fork child and a restored process find
	 * empty (core/lmdbheap.h): they use none of it, this handle's other
	 * fields only, and open their own environment. */
	MDB_env *env;
	/* tabledb_txnid's word, kept here when the environment opens: what a
	 * fork child reads until it opens its own (NULL: no lock region). */
	const uint64_t *txnid_at;
	MDB_dbi meta, apps, fwd, rev, alloc, procs, paths;
	int has_paths; /* 0 in tables written before the paths database */
	uint32_t node;
	uint16_t app_flags;
	char aid[APPSHOT_AID_MAX + 1];
	size_t aidlen;
	char path[4096];
	dev_t data_dev; /* what the data file descriptor must still be */
	ino_t data_ino;
	int lock_fd;    /* APPSHOT_OPEN_LOCK_FILE: this process's own, or shared */
	dev_t lock_dev;
	ino_t lock_ino;
	/* lock_fd is the application's descriptor of the open lock, one open
	 * file that processes share (core/home.h): flock on it is the whole
	 * file's, so its users take turns through a record lock first. */
	int lock_shared;
	/* Set while the environment is opened through the application's
	 * descriptors: LMDB's open then takes a duplicate of them. */
	const struct home_fds *through;
	/* LMDB's descriptors of this environment, and what they must be. */
	int env_fd[4];
	dev_t env_dev[4];
	ino_t env_ino[4];
	int env_fds;
	int env_lock_fd; /* LMDB's lock file among them; 0 until opened */
	/* Set when the program took one of the application's descriptors
	 * (dup2 onto its number): the process's record locks on the lock
	 * file went with it, so the environment must be opened again. */
	int lost;
	/* Set when the environment was opened through the application's
	 * descriptors: dead processes' reader slots are cleared at the first
	 * write (tabledb_check_readers), not at every program's start. */
	int readers_unchecked;
};

/* Clears the reader slots of dead processes (killed inside a read
 * transaction, they pin old pages) if this environment has not done so
 * since it was opened. Call with the write lock held (tabledb_write_lock). */
void tabledb_check_readers(struct tabledb *t);

/* Opens APPSHOT_HOME/tables.mdb and checks that aid is registered and
 * running. On failure returns an errno-like code and writes a sentence
 * naming the path and the cause into err. */
int tabledb_open(struct tabledb *t, const char *home, const char *aid,
		char *err, size_t errlen);
/* What tabledb_open does before it looks at an application: opens the
 * environment exactly as every opener must (flags, map size, limits, under
 * the open lock) with its named databases, and checks the schema version.
 * t->aid is left empty; tools that write other applications' rows set it. */
int tabledb_open_env(struct tabledb *t, const char *home, char *err, size_t errlen);
/* tabledb_open through the application's descriptors of the home's files
 * (core/home.h) rather than by path: what a process that changed its user,
 * or a fork child, does. checked: also checks the files and takes the open
 * lock as tabledb_open does (the process that opened fds by path). Without,
 * nothing waits for anyone: the files are those an ancestor checked, and
 * this LMDB's open never moves the shared transaction id backwards
 * (native/CMakeLists.txt), so it needs no open lock. */
struct home_fds;
int tabledb_open_fds(struct tabledb *t, const char *home, const char *aid, const struct home_fds *fds,
		     int checked, char *err, size_t errlen);
/* Closes LMDB's descriptors of an environment this process will not use
 * (its fork parent's, or one whose descriptors the program took), where
 * they still are the files; the environment itself is left alone. */
void tabledb_forget_fds(struct tabledb *t);
/* In a fork child, before any write: the write lock's thread lock. */
void tabledb_after_fork_child(void);

/* Closes the environment and this process's open-lock descriptor. */
void tabledb_close(struct tabledb *t);

/* The id of the last committed write transaction, as a read transaction
 * begun after this call sees at least: one load from the lock region that
 * tells a cache whether anything changed since it was filled. */
uint64_t tabledb_txnid(const struct tabledb *t);
/* Where tabledb_txnid reads it, for a caller that keeps the address (the
 * shim's translation cache: one load instead of three, on three pages):
 * fixed while t is open; NULL when LMDB keeps no lock region. */
const uint64_t *tabledb_txnid_word(const struct tabledb *t);

/*
 * The open lock. The lmdb package's LMDB stores the transaction id it read
 * while opening an environment into the shared lock region without taking
 * the write lock, so an open that overlaps another process's commit moves
 * that id backwards and the next writer reuses a committed id (LMDB then
 * fails every write with MDB_PROBLEM, or worse). Every opener, C or Node,
 * holds APPSHOT_OPEN_LOCK_FILE exclusively (flock) across the open, and
 * every write transaction holds it shared, so the two never overlap.
 * tabledb_open takes it itself; writers call these around their txn.
 */
int tabledb_write_lock(struct tabledb *t); /* call tabledb_fds_ok first */
void tabledb_write_unlock(struct tabledb *t);
/* The thread (kernel TID) that holds LMDB's write mutex now, or 0 if none
 * (or unknown): one read of the lock file, no lock taken. Only a hint (it
 * may let go the next instant), for a caller that must not wait for a
 * holder it keeps stopped (the shim's tracer case, shim/pid.c). */
pid_t tabledb_write_holder(const struct tabledb *t);
/* The open lock's descriptor t owns, closed: in a fork child, the copy of
 * its parent's (closing it leaves the parent's lock alone). t keeps the
 * number: a child never uses its parent's handle again (it opens its own),
 * and a write to it would copy the handle's page from the parent. */
void tabledb_close_lock(const struct tabledb *t);
/* The same, and t forgets the number. */
void tabledb_forget_lock(struct tabledb *t);

/* Whether LMDB's data descriptor and the open lock's are still the files
 * they were. A daemon that closes every descriptor takes them away, and the
 * numbers may since name files of the program's: LMDB must never write
 * through them then. */
int tabledb_fds_ok(const struct tabledb *t);

int tabledb_fwd(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid,
	       struct fwd_val *out);
int tabledb_rev(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid,
	       uint32_t *vrid);
/* tabledb_rev as the application sees it: also REV_MINE for a template's
 * shared segment it maps (the reverse row is the template's, under the
 * vrid every clone maps it at, and the application's own row for that
 * vrid has creator CREATOR_TEMPLATE). */
int tabledb_rev_seen(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid, uint32_t *vrid);
/* Maps a new object in both directions, choosing its vrid: identity first
 * (vrid = srid when that vrid is free in this application), else the next
 * remapped one. A reverse row already held for that srid is stale (the
 * kernel only hands out a free ID), so its owner's forward row goes first. */
int tabledb_map_new(const struct tabledb *t, MDB_txn *txn, uint8_t type, const struct fwd_val *v,
		   uint32_t *vrid);
/* Maps an object in both directions at the vrid the caller gives (a
 * restored object's saved one, a fork child's reserved vpid): MDB_KEYEXIST,
 * and nothing written, when the application maps that vrid already. The
 * reverse row is taken over as tabledb_map_new does. */
int tabledb_map_at(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, const struct fwd_val *fv);
/* Maps vrid to the object in both directions, replacing a mapping of the
 * vrid the application had (a stale one: the caller knows): a folded row
 * of the journal (core/journal.h). */
int tabledb_map_over(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, const struct fwd_val *fv);
/* Reads and drops the mapping of an object that is known to be ours (its
 * reverse row too), returning the row as it was. */
int tabledb_take(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, struct fwd_val *out);
/* Drops a mapping whose system object is known to be ours. */
int tabledb_unmap_row(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid);
/* Drops a mapping, and its reverse row if that still points back. */
int tabledb_unmap(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid);
/* Reserves a system key for the application's virtual key vkey, host-wide,
 * by writing its reverse row: vkey itself when identity is asked and no one
 * holds it, else the next free remapped key. */
int tabledb_claim_skey(const struct tabledb *t, MDB_txn *txn, uint8_t keytype, uint32_t vkey,
		      int identity, uint32_t *skey);
/* Claims srid host-wide for this application's vrid by writing its reverse
 * row: 0, or MDB_KEYEXIST when someone holds it. tabledb_release drops a
 * reverse row. */
int tabledb_claim(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid);
int tabledb_release(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid);
int tabledb_put_fwd(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid,
		   const struct fwd_val *fv);
/* Calls fn with each row of this AID and type, in vrid order, in one
 * cursor walk, until fn returns nonzero (which is then returned); 0 at the
 * end of the rows. */
typedef int tabledb_row_fn(void *arg, uint32_t vrid, const struct fwd_val *row);
int tabledb_each(const struct tabledb *t, MDB_txn *txn, uint8_t type, tabledb_row_fn *fn, void *arg);
/* The next remapped vrid the application's counter of this type hands out
 * (every remapped vrid it handed out is below, until it wraps at 2^31):
 * 0, or MDB_NOTFOUND when it never handed one out. */
int tabledb_counter(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t *next);
/* The highest vrid of this AID and type: 0, or MDB_NOTFOUND when there is
 * none. */
int tabledb_last(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t *vrid);

/* Processes (RT_PID rows, and a procs row with the start time that tells
 * a process from a later one with its number). tabledb_pid_record maps
 * spid unless it is mapped already, to want_vpid if given and free, else
 * identity first, and gives its vpid. */
int tabledb_pid_record(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks,
		      uint32_t want_vpid, uint32_t creator, uint32_t *vpid);
/* 0 and the vpid when spid is recorded as this very process (same start). */
int tabledb_pid_lookup(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks, uint32_t *vpid);
/* The next remapped vpid, for a fork child to know before it exists. */
int tabledb_pid_reserve(const struct tabledb *t, MDB_txn *txn, uint32_t *vpid);
/* Consecutive remapped vrids of type at once (*count of them from *first):
 * one transaction for a process's next forks or private objects. As many
 * as an eighth of what the application's counter handed out so far,
 * between n and most (an application that makes many objects reserves
 * seldom, one that makes a few leaves few unused); fewer where the counter
 * starts again. */
int tabledb_reserve_block(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t n, uint32_t most, uint32_t *first,
			  uint32_t *count);
/* Forgets a reaped process. */
int tabledb_pid_forget(const struct tabledb *t, MDB_txn *txn, uint32_t spid);

/* The application's path redirections, FROM and TO (not NUL-terminated,
 * valid inside txn), in the order they apply: fn is called with each until
 * it returns nonzero, which is then returned; MDB_CORRUPTED for a value
 * that is not FROM 0x00 TO. */
typedef int tabledb_redirect_fn(void *arg, const char *from, size_t fromlen, const char *to, size_t tolen);
int tabledb_redirects(const struct tabledb *t, MDB_txn *txn, tabledb_redirect_fn *fn, void *arg);

uint64_t now_ms(void);

#endif
