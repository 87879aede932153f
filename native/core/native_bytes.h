/* Reading fields of LMDB's own files (data pages, the lock file), which
 * are in the machine's byte order and may sit at any alignment. */
#ifndef APPSHOT_NATIVE_BYTES_H
#define APPSHOT_NATIVE_BYTES_H

#include <stdint.h>
#include <string.h>

static inline uint32_t load_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t load_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

#endif
