/*
 * The journal of new objects (issue 21): the rows of the SysV objects a
 * program creates (with IPC_PRIVATE, or under a key the application has
 * mapped already), kept in shared memory (the home's
 * inflight file, past the inflight record) instead of being committed to
 * LMDB one by one. A create and a remove there are a few stores under a
 * short lock, where an LMDB commit costs ten times the kernel's own call.
 *
 * The journal is folded into LMDB: by every write transaction the shim, the
 * supervisor or the harness makes that reads or writes SysV rows (the rows
 * are put in that transaction and leave the journal after its commit; a
 * process's row or a counter's leaves them), and before anything reads the
 * application's rows as a whole (*_INFO, *_STAT, /proc/sysvipc, snapshot,
 * cleanup, gc, the inspector). So only the translation of one virtual ID
 * (translate.c) and IPC_RMID ever look a row up in the journal itself.
 *
 * What a crash leaves: a creator killed between the kernel's call and its
 * row is covered by its pending record (as the inflight record covers the
 * LMDB path); a folder killed before its commit leaves its rows in the
 * journal (FOLDING, taken over by the next folder); a process killed while
 * changing the slots leaves every row whole in at least one slot, which the
 * next holder of the journal's lock (robust) checks and repairs.
 */
#ifndef APPSHOT_JOURNAL_H
#define APPSHOT_JOURNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include "inflight.h"
#include "sysv.h"
#include "tabledb.h"

/* Where the journal lies in the inflight file, and its size. */
#define JOURNAL_OFFSET 4096u
#define JOURNAL_SLOTS 32768u     /* a power of two */
#define JOURNAL_PENDING 256u
#define JOURNAL_APPS 128u
/* Past this many slots in use, a create takes the LMDB way (whose write
 * folds the journal in). */
#define JOURNAL_FOLD_AT (JOURNAL_SLOTS / 2)
size_t journal_file_size(void);

struct journal_head;
struct journal_slot;

/* One row: what the LMDB forward row of the object holds (vkey and skey
 * IPC_PRIVATE for a private one). */
struct journal_row {
	uint8_t type;
	uint32_t vrid, srid, creator;
	uint64_t created_ms;
	uint32_t vkey, skey;
};

/* A process's view of the journal, for one application. */
struct journal {
	struct journal_head *head;
	struct journal_slot *slots;
	char aid[64];
	uint64_t aidhash;
	/* The application's entry in the head's table of AIDs, as of the
	 * table's epoch (which changes when an entry is taken or freed):
	 * epoch << 32 | entry + 1, one word so that threads never see one
	 * without the other; 0: not known. */
	uint64_t app_at;
	/* Rows this process marked in its journal_fold_begin, until its end. */
	uint32_t folding;
	/* The parts of the slots process mapped_by has mapped in
	 * (journal_map_ahead), a bit each. */
	pid_t mapped_by;
	uint64_t mapped;
};

/* Maps the journal part of the inflight file fd (which it extends if it is
 * the older, shorter file) and makes it ready the first time. 0 or errno. */
int journal_map_fd(struct journal *j, int fd);
int journal_open(struct journal *j, const char *home);
void journal_close(struct journal *j);
/* Whose rows this view reads and writes. */
void journal_set_app(struct journal *j, const char *aid);

/* Changes with every change of the slots: the translation cache's check. */
uint64_t journal_gen(const struct journal *j);
/* Where journal_gen reads it, for a caller that keeps the address (the
 * shim's translation cache: one load, not the journal's and its head's in
 * turn); NULL with no journal mapped (journal_gen's 0). Fixed while the
 * journal stays mapped. */
const uint64_t *journal_gen_word(const struct journal *j);
/* Slots in use (rows, and rows being folded): 0 means nothing to fold. */
uint32_t journal_used(const struct journal *j);
/* Pending records taken (creations under way, or left by dead creators). */
uint32_t journal_pending(const struct journal *j);

/* The row of this application's object type/vrid: 0, or -1 if none. Takes
 * no lock while nobody changes the slots. */
int journal_find(struct journal *j, uint8_t type, uint32_t vrid, struct journal_row *out);
/* The vrid of this application's keyed object type/srid (a keyed row is
 * found by its srid too: a get of an existing key asks the kernel for the
 * object and needs its vrid): 0, or -1 if none. */
int journal_find_srid(struct journal *j, uint8_t type, uint32_t srid, uint32_t *vrid);

/* Maps in, ahead of a change under the lock, the slots where the row
 * type/vrid (vrid 0: the application's next remapped one of type) and the
 * next ones go, and its entry by srid (a keyed row's; srid 0: none), if
 * process me has not yet: a page's first touch is a page fault (10-14 us in
 * a VM; a fork child's too, for the kernel does not copy a shared file
 * mapping's page tables), and one taken under the lock made every process
 * that wanted the lock wait. */
void journal_map_ahead(struct journal *j, uint8_t type, uint32_t vrid, uint32_t srid, pid_t me);

/* Creating. begin takes a pending record naming the creator, the time and
 * the system key (IPC_PRIVATE for a private object); created gives it the
 * kernel's ID; end, once the row is in (or the object gone), frees it.
 *
 * A keyed creation also holds the journal's lock from begin to end, and
 * begins only while no LMDB write transaction is looking keys up: that
 * writer (see journal_fold_begin) then either finds the object's row
 * folded into its transaction or no object under the key, never an object
 * without a row, which it would take for one made outside the application.
 * Private creations run side by side (holding the lock around the kernel's
 * call halved 64 processes' rate); journal_recover tells their leftovers
 * apart as a group.
 *
 * -1 from begin: every record is taken, or (keyed) a writer is in: the
 * caller creates the LMDB way. Nested calls of the journal's functions by
 * the holding thread are allowed (the lock is recursive); LMDB writes are
 * not (a writer waits for this lock while it holds LMDB's). */
int journal_create_begin(struct journal *j, pid_t spid, uint64_t start_ticks, uint8_t type, uint32_t skey);
void journal_pending_created(struct journal *j, int p, uint32_t srid);
void journal_create_end(struct journal *j, int p);
/* Adds the application's row (replacing a row at the same vrid, which can
 * only be a stale one: see the caller). 0, or -1 when the journal is full. */
int journal_insert(struct journal *j, const struct journal_row *row);
/* A remapped row: takes the application's next remapped vrid (as
 * journal_take_vrid) and puts the row in under it, in one hold of the lock
 * (64 processes creating at once wait for it half as often). held, called
 * under the lock, says whether the application's LMDB rows hold that vrid
 * already (a restored object's saved one): the vrid then goes back and the
 * caller creates the LMDB way. 0 with row->vrid set; JOURNAL_NO_VRID when
 * none is left (the caller reserves a block, unless it holds the lock, and
 * asks again); -1 when that vrid is held or the journal cannot take the
 * row. */
#define JOURNAL_NO_VRID (-2)
typedef int journal_vrid_held_fn(uint8_t type, uint32_t vrid, uint32_t srid);
int journal_insert_remapped(struct journal *j, struct journal_row *row, journal_vrid_held_fn *held);

/* The application's next remapped vrid of type, from what its processes
 * reserved (shared by them all): 0, or -1 when none is left; the caller
 * then reserves a block from LMDB's counter and gives it here. */
int journal_take_vrid(struct journal *j, uint8_t type, uint32_t *vrid);
/* How many the application has left, as read without the lock: 0 tells a
 * creator to reserve a block before it begins. */
uint32_t journal_vrids_left(struct journal *j, uint8_t type);
void journal_give_vrids(struct journal *j, uint8_t type, uint32_t first, uint32_t count);

/* Removing: after the kernel removed the object, its row goes. */
enum journal_drop { JOURNAL_DROPPED, JOURNAL_ABSENT, JOURNAL_FOLDING };
enum journal_drop journal_drop(struct journal *j, uint8_t type, uint32_t vrid, uint32_t srid);

/* Folding, inside a write transaction of the tables (the caller holds
 * LMDB's write lock from before begin to after its commit): begin marks
 * every row (also those a dead folder left) as this process's and calls fn
 * with each, which puts it in the transaction; nonzero from fn stops it and
 * is returned, the rows then left as they were (and ETIMEDOUT when the
 * journal's lock stayed held for seconds: a process stopped inside). begin
 * also marks the journal as having an LMDB writer (journal_key_begin), even
 * with nothing to fold. end, after the commit (committed 1) drops the rows,
 * or (0) gives them back, and lifts the mark: always call it after begin,
 * whatever begin returned; on an abort, before it (while LMDB's write lock
 * is held: a fold passes over rows another live process holds, so rows
 * given back later would be missing from the next writer's transaction). */
typedef int journal_fold_fn(void *arg, const char *aid, const struct journal_row *row);
int journal_fold_begin(struct journal *j, pid_t me, journal_fold_fn *fn, void *arg);
void journal_fold_end(struct journal *j, pid_t me, int committed);

/* journal_fold_begin into the tables' write transaction txn, each row
 * mapped under its application's AID (tabledb_map_over). */
int journal_fold_into(struct journal *j, const struct tabledb *t, MDB_txn *txn, pid_t me);

/* The objects of creators that died between the kernel's call and their
 * row: removed from the kernel unless mapped (mapped must see the LMDB
 * rows; the journal's are checked here). Private ones whose creators died
 * before their record had the ID are found as a group per type: the fresh
 * unmapped private objects, removed when no more than such creators, and
 * no creation under way meanwhile (else left for a later call). thorough
 * also takes the records of creators that died and are not reaped yet,
 * which /proc alone tells (a read per record whose creator answers): the
 * harness's folds pass it, not the shim's writes, which run while other
 * processes of the application hold records of their own. Call inside a
 * write transaction, before journal_fold_begin. Returns how many were
 * removed, a line about each in report. */
int journal_recover(struct journal *j, const struct kernel_ops *k, is_mapped_fn mapped, void *ctx,
		    char *report, size_t reportlen, int thorough);

/* For the crash tests (native/testcore/journaltool.c) only: called, when
 * set, at the points where a holder of the lock may die ("torn": halfway
 * through writing a slot; "moved": a row copied back, its old slot not yet
 * reused). */
extern void (*journal_fault)(const char *point);

#endif
