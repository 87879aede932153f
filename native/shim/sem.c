/* SysV semaphores: what is their own beyond the translation all three IPC
 * families share (ipc.c): semop, and semctl's commands. */
#define _GNU_SOURCE
#include "ipc.h"
#include "real.h"
#include "pid.h"

#include <stdarg.h>
#include <sys/sem.h>

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

WRAPPER(semget)
{
	if (!shim_active) return REAL(semget)(key, nsems, semflg);
	return ipc_get(RT_SEM, key, (size_t)nsems, semflg);
}

/* semop, semtimedop: the kernel checks the operations and the timeout
 * (EFAULT, E2BIG, ...) before the ID, so an unknown ID goes to it too. */
WRAPPER(semop)
{
	if (!shim_active) return REAL(semop)(semid, sops, nsops);
	return REAL(semop)(ipc_kernel_id(RT_SEM, semid), sops, nsops);
}

WRAPPER(semtimedop)
{
	if (!shim_active) return REAL(semtimedop)(semid, sops, nsops, timeout);
	return REAL(semtimedop)(ipc_kernel_id(RT_SEM, semid), sops, nsops, timeout);
}

/* Counted whether or not the caller may read the set, as the kernel counts. */
static void add_nsems(uint32_t srid, void *arg)
{
	struct semid_ds ds;
	if (ipc_stat_any(RT_SEM, srid, &ds) == 0) *(uint32_t *)arg += (uint32_t)ds.sem_nsems;
}

/* The semaphores in the application's sets, beside other applications'
 * sets: a set's size never changes, so the sum changes only when a set
 * comes or goes. Kept per thread while nothing was committed and the
 * kernel's own counts of sets and semaphores stand still (a set removed
 * behind the shim's back, or another application's, moves them). */
static __thread struct {
	uint64_t txnid; /* 0: never counted */
	int kernel_sets, kernel_sems;
	uint32_t nsems;
} own_sems __attribute__((tls_model("initial-exec")));

static uint32_t application_nsems(const struct seminfo *kernel)
{
	uint64_t now = tabledb_txnid(shim_tables());
	if (own_sems.txnid != now || own_sems.kernel_sets != kernel->semusz || own_sems.kernel_sems != kernel->semaem) {
		uint32_t nsems = 0;
		ipc_each(RT_SEM, add_nsems, &nsems);
		own_sems.txnid = now;
		own_sems.kernel_sets = kernel->semusz;
		own_sems.kernel_sems = kernel->semaem;
		own_sems.nsems = nsems;
	}
	return own_sems.nsems;
}

/* IPC_INFO and SEM_INFO: system-wide limits stay, but what is in use is
 * counted over this application's sets only, and the highest index is
 * the highest index of SEM_STAT's view, which holds only them. The
 * kernel's own count of semaphores is theirs when it has no other sets. */
static int sem_info(int cmd, union semun arg)
{
	if (REAL(semctl)(0, 0, cmd, arg) < 0) return -1;
	struct ipc_summary s;
	ipc_summary(RT_SEM, &s);
	if (cmd == SEM_INFO) {
		if (!ipc_alone(&s, arg.__buf->semusz)) arg.__buf->semaem = (int)application_nsems(arg.__buf);
		arg.__buf->semusz = (int)s.count;
	}
	return s.max_index;
}

static int takes_arg(int cmd)
{
	switch (cmd) {
	case SETVAL: case GETALL: case SETALL: case IPC_STAT: case IPC_SET:
	case IPC_INFO: case SEM_INFO: case SEM_STAT: case SEM_STAT_ANY:
		return 1;
	}
	return 0;
}

WRAPPER(semctl)
{
	union semun arg = { 0 };
	if (takes_arg(cmd)) {
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, union semun);
		va_end(ap);
	}
	if (!shim_active) return REAL(semctl)(semid, semnum, cmd, arg);
	switch (cmd) {
	case IPC_INFO: case SEM_INFO: return sem_info(cmd, arg);
	case SEM_STAT: case SEM_STAT_ANY: return ipc_stat_index(RT_SEM, semid, cmd, arg.buf);
	case IPC_RMID: return ipc_remove(RT_SEM, semid);
	}
	/* IPC_SET reads its buffer before it looks the ID up (EFAULT first). */
	int r = REAL(semctl)(ipc_kernel_id(RT_SEM, semid), semnum, cmd, arg);
	if (r == 0 && cmd == IPC_STAT) arg.buf->sem_perm.__key = ipc_virtual_key(RT_SEM, arg.buf->sem_perm.__key);
	if (r > 0 && cmd == GETPID) r = pid_to_virtual(r);
	return r;
}
