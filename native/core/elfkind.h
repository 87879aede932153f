/* What kind of program a file is, for the choice between the in-process
 * path (the shim, loaded by the dynamic linker) and the supervisor's
 * (a seccomp user-notification filter, notify/): a program with no
 * PT_INTERP never loads the shim, and a Go program (its PT_NOTE holds the
 * "Go" build ID note) makes its own system calls and installs its own
 * SIGSYS handling, so the shim's trap must not be what it meets. */
#ifndef APPSHOT_ELFKIND_H
#define APPSHOT_ELFKIND_H

#include <stddef.h>

enum elf_kind {
	ELF_OTHER,   /* not an ELF executable we know (a script, unreadable): as it is */
	ELF_DYNAMIC, /* has an interpreter, not Go: the shim */
	ELF_STATIC,  /* no interpreter: the supervisor */
	ELF_GO,      /* a Go program, static or not: the supervisor */
};

/* Reads the file's ELF and program headers (raw system calls: safe in a
 * vfork child and inside the shim). */
enum elf_kind elf_kind_of(const char *path);

/* Whether programs of this kind are covered by the supervisor's filter. */
static inline int elf_kind_notified(enum elf_kind k) { return k == ELF_STATIC || k == ELF_GO; }

/* The file execvp would run for file (searched in PATH, or PATH's default,
 * when it has no slash) into out: 0, or -1 when none is found. */
int exec_search(const char *file, const char *path_env, char *out, size_t n);

#endif
