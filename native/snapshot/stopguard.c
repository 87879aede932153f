/*
 * appshot-stopguard RECORD PROGRAM ARGS...: the waiting half of a
 * snapshot's guard (ts/stops.ts). Its stdin is the read end of a pipe only
 * the snapshotting process writes to; the kernel closes that pipe however
 * the snapshotter ends. At end of file: if the stop record RECORD is gone,
 * the snapshot ended as it should (it resumed or ended its processes and
 * removed the record first), and there is nothing to do. If it is still
 * there, the snapshotter died holding the application stopped: PROGRAM
 * (Node with ts/snapguard.js) is started to resume it.
 *
 * In C, not Node, because it starts while the snapshot copies: a Node
 * guard's start took 30-40 ms of a 256 MiB snapshot's 170 ms on two CPUs,
 * for a program that almost never has anything to do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: appshot-stopguard RECORD PROGRAM [ARGS...] (started by appshot snapshot)\n");
		return 2;
	}
	char buf[256];
	/* Nothing is ever written: only the end (or a read error) matters. */
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n == 0 || (n < 0 && errno != EINTR)) break;
	}
	if (access(argv[1], F_OK) != 0 && errno == ENOENT) return 0;
	execv(argv[2], argv + 2);
	fprintf(stderr, "appshot: the snapshot guard cannot start %s to resume what a dead snapshot left stopped; run 'appshot gc'\n", argv[2]);
	return 1;
}
