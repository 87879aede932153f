/*
 * What the descriptor kinds (fds.c, fds_pipe.c, fds_sock.c, fds_anon.c)
 * share: messages, the JSON fields of the files section, base64 for the
 * bytes of pipes and sockets, fdinfo fields, a copy of another process's
 * descriptor, and the ofd list kept in kcmp's order.
 */
#define _GNU_SOURCE
#include "fds_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kcmp.h>

void fds_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen) vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *fds_b64_encode(const unsigned char *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
	if (!out) return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = 0;
	return out;
}

/* The bytes of s (malloc'd, *n long), or NULL when s is not base64. */
unsigned char *fds_b64_decode(const char *s, size_t *n)
{
	size_t len = strlen(s);
	unsigned char *out = malloc(len / 4 * 3 + 1);
	if (!out || len % 4) {
		free(out);
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			const char *at = s[i + j] == '=' ? NULL : strchr(b64, s[i + j]);
			if (s[i + j] == '=') pad++;
			else if (!at || !s[i + j] || pad) {
				free(out);
				return NULL;
			}
			v = v << 6 | (at ? (uint32_t)(at - b64) : 0);
		}
		out[k++] = v >> 16;
		if (pad < 2) out[k++] = v >> 8 & 0xff;
		if (pad < 1) out[k++] = v & 0xff;
	}
	*n = k;
	return out;
}

double fds_get_num(const cJSON *o, const char *name, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The value after "name" in /proc's "name:\tvalue" text, or NULL. */
const char *fds_field(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n)) {
			p += n;
			while (*p == ' ' || *p == '\t') p++;
			return p;
		}
	return NULL;
}

int fds_pidfd_getfd(pid_t spid, int fd)
{
	int pidfd = (int)syscall(SYS_pidfd_open, spid, 0);
	if (pidfd < 0) return -1;
	int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	int e = errno;
	close(pidfd);
	errno = e;
	return got;
}

struct ofd *fds_new_ofd(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, const char *kind, int flags)
{
	if (c->n == c->cap) {
		int cap = c->cap ? 2 * c->cap : 64;
		struct ofd *m = realloc(c->ofds, (size_t)cap * sizeof *m);
		if (!m) return NULL;
		c->ofds = m;
		c->cap = cap;
	}
	struct ofd *o = &c->ofds[c->n++];
	memset(o, 0, sizeof *o);
	o->id = c->n;
	o->spid = p->spid;
	o->fd = fd;
	o->minfd = fd;
	o->dev = st->st_dev;
	o->ino = st->st_ino;
	o->json = cJSON_CreateObject();
	cJSON_AddNumberToObject(o->json, "id", o->id);
	cJSON_AddStringToObject(o->json, "kind", kind);
	cJSON_AddNumberToObject(o->json, "flags", flags);
	return o;
}

/* kcmp orders open file descriptions (by an obfuscated pointer: 0 same,
 * 1 less, 2 greater), so the ofds are kept in that order (c->order) and a
 * descriptor's is found in log n calls, not one call per ofd. */
long fds_file_vs(const struct ofd *o, const void *key)
{
	const int *k = key; /* {spid, fd} */
	return syscall(SYS_kcmp, k[0], o->spid, KCMP_FILE, k[1], o->fd);
}

int fds_order_find(struct fds_capture *c, long (*vs)(const struct ofd *, const void *), const void *key, int *at)
{
	int lo = 0, hi = c->norder;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		long r = vs(&c->ofds[c->order[mid]], key);
		if (r == 0) return *at = mid, 1;
		if (r < 0) return -1;
		if (r == 1) hi = mid;
		else lo = mid + 1;
	}
	*at = lo;
	return 0;
}

int fds_highest_fd(void)
{
	int max = 2;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (atoi(e->d_name) > max) max = atoi(e->d_name);
	if (d) closedir(d);
	return max;
}
