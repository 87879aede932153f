/* System calls appshot makes from its own instruction, not through libc.
 *
 * The shim's seccomp filter (native/shim/trap.c) traps the translated system
 * calls when they come from the program's code or the C library, so that a
 * raw syscall(), glibc's internal calls and libraries bound straight to libc
 * (RTLD_DEEPBIND) are translated too. The calls the shim makes after it has
 * translated must not be trapped again: they are made here, by a `syscall`
 * instruction that lies in the shim's own text, which the filter lets through.
 * Every kernel call the shim makes of a trapped number goes through raw_call. */
#ifndef APPSHOT_RAWCALL_H
#define APPSHOT_RAWCALL_H

#include <errno.h>

#if !defined(__x86_64__)
#error "appshot's raw system calls are written for x86-64"
#endif

/* The kernel's answer as it gives it: a result, or -errno. */
static inline long raw_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The C library's convention: -1 with errno set, or the result. */
static inline long raw_errno(long ret)
{
	if ((unsigned long)ret > -4096UL) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

#define RAW_ARGS_(nr, a1, a2, a3, a4, a5, a6, ...)                              \
	raw_syscall6((long)(nr), (long)(a1), (long)(a2), (long)(a3), (long)(a4), \
		     (long)(a5), (long)(a6))
/* raw_call(SYS_x, args...): up to six arguments, libc's convention. */
#define raw_call(...) raw_errno(RAW_ARGS_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0))
/* raw_call_kernel(SYS_x, args...): the same, the kernel's -errno convention. */
#define raw_call_kernel(...) RAW_ARGS_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)

#endif
