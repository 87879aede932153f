/*
 * msgtool: runs a list of message queue operations and prints one line per
 * result, so tests can assert what a program sees. Each argument is one
 * command; the "current" queue is the last one got or chosen with use.
 *
 *   get KEY FLAGS         msgget; FLAGS is a mix of c (IPC_CREAT), x (IPC_EXCL), - (none)
 *   private | use ID
 *   send TYPE TEXT FLAGS  msgsnd; FLAGS: n (IPC_NOWAIT), - (none)
 *   sendsize TYPE BYTES FLAGS
 *   recv TYPE SIZE FLAGS  msgrcv; FLAGS: n (IPC_NOWAIT), e (MSG_EXCEPT), t (MSG_NOERROR), - (none)
 *   bgrecv TYPE           a child blocks in msgrcv and prints what it got and after how long
 *   bgsend TYPE BYTES     a child blocks in msgsnd and prints how it ended
 *   waitall               waits for every child
 *   stat                  IPC_STAT: key, qnum, cbytes, qbytes, mode
 *   setqbytes N | rmid
 *   info | msginfo | statidx I | statany I | statall
 *   pingpong N            two processes exchange N messages (forever if 0),
 *                         attaching and detaching a private segment each time
 *   statcur               MSG_STAT and MSG_STAT_ANY given the current full ID and its index
 *   mine                  MSG_STAT_ANY of every index up to MSG_INFO's: "found N of M"
 *   bad WHAT              the call with a bad pointer: stat set info msginfo statidx statany
 *                         (the buffer), send recv (the message), bigsend (a bad message of
 *                         more than MSGMAX bytes), badtype (a message of type 0)
 *   setuid UID            drop privileges
 *   system CMD            system(CMD) with the current ID in $ID; prints "status N"
 *   rmmine                IPC_RMID of every ID this run got and did not remove; "removed N"
 *   sleep MS | pid
 * Output: "id N", "ok", "msg TYPE TEXT", "err ENAME", ...
 */
#define _GNU_SOURCE
#include "tool.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int cur = -1;

struct message {
	long type;
	char text[65536];
};
static struct message m;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void receive(long type, size_t size, int flags)
{
	ssize_t n = msgrcv(cur, &m, size, type, flags & ~0777);
	if (n < 0) result(-1, "msg");
	else printf("msg %ld %.*s\n", m.type, (int)n, m.text);
}

static void print_stat(void)
{
	struct msqid_ds ds;
	if (result(msgctl(cur, IPC_STAT, &ds), "ok") < 0) return;
	printf("key 0x%08x qnum %lu cbytes %lu qbytes %lu mode %o\n", (unsigned)ds.msg_perm.__key,
	       (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes, (unsigned long)ds.msg_qbytes,
	       ds.msg_perm.mode & 0777);
}

static void stat_index(int index, int cmd)
{
	struct msqid_ds ds;
	if (result(msgctl(index, cmd, &ds), "id") >= 0) printf("key 0x%08x\n", (unsigned)ds.msg_perm.__key);
}

static void stat_all(void)
{
	struct msginfo mi;
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&mi);
	for (int k = 0; k <= max; k++) {
		struct msqid_ds ds;
		int id = msgctl(k, MSG_STAT, &ds);
		if (id >= 0) printf("queue %d key 0x%08x\n", id, (unsigned)ds.msg_perm.__key);
	}
	printf("end\n");
}

/* One side of the exchange: wait for `in`, touch the segment, send `out`. */
static int exchange(int shmid, long n, long in, long out, int first)
{
	struct { long type; char text[64]; } msg = { out, "ping" };
	for (long k = 0; n == 0 || k < n; k++) {
		if ((!first || k > 0) && msgrcv(cur, &msg, sizeof msg.text, in, 0) < 0) return 1;
		char *p = shmat(shmid, NULL, 0);
		if (p == (void *)-1) return 1;
		p[0]++;
		if (shmdt(p) != 0) return 1;
		msg.type = out;
		if (msgsnd(cur, &msg, sizeof msg.text, 0) != 0) return 1;
	}
	return 0;
}

static int pingpong(long n)
{
	int shmid = shmget(IPC_PRIVATE, 4096, 0600);
	if (shmid < 0) return result(-1, "shm"), 1;
	pid_t child = fork();
	if (child == 0) _exit(exchange(shmid, n, 1, 2, 0));
	printf("ready\n");
	int failed = exchange(shmid, n, 2, 1, 1);
	if (!failed && msgrcv(cur, &m, sizeof m.text, 2, 0) < 0) failed = 1;
	int st;
	waitpid(child, &st, 0);
	failed |= !WIFEXITED(st) || WEXITSTATUS(st);
	shmctl(shmid, IPC_RMID, NULL);
	printf(failed ? "pingpong failed\n" : "pingpong %ld\n", n);
	return failed;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		if (!strcmp(c, "get")) {
			int r = msgget((key_t)num(argv[i + 1]), flags_of(argv[i + 2]));
			if (r >= 0) cur = r;
			if (r >= 0 && !tool_is_mine(r)) tool_got(r);
			result(r, "id");
			i += 2;
		} else if (!strcmp(c, "private")) {
			int r = msgget(IPC_PRIVATE, 0600);
			if (r >= 0) cur = r;
			tool_got(r);
			result(r, "id");
		} else if (!strcmp(c, "use")) {
			cur = (int)num(argv[++i]);
		} else if (!strcmp(c, "send")) {
			m.type = num(argv[i + 1]);
			size_t len = strlen(argv[i + 2]);
			memcpy(m.text, argv[i + 2], len);
			result(msgsnd(cur, &m, len, flags_of(argv[i + 3]) & ~0777), "ok");
			i += 3;
		} else if (!strcmp(c, "sendsize")) {
			m.type = num(argv[i + 1]);
			size_t len = (size_t)num(argv[i + 2]);
			memset(m.text, 'x', len < sizeof m.text ? len : sizeof m.text);
			result(msgsnd(cur, &m, len, flags_of(argv[i + 3]) & ~0777), "ok");
			i += 3;
		} else if (!strcmp(c, "recv")) {
			receive(num(argv[i + 1]), (size_t)num(argv[i + 2]), flags_of(argv[i + 3]));
			i += 3;
		} else if (!strcmp(c, "bgrecv")) {
			long type = num(argv[++i]);
			if (fork() == 0) {
				double t0 = now_ms();
				ssize_t n = msgrcv(cur, &m, sizeof m.text, type, 0);
				if (n < 0) result(-1, "msg");
				else printf("waited %.0f ms for msg %ld %.*s\n", now_ms() - t0, m.type, (int)n, m.text);
				_exit(0);
			}
		} else if (!strcmp(c, "bgsend")) {
			m.type = num(argv[i + 1]);
			size_t len = (size_t)num(argv[i + 2]);
			i += 2;
			if (fork() == 0) {
				memset(m.text, 'x', len < sizeof m.text ? len : sizeof m.text);
				result(msgsnd(cur, &m, len, 0), "sent");
				_exit(0);
			}
		} else if (!strcmp(c, "waitall")) {
			while (wait(NULL) > 0) {}
		} else if (!strcmp(c, "stat")) {
			print_stat();
		} else if (!strcmp(c, "setqbytes")) {
			struct msqid_ds ds;
			if (msgctl(cur, IPC_STAT, &ds) == 0) ds.msg_qbytes = (msglen_t)num(argv[i + 1]);
			result(msgctl(cur, IPC_SET, &ds), "ok");
			i++;
		} else if (!strcmp(c, "rmid")) {
			if (result(msgctl(cur, IPC_RMID, NULL), "ok") == 0) tool_drop(cur);
		} else if (!strcmp(c, "info")) {
			struct msginfo mi;
			if (result(msgctl(0, IPC_INFO, (struct msqid_ds *)&mi), "maxidx") >= 0)
				printf("msgmni %d msgmax %d\n", mi.msgmni, mi.msgmax);
		} else if (!strcmp(c, "msginfo")) {
			struct msginfo mi;
			if (result(msgctl(0, MSG_INFO, (struct msqid_ds *)&mi), "maxidx") >= 0)
				printf("queues %d messages %d bytes %d\n", mi.msgpool, mi.msgmap, mi.msgtql);
		} else if (!strcmp(c, "statidx") || !strcmp(c, "statany")) {
			stat_index((int)num(argv[++i]), !strcmp(c, "statidx") ? MSG_STAT : MSG_STAT_ANY);
		} else if (!strcmp(c, "statcur")) {
			struct msqid_ds ds;
			stat_result("stat", msgctl(cur, MSG_STAT, &ds), cur);
			stat_result("statany", msgctl(cur, MSG_STAT_ANY, &ds), cur);
			stat_result("stat index", msgctl(index_of(cur), MSG_STAT, &ds), cur);
			stat_result("statany index", msgctl(index_of(cur), MSG_STAT_ANY, &ds), cur);
		} else if (!strcmp(c, "mine")) {
			struct msginfo mi;
			int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&mi), found = 0, misplaced = 0;
			for (int k = 0; k <= max; k++) {
				struct msqid_ds ds;
				int id = msgctl(k, MSG_STAT_ANY, &ds);
				if (id >= 0 && tool_is_mine(id)) found++, misplaced |= index_of(id) != k;
			}
			found_result(found, misplaced);
		} else if (!strcmp(c, "bad")) {
			const char *w = argv[++i];
			struct { long type; char text[8]; } zero = { 0, "x" };
			long r;
			if (!strcmp(w, "stat")) r = msgctl(cur, IPC_STAT, BAD_POINTER);
			else if (!strcmp(w, "set")) r = msgctl(cur, IPC_SET, BAD_POINTER);
			else if (!strcmp(w, "info")) r = msgctl(0, IPC_INFO, BAD_POINTER);
			else if (!strcmp(w, "msginfo")) r = msgctl(0, MSG_INFO, BAD_POINTER);
			else if (!strcmp(w, "statidx")) r = msgctl(index_of(cur), MSG_STAT, BAD_POINTER);
			else if (!strcmp(w, "statany")) r = msgctl(index_of(cur), MSG_STAT_ANY, BAD_POINTER);
			else if (!strcmp(w, "send")) r = msgsnd(cur, BAD_POINTER, 4, IPC_NOWAIT);
			else if (!strcmp(w, "bigsend")) r = msgsnd(cur, BAD_POINTER, 1 << 30, IPC_NOWAIT);
			else if (!strcmp(w, "badtype")) r = msgsnd(cur, &zero, 1, IPC_NOWAIT);
			else if (!strcmp(w, "recv")) r = msgrcv(cur, BAD_POINTER, 64, 0, IPC_NOWAIT);
			else return fprintf(stderr, "msgtool: unknown bad call %s\n", w), 2;
			result(r, w);
		} else if (!strcmp(c, "system")) {
			char id[32];
			snprintf(id, sizeof id, "%d", cur);
			setenv("ID", id, 1);
			printf("status %d\n", status_of(system(argv[++i])));
		} else if (!strcmp(c, "rmmine")) {
			int n = 0;
			while (tool_n_ids > 0) {
				n += msgctl(tool_ids[0], IPC_RMID, NULL) == 0;
				tool_drop(tool_ids[0]);
			}
			printf("removed %d\n", n);
		} else if (!strcmp(c, "setuid")) {
			result(setuid((uid_t)num(argv[++i])), "ok");
		} else if (!strcmp(c, "statall")) {
			stat_all();
		} else if (!strcmp(c, "pingpong")) {
			if (pingpong(num(argv[++i]))) return 1;
		} else if (!strcmp(c, "sleep")) {
			usleep((useconds_t)num(argv[++i]) * 1000);
		} else if (!strcmp(c, "pid")) {
			printf("pid %d\n", getpid());
		} else {
			fprintf(stderr, "msgtool: unknown command %s\n", c);
			return 2;
		}
	}
	return 0;
}
