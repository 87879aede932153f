/*
 * What a snapshot needs of the kernel's objects beyond their IDs: the bytes
 * of shared memory segments streamed to and from files under a checksum,
 * and the messages of a queue read without taking them. Tools only (the
 * harness's addon): every call here is libc's, never the shim's wrappers.
 */
#ifndef APPSHOT_SNAPSHOT_H
#define APPSHOT_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli), the usual pre- and post-inverted form:
 * crc32c(0, "123456789", 9) == 0xE3069283, and a checksum continues over
 * the next buffer when passed back as crc. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* Writes bytes [offset, offset + len) of segment shmid to fd at its file
 * position and continues *crc over them. 0 or an errno (EINVAL when the
 * range is outside the segment). */
int snap_shm_to_fd(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc);
/* Reads exactly len bytes from fd's position into segment shmid at offset
 * and continues *crc over them. 0 or an errno (ENODATA when the file ends
 * first; the segment then holds what was read). */
int snap_fd_to_shm(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc);

/* Called for each message of a queue, in queue order; a nonzero return
 * stops the walk and is returned by snap_msg_copy. */
typedef int (*snap_msg_fn)(void *ctx, long mtype, const void *data, size_t len);

/* Hands every message of queue msqid to fn and leaves the queue as it was.
 * With MSG_COPY the queue is only read. A kernel without it (no
 * CONFIG_CHECKPOINT_RESTORE) has the messages received and sent back in
 * order: the caller must make sure nobody else uses the queue meanwhile,
 * and the queue's send and receive times and PIDs change. *copied (may be
 * NULL) tells which way was taken. 0 or an errno. */
int snap_msg_copy(int msqid, snap_msg_fn fn, void *ctx, int *copied);

/* msgsnd with IPC_NOWAIT (EAGAIN when the queue is full). 0 or an errno. */
int snap_msg_send(int msqid, long mtype, const void *data, size_t len);

#endif
