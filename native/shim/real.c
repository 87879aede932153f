#define _GNU_SOURCE
#include "real.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REAL_POINTER(ret, name, params) ret (*real_##name) params;
WRAPPED_REAL(REAL_POINTER)
#undef REAL_POINTER

void *real_require(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		static const char msg[] = "appshot: the C library has no function ";
		ssize_t w = write(2, msg, sizeof msg - 1);
		w = write(2, name, strlen(name));
		w = write(2, "\n", 1);
		(void)w;
		_exit(125);
	}
	return p;
}
