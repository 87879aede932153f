/* The system calls libc's functions make, made from the shim's own
 * instruction (rawcall.h) with libc's -1/errno convention: what REAL(NAME)
 * gives for a trapped system call while the trap is on (real.c). One per
 * function of wrapped.def whose system call trap.c traps; kept to what libc
 * itself does around the call (glibc 2.36, x86-64). */
#define _GNU_SOURCE
#include "real.h"
#include "../core/rawcall.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KERNEL_CALL(ret, name, params, ...)                                    \
	ret kernel_##name params { return (ret)raw_call(__VA_ARGS__); }

/* The POSIX cancellation points among them: as glibc 2.36 does around the
 * system call, asynchronous cancellation while it blocks, so that
 * pthread_cancel still ends a thread waiting in msgrcv, waitpid or accept
 * (glibc's SIGCANCEL handler acts at once in that mode). And as glibc, not
 * in a process that never made a thread, where no other thread can cancel
 * this one: the two pthread_setcanceltype calls are two atomic
 * compare-and-swaps on every msgsnd and msgrcv (about 20 ns here). */
#define KERNEL_CANCELLABLE(ret, name, params, ...)                             \
	SHIM_HOT ret kernel_##name params                                      \
	{                                                                      \
		if (__libc_single_threaded) return (ret)raw_call(__VA_ARGS__); \
		int type;                                                      \
		pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &type);     \
		ret r = (ret)raw_call(__VA_ARGS__);                            \
		int e = errno;                                                 \
		pthread_setcanceltype(type, NULL);                             \
		errno = e;                                                     \
		return r;                                                      \
	}

/* SysV IPC: x86-64 has a system call per function. */
KERNEL_CALL(int, semget, (key_t key, int nsems, int semflg), SYS_semget, key, nsems, semflg)
KERNEL_CALL(int, semop, (int semid, struct sembuf *sops, size_t nsops), SYS_semop, semid, sops, nsops)
KERNEL_CALL(int, semtimedop, (int semid, struct sembuf *sops, size_t nsops, const struct timespec *timeout),
	    SYS_semtimedop, semid, sops, nsops, timeout)
KERNEL_CALL(int, shmget, (key_t key, size_t size, int shmflg), SYS_shmget, key, size, shmflg)
KERNEL_CALL(void *, shmat, (int shmid, const void *shmaddr, int shmflg), SYS_shmat, shmid, shmaddr, shmflg)
KERNEL_CALL(int, shmdt, (const void *shmaddr), SYS_shmdt, shmaddr)
KERNEL_CALL(int, shmctl, (int shmid, int cmd, struct shmid_ds *buf), SYS_shmctl, shmid, cmd, buf)
KERNEL_CALL(int, msgget, (key_t key, int msgflg), SYS_msgget, key, msgflg)
KERNEL_CANCELLABLE(int, msgsnd, (int msqid, const void *msgp, size_t msgsz, int msgflg), SYS_msgsnd, msqid, msgp, msgsz, msgflg)
KERNEL_CANCELLABLE(ssize_t, msgrcv, (int msqid, void *msgp, size_t msgsz, long msgtyp, int msgflg),
	    SYS_msgrcv, msqid, msgp, msgsz, msgtyp, msgflg)
KERNEL_CALL(int, msgctl, (int msqid, int cmd, struct msqid_ds *buf), SYS_msgctl, msqid, cmd, buf)

/* semctl's fourth argument is a union passed by value: one register, as the
 * kernel takes it (an unsigned long). Read only for the commands that have
 * it, as libc does. */
int kernel_semctl(int semid, int semnum, int cmd, ...)
{
	unsigned long arg = 0;
	switch (cmd) {
	case SETVAL: case GETALL: case SETALL: case IPC_STAT: case IPC_SET:
	case IPC_INFO: case SEM_INFO: case SEM_STAT: case SEM_STAT_ANY: {
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, unsigned long);
		va_end(ap);
	}
	}
	return (int)raw_call(SYS_semctl, semid, semnum, cmd, arg);
}

/* Process IDs. */
KERNEL_CALL(pid_t, getppid, (void), SYS_getppid)
KERNEL_CALL(pid_t, getpgrp, (void), SYS_getpgrp)
KERNEL_CALL(pid_t, getpgid, (pid_t pid), SYS_getpgid, pid)
KERNEL_CALL(pid_t, getsid, (pid_t pid), SYS_getsid, pid)
KERNEL_CALL(int, setpgid, (pid_t pid, pid_t pgid), SYS_setpgid, pid, pgid)
KERNEL_CANCELLABLE(pid_t, waitpid, (pid_t pid, int *status, int options), SYS_wait4, pid, status, options, NULL)
KERNEL_CANCELLABLE(pid_t, wait4, (pid_t pid, int *status, int options, struct rusage *usage), SYS_wait4, pid, status, options, usage)
KERNEL_CANCELLABLE(int, waitid, (idtype_t idtype, id_t id, siginfo_t *info, int options), SYS_waitid, idtype, id, info, options, NULL)
KERNEL_CALL(int, kill, (pid_t pid, int sig), SYS_kill, pid, sig)
KERNEL_CALL(int, tgkill, (pid_t tgid, pid_t tid, int sig), SYS_tgkill, tgid, tid, sig)
KERNEL_CALL(int, sched_setaffinity, (pid_t pid, size_t size, const cpu_set_t *set), SYS_sched_setaffinity, pid, size, set)
KERNEL_CALL(int, sched_setscheduler, (pid_t pid, int policy, const struct sched_param *param),
	    SYS_sched_setscheduler, pid, policy, param)
KERNEL_CALL(int, sched_getscheduler, (pid_t pid), SYS_sched_getscheduler, pid)
KERNEL_CALL(int, sched_setparam, (pid_t pid, const struct sched_param *param), SYS_sched_setparam, pid, param)
KERNEL_CALL(int, sched_getparam, (pid_t pid, struct sched_param *param), SYS_sched_getparam, pid, param)
KERNEL_CALL(int, sched_rr_get_interval, (pid_t pid, struct timespec *tp), SYS_sched_rr_get_interval, pid, tp)
KERNEL_CALL(int, prlimit, (pid_t pid, enum __rlimit_resource resource, const struct rlimit *new_limit, struct rlimit *old_limit),
	    SYS_prlimit64, pid, resource, new_limit, old_limit)
KERNEL_CALL(int, prlimit64, (pid_t pid, enum __rlimit_resource resource, const struct rlimit64 *new_limit, struct rlimit64 *old_limit),
	    SYS_prlimit64, pid, resource, new_limit, old_limit)

/* The kernel gives the bytes it wrote; libc clears the rest and gives 0. */
int kernel_sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set)
{
	long n = raw_call(SYS_sched_getaffinity, pid, size > 0x7fffffff ? 0x7fffffff : size, set);
	if (n < 0) return -1;
	memset((char *)set + n, 0, size - (size_t)n);
	return 0;
}

/* As libc's: a negative group is EINVAL, else kill of the group. */
int kernel_killpg(pid_t pgrp, int sig)
{
	if (pgrp < 0) {
		errno = EINVAL;
		return -1;
	}
	return (int)raw_call(SYS_kill, -pgrp, sig);
}

/* As libc's: the siginfo names the sender by its kernel PID. */
int kernel_sigqueue(pid_t pid, int sig, const union sigval value)
{
	siginfo_t info;
	memset(&info, 0, sizeof info);
	info.si_signo = sig;
	info.si_code = SI_QUEUE;
	info.si_pid = shim_pid;
	info.si_uid = getuid();
	info.si_value = value;
	return (int)raw_call(SYS_rt_sigqueueinfo, pid, sig, &info);
}

/* Sockets: accept is accept4 with no flags in the shim. */
KERNEL_CALL(int, bind, (int fd, const struct sockaddr *addr, socklen_t len), SYS_bind, fd, addr, len)
KERNEL_CANCELLABLE(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), SYS_connect, fd, addr, len)
KERNEL_CALL(int, listen, (int fd, int backlog), SYS_listen, fd, backlog)
KERNEL_CANCELLABLE(int, accept4, (int fd, struct sockaddr *addr, socklen_t *len, int flags), SYS_accept4, fd, addr, len, flags)
KERNEL_CALL(int, getsockname, (int fd, struct sockaddr *addr, socklen_t *len), SYS_getsockname, fd, addr, len)
KERNEL_CALL(int, getpeername, (int fd, struct sockaddr *addr, socklen_t *len), SYS_getpeername, fd, addr, len)
KERNEL_CANCELLABLE(ssize_t, sendto, (int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen),
	    SYS_sendto, fd, buf, n, flags, addr, alen)
KERNEL_CANCELLABLE(ssize_t, recvfrom, (int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen),
	    SYS_recvfrom, fd, buf, n, flags, addr, alen)

