/* appshot-notify FILE ARGV0 [ARGS...]: exec'd in front of a program that
 * does not load the shim (a static or Go program, core/elfkind.h), by the
 * supervisor for the command and by the shim's exec family for programs
 * started later. It installs the user-notification filter (filter.c),
 * hands its listener to the supervisor named by APPSHOT_NOTIFY, waits for
 * the supervisor to take it, and execs FILE with ARGV0 ARGS. Linked
 * statically: no shim loads into it, so nothing of it stays in the
 * program.
 *
 * A Go program that is dynamically linked would load the shim through
 * LD_PRELOAD, whose trap it must not meet (Go installs its own SIGSYS
 * handling): the shim is taken out of its LD_PRELOAD (the user's own
 * libraries stay). Its descendants keep the filter, so they stay covered. */
#define _GNU_SOURCE
#include "notify.h"
#include "../core/elfkind.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

static const char *file;

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "appshot: %s: %s\n", file ? file : NOTIFY_LOADER, msg);
	exit(126);
}

static int connect_supervisor(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	if (name[0] != '@' || n < 2 || n > sizeof a.sun_path) fail("%s is '%s', not a supervisor's socket; start programs with 'appshot run'", NOTIFY_ENV, name);
	memcpy(a.sun_path + 1, name + 1, n - 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (s < 0 || connect(s, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) != 0)
		fail("cannot reach the supervisor of application '%s' (%s): %s; a static or Go program runs only under 'appshot run' or 'appshot exec'",
		     getenv("APPSHOT_AID") ? getenv("APPSHOT_AID") : "?", name, strerror(errno));
	return s;
}

static int has_sys_admin(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d)) return 0;
	return (d[CAP_SYS_ADMIN / 32].effective >> (CAP_SYS_ADMIN % 32)) & 1;
}

/* Installs the filter; its listener. Waiting for the supervisor's answer
 * only killably: a call it has started (a bind it made) is not abandoned
 * by a signal and made again (kernel 5.19; without it before). */
static int install(unsigned what)
{
	struct sock_filter insns[64];
	unsigned n = notify_filter(insns, 64, what);
	struct sock_fprog prog = { (unsigned short)n, insns };
	if (!has_sys_admin() && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("cannot set no_new_privs: %s", strerror(errno));
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
	if (fd < 0 && errno == EINVAL) fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0) fail("cannot install the system call filter that translates its calls: %s", strerror(errno));
	return (int)fd;
}

static void send_listener(int s, int fd)
{
	char byte = 'L', ctl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	if (sendmsg(s, &m, MSG_NOSIGNAL) != 1) fail("cannot hand the filter to the supervisor: %s", strerror(errno));
}

/* LD_PRELOAD without the shim (a file named libappshot.so), in place. */
static void drop_shim_preload(void)
{
	const char *pre = getenv("LD_PRELOAD");
	if (!pre) return;
	char kept[4096] = "";
	size_t k = 0;
	for (const char *p = pre; *p;) {
		size_t n = strcspn(p, ": ");
		const char *base = memrchr(p, '/', n);
		base = base ? base + 1 : p;
		if (!(n - (size_t)(base - p) == strlen("libappshot.so") && !strncmp(base, "libappshot.so", n - (size_t)(base - p))) && k + n + 2 < sizeof kept) {
			if (k) kept[k++] = ':';
			memcpy(kept + k, p, n);
			k += n;
			kept[k] = 0;
		}
		p += n;
		while (*p == ':' || *p == ' ') p++;
	}
	if (k) setenv("LD_PRELOAD", kept, 1);
	else unsetenv("LD_PRELOAD");
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "appshot: usage: %s FILE ARGV0 [ARGS...] (started by appshot for static and Go programs)\n", NOTIFY_LOADER);
		return 2;
	}
	file = argv[1];
	const char *name = getenv(NOTIFY_ENV);
	if (!name) fail("%s is not set; a static or Go program runs only under 'appshot run' or 'appshot exec'", NOTIFY_ENV);
	int s = connect_supervisor(name);
	unsigned char what;
	if (read(s, &what, 1) != 1) fail("the supervisor of application '%s' did not answer: %s", getenv("APPSHOT_AID") ? getenv("APPSHOT_AID") : "?", strerror(errno));
	int fd = install(what);
	send_listener(s, fd);
	char ok;
	if (read(s, &ok, 1) != 1 || ok != 'k') fail("the supervisor did not take the system call filter");
	close(fd);
	close(s);
	if (elf_kind_of(file) == ELF_GO) drop_shim_preload();
	execv(file, argv + 2);
	fail("%s", strerror(errno));
}
