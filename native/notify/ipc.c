/* SysV IPC for a program the shim does not reach (notify.h). shmat and
 * semop with SEM_UNDO cannot be made from outside the process (an
 * attachment lives in the caller's address space, an undo list belongs to
 * the caller's process), and an untranslated call would reach another
 * application's object: the program gets a one-line message naming the
 * call and the way out, and the call fails. */
#define _GNU_SOURCE
#include "notify_int.h"

#include <errno.h>
#include <sys/syscall.h>

static const char *ipc_name(int nr)
{
	switch (nr) {
	case SYS_semget: return "semget";
	case SYS_semctl: return "semctl";
	case SYS_semop: return "semop";
	case SYS_semtimedop: return "semtimedop";
	case SYS_shmget: return "shmget";
	case SYS_shmctl: return "shmctl";
	case SYS_shmat: return "shmat";
	case SYS_msgget: return "msgget";
	case SYS_msgctl: return "msgctl";
	case SYS_msgsnd: return "msgsnd";
	case SYS_msgrcv: return "msgrcv";
	}
	return NULL;
}

/* Refuses the call with a message: ENOSYS, as for a call the kernel lacks. */
static void refuse(struct call *c, const char *name, const char *why)
{
	notify_warn(c, "%s of a statically linked or Go program (pid %d) %s; link the program dynamically (its IPC calls then go through the shim), or run it outside appshot",
		    name, (int)c->proc->tgid, why);
	notify_answer(c, 0, ENOSYS);
}

int ipc_call(struct call *c)
{
	const char *name = ipc_name(c->req->data.nr);
	if (!name) return 0;
	refuse(c, name, "is not translated by appshot");
	return 1;
}
