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

/* With the trap on (trap.c), a wrapper's REAL(x) of a trapped system call
 * must not go through libc: libc's instruction is trapped, and the call,
 * already translated, would be translated again. For each such function,
 * kernel_NAME (kernelcall.c) makes the system call libc's NAME makes, from the
 * shim's own instruction (rawcall.h), with libc's -1/errno convention;
 * real_use_kernel points REAL(NAME) at it. A function of the list with no
 * kernel_NAME here keeps libc's (a weak reference left undefined is NULL).
 * What is lost: these calls are no longer pthread cancellation points.
 * Hidden as well as weak: the link resolves each (kernelcall.c's, or NULL),
 * where a default-visibility weak reference left undefined was a symbol
 * the loader looked up, and failed to find, in every object of every
 * program started (~130 of them; issue 21). */
#define KERNEL_DECLARE(ret, name, params) extern ret kernel_##name params __attribute__((weak, visibility("hidden")));
WRAPPED_REAL(KERNEL_DECLARE)
#undef KERNEL_DECLARE

void real_use_kernel(void)
{
#define USE_KERNEL(ret, name, params)                                          \
	if (kernel_##name) real_##name = kernel_##name;
	WRAPPED_REAL(USE_KERNEL)
#undef USE_KERNEL
}
