#define _GNU_SOURCE
#include "procinfo.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int proc_start_ticks(pid_t spid, uint64_t *ticks)
{
	char path[32], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)spid);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = syscall(SYS_read, fd, buf, sizeof buf - 1);
	syscall(SYS_close, fd);
	if (n <= 0) return -1;
	buf[n] = 0;
	/* The command (field 2) may hold spaces and parentheses: count from the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p) return -1;
	p += 2; /* field 3, the state */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p) return -1;
		p++;
	}
	*ticks = strtoull(p, NULL, 10);
	return 0;
}

unsigned proc_shm_attachments(pid_t spid, uint32_t shmid)
{
	char path[32];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)spid);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return 0;
	FILE *maps = fdopen(fd, "r");
	if (!maps) {
		syscall(SYS_close, fd);
		return 0;
	}
	unsigned count = 0;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, maps) > 0) {
		unsigned long long offset, inode;
		int name = 0;
		/* start-end perms offset dev inode name */
		if (sscanf(line, "%*s %*s %llx %*s %llu %n", &offset, &inode, &name) == 2 && name &&
		    offset == 0 && inode == shmid && !strncmp(line + name, "/SYSV", 5))
			count++;
	}
	free(line);
	fclose(maps);
	return count;
}
