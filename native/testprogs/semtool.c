/*
 * semtool: runs a list of semaphore operations and prints one line per
 * result, so tests can assert what a program sees. Each argument is one
 * command; the "current" set is the last one got or chosen with use.
 *
 *   get KEY NSEMS FLAGS   semget; FLAGS is a mix of c (IPC_CREAT), x (IPC_EXCL), - (none)
 *   private NSEMS         semget(IPC_PRIVATE)
 *   use ID                choose the current set
 *   setval N V | getval N | op N DELTA | timedop N DELTA MS | getpid N
 *   stat | rmid | info | seminfo | statidx I | statall
 *   fork                  the rest runs in a child; the parent waits and exits with its status
 *   exec PROG ARGS...     exec the rest of the arguments with the current ID in $SEMID
 *   system CMD            system(CMD) with the current ID in $SEMID; prints "status N"
 *   vfork PROG ARGS...    vfork + exec of the rest, wait; prints "status N" and stops
 *   spawn PROG ARGS...    posix_spawnp of the rest, wait; prints "status N" and stops
 *   threads N ITERS       N threads each add 1 ITERS times (semop with SEM_UNDO off); prints "val" after
 *   getall | setall V... (one value per semaphore) | ncnt N | zcnt N | setmode MODE (IPC_SET)
 *   race KEY N            N processes semget(KEY, IPC_CREAT) at once; prints each ID
 *   closefds              close every descriptor above 2, as daemons do
 *   openfile PATH         open PATH read-write (it takes the lowest free descriptor)
 *   statany I             SEM_STAT_ANY of index I
 *   statcur               SEM_STAT and SEM_STAT_ANY given the current full ID and its index;
 *                         prints "stat cur" when the answer is the current set
 *   mine                  SEM_STAT_ANY of every index up to SEM_INFO's: "found N of M" of
 *                         the sets this run got (M), each found at its own index
 *   bad WHAT              the call with a bad pointer: stat set getall setall info seminfo
 *                         statidx statany (the buffer), op (sops), bigop (100000 bad sops),
 *                         zeroop (no sops), timedop (the timeout)
 *   setuid UID            drop privileges
 *   rmmine                IPC_RMID of every ID this run got and did not remove; "removed N"
 *   sleep MS | pid
 * Output: "id N", "val N", "ok", "err ENAME", ...
 */
#define _GNU_SOURCE
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

static int cur = -1;
extern char **environ;

static void export_id(void)
{
	char id[32];
	snprintf(id, sizeof id, "%d", cur);
	setenv("SEMID", id, 1);
}

static long thread_iters;

static void *adder(void *arg)
{
	struct sembuf b = { 0, 1, 0 };
	(void)arg;
	for (long k = 0; k < thread_iters; k++)
		if (semop(cur, &b, 1) != 0) return (void *)1;
	return NULL;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		if (!strcmp(c, "get")) {
			int r = semget((key_t)num(argv[i + 1]), (int)num(argv[i + 2]), flags_of(argv[i + 3]));
			if (r >= 0) cur = r;
			if (r >= 0 && !tool_is_mine(r)) tool_got(r);
			result(r, "id");
			i += 3;
		} else if (!strcmp(c, "private")) {
			int r = semget(IPC_PRIVATE, (int)num(argv[++i]), 0600);
			if (r >= 0) cur = r;
			tool_got(r);
			result(r, "id");
		} else if (!strcmp(c, "use")) {
			cur = (int)num(argv[++i]);
		} else if (!strcmp(c, "setval")) {
			union semun a = { .val = (int)num(argv[i + 2]) };
			result(semctl(cur, (int)num(argv[i + 1]), SETVAL, a), "ok");
			i += 2;
		} else if (!strcmp(c, "getval")) {
			result(semctl(cur, (int)num(argv[++i]), GETVAL), "val");
		} else if (!strcmp(c, "getpid")) {
			result(semctl(cur, (int)num(argv[++i]), GETPID), "pid");
		} else if (!strcmp(c, "op")) {
			struct sembuf b = { (unsigned short)num(argv[i + 1]), (short)num(argv[i + 2]), 0 };
			result(semop(cur, &b, 1), "ok");
			i += 2;
		} else if (!strcmp(c, "timedop")) {
			struct sembuf b = { (unsigned short)num(argv[i + 1]), (short)num(argv[i + 2]), 0 };
			long ms = num(argv[i + 3]);
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
			result(semtimedop(cur, &b, 1, &ts), "ok");
			i += 3;
		} else if (!strcmp(c, "stat")) {
			struct semid_ds ds;
			union semun a = { .buf = &ds };
			if (result(semctl(cur, 0, IPC_STAT, a), "ok") == 0)
				printf("key 0x%08x nsems %lu mode %o\n", (unsigned)ds.sem_perm.__key,
				       (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777);
		} else if (!strcmp(c, "rmid")) {
			if (result(semctl(cur, 0, IPC_RMID), "ok") == 0) tool_drop(cur);
		} else if (!strcmp(c, "info") || !strcmp(c, "seminfo")) {
			struct seminfo si;
			union semun a = { .__buf = &si };
			int r = semctl(0, 0, !strcmp(c, "info") ? IPC_INFO : SEM_INFO, a);
			if (result(r, "maxidx") >= 0) printf("semusz %d semaem %d\n", si.semusz, si.semaem);
		} else if (!strcmp(c, "statidx")) {
			struct semid_ds ds;
			union semun a = { .buf = &ds };
			int r = semctl((int)num(argv[++i]), 0, SEM_STAT, a);
			if (result(r, "id") >= 0) printf("key 0x%08x\n", (unsigned)ds.sem_perm.__key);
		} else if (!strcmp(c, "statany")) {
			struct semid_ds ds;
			union semun a = { .buf = &ds };
			int r = semctl((int)num(argv[++i]), 0, SEM_STAT_ANY, a);
			if (result(r, "id") >= 0) printf("key 0x%08x\n", (unsigned)ds.sem_perm.__key);
		} else if (!strcmp(c, "statcur")) {
			struct semid_ds ds;
			union semun a = { .buf = &ds };
			stat_result("stat", semctl(cur, 0, SEM_STAT, a), cur);
			stat_result("statany", semctl(cur, 0, SEM_STAT_ANY, a), cur);
			stat_result("stat index", semctl(index_of(cur), 0, SEM_STAT, a), cur);
			stat_result("statany index", semctl(index_of(cur), 0, SEM_STAT_ANY, a), cur);
		} else if (!strcmp(c, "mine")) {
			struct seminfo si;
			union semun a = { .__buf = &si };
			int max = semctl(0, 0, SEM_INFO, a), found = 0, misplaced = 0;
			for (int k = 0; k <= max; k++) {
				struct semid_ds ds;
				union semun b = { .buf = &ds };
				int id = semctl(k, 0, SEM_STAT_ANY, b);
				if (id >= 0 && tool_is_mine(id)) found++, misplaced |= index_of(id) != k;
			}
			found_result(found, misplaced);
		} else if (!strcmp(c, "bad")) {
			const char *w = argv[++i];
			union semun a = { .buf = BAD_POINTER };
			struct sembuf b = { 0, -1, IPC_NOWAIT };
			long r;
			if (!strcmp(w, "stat")) r = semctl(cur, 0, IPC_STAT, a);
			else if (!strcmp(w, "set")) r = semctl(cur, 0, IPC_SET, a);
			else if (!strcmp(w, "getall")) r = semctl(cur, 0, GETALL, a);
			else if (!strcmp(w, "setall")) r = semctl(cur, 0, SETALL, a);
			else if (!strcmp(w, "info")) r = semctl(0, 0, IPC_INFO, a);
			else if (!strcmp(w, "seminfo")) r = semctl(0, 0, SEM_INFO, a);
			else if (!strcmp(w, "statidx")) r = semctl(index_of(cur), 0, SEM_STAT, a);
			else if (!strcmp(w, "statany")) r = semctl(index_of(cur), 0, SEM_STAT_ANY, a);
			else if (!strcmp(w, "op")) r = semop(cur, BAD_POINTER, 1);
			else if (!strcmp(w, "bigop")) r = semop(cur, BAD_POINTER, 100000);
			else if (!strcmp(w, "zeroop")) r = semop(cur, BAD_POINTER, 0);
			else if (!strcmp(w, "timedop")) r = semtimedop(cur, &b, 1, BAD_POINTER);
			else return fprintf(stderr, "semtool: unknown bad call %s\n", w), 2;
			result(r, w);
		} else if (!strcmp(c, "rmmine")) {
			int n = 0;
			while (tool_n_ids > 0) {
				n += semctl(tool_ids[0], 0, IPC_RMID) == 0;
				tool_drop(tool_ids[0]);
			}
			printf("removed %d\n", n);
		} else if (!strcmp(c, "setuid")) {
			result(setuid((uid_t)num(argv[++i])), "ok");
		} else if (!strcmp(c, "statall")) {
			/* What ipcs does: SEM_INFO for the highest index, then SEM_STAT each. */
			struct seminfo si;
			union semun a = { .__buf = &si };
			int max = semctl(0, 0, SEM_INFO, a);
			for (int k = 0; k <= max; k++) {
				struct semid_ds ds;
				union semun b = { .buf = &ds };
				int id = semctl(k, 0, SEM_STAT, b);
				if (id >= 0) printf("set %d key 0x%08x\n", id, (unsigned)ds.sem_perm.__key);
			}
			printf("end\n");
		} else if (!strcmp(c, "fork")) {
			fork_rest();
		} else if (!strcmp(c, "system")) {
			export_id();
			int st = system(argv[++i]);
			printf("status %d\n", status_of(st));
		} else if (!strcmp(c, "vfork")) {
			export_id();
			int st;
			pid_t p = vfork();
			if (p == 0) {
				execvp(argv[i + 1], argv + i + 1);
				_exit(127);
			}
			waitpid(p, &st, 0);
			printf("status %d\n", status_of(st));
			return 0;
		} else if (!strcmp(c, "spawn")) {
			export_id();
			pid_t p;
			int st, r = posix_spawnp(&p, argv[i + 1], NULL, NULL, argv + i + 1, environ);
			if (r) {
				errno = r;
				return result(-1, "spawn"), 1;
			}
			waitpid(p, &st, 0);
			printf("status %d\n", status_of(st));
			return 0;
		} else if (!strcmp(c, "exec")) {
			export_id();
			execvp(argv[i + 1], argv + i + 1);
			result(-1, "exec");
			return 127;
		} else if (!strcmp(c, "threads")) {
			int n = (int)num(argv[i + 1]);
			thread_iters = num(argv[i + 2]);
			pthread_t th[64];
			int failed = 0;
			for (int k = 0; k < n && k < 64; k++) pthread_create(&th[k], NULL, adder, NULL);
			for (int k = 0; k < n && k < 64; k++) {
				void *r;
				pthread_join(th[k], &r);
				failed |= r != NULL;
			}
			if (failed) printf("thread failed\n");
			result(semctl(cur, 0, GETVAL), "val");
			i += 2;
		} else if (!strcmp(c, "getall")) {
			unsigned short v[64];
			union semun a = { .array = v };
			struct semid_ds ds;
			union semun sa = { .buf = &ds };
			if (semctl(cur, 0, IPC_STAT, sa) < 0 || result(semctl(cur, 0, GETALL, a), "ok") < 0) continue;
			printf("all");
			for (unsigned long k = 0; k < ds.sem_nsems && k < 64; k++) printf(" %u", v[k]);
			printf("\n");
		} else if (!strcmp(c, "setall")) {
			unsigned short v[64] = { 0 };
			int n = 0;
			while (i + 1 < argc && n < 64 && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') v[n++] = (unsigned short)num(argv[++i]);
			union semun a = { .array = v };
			result(semctl(cur, 0, SETALL, a), "ok");
		} else if (!strcmp(c, "ncnt") || !strcmp(c, "zcnt")) {
			result(semctl(cur, (int)num(argv[++i]), !strcmp(c, "ncnt") ? GETNCNT : GETZCNT), "cnt");
		} else if (!strcmp(c, "setmode")) {
			struct semid_ds ds;
			union semun a = { .buf = &ds };
			if (semctl(cur, 0, IPC_STAT, a) < 0) {
				result(-1, "ok");
				i++;
				continue;
			}
			ds.sem_perm.mode = (unsigned short)num(argv[++i]);
			result(semctl(cur, 0, IPC_SET, a), "ok");
		} else if (!strcmp(c, "race")) {
			key_t k = (key_t)num(argv[i + 1]);
			int n = (int)num(argv[i + 2]);
			i += 2;
			for (int w = 0; w < n; w++) {
				if (fork() == 0) {
					int id = semget(k, 1, IPC_CREAT | 0600);
					printf("raced %d\n", id);
					_exit(id < 0);
				}
			}
			int failed = 0;
			for (int w = 0; w < n; w++) {
				int st;
				wait(&st);
				failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
			}
			if (failed) printf("race failed\n");
		} else if (!strcmp(c, "closefds")) {
			for (int fd = 3; fd < 1024; fd++) close(fd);
		} else if (!strcmp(c, "openfile")) {
			result(open(argv[++i], O_RDWR | O_CREAT, 0600), "fd");
		} else if (!strcmp(c, "sleep")) {
			usleep((useconds_t)num(argv[++i]) * 1000);
		} else if (!strcmp(c, "pid")) {
			printf("pid %d\n", getpid());
		} else {
			fprintf(stderr, "semtool: unknown command %s\n", c);
			return 2;
		}
	}
	return 0;
}
