/* SysV shared memory: what is its own beyond the translation all three IPC
 * families share (ipc.c): attaching and detaching, and shmctl's commands.
 * A segment removed while attached keeps its row until its last detach,
 * so each process remembers which segment each of its attachments is. */
#define _GNU_SOURCE
#include "ipc.h"
#include "real.h"
#include "pid.h"
#include "procview.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/shm.h>
#include <unistd.h>

/* This process's attachments: address -> virtual ID. Inherited by fork
 * children with the memory, as the attachments themselves are, and gone
 * at exec, as they are. */
static struct attachment {
	const void *addr;
	uint32_t vrid;
} *attached;
static size_t n_attached, cap_attached;
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void lock_attachments(void) { pthread_mutex_lock(&attach_lock); }
static void unlock_attachments(void) { pthread_mutex_unlock(&attach_lock); }
static void register_atfork(void) { pthread_atfork(lock_attachments, unlock_attachments, unlock_attachments); }

static void remember(const void *addr, uint32_t vrid)
{
	pthread_once(&atfork_once, register_atfork);
	lock_attachments();
	for (size_t i = 0; i < n_attached; i++) {
		/* SHM_REMAP replaced a mapping at this address. */
		if (attached[i].addr == addr) {
			attached[i].vrid = vrid;
			unlock_attachments();
			return;
		}
	}
	if (n_attached == cap_attached) {
		size_t cap = cap_attached ? cap_attached * 2 : 16;
		struct attachment *a = realloc(attached, cap * sizeof *a);
		if (!a) {
			/* Only the early row drop after IPC_RMID is lost. */
			unlock_attachments();
			return;
		}
		attached = a;
		cap_attached = cap;
	}
	attached[n_attached++] = (struct attachment){ addr, vrid };
	unlock_attachments();
}

/* Forgets the attachment at addr; returns its vrid, or -1 if unknown. */
static int64_t forget(const void *addr)
{
	int64_t vrid = -1;
	lock_attachments();
	for (size_t i = 0; i < n_attached; i++) {
		if (attached[i].addr == addr) {
			vrid = attached[i].vrid;
			attached[i] = attached[--n_attached];
			break;
		}
	}
	unlock_attachments();
	return vrid;
}

WRAPPER(shmget)
{
	if (!shim_active) return REAL(shmget)(key, size, shmflg);
	return ipc_get(RT_SHM, key, size, shmflg);
}

WRAPPER(shmat)
{
	if (!shim_active) return REAL(shmat)(shmid, shmaddr, shmflg);
	/* A template's shared segment is every clone's: attached read-only, so
	 * no clone writes what the others read. */
	if (!(shmflg & SHM_RDONLY) && vr_is_template(RT_SHM, (uint32_t)shmid)) shmflg |= SHM_RDONLY;
	void *addr = REAL(shmat)(ipc_kernel_id(RT_SHM, shmid), shmaddr, shmflg);
	if (addr != (void *)-1) remember(addr, (uint32_t)shmid);
	return addr;
}

WRAPPER(shmdt)
{
	if (!shim_active) return REAL(shmdt)(shmaddr);
	int64_t vrid = forget(shmaddr);
	int r = REAL(shmdt)(shmaddr);
	if (r != 0) {
		if (vrid >= 0) remember(shmaddr, (uint32_t)vrid);
		return r;
	}
	uint32_t skey;
	if (vrid >= 0 && vr_to_skey(RT_SHM, (uint32_t)vrid, &skey) == 0 && skey == SKEY_REMOVED)
		ipc_forget_if_gone(RT_SHM, (uint32_t)vrid);
	return 0;
}

/* IPC_INFO and SHM_INFO: system-wide limits stay, but what is in use is
 * counted over this application's segments only: the kernel's own totals
 * when it has no other segments, else the application's rows of the
 * kernel's listing added up. */
static int shm_info(int cmd, struct shmid_ds *buf)
{
	if (REAL(shmctl)(0, cmd, buf) < 0) return -1;
	struct ipc_summary s;
	ipc_summary(RT_SHM, &s);
	if (cmd == SHM_INFO) {
		struct shm_info *info = (struct shm_info *)buf;
		if (!ipc_alone(&s, info->used_ids)) {
			struct sysvipc_shm_usage u = { 0 };
			sysvipc_shm_usage(&u);
			info->used_ids = u.ids;
			info->shm_tot = u.pages;
			info->shm_rss = u.rss;
			info->shm_swp = u.swap;
		}
	}
	return s.max_index;
}

/* The creator and the last to attach or detach, as the application names
 * them; and of a template's segment, which every clone attaches, only the
 * application's own attachments. */
static void as_seen(int shmid, struct shmid_ds *ds)
{
	uint32_t srid;
	ds->shm_cpid = pid_to_virtual(ds->shm_cpid);
	ds->shm_lpid = pid_to_virtual(ds->shm_lpid);
	if (vr_is_template(RT_SHM, (uint32_t)shmid) && ipc_srid(RT_SHM, shmid, &srid) == 0)
		ds->shm_nattch = ipc_shm_attachments(srid);
}

WRAPPER(shmctl)
{
	if (!shim_active) return REAL(shmctl)(shmid, cmd, buf);
	int r;
	switch (cmd) {
	case IPC_INFO: case SHM_INFO: return shm_info(cmd, buf);
	case SHM_STAT: case SHM_STAT_ANY:
		if ((r = ipc_stat_index(RT_SHM, shmid, cmd, buf)) >= 0) as_seen(r, buf);
		return r;
	case IPC_RMID: return ipc_remove(RT_SHM, shmid);
	case IPC_SET:
		/* A clone may not change the owner or mode of its siblings' segment;
		 * the kernel reads the buffer before it checks (EFAULT first). */
		if (vr_is_template(RT_SHM, (uint32_t)shmid))
			return ipc_readable(buf, sizeof *buf) ? -1 : shim_fail(EPERM);
		break;
	}
	/* IPC_SET reads its buffer before it looks the ID up (EFAULT first). */
	r = REAL(shmctl)(ipc_kernel_id(RT_SHM, shmid), cmd, buf);
	if (r == 0 && cmd == IPC_STAT) {
		uint32_t skey;
		ipc_virtual_perm(RT_SHM, vr_to_skey(RT_SHM, (uint32_t)shmid, &skey) == 0 && skey == SKEY_REMOVED,
				 &buf->shm_perm);
		as_seen(shmid, buf);
	}
	return r;
}
