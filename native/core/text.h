/* Numbers and names put together and read back without libc's formatted
 * I/O (the printf and scanf families, strtol's): a program's start under
 * the shim reads a few numbers from its environment and joins a few paths,
 * and the first of those calls in a process costs 25-70 us of CPU in a VM
 * (their code and locale tables paged in; issue 21), where the program
 * itself may never make one. */
#ifndef APPSHOT_TEXT_H
#define APPSHOT_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The unsigned decimal at s, at most max: the character after it, or
 * NULL when s does not start with a digit or the number passes max. */
static inline const char *text_decimal(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10) return NULL;
		v = v * 10 + d;
	}
	if (p == s) return NULL;
	*out = v;
	return p;
}

/* a, b and c one after the other into out (len bytes, NUL included): 0, or
 * -1 when they do not fit (out is then empty). */
static inline int text_join(char *out, size_t len, const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	if (la + lb + lc >= len) {
		if (len) out[0] = 0;
		return -1;
	}
	memcpy(out, a, la);
	memcpy(out + la, b, lb);
	memcpy(out + la + lb, c, lc + 1);
	return 0;
}

#endif
