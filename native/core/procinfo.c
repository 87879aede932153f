#define _GNU_SOURCE
#include "procinfo.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The start of /proc/<pid>/<name> into buf, NUL-terminated, by raw calls
 * (in the shim, libc's open would be its own wrapper, which reads /proc/PID
 * paths as virtual PIDs): -1 if it cannot be read. */
static int read_proc(pid_t pid, const char *name, char *buf, size_t size)
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	ssize_t n = syscall(SYS_read, fd, buf, size - 1);
	syscall(SYS_close, fd);
	if (n <= 0) return -1;
	buf[n] = 0;
	return 0;
}

/* Field number `field` (3 or more) of /proc/<spid>/stat. */
static int stat_field(pid_t spid, int want, uint64_t *value)
{
	char buf[1024];
	if (read_proc(spid, "stat", buf, sizeof buf)) return -1;
	/* The command (field 2) may hold spaces and parentheses: count from the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p) return -1;
	p += 2; /* field 3, the state */
	for (int field = 3; field < want; field++) {
		p = strchr(p, ' ');
		if (!p) return -1;
		p++;
	}
	*value = strtoull(p, NULL, 10);
	return 0;
}

int proc_start_ticks(pid_t spid, uint64_t *ticks) { return stat_field(spid, 22, ticks); }

int proc_ended(pid_t spid)
{
	char buf[1024];
	if (read_proc(spid, "stat", buf, sizeof buf)) return 1;
	const char *p = strrchr(buf, ')');
	return !p || !p[1] || p[2] == 'Z' || p[2] == 'X';
}

pid_t proc_parent(pid_t spid)
{
	uint64_t ppid;
	return stat_field(spid, 4, &ppid) ? -1 : (pid_t)ppid;
}

pid_t proc_tracer(pid_t tid)
{
	char buf[2048];
	if (read_proc(tid, "status", buf, sizeof buf)) return -1;
	const char *p = strstr(buf, "\nTracerPid:");
	return p ? (pid_t)strtol(p + 12, NULL, 10) : -1;
}

/* Whether spid lives in this process's IPC namespace. A segment's ID is
 * the inode of its /SYSV mapping only within a namespace: another
 * namespace's (a container's, another test run's) may carry the same. */
static int same_ipc_namespace(pid_t spid)
{
	char path[40];
	struct stat own, theirs;
	snprintf(path, sizeof path, "/proc/%d/ns/ipc", (int)spid);
	/* Raw calls, as in the rest of this file: in the shim, stat would be its own wrapper, which
	 * reads /proc/PID paths as virtual PIDs. */
	if (syscall(SYS_newfstatat, AT_FDCWD, "/proc/self/ns/ipc", &own, 0) != 0 ||
	    syscall(SYS_newfstatat, AT_FDCWD, path, &theirs, 0) != 0)
		return 0;
	return own.st_dev == theirs.st_dev && own.st_ino == theirs.st_ino;
}

int proc_shm_each(pid_t spid, proc_shm_fn *fn, void *arg)
{
	char path[32];
	if (!same_ipc_namespace(spid)) return -1;
	snprintf(path, sizeof path, "/proc/%d/maps", (int)spid);
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	FILE *maps = fdopen(fd, "r");
	if (!maps) {
		syscall(SYS_close, fd);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, maps) > 0) {
		unsigned long long offset, inode;
		char perms[8];
		int name = 0;
		/* start-end perms offset dev inode name */
		if (sscanf(line, "%*s %7s %llx %*s %llu %n", perms, &offset, &inode, &name) == 3 && name &&
		    offset == 0 && !strncmp(line + name, "/SYSV", 5))
			fn(arg, (uint32_t)inode, perms[1] == 'w');
	}
	free(line);
	fclose(maps);
	return 0;
}

struct count_of {
	uint32_t shmid;
	unsigned count;
};

static void count_one(void *arg, uint32_t shmid, int writable)
{
	struct count_of *c = arg;
	(void)writable;
	if (shmid == c->shmid) c->count++;
}

unsigned proc_shm_attachments(pid_t spid, uint32_t shmid)
{
	struct count_of c = { shmid, 0 };
	proc_shm_each(spid, count_one, &c);
	return c.count;
}
