/*
 * Anonymous-inode descriptors (fds_int.h): eventfd (count, semaphore
 * mode), timerfd (clock, time left, interval, expirations not yet read),
 * signalfd (mask) and epoll (the interest list), all read from fdinfo. Any
 * other anonymous inode (io_uring, inotify, fanotify, pidfd, userfaultfd,
 * perf, bpf) is refused.
 *
 * epoll: fdinfo gives each entry's target by descriptor number in the
 * process that registered it ("tfd"), which need not still be that file
 * there; kcmp(KCMP_EPOLL_TFD) finds the ofd that really is the target. The
 * entries come back in the first process that has the epoll ofd (its
 * table entry's "epoll": [{tfd, ofd, events, data}]), registered under the
 * same number tfd once the stub's descriptors are in place.
 */
#define _GNU_SOURCE
#include "fds_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/kcmp.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* "(sec, nsec)" of timerfd's fdinfo. */
static int parse_pair(const char *s, long long *sec, long long *nsec)
{
	return s && sscanf(s, "(%lld, %lld)", sec, nsec) == 2 ? 0 : -1;
}

static int describe_eventfd(struct ofd *o, const char *fdinfo)
{
	const char *count = fds_field(fdinfo, "eventfd-count:"), *sem = fds_field(fdinfo, "eventfd-semaphore:");
	if (!count) return -1;
	json_add_addr(o->json, "count", strtoull(count, NULL, 16));
	cJSON_AddBoolToObject(o->json, "semaphore", sem && atoi(sem) == 1);
	return 0;
}

static int describe_timerfd(struct ofd *o, const char *fdinfo)
{
	const char *clk = fds_field(fdinfo, "clockid:"), *ticks = fds_field(fdinfo, "ticks:");
	long long vs, vn, is, in;
	if (!clk || !ticks || parse_pair(fds_field(fdinfo, "it_value:"), &vs, &vn) ||
	    parse_pair(fds_field(fdinfo, "it_interval:"), &is, &in))
		return -1;
	const char *sf = fds_field(fdinfo, "settime flags:");
	int clock = atoi(clk), tflags = sf ? (int)strtol(sf, NULL, 8) : 0;
	cJSON_AddNumberToObject(o->json, "clock", clock);
	json_add_addr(o->json, "ticks", strtoull(ticks, NULL, 10));
	/* it_value is the time left, whatever the timer was set with. */
	long long left = vs * 1000000000LL + vn;
	cJSON_AddNumberToObject(o->json, "value_ns", (double)left);
	cJSON_AddNumberToObject(o->json, "interval_ns", (double)(is * 1000000000LL + in));
	/* A wall-clock timer set for a date stays set for that date (a
	 * restore later fires it at once); other clocks start again at the
	 * restore, whose monotonic clock is not the dump's. */
	if ((clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_ALARM) && (tflags & TFD_TIMER_ABSTIME) && left) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		cJSON_AddNumberToObject(o->json, "at_ns", (double)(now.tv_sec * 1000000000LL + now.tv_nsec + left));
		cJSON_AddBoolToObject(o->json, "cancel_on_set", !!(tflags & TFD_TIMER_CANCEL_ON_SET));
	}
	return 0;
}

static int describe_signalfd(struct ofd *o, const char *fdinfo)
{
	const char *mask = fds_field(fdinfo, "sigmask:");
	if (!mask) return -1;
	json_add_addr(o->json, "mask", strtoull(mask, NULL, 16));
	return 0;
}

/* The entries ("tfd: N events: X data: Y") kept to be tied to ofds. */
static int describe_epoll(struct ofd *o, const char *fdinfo)
{
	o->pending = cJSON_CreateArray();
	for (const char *p = strstr(fdinfo, "tfd:"); p; p = strstr(p + 1, "\ntfd:")) {
		if (*p == '\n') p++;
		int tfd;
		unsigned events;
		unsigned long long data;
		if (sscanf(p, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3) return -1;
		cJSON *it = cJSON_CreateArray(), *prev;
		char hex[24];
		snprintf(hex, sizeof hex, "0x%llx", data);
		/* Two files registered under one number (the first's number
		 * reused while it lived on elsewhere): the kernel tells them
		 * apart by their place among that number's, in this order. */
		int toff = 0;
		cJSON_ArrayForEach(prev, o->pending) toff += cJSON_GetArrayItem(prev, 0)->valueint == tfd;
		cJSON_AddItemToArray(it, cJSON_CreateNumber(tfd));
		cJSON_AddItemToArray(it, cJSON_CreateNumber(events));
		cJSON_AddItemToArray(it, cJSON_CreateString(hex));
		cJSON_AddItemToArray(it, cJSON_CreateNumber(toff));
		cJSON_AddItemToArray(o->pending, it);
	}
	return 0;
}

int fds_describe_anon(struct fds_capture *c, struct fds_proc *p, int fd, const char *what, const struct stat *st, int flags,
		      const char *fdinfo, char *err, size_t errlen)
{
	static const struct {
		const char *what, *kind;
		int (*describe)(struct ofd *, const char *);
	} kinds[] = {
		{ "[eventfd]", "eventfd", describe_eventfd },
		{ "[timerfd]", "timerfd", describe_timerfd },
		{ "[signalfd]", "signalfd", describe_signalfd },
		{ "[eventpoll]", "epoll", describe_epoll },
	};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		if (strcmp(what, kinds[k].what)) continue;
		struct ofd *o = fds_new_ofd(c, p, fd, st, kinds[k].kind, flags);
		if (!o) return fds_err(err, errlen, "out of memory"), -1;
		if (kinds[k].describe(o, fdinfo) == 0) return 0;
		cJSON_Delete(o->json);
		cJSON_Delete(o->pending);
		c->n--;
		fds_err(err, errlen, "process %u (%s): descriptor %d is an %s whose state /proc/%d/fdinfo/%d does not show as expected",
			p->vpid, p->comm, fd, kinds[k].kind, p->spid, fd);
		return -1;
	}
	char kind[64];
	snprintf(kind, sizeof kind, "%.*s", (int)strcspn(what + (*what == '['), "]"), what + (*what == '['));
	fds_err(err, errlen, "process %u (%s): descriptor %d is of kind %s, which a snapshot cannot capture; close it before the snapshot, or use --ipc-only",
		p->vpid, p->comm, fd, kind);
	return -1;
}

struct epoll_key {
	pid_t spid; /* the epoll's process */
	struct kcmp_epoll_slot slot;
};

/* kcmp of the target against ofd j's file, in fds_order_find's sense (the
 * call itself compares j's file against the target). */
static long target_vs(const struct ofd *j, const void *key)
{
	const struct epoll_key *k = key;
	long r = syscall(SYS_kcmp, j->spid, k->spid, KCMP_EPOLL_TFD, j->fd, (unsigned long)&k->slot);
	return r == 1 ? 2 : r == 2 ? 1 : r;
}

/* The ofd that the item (tfd, toff) of o's epoll registers, or -1. */
static int epoll_target(struct fds_capture *c, const struct ofd *o, int tfd, int toff)
{
	struct epoll_key key = { o->spid, { .efd = (uint32_t)o->fd, .tfd = (uint32_t)tfd, .toff = (uint32_t)toff } };
	/* Mostly the registering process's own tfd still is the target: one
	 * call (each walks the epoll's entries in the kernel), then the ofd
	 * that descriptor is, by kcmp's order. */
	if (syscall(SYS_kcmp, o->spid, o->spid, KCMP_EPOLL_TFD, tfd, (unsigned long)&key.slot) == 0) {
		int own[2] = { o->spid, tfd }, at;
		if (fds_order_find(c, fds_file_vs, own, &at) > 0) return c->order[at];
	}
	int at, found = fds_order_find(c, target_vs, &key, &at);
	if (found > 0) return c->order[at];
	if (found == 0) return -1;
	for (int j = 0; j < c->n; j++)
		if (target_vs(&c->ofds[j], &key) == 0) return j;
	return -1;
}

void fds_epolls_resolve(struct fds_capture *c, int final)
{
	for (int i = 0; i < c->n; i++) {
		struct ofd *o = &c->ofds[i];
		if (!o->pending || !o->entry) continue;
		cJSON *list = cJSON_GetObjectItemCaseSensitive(o->entry, "epoll");
		if (!list) list = cJSON_AddArrayToObject(o->entry, "epoll");
		for (int k = 0; k < cJSON_GetArraySize(o->pending);) {
			cJSON *it = cJSON_GetArrayItem(o->pending, k);
			int tfd = cJSON_GetArrayItem(it, 0)->valueint, j = epoll_target(c, o, tfd, cJSON_GetArrayItem(it, 3)->valueint);
			if (j < 0 && !final) {
				k++;
				continue;
			}
			if (j >= 0) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddNumberToObject(e, "tfd", tfd);
				cJSON_AddNumberToObject(e, "ofd", c->ofds[j].id);
				cJSON_AddNumberToObject(e, "events", cJSON_GetArrayItem(it, 1)->valuedouble);
				cJSON_AddStringToObject(e, "data", cJSON_GetArrayItem(it, 2)->valuestring);
				cJSON_AddItemToArray(list, e);
			}
			/* final and not found: a target no process of the application
			 * holds (held by the kernel alone): nothing to register. */
			cJSON_DeleteItemFromArray(o->pending, k);
		}
	}
}

/* --- restore ------------------------------------------------------------ */

static int make_eventfd(const cJSON *o)
{
	const cJSON *sem = cJSON_GetObjectItemCaseSensitive(o, "semaphore");
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | (cJSON_IsTrue(sem) ? EFD_SEMAPHORE : 0));
	uint64_t count = json_addr(o, "count");
	if (fd >= 0 && count && write(fd, &count, sizeof count) != sizeof count) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct timespec ts_of(double ns)
{
	long long v = (long long)ns;
	return (struct timespec){ .tv_sec = v / 1000000000LL, .tv_nsec = v % 1000000000LL };
}

static int make_timerfd(const cJSON *o)
{
	int fd = timerfd_create((int)fds_get_num(o, "clock", CLOCK_MONOTONIC), TFD_CLOEXEC);
	if (fd < 0) return -1;
	struct itimerspec its = { .it_interval = ts_of(fds_get_num(o, "interval_ns", 0)), .it_value = ts_of(fds_get_num(o, "value_ns", 0)) };
	uint64_t ticks = json_addr(o, "ticks");
	int how = 0;
	/* A periodic timer that expired and was not read yet shows no time
	 * left (the kernel moves it on only when it is read): it runs again
	 * one interval on, else its period would be lost with the expiry. */
	if (!its.it_value.tv_sec && !its.it_value.tv_nsec) its.it_value = its.it_interval;
	if (cJSON_GetObjectItemCaseSensitive(o, "at_ns")) {
		its.it_value = ts_of(fds_get_num(o, "at_ns", 0));
		how = TFD_TIMER_ABSTIME | (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cancel_on_set")) ? TFD_TIMER_CANCEL_ON_SET : 0);
	}
	/* Setting the time clears the expirations: they come after. */
	if ((its.it_value.tv_sec || its.it_value.tv_nsec) && timerfd_settime(fd, how, &its, NULL)) {
		close(fd);
		return -1;
	}
	if (ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int make_signalfd(const cJSON *o)
{
	uint64_t mask = json_addr(o, "mask");
	sigset_t set;
	sigemptyset(&set);
	for (int s = 1; s <= 64; s++)
		if (mask & (1ull << (s - 1))) sigaddset(&set, s);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

int fds_make_other(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen)
{
	int fd;
	if (!strcmp(kind, "eventfd")) fd = make_eventfd(o);
	else if (!strcmp(kind, "timerfd")) fd = make_timerfd(o);
	else if (!strcmp(kind, "signalfd")) fd = make_signalfd(o);
	else if (!strcmp(kind, "epoll")) fd = epoll_create1(EPOLL_CLOEXEC);
	else return fds_make_sock(r, i, kind, o, err, errlen);
	if (fd < 0) fds_err(err, errlen, "cannot make the %s of descriptor %d again: %s", kind, i + 1, strerror(errno));
	return fd;
}

/* The ofd index at number fd in table, or -1. */
static int table_ofd(const cJSON *table, int fd)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, table)
		if ((int)fds_get_num(e, "fd", -1) == fd) return (int)fds_get_num(e, "ofd", 0) - 1;
	return -1;
}

/* Registers one entry under its number tfd: where the stub's tfd is not
 * the target (the program closed or replaced that number since), the
 * target is put there for the call and tfd given back after. */
static int register_one(struct fds_restore *r, const cJSON *table, int epfd, const cJSON *it, char *err, size_t errlen)
{
	int tfd = (int)fds_get_num(it, "tfd", -1), j = (int)fds_get_num(it, "ofd", 0) - 1;
	struct epoll_event ev = { .events = (uint32_t)fds_get_num(it, "events", 0), .data.u64 = json_addr(it, "data") };
	if (tfd < 0 || j < 0 || j >= r->n) return fds_err(err, errlen, "the image's epoll entry is damaged (tfd %d, ofd %d)", tfd, j + 1), -1;
	int saved = -1, saved_fl = 0, borrowed = table_ofd(table, tfd) != j;
	if (borrowed) {
		saved_fl = fcntl(tfd, F_GETFD);
		saved = fcntl(tfd, F_DUPFD_CLOEXEC, r->base + r->n);
		if (dup2(r->fd[j], tfd) < 0) return fds_err(err, errlen, "cannot lend number %d to an epoll entry: %s", tfd, strerror(errno)), -1;
	}
	int rc = epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev), e = errno;
	if (borrowed) {
		if (saved >= 0) {
			dup3(saved, tfd, saved_fl & FD_CLOEXEC ? O_CLOEXEC : 0);
			close(saved);
		} else {
			close(tfd);
		}
	}
	if (rc) return fds_err(err, errlen, "cannot register descriptor %d with epoll descriptor %d again (events 0x%x): %s", tfd, epfd, ev.events, strerror(e)), -1;
	return 0;
}

int fds_register_epolls(struct fds_restore *r, const cJSON *table, char *err, size_t errlen)
{
	const cJSON *e, *it;
	cJSON_ArrayForEach(e, table) {
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(e, "epoll");
		int epfd = (int)fds_get_num(e, "fd", -1);
		cJSON_ArrayForEach(it, list)
			if (register_one(r, table, epfd, it, err, errlen)) return -1;
	}
	return 0;
}
