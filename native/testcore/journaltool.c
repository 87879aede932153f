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
 */
#include "../core/journal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t num(const char *s) { return (uint32_t)strtoul(s, NULL, 10); }

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
	} else if (!strcmp(op, "used") && argc == 4) {
		printf("%u\n", journal_used(&j));
	} else {
		fprintf(stderr, "journaltool: bad operation\n");
		return 2;
	}
	journal_close(&j);
	return 0;
}
