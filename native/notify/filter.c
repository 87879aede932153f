/* The user-notification filter (notify.h): which calls the supervisor
 * answers. listen only in an application that publishes a port (elsewhere
 * it has nothing to translate); sendto only with an address (a plain send
 * names no port); not wait4/waitid (only the parent may reap: see pid.c). execve and execveat are notified so the supervisor
 * learns that a process became another program. */
#include "notify.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/syscall.h>

static const int socket_calls[] = { SYS_bind, SYS_connect, SYS_getsockname, SYS_getpeername, SYS_accept, SYS_accept4, SYS_execve, SYS_execveat };
static const int listen_calls[] = { SYS_listen };
static const int pid_calls[] = { SYS_getpid, SYS_gettid, SYS_getppid, SYS_kill, SYS_tgkill, SYS_tkill };
static const int ipc_calls[] = { SYS_semget, SYS_semctl, SYS_semop, SYS_semtimedop, SYS_shmget, SYS_shmctl, SYS_shmat,
				 SYS_msgget, SYS_msgctl, SYS_msgsnd, SYS_msgrcv };

#define N(a) (sizeof a / sizeof a[0])

unsigned notify_filter(struct sock_filter *f, unsigned max, unsigned what)
{
	int nrs[N(socket_calls) + N(listen_calls) + N(pid_calls) + N(ipc_calls)];
	unsigned n = 0, k = 0;
	for (unsigned i = 0; i < N(socket_calls); i++) nrs[n++] = socket_calls[i];
	if (what & NOTIFY_LISTEN)
		for (unsigned i = 0; i < N(listen_calls); i++) nrs[n++] = listen_calls[i];
	if (what & NOTIFY_PIDS)
		for (unsigned i = 0; i < N(pid_calls); i++) nrs[n++] = pid_calls[i];
	if (what & NOTIFY_IPC)
		for (unsigned i = 0; i < N(ipc_calls); i++) nrs[n++] = ipc_calls[i];
	if (max < n + 13) return 0;
	/* Another architecture's numbers (x32 has bit 30 set) match none: allowed. */
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	/* sendto: notified when its fifth argument, the address, is not NULL. */
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendto, 0, 6);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[4]));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[4]) + 4);
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	for (unsigned i = 0; i < n; i++) /* to the NOTIFY after the ALLOW below */
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], (unsigned char)(n - i), 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	return k;
}
