/* Walks the tables file as LMDB would read it (see tablecheck.h). The page
 * layout is that of the lmdb package's LMDB (data format 2), read here
 * from the bytes, since mdb.c keeps its structures to itself:
 *
 *   page header (24 bytes): pgno u64, txnid u64, pad u16, flags u16,
 *     lower u16, upper u16 (an overflow page: its page count u32 there);
 *     lower and upper, and each node offset in the u16 array after the
 *     header, count from the end of the header
 *   node (8 bytes, then the key, then the data): lo u16, hi u16, flags
 *     u16, key size u16; a leaf's data size is lo | hi << 16, a branch's
 *     child page is lo | hi << 16 | flags << 32
 *   database record (48 bytes): pad u32, flags u16, depth u16, branch,
 *     leaf and overflow page counts, entries, root (u64 each)
 *   meta page: the header, then magic u32, version u32, address u64, map
 *     size u64, the free-page and main database records, last page u64,
 *     transaction id u64 */
#include "tablecheck.h"
#include "native_bytes.h"
#include "../../tables/schema.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGEHDRSZ 24u
#define NODESIZE 8u
#define DBRECSZ 48u
#define NUM_METAS 2u
#define META_MAGIC 0xBEEFC0DEu
#define DATA_VERSION 2u
#define P_INVALID UINT64_MAX
#define CURSOR_STACK 32u /* LMDB's deepest tree */
#define KEY_MAX 511u     /* LMDB's classic limit; appshot's keys are far shorter */

#define P_BRANCH 0x01u
#define P_LEAF 0x02u
#define P_OVERFLOW 0x04u
#define P_META 0x08u
#define P_TYPE 0xffu /* the low byte says what a page is; the high one is LMDB's bookkeeping */

#define F_BIGDATA 0x01u
#define F_SUBDATA 0x02u
#define F_DUPDATA 0x04u

/* Database flags that change how LMDB reads a tree; appshot's named
 * databases use none of them (the free-page list is integer-keyed). */
#define DB_LAYOUT_FLAGS (0x02u | 0x04u | 0x08u | 0x10u | 0x20u | 0x40u)

static uint16_t u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* The sizes a row of each of appshot's databases can have (tables/schema.h):
 * a damaged size field would make a reader take a neighbour's bytes, or
 * too few, for a key or value. */
struct row_rule {
	const char *db;
	unsigned kmin, kmax;
	size_t vmin, vmax;
	int per_mapping; /* a row per translation: TABLECHECK_FIRST reads only its first rows */
};
static const struct row_rule row_rules[] = {
	{ DB_META, 1, META_KEY_MAX, 4, META_VAL_MAX, 0 },
	{ DB_APPS, 1, APPSHOT_AID_MAX, APP_VAL_FIXED, APP_VAL_FIXED + 2 * APPSHOT_PATH_MAX * 64, 0 },
	{ DB_FWD, 7, FWD_KEY_MAX, FWD_VAL_LEN, FWD_VAL_LEN, 1 },
	{ DB_REV, REV_KEY_LEN, REV_KEY_LEN, 5, REV_VAL_MAX, 1 },
	{ DB_ALLOC, 2, APPSHOT_AID_MAX + 2, 4, 4, 0 },
	{ DB_PROCS, PROC_KEY_LEN, PROC_KEY_LEN, 9, PROC_VAL_MAX, 0 },
	{ DB_PATHS, 4, PATH_KEY_MAX, 1, PATH_VAL_MAX, 0 },
};

/* The rule of one of appshot's databases, by name; NULL for another name. */
static const struct row_rule *db_rule(const char *name, size_t len)
{
	if (len && !name[len - 1]) len--; /* the lmdb package keeps the name's NUL */
	for (size_t i = 0; i < sizeof row_rules / sizeof *row_rules; i++)
		if (strlen(row_rules[i].db) == len && !memcmp(row_rules[i].db, name, len)) return &row_rules[i];
	return NULL;
}

struct key {
	const uint8_t *data; /* NULL: unbounded */
	size_t size;
};

struct tree {
	const char *name;
	int intkey; /* the free-page list: 8-byte native integers */
	int is_main; /* the list of databases */
	const struct row_rule *rule; /* one of appshot's databases */
	unsigned depth;
	int windowed; /* TABLECHECK_FIRST reads only its first rows */
	unsigned long left; /* of those rows, how many are still to be reached */
};

struct walk {
	const uint8_t *map;
	unsigned psize;
	uint64_t last; /* the last page that may be read: in the file and <= the meta's last page */
	uint64_t meta_last; /* the meta's last page: free pages may lie past the file's end */
	enum tablecheck_scope scope;
	unsigned long rows; /* TABLECHECK_FIRST: the rows read of a windowed tree */
	uint8_t *seen; /* a bit per page, not TABLECHECK_TOP: no page is reached twice */
	char *err;
	size_t errlen;
};

static int damaged(struct walk *w, const struct tree *t, uint64_t pgno, const char *what)
{
	snprintf(w->err, w->errlen, "page %llu (%s) %s", (unsigned long long)pgno, t->name, what);
	return TABLECHECK_DAMAGED;
}

static int key_cmp(const struct tree *t, struct key a, struct key b)
{
	if (t->intkey) {
		uint64_t x = load_u64(a.data), y = load_u64(b.data);
		return x < y ? -1 : x > y;
	}
	int c = memcmp(a.data, b.data, a.size < b.size ? a.size : b.size);
	return c ? c : (a.size > b.size) - (a.size < b.size);
}

static int mark_seen(struct walk *w, const struct tree *t, uint64_t pgno)
{
	if (!w->seen) return 0;
	if (w->seen[pgno >> 3] & (1u << (pgno & 7)))
		return damaged(w, t, pgno, "is reached twice (the tree loops or shares a page)");
	w->seen[pgno >> 3] |= (uint8_t)(1u << (pgno & 7));
	return 0;
}

/* Claims a page for this walk: in the file, not a header page, not reached before. */
static int claim(struct walk *w, const struct tree *t, uint64_t pgno, const char *from)
{
	char what[96];
	if (pgno < NUM_METAS || pgno > w->last) {
		snprintf(what, sizeof what, "is named by %s but lies outside the pages in use (2-%llu)", from,
			 (unsigned long long)w->last);
		return damaged(w, t, pgno, what);
	}
	int rc = mark_seen(w, t, pgno);
	if (rc) return rc;
	const uint8_t *p = w->map + pgno * w->psize;
	if (load_u64(p) != pgno) {
		snprintf(what, sizeof what, "says it is page %llu", (unsigned long long)load_u64(p));
		return damaged(w, t, pgno, what);
	}
	return 0;
}

/* A free-page list record of the lmdb package's LMDB: a count, then that
 * many entries, each a page number, 0 (a slot kept free for growth), or
 * -N followed by the first page number of a block of N pages (as its
 * mdb_midl_print reads them). */
static int check_idl(struct walk *w, const struct tree *t, uint64_t pgno, const uint8_t *d, size_t size)
{
	if (size < 8 || size % 8 || (load_u64(d) + 1) > size / 8)
		return damaged(w, t, pgno, "holds a free-page record whose count does not fit its size");
	for (uint64_t i = 1, n = load_u64(d); i <= n; i++) {
		int64_t entry = (int64_t)load_u64(d + i * 8), block = 1;
		if (entry == 0) continue;
		if (entry < 0) {
			if (entry < -(int64_t)w->meta_last) return damaged(w, t, pgno, "lists a free-page block longer than the file");
			block = -entry;
			if (++i > n) return damaged(w, t, pgno, "holds a free-page block with no page number");
			entry = (int64_t)load_u64(d + i * 8);
		}
		if (entry < (int64_t)NUM_METAS || (uint64_t)(entry + block - 1) > w->meta_last)
			return damaged(w, t, pgno, "lists a free page that is not a page of the file");
	}
	return 0;
}

/* The pages of a value too big for its leaf. */
static int check_overflow(struct walk *w, const struct tree *t, uint64_t leaf, uint64_t opg, size_t dsize,
			  const uint8_t **data)
{
	int rc = claim(w, t, opg, "a value");
	if (rc) return rc;
	const uint8_t *p = w->map + opg * w->psize;
	uint32_t pages = load_u32(p + 20);
	if ((u16(p + 18) & P_TYPE) != P_OVERFLOW || pages == 0 || opg + pages - 1 > w->last ||
	    dsize > (uint64_t)pages * w->psize - PAGEHDRSZ)
		return damaged(w, t, leaf, "names overflow pages that do not hold its value");
	for (uint64_t i = 1; i < pages; i++)
		if ((rc = mark_seen(w, t, opg + i))) return rc;
	*data = p + PAGEHDRSZ;
	return 0;
}

static int walk_tree(struct walk *w, const struct tree *parent, const uint8_t *rec, const char *name, size_t namelen);
static int walk_page(struct walk *w, struct tree *t, uint64_t pgno, unsigned level, struct key lo, struct key hi);

/* One node of a leaf: its flags, its value's place, what it holds. */
static int check_leaf_node(struct walk *w, const struct tree *t, uint64_t pgno, const uint8_t *node, size_t room_left)
{
	unsigned flags = u16(node + 4), ksize = u16(node + 6);
	size_t dsize = u16(node) | (size_t)u16(node + 2) << 16;
	const uint8_t *data = node + NODESIZE + ksize;
	if (flags & ~(F_BIGDATA | F_SUBDATA | F_DUPDATA) || flags & F_DUPDATA)
		return damaged(w, t, pgno, "has a row with flags appshot's tables never use");
	if (NODESIZE + ksize + (flags & F_BIGDATA ? 8 : dsize) > room_left)
		return damaged(w, t, pgno, "has a row that runs past the end of the page");
	if (t->intkey && ksize != 8) return damaged(w, t, pgno, "has a key that is not a transaction id");
	if (t->rule && (ksize < t->rule->kmin || ksize > t->rule->kmax || dsize < t->rule->vmin || dsize > t->rule->vmax))
		return damaged(w, t, pgno, "has a row whose key or value is of a size the database never holds");
	if (flags & F_SUBDATA) {
		if (!t->is_main || dsize != DBRECSZ) return damaged(w, t, pgno, "has a row that claims to be a database");
		return walk_tree(w, t, data, (const char *)node + NODESIZE, ksize);
	}
	if (w->scope == TABLECHECK_TOP) return 0;
	if (flags & F_BIGDATA) {
		int rc = check_overflow(w, t, pgno, load_u64(data), dsize, &data);
		if (rc) return rc;
	}
	return t->intkey ? check_idl(w, t, pgno, data, dsize) : 0;
}

static int walk_page(struct walk *w, struct tree *t, uint64_t pgno, unsigned level, struct key lo, struct key hi)
{
	const unsigned room = w->psize - PAGEHDRSZ;
	const uint8_t *p = w->map + pgno * w->psize;
	unsigned type = u16(p + 18) & P_TYPE, lower = u16(p + 20), upper = u16(p + 22);
	int leaf = level == t->depth;
	if (type != (leaf ? P_LEAF : P_BRANCH))
		return damaged(w, t, pgno, leaf ? "is not the leaf page its tree's depth says" : "is not the branch page its tree's depth says");
	unsigned n = lower >> 1;
	if (lower & 1 || lower > upper || upper > room || (!leaf && n == 0))
		return damaged(w, t, pgno, "has bounds of its free space that do not fit the page");
	struct key prev = { NULL, 0 };
	for (unsigned i = 0; i < n; i++) {
		unsigned off = u16(p + PAGEHDRSZ + 2 * i);
		if (off < upper || off & 1 || off + NODESIZE > room)
			return damaged(w, t, pgno, "has a row outside the page's used space");
		const uint8_t *node = p + PAGEHDRSZ + off;
		struct key k = { node + NODESIZE, u16(node + 6) };
		if (k.size > KEY_MAX || off + NODESIZE + k.size > room)
			return damaged(w, t, pgno, "has a key that runs past the end of the page");
		int rc;
		if (leaf) {
			if ((rc = check_leaf_node(w, t, pgno, node, room - off))) return rc;
		}
		/* A branch's first key is never compared: it stands for everything below the second. */
		if (!leaf && i == 0) continue;
		if (t->intkey && k.size != 8) return damaged(w, t, pgno, "has a key that is not a transaction id");
		/* In order after the previous key, and, the first, not below the
		 * parent's bound (the page's keys in order then stay above it). */
		if (prev.data ? key_cmp(t, prev, k) >= 0 : lo.data && key_cmp(t, k, lo) < 0)
			return damaged(w, t, pgno, "has keys out of order");
		prev = k;
	}
	if (prev.data && hi.data && key_cmp(t, prev, hi) >= 0) return damaged(w, t, pgno, "has keys out of order");
	if (leaf) {
		t->left = t->left > n ? t->left - n : 0;
		return 0;
	}
	if (w->scope == TABLECHECK_TOP) return 0;
	/* In key order, as a cursor reads them: a windowed tree's walk ends
	 * with the leaf that holds the last of its rows. */
	for (unsigned i = 0; i < n && (!t->windowed || t->left); i++) {
		const uint8_t *node = p + PAGEHDRSZ + u16(p + PAGEHDRSZ + 2 * i);
		uint64_t child = u16(node) | (uint64_t)u16(node + 2) << 16 | (uint64_t)u16(node + 4) << 32;
		struct key clo = lo, chi = hi;
		if (i > 0) clo = (struct key){ node + NODESIZE, u16(node + 6) };
		if (i + 1 < n) {
			const uint8_t *next = p + PAGEHDRSZ + u16(p + PAGEHDRSZ + 2 * (i + 1));
			chi = (struct key){ next + NODESIZE, u16(next + 6) };
		}
		int rc = claim(w, t, child, "a branch");
		if (rc || (rc = walk_page(w, t, child, level + 1, clo, chi))) return rc;
	}
	return 0;
}

/* A tree from its database record: the free-page list and the list of
 * databases (parent NULL), or a named database (a row of the list). */
static int walk_tree(struct walk *w, const struct tree *parent, const uint8_t *rec, const char *name, size_t namelen)
{
	char label[40];
	snprintf(label, sizeof label, "%s%.*s%s", parent ? "database '" : "", (int)(parent && namelen > 16 ? 16 : namelen), name,
		 parent ? "'" : "");
	struct tree t = { label, !parent && !strcmp(name, "the free-page list"), !parent && !strcmp(name, "the list of databases"),
			  parent ? db_rule(name, namelen) : NULL, u16(rec + 6), 0, 0 };
	t.windowed = w->scope == TABLECHECK_FIRST && (t.intkey || (t.rule && t.rule->per_mapping));
	t.left = t.windowed ? w->rows : (unsigned long)-1;
	uint64_t root = load_u64(rec + 40);
	if (parent && !t.rule) {
		char what[96];
		snprintf(what, sizeof what, "names a database appshot does not have (%s)", label);
		return damaged(w, parent, 0, what);
	}
	if (parent && (u16(rec + 4) & DB_LAYOUT_FLAGS))
		return damaged(w, &t, root, "is the root of a database whose flags appshot never uses");
	if (root == P_INVALID) return t.depth == 0 ? 0 : damaged(w, &t, root, "is the root of a database whose depth says it is not empty");
	if (t.depth == 0 || t.depth > CURSOR_STACK) return damaged(w, &t, root, "is the root of a tree of impossible depth");
	struct key none = { NULL, 0 };
	int rc = claim(w, &t, root, "a database record");
	return rc ? rc : walk_page(w, &t, root, 1, none, none);
}

/* The meta page LMDB will use: both must be LMDB's, the newer one counts. */
static const uint8_t *pick_meta(const uint8_t *map, size_t size, char *err, size_t errlen)
{
	const uint8_t *m[NUM_METAS];
	unsigned psize = 0;
	for (unsigned i = 0; i < NUM_METAS; i++) {
		size_t at = (size_t)i * psize;
		if (size < at + PAGEHDRSZ + 136 || (u16(map + at + 18) & P_META) == 0 || load_u32(map + at + 24) != META_MAGIC) {
			snprintf(err, errlen, "header page %u is not LMDB's (it is %s)", i,
				 size < at + PAGEHDRSZ + 136 ? "missing" : "overwritten");
			return NULL;
		}
		if (load_u32(map + at + 28) != DATA_VERSION) {
			snprintf(err, errlen, "its data format is %u, not LMDB's %u", load_u32(map + at + 28), DATA_VERSION);
			return NULL;
		}
		if (i == 0) psize = load_u32(map + 48);
		if (psize < 512 || psize > 65536 || (psize & (psize - 1)) || load_u32(map + at + 48) != psize) {
			snprintf(err, errlen, "header page %u gives an impossible page size", i);
			return NULL;
		}
		m[i] = map + at;
	}
	return load_u64(m[1] + 152) > load_u64(m[0] + 152) ? m[1] : m[0];
}

int tablecheck_map(const void *map, size_t size, enum tablecheck_scope scope, unsigned long rows, char *err, size_t errlen)
{
	const uint8_t *meta = pick_meta(map, size, err, errlen);
	if (!meta) return TABLECHECK_DAMAGED;
	struct walk w = { map, load_u32(meta + 48), load_u64(meta + 144), load_u64(meta + 144), scope, rows, NULL, err, errlen };
	uint64_t in_file = size / w.psize;
	if (in_file < NUM_METAS + 1 && load_u64(meta + 136) != P_INVALID) {
		snprintf(err, errlen, "it is truncated: %zu bytes", size);
		return TABLECHECK_DAMAGED;
	}
	/* Pages a transaction took and freed are never written: the file may
	 * end before the last page, but no tree may reach past its end. */
	if (w.last >= in_file) w.last = in_file - 1;
	if (scope != TABLECHECK_TOP && !(w.seen = calloc(w.last / 8 + 1, 1))) {
		snprintf(err, errlen, "out of memory checking %llu pages", (unsigned long long)w.last + 1);
		return ENOMEM;
	}
	int rc = walk_tree(&w, NULL, meta + 48, "the free-page list", 18);
	if (!rc) rc = walk_tree(&w, NULL, meta + 96, "the list of databases", 21);
	free(w.seen);
	return rc;
}

int tablecheck_file(const char *path, enum tablecheck_scope scope, unsigned long rows, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		if (fd >= 0) close(fd);
		return e;
	}
	if (st.st_size == 0) {
		close(fd);
		snprintf(err, errlen, "it is empty (0 bytes)");
		return TABLECHECK_DAMAGED;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", path, strerror(e));
		return e;
	}
	int rc = tablecheck_map(map, (size_t)st.st_size, scope, rows, err, errlen);
	munmap(map, (size_t)st.st_size);
	return rc;
}
