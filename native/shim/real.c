#define _GNU_SOURCE
#include "real.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WRAP(ret, name, params) ret (*real_##name) params;
#include "wrapped.def"
#undef WRAP

static void *resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		static const char msg[] = "appshot: cannot find the real libc function ";
		write(2, msg, sizeof msg - 1);
		write(2, name, strlen(name));
		write(2, "\n", 1);
		_exit(125);
	}
	return p;
}

void real_resolve(void)
{
#define WRAP(ret, name, params) real_##name = (ret(*) params)resolve(#name);
#include "wrapped.def"
#undef WRAP
}
