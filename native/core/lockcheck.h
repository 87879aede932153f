/* Checking LMDB's lock file (its reader table and write lock) before LMDB
 * uses it.
 *
 * The lock file is mapped writable in every process of every application:
 * a program's stray write that reaches it (guardmap.h keeps the usual ones
 * out) leaves garbage reader slots, which make LMDB fail every read
 * (MDB_BAD_RSLOT) or read past its map, or a garbage lock, on which glibc
 * aborts. LMDB itself rebuilds the whole file when it is the only opener;
 * while others use it, garbage reader slots are cleared here and a damaged
 * header is reported, never handed to LMDB. */
#ifndef APPSHOT_LOCKCHECK_H
#define APPSHOT_LOCKCHECK_H

#include <stddef.h>

enum { LOCKCHECK_OK = 0, LOCKCHECK_REPAIRED = 1, LOCKCHECK_DAMAGED = -1, LOCKCHECK_DAMAGED_IN_USE = -2 };

/* Checks the lock file at path, clearing garbage reader slots. OK (also
 * when the file is missing, or damaged but used by no other process: LMDB
 * rebuilds it at open), REPAIRED (msg says what was cleared), DAMAGED (its
 * header is garbage and other processes use it: msg says so), or an errno.
 * Call under the open lock, in a process that has not opened the
 * environment: closing a descriptor of the lock file drops every LMDB lock
 * this process holds on it. */
int lockcheck_file(const char *path, char *msg, size_t msglen);

/* The same through a descriptor of the lock file this process already has
 * (LMDB's own: reading through it drops no lock), path for messages: a
 * garbage header is DAMAGED, or DAMAGED_IN_USE while other processes use
 * the tables. */
int lockcheck_fd(int fd, const char *path, char *msg, size_t msglen);

#endif
