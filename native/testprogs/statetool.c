/* A program with state worth a snapshot, for the snapshot tests.
 *
 *   statetool run DIR [GOFILE]
 *
 * First run (no DIR/state): keeps a counter of 5 in a semaphore (key
 * 0x5eec), a 64 KiB table in a segment reached through key 0x5eed, three
 * pending messages (types 1, 2, 3) in a private queue; writes its vpid to
 * DIR/pid and the IDs it got to DIR/state; prints "ready" and waits.
 *
 * Later runs (DIR/state exists, as after a restore): checks that every ID
 * and key from DIR/state is still valid and holds the same data, the
 * messages in order, and that DIR/pid names this very process; prints one
 * "ok ..." line per check ("bad ..." and exit 1 otherwise). Then, with
 * GOFILE, waits for it and adds one to the counter: two restored copies
 * each find 6, not 7, when they are independent. */
#include "tool.h"
#include <sys/sem.h>
#include <sys/shm.h>

#define SEM_KEY 0x5eec
#define SHM_KEY 0x5eed
#define TABLE_SIZE 65536

struct msg { long type; char text[16]; };

static int failures;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok" : "bad", what);
	fflush(stdout);
	if (!ok) failures++;
}

static unsigned char table_byte(size_t i) { return (unsigned char)(i * 7 + 3); }

static void first_run(const char *dir)
{
	int semid = semget(SEM_KEY, 1, IPC_CREAT | IPC_EXCL | 0600);
	int shmid = shmget(SHM_KEY, TABLE_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	int msgid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (semid < 0 || shmid < 0 || msgid < 0) { perror("statetool: create"); exit(1); }
	semctl(semid, 0, SETVAL, 5);
	unsigned char *t = shmat(shmid, NULL, 0);
	for (size_t i = 0; i < TABLE_SIZE; i++) t[i] = table_byte(i);
	shmdt(t);
	for (long type = 1; type <= 3; type++) {
		struct msg m = { type, "" };
		snprintf(m.text, sizeof m.text, "message %ld", type);
		msgsnd(msgid, &m, sizeof m.text, 0);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/pid", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	snprintf(path, sizeof path, "%s/state", dir);
	f = fopen(path, "w");
	fprintf(f, "%d %d %d\n", semid, shmid, msgid);
	fclose(f);
	printf("ready\n");
	fflush(stdout);
	for (;;) pause();
}

static int read_ints(const char *dir, const char *name, int *v, int n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	int got = 0;
	while (f && got < n && fscanf(f, "%d", &v[got]) == 1) got++;
	if (f) fclose(f);
	return got == n;
}

static void later_run(const char *dir, const char *go)
{
	int ids[3], pid;
	if (!read_ints(dir, "state", ids, 3) || !read_ints(dir, "pid", &pid, 1)) { printf("bad state files\n"); exit(1); }
	int semid = ids[0], shmid = ids[1], msgid = ids[2];
	check(pid == getpid(), "pid file names this process");
	check(semget(SEM_KEY, 1, 0) == semid, "semaphore key 0x5eec gives the same ID");
	check(semctl(semid, 0, GETVAL) == 5, "counter is 5");
	check(shmget(SHM_KEY, 0, 0) == shmid, "segment key 0x5eed gives the same ID");
	unsigned char *t = shmat(shmid, NULL, SHM_RDONLY);
	int same = t != (void *)-1;
	for (size_t i = 0; same && i < TABLE_SIZE; i++) same = t[i] == table_byte(i);
	if (t != (void *)-1) shmdt(t);
	check(same, "table holds the same bytes");
	struct shmid_ds ds;
	check(shmctl(shmid, IPC_STAT, &ds) == 0 && (ds.shm_perm.mode & 0777) == 0640 && ds.shm_segsz == TABLE_SIZE, "segment mode 0640, 64 KiB");
	for (long type = 1; type <= 3; type++) {
		struct msg m;
		char want[16];
		snprintf(want, sizeof want, "message %ld", type);
		check(msgrcv(msgid, &m, sizeof m.text, 0, IPC_NOWAIT) == sizeof m.text && m.type == type && !strcmp(m.text, want),
		      type == 1 ? "message 1 first" : type == 2 ? "message 2 next" : "message 3 last");
	}
	check(msgrcv(msgid, &(struct msg){ 0 }, 16, 0, IPC_NOWAIT) < 0 && errno == ENOMSG, "no other message");
	if (go) {
		printf("checked\n");
		fflush(stdout);
		while (access(go, F_OK) != 0) usleep(10000);
		struct sembuf up = { 0, 1, 0 };
		semop(semid, &up, 1);
		usleep(100000); /* the other copy adds its own meanwhile */
		check(semctl(semid, 0, GETVAL) == 6, "counter is 6 after adding one");
	}
	exit(failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[1], "run")) {
		fprintf(stderr, "usage: statetool run DIR [GOFILE]\n");
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/state", argv[2]);
	if (access(path, F_OK) == 0) later_run(argv[2], argc > 3 ? argv[3] : NULL);
	first_run(argv[2]);
}
