/* Per-call cost of path calls, for `npm run bench`: open(O_RDONLY) + close
 * and stat on DIR/bench-file, natively on the real directory and under the
 * shim on a redirected one (or on the real one, without redirections).
 * `pathbench DIR SUFFIX` makes the file, then prints one JSON object of
 * mean nanoseconds per call: {"open_close_SUFFIX": ns, "stat_SUFFIX": ns}. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pathbench DIR SUFFIX\n");
		return 2;
	}
	char path[PATH_MAX], open_close[64], stat_name[64];
	snprintf(path, sizeof path, "%s/bench-file", argv[1]);
	snprintf(open_close, sizeof open_close, "open_close_%s", argv[2]);
	snprintf(stat_name, sizeof stat_name, "stat_%s", argv[2]);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	struct stat st;
	if (fd < 0 || close(fd) || stat(path, &st)) {
		perror(path);
		return 1;
	}
	int first = 1;
	printf("{");
	PER_CALL(open_close, 200000, close(open(path, O_RDONLY)));
	PER_CALL(stat_name, 200000, stat(path, &st));
	printf("}\n");
	return 0;
}
