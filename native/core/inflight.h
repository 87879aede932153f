/*
 * The inflight record: every kernel object is created while its creator
 * holds the LMDB write lock, and the creator fills this record (a small
 * shared file beside the tables) before the kernel call and clears it after
 * the commit. Whoever next holds the write lock and finds the record of a
 * creator that is gone removes the object that creator may have left
 * unmapped, so a SIGKILL between the kernel call and the commit leaks
 * nothing.
 */
#ifndef APPSHOT_INFLIGHT_H
#define APPSHOT_INFLIGHT_H

#include <stdint.h>
#include <sys/types.h>
#include "sysv.h"

typedef int (*is_mapped_fn)(void *ctx, uint8_t type, uint32_t srid);

struct inflight_file {
	struct inflight_rec *rec;
	uint64_t token;
};

int inflight_open(struct inflight_file *f, const char *home);
/* The record from a descriptor of the file (core/home.h), which stays open. */
int inflight_map_fd(struct inflight_file *f, int fd);
void inflight_close(struct inflight_file *f);
void inflight_begin(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type, uint32_t skey);
void inflight_created(struct inflight_file *f, uint32_t srid);
void inflight_clear(struct inflight_file *f);
/* Call with the write lock held. Returns the number of objects removed,
 * writing a line about each into report. Recovers the record and every
 * slot a dead creator left (below). */
int inflight_recover(struct inflight_file *f, const struct kernel_ops *k, is_mapped_fn mapped,
		     void *ctx, char *report, size_t reportlen);

/*
 * The slots: where a process creates a private object without the write
 * lock (core/ipcalloc.c, ipc_alloc_private), so that one commit can record
 * the objects of every process of the application waiting to (a group
 * commit). A slot is held, from its claim to its release, by a robust
 * process-shared mutex of the creating thread: the kernel lets it go when
 * the process dies, so whoever next holds the write lock finds a slot in
 * use whose mutex it can take, and recovers it as the record above is
 * recovered (removes the object, unless it is mapped).
 *
 * Group commits take turns through the board's leader mutex (robust too):
 * its holder records, in one commit, every object the slots of its
 * application hold, and marks their slots recorded; a slot holding an
 * object is read, marked and freed only by the leader mutex's holder, so
 * its fields stand still meanwhile.
 */
enum inflight_slot_state { SLOT_FREE, SLOT_CREATING, SLOT_CREATED, SLOT_RECORDED };
#define INFLIGHT_SLOTS 128
/* A free slot, held, for a private object of type aid is about to create;
 * -1 when none is free (the caller creates under the write lock). */
int inflight_slot_claim(struct inflight_file *f, pid_t spid, const char *aid, uint8_t type);
/* The kernel made it: srid. */
void inflight_slot_created(struct inflight_file *f, int slot, uint32_t srid);
/* By the slot's holder: free again (holding the leader mutex, once created). */
void inflight_slot_release(struct inflight_file *f, int slot);
/* By the leader, inside its write transaction: calls fn with each slot
 * other than skip holding an object aid created, not yet marked recorded
 * (none while no slot is in use: the scan costs nothing then). */
typedef void inflight_slot_fn(void *arg, int slot, uint8_t type, uint32_t srid, uint32_t creator);
void inflight_slots_created(const struct inflight_file *f, const char *aid, int skip, inflight_slot_fn *fn, void *arg);
/* By the leader, after its commit: the slot's object is mapped at vrid. */
void inflight_slot_recorded(struct inflight_file *f, int slot, uint32_t vrid);
/* 0 and the vrid once a leader marked the slot recorded, else -1. */
int inflight_slot_vrid(const struct inflight_file *f, int slot, uint32_t *vrid);
/* The leader mutex: blocks until the caller holds it. 1 when its last
 * holder died holding it: its commit is whole or not made, but slots it
 * recorded may be left unmarked. */
int inflight_lead(struct inflight_file *f);
void inflight_lead_done(struct inflight_file *f);

#endif
