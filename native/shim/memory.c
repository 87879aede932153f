/* Private memory mapped from a snapshot's image. A restore with mapped
 * pages (appshot restore --map-pages, warm clones) maps the process's
 * private anonymous memory from the image file, MAP_PRIVATE: pages are
 * shared copy-on-write by every process restored from it. Two calls tell
 * such memory from the anonymous memory the program made:
 * - madvise(MADV_DONTNEED) over it brings the file's bytes back, where
 *   anonymous memory reads zeros (allocators count on it: jemalloc, glibc's
 *   arenas, malloc_trim); MADV_FREE over a file mapping is EINVAL;
 * - mremap growing it maps more of the file (another mapping's saved
 *   bytes, or SIGBUS past the file's end), where anonymous memory grows
 *   zeros; and a mapping partly restored from the image is several
 *   mappings to the kernel, which mremap refuses (EFAULT).
 * So in such a process a second seccomp filter traps those calls (trap.c,
 * from the same code as the first filter), and the handler here answers as
 * over anonymous memory: the parts that are private mappings of the image
 * are replaced by fresh anonymous memory (zeros, the pages freed), the
 * rest gets the kernel's own call. The kernel says which mapping holds an
 * address (the PROCMAP_QUERY ioctl of /proc/self/maps; its text where the
 * kernel lacks it), and the image's file by its device and inode, which the
 * restorer wrote on the canary page. A process restored with copied memory
 * gets no filter and pays nothing. */
#define _GNU_SOURCE
#include "memory.h"
#include "trap.h"
#include "shim.h"
#include "../core/rawcall.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ioctl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define PAGE 4096ULL

/* The image's file (ino 0: none). */
static struct {
	uint32_t major, minor;
	uint64_t ino;
} image;

/* ------------------------------------------------------ which mapping */

/* PROCMAP_QUERY (linux/fs.h, kernel 6.11), spelled out for older headers. */
struct procmap_query {
	uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#define PROCMAP_QUERY_FILE_BACKED_VMA 0x20

struct vma {
	uint64_t start, end;
	int prot, shared;
	uint32_t major, minor;
	uint64_t ino;
};

static int is_image(const struct vma *v)
{
	return image.ino && !v->shared && v->ino == image.ino && v->major == image.major && v->minor == image.minor;
}

static unsigned long hex(const char **s)
{
	unsigned long v = 0;
	for (;; (*s)++) {
		char c = **s;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0) return v;
		v = v * 16 + (unsigned long)d;
	}
}

/* One line of /proc/self/maps: "start-end rwxp offset major:minor inode". */
static int parse_line(const char *s, struct vma *v)
{
	v->start = hex(&s);
	if (*s++ != '-') return -1;
	v->end = hex(&s);
	if (*s++ != ' ') return -1;
	v->prot = (s[0] == 'r' ? PROT_READ : 0) | (s[1] == 'w' ? PROT_WRITE : 0) | (s[2] == 'x' ? PROT_EXEC : 0);
	v->shared = s[3] == 's';
	s += 5;
	hex(&s); /* offset */
	s++;
	v->major = (uint32_t)hex(&s);
	if (*s++ != ':') return -1;
	v->minor = (uint32_t)hex(&s);
	s++;
	v->ino = 0;
	for (; *s >= '0' && *s <= '9'; s++) v->ino = v->ino * 10 + (uint64_t)(*s - '0');
	return 0;
}

/* Without PROCMAP_QUERY: the text, read from the start to the first
 * mapping that ends above addr. Slow, and only on old kernels. */
static int vma_from_text(int fd, uint64_t addr, struct vma *v)
{
	char buf[4096];
	size_t have = 0;
	if (raw_call_kernel(SYS_lseek, fd, 0, SEEK_SET) != 0) return -1;
	for (;;) {
		long r = raw_call_kernel(SYS_read, fd, buf + have, sizeof buf - 1 - have);
		if (r <= 0) return -1;
		have += (size_t)r;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = __builtin_memchr(line, '\n', have - (size_t)(line - buf)))) {
			*nl = 0;
			if (parse_line(line, v) == 0 && v->end > addr) return 0;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		__builtin_memmove(buf, line, have);
		if (have == sizeof buf - 1) have = 0; /* a line longer than the buffer: its path, not needed */
	}
}

/* The mapping holding addr, or else the next one above it: 0, or -1 when
 * there is none. */
static int vma_at(int fd, uint64_t addr, struct vma *v)
{
	static int no_query;
	if (!no_query) {
		struct procmap_query q = { .size = sizeof q, .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA, .query_addr = addr };
		long r = raw_call_kernel(SYS_ioctl, fd, PROCMAP_QUERY, &q);
		if (r == 0) {
			*v = (struct vma){ q.vma_start, q.vma_end, (int)(q.vma_flags & 7), (q.vma_flags & PROCMAP_QUERY_VMA_SHARED) != 0,
					   q.dev_major, q.dev_minor, q.inode };
			return 0;
		}
		if (r == -ENOENT) return -1;
		no_query = 1; /* ENOTTY: a kernel before 6.11 */
	}
	return vma_from_text(fd, addr, v);
}

static int open_maps(void)
{
	return (int)raw_call_kernel(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
}

/* ------------------------------------------ where the image may still be */

/* The address ranges that may hold pages of the image: its mappings at the
 * restore, less what this file made anonymous since, plus where it moved
 * them. A call over none of them is the kernel's at once, without opening
 * /proc/self/maps (4 us here): memory the program mapped after the restore,
 * or that was the image's and was given back. Sorted and disjoint. Changed
 * under a lock, with the thread's signals blocked (a signal handler giving
 * memory back would wait for itself), and a sequence count odd meanwhile;
 * read without the lock: a reader that sees a change under way looks up.
 * A lock left held by a thread that is gone (a fork child of a process
 * forked while another thread changed the set) is taken over, the set then
 * given up. Full, or given up: every call looks up. */
#define MAX_RANGES 8192
static struct range {
	uint64_t start, end;
} ranges[MAX_RANGES] SHIM_COLD;
static unsigned n_ranges, seq;
static int ranges_off, lock_owner;

static int may_hold_image(uint64_t start, uint64_t end)
{
	unsigned s = __atomic_load_n(&seq, __ATOMIC_ACQUIRE);
	if ((s & 1) || __atomic_load_n(&ranges_off, __ATOMIC_RELAXED)) return 1;
	unsigned lo = 0, hi = __atomic_load_n(&n_ranges, __ATOMIC_RELAXED);
	while (lo < hi) { /* the first range ending above start */
		unsigned mid = (lo + hi) / 2;
		if (ranges[mid].end <= start) lo = mid + 1;
		else hi = mid;
	}
	int hit = lo < n_ranges && ranges[lo].start < end;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return hit || __atomic_load_n(&seq, __ATOMIC_RELAXED) != s;
}

#define SIGBIT(sig) (1ULL << ((sig) - 1))

static void change_begin(uint64_t *mask)
{
	uint64_t all = ~(SIGBIT(SIGSYS) | SIGBIT(SIGKILL) | SIGBIT(SIGSTOP));
	raw_call_kernel(SYS_rt_sigprocmask, SIG_BLOCK, &all, mask, 8);
	int me = (int)raw_call_kernel(SYS_gettid), owner = 0;
	for (unsigned spins = 1; !__atomic_compare_exchange_n(&lock_owner, &owner, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED); owner = 0, spins++) {
		if (spins % 64 == 0 && raw_call_kernel(SYS_tgkill, raw_call_kernel(SYS_getpid), owner, 0) == -ESRCH &&
		    __atomic_compare_exchange_n(&lock_owner, &owner, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			__atomic_store_n(&ranges_off, 1, __ATOMIC_RELAXED); /* left half changed */
			if (__atomic_load_n(&seq, __ATOMIC_RELAXED) & 1) __atomic_add_fetch(&seq, 1, __ATOMIC_RELEASE);
			break;
		}
		raw_call_kernel(SYS_sched_yield);
	}
	__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void change_end(const uint64_t *mask)
{
	__atomic_add_fetch(&seq, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&lock_owner, 0, __ATOMIC_RELEASE);
	raw_call_kernel(SYS_rt_sigprocmask, SIG_SETMASK, mask, NULL, 8);
}

static void ranges_cut(uint64_t a, uint64_t b)
{
	unsigned i = 0;
	while (i < n_ranges && ranges[i].end <= a) i++;
	while (i < n_ranges && ranges[i].start < b) {
		struct range r = ranges[i];
		if (r.start < a && r.end > b) { /* split in two */
			if (n_ranges == MAX_RANGES) {
				ranges_off = 1;
				return;
			}
			__builtin_memmove(ranges + i + 1, ranges + i, (n_ranges - i) * sizeof *ranges);
			n_ranges++;
			ranges[i].end = a, ranges[i + 1].start = b;
			return;
		}
		if (r.start < a) ranges[i++].end = a;
		else if (r.end > b) ranges[i].start = b, i++;
		else __builtin_memmove(ranges + i, ranges + i + 1, (--n_ranges - i) * sizeof *ranges);
	}
}

static void ranges_add(uint64_t a, uint64_t b)
{
	ranges_cut(a, b);
	unsigned i = 0;
	while (i < n_ranges && ranges[i].end < a) i++;
	if (i < n_ranges && ranges[i].end == a) { /* joins the one before */
		ranges[i].end = b;
		if (i + 1 < n_ranges && ranges[i + 1].start == b)
			ranges[i].end = ranges[i + 1].end, __builtin_memmove(ranges + i + 1, ranges + i + 2, (--n_ranges - i - 1) * sizeof *ranges);
	} else if (i < n_ranges && ranges[i].start == b) {
		ranges[i].start = a;
	} else if (n_ranges == MAX_RANGES) {
		ranges_off = 1;
	} else {
		__builtin_memmove(ranges + i + 1, ranges + i, (n_ranges - i) * sizeof *ranges);
		ranges[i] = (struct range){ a, b };
		n_ranges++;
	}
}

/* [cut_a, cut_b) holds none of the image now; [add_a, add_b) may. */
static void ranges_change(uint64_t cut_a, uint64_t cut_b, uint64_t add_a, uint64_t add_b)
{
	uint64_t mask;
	change_begin(&mask);
	if (cut_a < cut_b) ranges_cut(cut_a, cut_b);
	if (add_a < add_b) ranges_add(add_a, add_b);
	change_end(&mask);
}

int memory_restored_entry(uint32_t major, uint32_t minor, uint64_t ino)
{
	image.major = major, image.minor = minor, image.ino = ino;
	n_ranges = 0, ranges_off = 0, seq = 0, lock_owner = 0;
	if (!ino) return 0;
	/* The image's mappings, as the restorer made them; without
	 * PROCMAP_QUERY (a kernel before 6.11) every call looks up. */
	int fd = open_maps();
	ranges_off = 1;
	if (fd >= 0) {
		struct procmap_query q = { .size = sizeof q, .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_FILE_BACKED_VMA };
		long r;
		while ((r = raw_call_kernel(SYS_ioctl, fd, PROCMAP_QUERY, &q)) == 0) {
			struct vma v = { q.vma_start, q.vma_end, 0, (q.vma_flags & PROCMAP_QUERY_VMA_SHARED) != 0, q.dev_major, q.dev_minor, q.inode };
			if (is_image(&v)) ranges_add(v.start, v.end);
			q = (struct procmap_query){ .size = sizeof q, .query_flags = q.query_flags, .query_addr = v.end };
		}
		if (r == -ENOENT) ranges_off = n_ranges == MAX_RANGES;
		raw_call(SYS_close, fd);
	}
	return trap_memory_install();
}

/* Fresh anonymous memory over [at, at + len): zeros, the old pages freed. */
static long anonymous(uint64_t at, uint64_t len, int prot)
{
	long r = raw_call_kernel(SYS_mmap, at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	return r < 0 ? r : 0;
}

/* ------------------------------------------------------------- madvise */

/* madvise giving memory back, as over anonymous memory: the image's parts
 * made anonymous, the others advised by the kernel, mapping by mapping in
 * order as the kernel walks them (it stops at the first error; a hole in
 * the range is ENOMEM at the end, the rest advised). */
static long give_back(uint64_t start, uint64_t len_in, long advice)
{
	uint64_t len = (len_in + PAGE - 1) & ~(PAGE - 1), end = start + len;
	/* The kernel's own checks first, with its answers. */
	if ((start & (PAGE - 1)) || (len_in && !len) || end < start) return raw_call_kernel(SYS_madvise, start, len_in, advice);
	if (end == start) return 0;
	if (!may_hold_image(start, end)) return raw_call_kernel(SYS_madvise, start, len_in, advice);
	int fd = open_maps();
	if (fd < 0) return raw_call_kernel(SYS_madvise, start, len_in, advice); /* no /proc: as it was */
	long answer = 0;
	uint64_t at = start;
	while (at < end) {
		struct vma v;
		if (vma_at(fd, at, &v) != 0 || v.start >= end) {
			answer = -ENOMEM;
			break;
		}
		if (v.start > at) answer = -ENOMEM, at = v.start;
		uint64_t e = v.end < end ? v.end : end;
		long r = is_image(&v) ? anonymous(at, e - at, v.prot) : raw_call_kernel(SYS_madvise, at, e - at, advice);
		if (r) {
			answer = r;
			break;
		}
		at = e;
	}
	raw_call(SYS_close, fd);
	ranges_change(start, at, 0, 0); /* none of the image is left there */
	return answer;
}

/* -------------------------------------------------------------- mremap */

/* The mappings that make [old, old + len) and go on after it with the same
 * protection, private: one anonymous mapping to the program, several to the
 * kernel where some of its pages are the image's. */
struct span {
	uint64_t end; /* of the last such mapping: where growing in place starts */
	int prot, image, whole;
};

static int span_of(int fd, uint64_t old, uint64_t len, struct span *s)
{
	struct vma v;
	if (vma_at(fd, old, &v) != 0 || v.start > old || v.shared) return -1;
	*s = (struct span){ v.end, v.prot, is_image(&v), 1 };
	while (vma_at(fd, s->end, &v) == 0 && v.start == s->end && !v.shared && v.prot == s->prot) {
		if (v.start < old + len) s->image |= is_image(&v);
		s->end = v.end;
	}
	return s->end >= old + len ? 0 : -1;
}

/* Moves [from, from + len) to dest (a mapping there replaced), mapping by
 * mapping: the image's pages keep their backing, the others theirs. */
static long move_pages(int fd, uint64_t from, uint64_t len, uint64_t dest)
{
	for (uint64_t at = from; at < from + len;) {
		struct vma v;
		if (vma_at(fd, at, &v) != 0) return -EFAULT;
		uint64_t e = v.end < from + len ? v.end : from + len;
		long r = raw_call_kernel(SYS_mremap, at, e - at, e - at, MREMAP_MAYMOVE | MREMAP_FIXED, dest + (at - from));
		if (r < 0) return r;
		at = e;
	}
	return 0;
}

/* mremap of memory partly or wholly the image's, as over the anonymous
 * memory it was: grown in place with an anonymous tail when the room after
 * it is free, else moved onto fresh anonymous memory (MREMAP_MAYMOVE, or to
 * new_addr with MREMAP_FIXED), whose tail past the old length reads zeros.
 * 1 with *answer set; 0 for the kernel's own call (shrinking in place, a
 * request the kernel refuses or that the image is no part of, any other
 * flag). */
static int remap(uint64_t old, uint64_t old_len, uint64_t new_len, long flags, uint64_t new_addr, long *answer)
{
	uint64_t ol = (old_len + PAGE - 1) & ~(PAGE - 1), nl = (new_len + PAGE - 1) & ~(PAGE - 1);
	int fixed = (flags & MREMAP_FIXED) != 0, may_move = (flags & MREMAP_MAYMOVE) != 0;
	if ((flags & ~(long)(MREMAP_MAYMOVE | MREMAP_FIXED)) || (old & (PAGE - 1)) || !ol || !nl || nl < new_len || ol < old_len ||
	    (fixed && (!may_move || (new_addr & (PAGE - 1)) || (new_addr < old + ol && old < new_addr + nl))) || (!fixed && nl <= ol))
		return 0;
	if (!may_hold_image(old, old + ol)) return 0;
	int fd = open_maps();
	if (fd < 0) return 0;
	struct span s;
	int mine = span_of(fd, old, ol, &s) == 0 && s.image;
	if (!mine) goto done;
	if (!fixed && old + ol == s.end) {
		/* In place: the tail anonymous, if the room after it is free. */
		long r = raw_call_kernel(SYS_mmap, old + ol, nl - ol, s.prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (r == (long)(old + ol)) {
			*answer = (long)old;
			goto done;
		}
		if (r >= 0) raw_call(SYS_munmap, r, nl - ol); /* a kernel that takes NOREPLACE as a hint */
	}
	if (!may_move) {
		*answer = -ENOMEM;
		goto done;
	}
	long dest = raw_call_kernel(SYS_mmap, fixed ? new_addr : 0, nl, s.prot, MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0), -1, 0);
	if (dest < 0) {
		*answer = dest;
		goto done;
	}
	uint64_t keep = ol < nl ? ol : nl;
	*answer = move_pages(fd, old, keep, (uint64_t)dest);
	if (*answer == 0 && ol > keep) raw_call(SYS_munmap, old + keep, ol - keep); /* shrunk while moved */
	if (*answer == 0) *answer = dest, ranges_change(old, old + ol, (uint64_t)dest, (uint64_t)dest + keep);
done:
	raw_call(SYS_close, fd);
	return mine;
}

static long complete(long nr, const long a[6])
{
	long answer;
	if (nr == SYS_madvise) return give_back((uint64_t)a[0], (uint64_t)a[1], a[2]);
	if (nr != SYS_mremap) return raw_call_kernel(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (remap((uint64_t)a[0], (uint64_t)a[1], (uint64_t)a[2], a[3], (uint64_t)a[4], &answer)) return answer;
	/* The kernel's: pages of the image it moves may be the image's still. */
	answer = raw_call_kernel(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	uint64_t old = (uint64_t)a[0], ol = ((uint64_t)a[1] + PAGE - 1) & ~(PAGE - 1), nl = ((uint64_t)a[2] + PAGE - 1) & ~(PAGE - 1);
	if (answer >= 0 && (uint64_t)answer != old && may_hold_image(old, old + ol)) ranges_change(old, old + ol, (uint64_t)answer, (uint64_t)answer + nl);
	return answer;
}

/* Counted as the shim's table code on the canary page (in_tables): a
 * snapshot is not taken with a thread in here, which holds a descriptor of
 * this process's /proc/self/maps and may be between making memory
 * anonymous and noting it (a restore maps that memory from the image
 * again). */
long memory_trapped(long nr, const long a[6])
{
	shim_tables_enter();
	long answer = complete(nr, a);
	shim_tables_leave();
	return answer;
}
