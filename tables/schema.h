/*
 * appshot table schema, C side. The TypeScript mirror is tables/schema.ts;
 * both are checked against the byte vectors and the constants in
 * tables/golden.json (the constants through native/testcore/schemaconsts.c),
 * so a change here that is not made there fails the test suite.
 *
 * Integers are big-endian so that LMDB's lexicographic key order equals
 * numeric order: every row of one AID, or of one AID and resource type, is a
 * contiguous cursor range.
 */
#ifndef APPSHOT_SCHEMA_H
#define APPSHOT_SCHEMA_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>

#define APPSHOT_SCHEMA_VERSION 1u
#define APPSHOT_TABLES_FILE "tables.mdb"
#define APPSHOT_INFLIGHT_FILE "inflight"
#define APPSHOT_OPEN_LOCK_FILE "open.lock"
#define APPSHOT_MAP_SIZE (4ull << 30)
#define APPSHOT_MAX_READERS 4096u
#define APPSHOT_MAX_DBS 16u
#define APPSHOT_AID_MAX 63u
/* The longest meta key ("seeded/" aid) and value (a seed record). */
#define META_KEY_MAX (7 + APPSHOT_AID_MAX)
#define META_VAL_MAX 65536u

/* Named databases. */
#define DB_META "meta"     /* "version" -> u32, "node" -> u32, "next_aid" -> u32,
			    * "seeded/" aid -> JSON of what a clone's seeding made (ts/seeds.ts) */
#define DB_APPS "apps"     /* aid -> app record */
#define DB_FWD "fwd"       /* aid 0 type vrid -> srid vkey skey creator created_ms */
#define DB_REV "rev"       /* node type srid -> vrid aid */
#define DB_ALLOC "alloc"   /* aid 0 type -> next vrid; "" 0 type -> next host-wide srid */
#define DB_PROCS "procs"   /* spid -> start_ticks aid */
#define DB_PATHS "paths"   /* aid 0 index -> from 0 to: path redirections */

/* Resource types. Each IPC family has its own key space, as in the kernel. */
enum appshot_rtype {
	RT_SEM = 1,
	RT_SHM = 2,
	RT_MSG = 3,
	RT_SEMKEY = 4,
	RT_SHMKEY = 5,
	RT_MSGKEY = 6,
	RT_PID = 7,
	RT_PORT = 8,
	RT_PUBLISH = 9, /* vrid: the virtual port published; srid: the public port */
};

enum appshot_app_state {
	APP_RUNNING = 1,
	APP_ENDED = 2,
	APP_KEPT = 3,
	APP_TEMPLATE = 4, /* a snapshot template: owns its shared segments, runs nothing */
};

/* App record flags. */
#define APP_FLAG_NO_IDENTITY 0x0001u /* always remap: vrid != srid on purpose */
#define APP_FLAG_CLONE 0x0002u       /* a template's clone, named <template>-<n> */

/* Remapped IDs come from these ranges so they rarely meet identity IDs. */
#define VRID_REMAP_BASE 0x10000000u
#define SKEY_REMAP_BASE 0x61700001u

/* The skey of a shared memory segment removed (IPC_RMID) while still
 * attached: the kernel keeps it, keyless, until the last detach, and its
 * row stays (with vkey 0) until then. */
#define SKEY_REMOVED 0xFFFFFFFFu

static inline void put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t get_u32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline void put_u64be(uint8_t *p, uint64_t v)
{
	put_u32be(p, (uint32_t)(v >> 32)); put_u32be(p + 4, (uint32_t)v);
}
static inline uint64_t get_u64be(const uint8_t *p)
{
	return ((uint64_t)get_u32be(p) << 32) | get_u32be(p + 4);
}

/* fwd key: aid bytes, 0x00, type u8, vrid u32. */
#define FWD_KEY_MAX (APPSHOT_AID_MAX + 6)
static inline size_t fwd_key(uint8_t *out, const char *aid, size_t aidlen,
			     uint8_t type, uint32_t vrid)
{
	memcpy(out, aid, aidlen);
	out[aidlen] = 0;
	out[aidlen + 1] = type;
	put_u32be(out + aidlen + 2, vrid);
	return aidlen + 6;
}

/* fwd value: srid u32, vkey u32 (the object's virtual IPC key, 0 if none),
 * system key u32 (the key the kernel object carries, 0 if none), creator
 * spid u32, created_ms u64. */
#define FWD_VAL_LEN 24
struct fwd_val {
	uint32_t srid, vkey, skey, creator;
	uint64_t created_ms;
};
static inline void fwd_val_put(uint8_t *out, const struct fwd_val *v)
{
	put_u32be(out, v->srid); put_u32be(out + 4, v->vkey);
	put_u32be(out + 8, v->skey); put_u32be(out + 12, v->creator);
	put_u64be(out + 16, v->created_ms);
}
static inline void fwd_val_get(struct fwd_val *v, const uint8_t *in)
{
	v->srid = get_u32be(in); v->vkey = get_u32be(in + 4);
	v->skey = get_u32be(in + 8); v->creator = get_u32be(in + 12);
	v->created_ms = get_u64be(in + 16);
}
/* The creator of a row that maps a template's shared segment, or its key
 * (the reverse rows are the template's): the application attaches it
 * read-only and never removes it from the kernel. No spid is this large. */
#define CREATOR_TEMPLATE 0xFFFFFFFFu

static inline int fwd_val_removed(const struct fwd_val *v)
{
	return v->vkey == 0 && v->skey == SKEY_REMOVED;
}

/* A port as a vrid or srid: the IANA protocol number (6 TCP, 17 UDP) in
 * the high half, since TCP and UDP ports are two name spaces, as in the
 * kernel; the port number in the low half. */
#define PORT_PROTO_TCP 6u
#define PORT_PROTO_UDP 17u
static inline uint32_t port_id(uint32_t proto, uint16_t port) { return (proto << 16) | port; }
static inline uint16_t port_of(uint32_t id) { return (uint16_t)id; }
static inline uint32_t port_proto(uint32_t id) { return id >> 16; }
/* System ports given to remapped virtual ports unless --port-range (the
 * harness's APPSHOT_PORT_RANGE) says otherwise: below the kernel's
 * ephemeral range (32768-60999), so a port the kernel picks for a connect
 * never looks like one of ours. */
#define PORT_RANGE_DEFAULT_LO 20000u
#define PORT_RANGE_DEFAULT_HI 29999u

/* rev key: node u32, type u8, srid u32. */
#define REV_KEY_LEN 9
static inline void rev_key(uint8_t *out, uint32_t node, uint8_t type, uint32_t srid)
{
	put_u32be(out, node); out[4] = type; put_u32be(out + 5, srid);
}
/* rev value: vrid u32, then the aid bytes. */
#define REV_VAL_MAX (4 + APPSHOT_AID_MAX)
static inline size_t rev_val(uint8_t *out, uint32_t vrid, const char *aid, size_t aidlen)
{
	put_u32be(out, vrid); memcpy(out + 4, aid, aidlen);
	return 4 + aidlen;
}

/* procs key: spid u32. procs value: start ticks u64 (field 22 of
 * /proc/<spid>/stat, which tells a process from a later one with its
 * number), then the aid bytes. */
#define PROC_KEY_LEN 4
#define PROC_VAL_MAX (8 + APPSHOT_AID_MAX)
static inline void proc_key(uint8_t *out, uint32_t spid) { put_u32be(out, spid); }
static inline size_t proc_val(uint8_t *out, uint64_t start_ticks, const char *aid, size_t aidlen)
{
	put_u64be(out, start_ticks); memcpy(out + 8, aid, aidlen);
	return 8 + aidlen;
}

/* alloc key: aid bytes (empty for host-wide counters), 0x00, type u8.
 * alloc value: next candidate u32. */
static inline size_t alloc_key(uint8_t *out, const char *aid, size_t aidlen, uint8_t type)
{
	memcpy(out, aid, aidlen); out[aidlen] = 0; out[aidlen + 1] = type;
	return aidlen + 2;
}

/* paths key: aid bytes, 0x00, index u16: an application's path
 * redirections in the order they apply (the first that covers a path wins).
 * paths value: FROM bytes, 0x00, TO bytes (no trailing NUL); both absolute
 * and normalized, each shorter than APPSHOT_PATH_MAX. */
#define APPSHOT_PATH_MAX 4096u /* PATH_MAX: the kernel's limit, NUL included */
#define PATH_KEY_MAX (APPSHOT_AID_MAX + 3)
#define PATH_VAL_MAX (2 * APPSHOT_PATH_MAX)
static inline size_t path_key(uint8_t *out, const char *aid, size_t aidlen, uint16_t index)
{
	memcpy(out, aid, aidlen);
	out[aidlen] = 0;
	out[aidlen + 1] = (uint8_t)(index >> 8);
	out[aidlen + 2] = (uint8_t)index;
	return aidlen + 3;
}
static inline size_t path_val(uint8_t *out, const char *from, size_t fromlen, const char *to, size_t tolen)
{
	memcpy(out, from, fromlen);
	out[fromlen] = 0;
	memcpy(out + fromlen + 1, to, tolen);
	return fromlen + 1 + tolen;
}
/* Splits a paths value: FROM is in[0..*fromlen), TO in[*fromlen+1..len).
 * -1 when there is no separating NUL. */
static inline int path_val_split(const uint8_t *in, size_t len, size_t *fromlen)
{
	const uint8_t *nul = (const uint8_t *)memchr(in, 0, len);
	if (!nul) return -1;
	*fromlen = (size_t)(nul - in);
	return 0;
}

/* apps value: schema u8, state u8, flags u16, harness spid u32,
 * harness start ticks u64, created_ms u64, ended_ms u64, then the command
 * line as UTF-8 (arguments joined by NUL). */
#define APP_VAL_FIXED 32
struct app_val {
	uint8_t schema, state;
	uint16_t flags;
	uint32_t harness_spid;
	uint64_t harness_start, created_ms, ended_ms;
};
static inline void app_val_get(struct app_val *v, const uint8_t *in)
{
	v->schema = in[0]; v->state = in[1];
	v->flags = (uint16_t)((in[2] << 8) | in[3]);
	v->harness_spid = get_u32be(in + 4);
	v->harness_start = get_u64be(in + 8);
	v->created_ms = get_u64be(in + 16);
	v->ended_ms = get_u64be(in + 24);
}
static inline void app_val_put(uint8_t *out, const struct app_val *v)
{
	out[0] = v->schema; out[1] = v->state;
	out[2] = (uint8_t)(v->flags >> 8); out[3] = (uint8_t)v->flags;
	put_u32be(out + 4, v->harness_spid); put_u64be(out + 8, v->harness_start);
	put_u64be(out + 16, v->created_ms); put_u64be(out + 24, v->ended_ms);
}

/* An AID is 1..63 of [A-Za-z0-9._-], not starting with '.' or '-'. */
static inline int aid_valid(const char *aid, size_t len)
{
	if (len == 0 || len > APPSHOT_AID_MAX || aid[0] == '.' || aid[0] == '-')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = aid[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

#endif
