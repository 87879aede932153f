/*
 * Where a dump's or a restore's time goes, for measuring: with
 * APPSHOT_CKPT_TIMES set in the environment each phase's milliseconds are
 * printed on stderr at the end ("appshot-checkpoint: restore: load 1.2 ms,
 * ..."). Nothing is printed otherwise.
 */
#ifndef APPSHOT_CKPT_PHASES_H
#define APPSHOT_CKPT_PHASES_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct phases {
	int on;
	double start, last;
	char text[768];
	size_t len;
};

static inline double phases_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline void phases_start(struct phases *ph)
{
	ph->on = getenv("APPSHOT_CKPT_TIMES") != NULL;
	ph->start = ph->last = phases_ms();
	ph->len = 0;
	ph->text[0] = 0;
}

/* The time since the previous phase ended, under name. */
static inline void phase(struct phases *ph, const char *name)
{
	if (!ph->on) return;
	double now = phases_ms();
	if (ph->len < sizeof ph->text)
		ph->len += (size_t)snprintf(ph->text + ph->len, sizeof ph->text - ph->len, "%s%s %.1f ms", ph->len ? ", " : "", name, now - ph->last);
	ph->last = now;
}

static inline void phases_print(struct phases *ph, const char *what)
{
	if (ph->on) fprintf(stderr, "appshot-checkpoint: %s: %s; total %.1f ms\n", what, ph->text, phases_ms() - ph->start);
}

#endif
