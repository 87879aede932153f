/* A warmed-up server, as the template tests need one: at start it loads a
 * table into shared memory (unless the segment is already there), reads
 * its config file, and then answers each TCP connection with one line
 * while a semaphore-guarded counter counts the answers.
 *
 *   tableserver PORT CONFIG TABLE_KEY COUNTER_KEY TABLE_BYTES
 *
 * Prints "loaded table" or "attached table", then "ready" (stdout, flushed).
 * Each answer: "name=$APP_NAME counter=<n> table=<sum> pid=<getpid> config=<its first line>". */
#include "tool.h"
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>

static int counter_set(key_t key)
{
	int id = semget(key, 2, 0);
	if (id >= 0) return id;
	id = semget(key, 2, IPC_CREAT | 0600);
	if (id < 0) { perror("semget"); exit(1); }
	semctl(id, 0, SETVAL, 1); /* the guard */
	semctl(id, 1, SETVAL, 0); /* the count */
	return id;
}

static int count_one(int id)
{
	struct sembuf take = { 0, -1, SEM_UNDO }, give = { 0, 1, SEM_UNDO };
	if (semop(id, &take, 1)) { perror("semop"); exit(1); }
	int n = semctl(id, 1, GETVAL) + 1;
	semctl(id, 1, SETVAL, n);
	semop(id, &give, 1);
	return n;
}

/* The table: attached where it is, else made and filled, then attached
 * read-only as a server that only reads it would. */
static const uint32_t *table(key_t key, size_t bytes)
{
	int id = shmget(key, bytes, 0);
	if (id >= 0) {
		void *p = shmat(id, NULL, 0);
		if (p == (void *)-1) { perror("shmat"); exit(1); }
		printf("attached table\n");
		return p;
	}
	id = shmget(key, bytes, IPC_CREAT | 0644);
	if (id < 0) { perror("shmget"); exit(1); }
	uint32_t *w = shmat(id, NULL, 0);
	if (w == (void *)-1) { perror("shmat"); exit(1); }
	for (size_t i = 0; i < bytes / 4; i++) w[i] = (uint32_t)(i * 2654435761u);
	shmdt(w);
	printf("loaded table\n");
	const uint32_t *r = shmat(id, NULL, SHM_RDONLY);
	if (r == (void *)-1) { perror("shmat"); exit(1); }
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: tableserver PORT CONFIG TABLE_KEY COUNTER_KEY TABLE_BYTES\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	size_t bytes = (size_t)num(argv[5]);
	const uint32_t *t = table((key_t)num(argv[3]), bytes);
	int counter = counter_set((key_t)num(argv[4]));
	char config[256] = "(none)";
	FILE *f = fopen(argv[2], "r");
	if (!f) { perror(argv[2]); return 1; }
	if (fgets(config, sizeof config, f)) config[strcspn(config, "\n")] = 0;
	fclose(f);
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)num(argv[1])) };
	if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) { perror("bind/listen"); return 1; }
	printf("ready\n");
	fflush(stdout);
	const char *name = getenv("APP_NAME");
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) continue;
		char req[256];
		ssize_t n = read(c, req, sizeof req); /* one request line; its content does not matter */
		(void)n;
		uint32_t sum = 0;
		for (size_t i = 0; i < bytes / 4; i++) sum += t[i];
		char out[512];
		int len = snprintf(out, sizeof out, "name=%s counter=%d table=%08x pid=%d config=%s\n", name ? name : "-",
				   count_one(counter), sum, (int)getpid(), config);
		if (write(c, out, (size_t)len) < 0) perror("write");
		close(c);
	}
}
