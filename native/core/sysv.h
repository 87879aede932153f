/*
 * The three SysV IPC families (semaphore sets, shared memory segments,
 * message queues) seen through one interface, for the code that treats
 * them alike: creation and removal in the shim, inflight recovery, the
 * harness's cleanup. Each call goes to the family's own kernel call.
 */
#ifndef APPSHOT_SYSV_H
#define APPSHOT_SYSV_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <time.h>

/* The kernel calls the core may make: the shim passes the real libc
 * functions (its own symbols would translate again), tools pass libc's.
 * Named for what they do, so they are never taken for the wrappers. */
struct kernel_ops {
	int (*get_sem)(key_t key, int nsems, int flags);            /* semget */
	int (*control_sem)(int semid, int semnum, int cmd, ...);    /* semctl */
	int (*get_shm)(key_t key, size_t size, int flags);          /* shmget */
	int (*control_shm)(int shmid, int cmd, struct shmid_ds *buf); /* shmctl */
	int (*get_msg)(key_t key, int flags);                       /* msgget */
	int (*control_msg)(int msqid, int cmd, struct msqid_ds *buf); /* msgctl */
};

/* What the core needs of one object's IPC_STAT. */
struct sysv_stat {
	key_t key;
	int used;              /* ever operated on, attached or sent to */
	time_t ctime;
	unsigned long nattch;  /* shared memory only */
	int removed;           /* shared memory removed while attached */
};

/* Whether type is one of RT_SEM, RT_SHM, RT_MSG. */
int sysv_is_ipc(uint8_t type);
/* RT_SEMKEY for RT_SEM, and so on. */
uint8_t sysv_key_type(uint8_t type);
/* "semaphore set", "shared memory segment", "message queue". */
const char *sysv_noun(uint8_t type);
/* "/proc/sysvipc/sem", ... */
const char *sysv_proc_file(uint8_t type);

/* The kernel's listing of a family, opened with the raw system call: in a
 * process under the shim, open and fopen give the application's view. */
FILE *sysv_open_listing(uint8_t type);

/* semget/shmget/msgget (size is nsems for a set, bytes for a segment). */
int sysv_get(const struct kernel_ops *k, uint8_t type, key_t key, size_t size, int flags);
/* semctl/shmctl/msgctl with a command that takes a buffer or none. */
int sysv_ctl(const struct kernel_ops *k, uint8_t type, int id, int cmd, void *buf);
int sysv_rmid(const struct kernel_ops *k, uint8_t type, int id);
int sysv_stat(const struct kernel_ops *k, uint8_t type, int id, struct sysv_stat *out);

#endif
