/* What kind of program a file is (elfkind.h). */
#define _GNU_SOURCE
#include "elfkind.h"
#include "rawcall.h"

#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GO_NOTE_BUILDID 4

static long pread_all(int fd, void *buf, size_t n, off_t at)
{
	return raw_call(SYS_pread64, fd, buf, n, at);
}

/* Whether a PT_NOTE segment holds the Go build ID note. */
static int has_go_note(int fd, const Elf64_Phdr *ph)
{
	char buf[512];
	size_t n = ph->p_filesz < sizeof buf ? ph->p_filesz : sizeof buf;
	if (pread_all(fd, buf, n, (off_t)ph->p_offset) != (long)n) return 0;
	for (size_t at = 0; at + sizeof(Elf64_Nhdr) <= n;) {
		const Elf64_Nhdr *h = (const Elf64_Nhdr *)(buf + at);
		size_t name = (h->n_namesz + 3) & ~3u, desc = (h->n_descsz + 3) & ~3u;
		/* Go writes the name "Go" padded with zeros and counts the padding. */
		if ((h->n_namesz == 3 || h->n_namesz == 4) && h->n_type == GO_NOTE_BUILDID && at + sizeof *h + 3 <= n &&
		    !memcmp(buf + at + sizeof *h, "Go", 3))
			return 1;
		at += sizeof *h + name + desc;
	}
	return 0;
}

enum elf_kind elf_kind_of(const char *path)
{
	int fd = (int)raw_call(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return ELF_OTHER;
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	enum elf_kind kind = ELF_OTHER;
	if (pread_all(fd, &eh, sizeof eh, 0) != sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
		goto out;
	size_t size = eh.e_phnum * sizeof(Elf64_Phdr);
	if (pread_all(fd, ph, size, (off_t)eh.e_phoff) != (long)size) goto out;
	int interp = 0, go = 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_INTERP) interp = 1;
		if (ph[i].p_type == PT_NOTE && !go) go = has_go_note(fd, &ph[i]);
	}
	kind = go ? ELF_GO : interp ? ELF_DYNAMIC : ELF_STATIC;
out:
	raw_call(SYS_close, fd);
	return kind;
}

int exec_search(const char *file, const char *path_env, char *out, size_t n)
{
	size_t flen = strlen(file);
	if (strchr(file, '/')) {
		if (flen + 1 > n) return -1;
		memcpy(out, file, flen + 1);
		return 0;
	}
	const char *p = path_env ? path_env : "/bin:/usr/bin";
	while (1) {
		const char *end = strchr(p, ':');
		size_t dlen = end ? (size_t)(end - p) : strlen(p);
		if (dlen + 1 + flen + 1 <= n) {
			if (dlen) {
				memcpy(out, p, dlen);
				out[dlen] = '/';
				memcpy(out + dlen + 1, file, flen + 1);
			} else {
				memcpy(out, file, flen + 1); /* an empty entry is the working directory */
			}
			if (raw_call(SYS_faccessat, AT_FDCWD, out, X_OK, 0) == 0) return 0;
		}
		if (!end) return -1;
		p = end + 1;
	}
}
