/* SysV message queues: what is their own beyond the translation all three
 * IPC families share (ipc.c): sending, receiving, and msgctl's commands.
 * msgsnd and msgrcv stay the kernel's blocking calls on the system ID. */
#define _GNU_SOURCE
#include "ipc.h"
#include "real.h"
#include "pid.h"

#include <sys/msg.h>

WRAPPER(msgget)
{
	if (!shim_active) return REAL(msgget)(key, msgflg);
	return ipc_get(RT_MSG, key, 0, msgflg);
}

/* msgsnd reads the message (EFAULT, EINVAL for its type) before it looks
 * the ID up, so an unknown ID goes to the kernel too. */
SHIM_HOT WRAPPER(msgsnd)
{
	if (!shim_active) return REAL(msgsnd)(msqid, msgp, msgsz, msgflg);
	return REAL(msgsnd)(ipc_kernel_id(RT_MSG, msqid), msgp, msgsz, msgflg);
}

SHIM_HOT WRAPPER(msgrcv)
{
	if (!shim_active) return REAL(msgrcv)(msqid, msgp, msgsz, msgtyp, msgflg);
	return REAL(msgrcv)(ipc_kernel_id(RT_MSG, msqid), msgp, msgsz, msgtyp, msgflg);
}

struct msg_usage {
	unsigned long messages, bytes;
};

static void add_usage(uint32_t srid, void *arg)
{
	struct msqid_ds ds;
	struct msg_usage *u = arg;
	/* Counted whether or not the caller may read the queue, as the kernel counts. */
	if (ipc_stat_any(RT_MSG, srid, &ds) != 0) return;
	u->messages += ds.msg_qnum;
	u->bytes += ds.__msg_cbytes;
}

/* IPC_INFO and MSG_INFO: system-wide limits stay; for MSG_INFO the queues,
 * messages and bytes in use are counted over this application's queues:
 * the kernel's own totals when it has no other queues, else each queue's. */
static int msg_info(int cmd, struct msqid_ds *buf)
{
	if (REAL(msgctl)(0, cmd, buf) < 0) return -1;
	struct ipc_summary s;
	ipc_summary(RT_MSG, &s);
	if (cmd == MSG_INFO) {
		struct msginfo *info = (struct msginfo *)buf;
		if (!ipc_alone(&s, info->msgpool)) {
			struct msg_usage u = { 0 };
			ipc_each(RT_MSG, add_usage, &u);
			info->msgmap = (int)u.messages;
			info->msgtql = (int)u.bytes;
		}
		info->msgpool = (int)s.count;
	}
	return s.max_index;
}

/* The last sender and receiver, as the application names them. */
static void virtual_pids(struct msqid_ds *ds)
{
	ds->msg_lspid = pid_to_virtual(ds->msg_lspid);
	ds->msg_lrpid = pid_to_virtual(ds->msg_lrpid);
}

WRAPPER(msgctl)
{
	if (!shim_active) return REAL(msgctl)(msqid, cmd, buf);
	int r;
	switch (cmd) {
	case IPC_INFO: case MSG_INFO: return msg_info(cmd, buf);
	case MSG_STAT: case MSG_STAT_ANY:
		if ((r = ipc_stat_index(RT_MSG, msqid, cmd, buf)) >= 0) virtual_pids(buf);
		return r;
	case IPC_RMID: return ipc_remove(RT_MSG, msqid);
	}
	/* IPC_SET reads its buffer before it looks the ID up (EFAULT first). */
	r = REAL(msgctl)(ipc_kernel_id(RT_MSG, msqid), cmd, buf);
	if (r == 0 && cmd == IPC_STAT) {
		buf->msg_perm.__key = ipc_virtual_key(RT_MSG, buf->msg_perm.__key);
		virtual_pids(buf);
	}
	return r;
}
