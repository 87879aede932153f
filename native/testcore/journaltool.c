/*
 * journaltool HOME AID OP ARGS...: one operation on the journal of new
 * objects (core/journal.h) in HOME's inflight file, as application AID,
 * for test/journal.test.ts: the real shared file, lock and slots, from
 * separate processes, with a death at the points a holder of the lock may
 * die. Numbers are decimal.
 *
 *   insert TYPE VRID SRID [POINT]     prints "ok", or "full"
 *   keyed TYPE VRID SRID KEY [POINT]  the same, a keyed row (vkey = skey = KEY)
 *   drop TYPE VRID SRID [POINT]       prints "dropped", "absent" or "folding"
 * With POINT ("torn", "moved": core/journal.h journal_fault) the process
 * kills itself there.
 *   find TYPE VRID...                 prints "VRID SRID", or "VRID none", for each
 *   findsrid TYPE SRID...             prints "SRID VRID", or "SRID none", for each
 *   used                              prints the slots in use
 *   die-creating                      a child takes a pending record for a private
 *                                     semaphore set, creates one and exits before
 *                                     its record has the ID; prints "id ID"
 *   hold-creating                     the same, but the child lives on (until
 *                                     killed); prints "id ID PID"
 *   recover                           journal_recover (no LMDB rows): prints
 *                                     "removed N" and its report
 */
#include "../core/journal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

static uint32_t num(const char *s) { return (uint32_t)strtoul(s, NULL, 10); }

static const struct kernel_ops libc_ops = { semget, semctl, shmget, shmctl, msgget, msgctl };
static int never_mapped(void *ctx, uint8_t type, uint32_t srid)
{
	(void)ctx, (void)type, (void)srid;
	return 0;
}

/* A child between its kernel call and its record's ID: it exits there
 * (hold 0) or stays (hold 1, until killed). */
static void creating(struct journal *j, int hold)
{
	int pipefd[2];
	if (pipe(pipefd)) exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		/* The caller reads the tool's output to its end: not through this child. */
		int null = open("/dev/null", O_RDWR);
		for (int fd = 0; fd < 3; fd++) dup2(null, fd);
		if (journal_create_begin(j, getpid(), 0, RT_SEM, IPC_PRIVATE) < 0) _exit(3);
		int id = semget(IPC_PRIVATE, 1, 0600);
		if (write(pipefd[1], &id, sizeof id) != sizeof id) _exit(4);
		if (hold) pause();
		_exit(0);
	}
	int id = -1;
	if (read(pipefd[0], &id, sizeof id) != sizeof id || id < 0) exit(1);
	if (hold) printf("id %d %d\n", id, (int)pid);
	else {
		waitpid(pid, NULL, 0);
		printf("id %d\n", id);
	}
}

static const char *die_at;
static void die(const char *point)
{
	if (die_at && !strcmp(point, die_at)) raise(SIGKILL);
}

int main(int argc, char **argv)
{
	struct journal j;
	if (argc < 4) {
		fprintf(stderr, "usage: journaltool HOME AID OP ARGS...\n");
		return 2;
	}
	int rc = journal_open(&j, argv[1]);
	if (rc) {
		printf("error %s\n", strerror(rc));
		return 1;
	}
	journal_set_app(&j, argv[2]);
	const char *op = argv[3];
	int keyed = !strcmp(op, "keyed");
	int point = ((!strcmp(op, "insert") || !strcmp(op, "drop")) && argc == 8) || (keyed && argc == 9);
	if (point) die_at = argv[argc - 1], journal_fault = die;
	if ((!strcmp(op, "insert") && (argc == 7 || point)) || (keyed && (argc == 8 || point))) {
		uint32_t key = keyed ? num(argv[7]) : 0;
		struct journal_row r = { (uint8_t)num(argv[4]), num(argv[5]), num(argv[6]), 1, 0, key, key };
		puts(journal_insert(&j, &r) ? "full" : "ok");
	} else if (!strcmp(op, "drop") && (argc == 7 || point)) {
		static const char *said[] = { [JOURNAL_DROPPED] = "dropped", [JOURNAL_ABSENT] = "absent", [JOURNAL_FOLDING] = "folding" };
		puts(said[journal_drop(&j, (uint8_t)num(argv[4]), num(argv[5]), num(argv[6]))]);
	} else if (!strcmp(op, "find") && argc >= 6) {
		for (int i = 5; i < argc; i++) {
			struct journal_row r;
			if (journal_find(&j, (uint8_t)num(argv[4]), num(argv[i]), &r)) printf("%s none\n", argv[i]);
			else printf("%s %u\n", argv[i], r.srid);
		}
	} else if (!strcmp(op, "findsrid") && argc >= 6) {
		for (int i = 5; i < argc; i++) {
			uint32_t vrid;
			if (journal_find_srid(&j, (uint8_t)num(argv[4]), num(argv[i]), &vrid)) printf("%s none\n", argv[i]);
			else printf("%s %u\n", argv[i], vrid);
		}
	} else if ((!strcmp(op, "die-creating") || !strcmp(op, "hold-creating")) && argc == 4) {
		creating(&j, op[0] == 'h');
	} else if (!strcmp(op, "recover") && argc == 4) {
		char report[512];
		int removed = journal_recover(&j, &libc_ops, never_mapped, NULL, report, sizeof report, 1);
		printf("removed %d\n%s\n", removed, report);
	} else if (!strcmp(op, "used") && argc == 4) {
		printf("%u\n", journal_used(&j));
	} else {
		fprintf(stderr, "journaltool: bad operation\n");
		return 2;
	}
	journal_close(&j);
	return 0;
}
