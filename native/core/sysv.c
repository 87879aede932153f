#include "sysv.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/sem.h>

int sysv_is_ipc(uint8_t type) { return type == RT_SEM || type == RT_SHM || type == RT_MSG; }

uint8_t sysv_key_type(uint8_t type)
{
	return type == RT_SEM ? RT_SEMKEY : type == RT_SHM ? RT_SHMKEY : RT_MSGKEY;
}

const char *sysv_noun(uint8_t type)
{
	return type == RT_SEM ? "semaphore set" : type == RT_SHM ? "shared memory segment" : "message queue";
}

const char *sysv_proc_file(uint8_t type)
{
	return type == RT_SEM ? "/proc/sysvipc/sem" : type == RT_SHM ? "/proc/sysvipc/shm" : "/proc/sysvipc/msg";
}

FILE *sysv_open_listing(uint8_t type)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, sysv_proc_file(type), O_RDONLY | O_CLOEXEC);
	if (fd < 0) return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f) syscall(SYS_close, fd);
	return f;
}

int sysv_get(const struct kernel_ops *k, uint8_t type, key_t key, size_t size, int flags)
{
	switch (type) {
	case RT_SEM: return k->get_sem(key, (int)size, flags);
	case RT_SHM: return k->get_shm(key, size, flags);
	case RT_MSG: return k->get_msg(key, flags);
	}
	errno = EINVAL;
	return -1;
}

int sysv_ctl(const struct kernel_ops *k, uint8_t type, int id, int cmd, void *buf)
{
	switch (type) {
	case RT_SEM: return k->control_sem(id, 0, cmd, buf);
	case RT_SHM: return k->control_shm(id, cmd, buf);
	case RT_MSG: return k->control_msg(id, cmd, buf);
	}
	errno = EINVAL;
	return -1;
}

int sysv_rmid(const struct kernel_ops *k, uint8_t type, int id) { return sysv_ctl(k, type, id, IPC_RMID, NULL); }

int sysv_stat(const struct kernel_ops *k, uint8_t type, int id, struct sysv_stat *out)
{
	*out = (struct sysv_stat){ 0 };
	if (type == RT_SEM) {
		struct semid_ds ds;
		if (sysv_ctl(k, type, id, IPC_STAT, &ds) != 0) return -1;
		*out = (struct sysv_stat){ .key = ds.sem_perm.__key, .used = ds.sem_otime != 0, .ctime = ds.sem_ctime };
	} else if (type == RT_SHM) {
		struct shmid_ds ds;
		if (sysv_ctl(k, type, id, IPC_STAT, &ds) != 0) return -1;
		*out = (struct sysv_stat){ .key = ds.shm_perm.__key,
					   .used = ds.shm_atime != 0 || ds.shm_nattch != 0,
					   .ctime = ds.shm_ctime,
					   .nattch = ds.shm_nattch,
					   .removed = (ds.shm_perm.mode & SHM_DEST) != 0 };
	} else if (type == RT_MSG) {
		struct msqid_ds ds;
		if (sysv_ctl(k, type, id, IPC_STAT, &ds) != 0) return -1;
		*out = (struct sysv_stat){ .key = ds.msg_perm.__key,
					   .used = ds.msg_stime != 0 || ds.msg_rtime != 0,
					   .ctime = ds.msg_ctime };
	} else {
		return sysv_ctl(k, type, id, IPC_STAT, NULL);
	}
	return 0;
}
