/*
 * prodcons: a producer and a consumer that meet through fixed key 0x5eed,
 * as a legacy program built for one copy per host does. The producer
 * creates the segment and the queue, writes TAG into the segment and sends
 * "ready"; the consumer, a second process, finds both by the key, reads
 * the segment and prints what it read. Both then wait until HOLDFILE is
 * gone, so a test can look at several copies running at once, and remove
 * what they made.
 *   prodcons TAG HOLDFILE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY 0x5eed

struct note {
	long type;
	char text[16];
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void hold(const char *file)
{
	while (access(file, F_OK) == 0) usleep(10000);
}

static void consume(const char *holdfile)
{
	struct note n;
	int q = msgget(KEY, 0);
	if (q < 0) die("consumer msgget");
	if (msgrcv(q, &n, sizeof n.text, 1, 0) < 0) die("consumer msgrcv");
	int shm = shmget(KEY, 0, 0);
	if (shm < 0) die("consumer shmget");
	char *p = shmat(shm, NULL, SHM_RDONLY);
	if (p == (void *)-1) die("consumer shmat");
	printf("consumer read %s\n", p);
	fflush(stdout);
	shmdt(p);
	hold(holdfile);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3) return fprintf(stderr, "usage: prodcons TAG HOLDFILE\n"), 2;
	int shm = shmget(KEY, 4096, IPC_CREAT | IPC_EXCL | 0600);
	int q = msgget(KEY, IPC_CREAT | IPC_EXCL | 0600);
	if (shm < 0 || q < 0) die("producer creating key 0x5eed");
	pid_t consumer = fork();
	if (consumer == 0) consume(argv[2]);
	char *p = shmat(shm, NULL, 0);
	if (p == (void *)-1) die("producer shmat");
	snprintf(p, 4096, "%s", argv[1]);
	shmdt(p);
	struct note n = { 1, "ready" };
	if (msgsnd(q, &n, sizeof n.text, 0) < 0) die("producer msgsnd");
	int st;
	waitpid(consumer, &st, 0);
	shmctl(shm, IPC_RMID, NULL);
	msgctl(q, IPC_RMID, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
