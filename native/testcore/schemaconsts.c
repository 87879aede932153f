/*
 * schemaconsts: prints the constants of tables/schema.h as one JSON object,
 * named as tables/schema.ts names them. test/schema.test.ts compares it, and
 * schema.ts, with the "constants" section of tables/golden.json, so a
 * constant changed on one side alone fails the suite. A constant added to
 * schema.h belongs here and in golden.json too.
 */
#include "../../tables/schema.h"
#include "../core/sysv.h"

#include <stdio.h>

static const struct { const char *name; uint8_t code; } rtypes[] = {
	{ "sem", RT_SEM }, { "shm", RT_SHM }, { "msg", RT_MSG },
	{ "semkey", RT_SEMKEY }, { "shmkey", RT_SHMKEY }, { "msgkey", RT_MSGKEY },
	{ "pid", RT_PID }, { "port", RT_PORT }, { "publish", RT_PUBLISH },
};
#define NRTYPES (sizeof rtypes / sizeof *rtypes)

static const char *rtype_name(uint8_t code)
{
	for (size_t i = 0; i < NRTYPES; i++)
		if (rtypes[i].code == code) return rtypes[i].name;
	return "?";
}

/* One member per line; every line after the first starts with the comma
 * that ends the one before. Names and values are plain ASCII: nothing to
 * escape. */
static const char *sep = "";
static void key(const char *name) { printf("%s\n  \"%s\": ", sep, name); sep = ","; }
static void num(const char *name, unsigned long long v) { key(name); printf("%llu", v); }
static void str(const char *name, const char *v) { key(name); printf("\"%s\"", v); }

int main(void)
{
	printf("{");
	num("SCHEMA_VERSION", APPSHOT_SCHEMA_VERSION);
	str("TABLES_FILE", APPSHOT_TABLES_FILE);
	str("INFLIGHT_FILE", APPSHOT_INFLIGHT_FILE);
	str("OPEN_LOCK_FILE", APPSHOT_OPEN_LOCK_FILE);
	num("MAP_SIZE", APPSHOT_MAP_SIZE);
	num("MAX_READERS", APPSHOT_MAX_READERS);
	num("MAX_DBS", APPSHOT_MAX_DBS);
	num("AID_MAX", APPSHOT_AID_MAX);
	num("META_VAL_MAX", META_VAL_MAX);
	num("PATH_MAX", APPSHOT_PATH_MAX);
	key("DB");
	printf("{ \"meta\": \"%s\", \"apps\": \"%s\", \"fwd\": \"%s\", \"rev\": \"%s\", "
	       "\"alloc\": \"%s\", \"procs\": \"%s\", \"paths\": \"%s\" }",
	       DB_META, DB_APPS, DB_FWD, DB_REV, DB_ALLOC, DB_PROCS, DB_PATHS);
	key("RT");
	printf("{");
	for (size_t i = 0; i < NRTYPES; i++) printf("%s \"%s\": %u", i ? "," : "", rtypes[i].name, rtypes[i].code);
	printf(" }");
	/* Which key type each IPC family's keys are: the core's own answer. */
	key("KEY_TYPE_OF");
	printf("{ \"sem\": \"%s\", \"shm\": \"%s\", \"msg\": \"%s\" }",
	       rtype_name(sysv_key_type(RT_SEM)), rtype_name(sysv_key_type(RT_SHM)), rtype_name(sysv_key_type(RT_MSG)));
	key("APP_STATE");
	printf("{ \"running\": %u, \"ended\": %u, \"kept\": %u, \"template\": %u }",
	       APP_RUNNING, APP_ENDED, APP_KEPT, APP_TEMPLATE);
	num("APP_FLAG_NO_IDENTITY", APP_FLAG_NO_IDENTITY);
	num("APP_FLAG_CLONE", APP_FLAG_CLONE);
	num("VRID_REMAP_BASE", VRID_REMAP_BASE);
	num("SKEY_REMAP_BASE", SKEY_REMAP_BASE);
	num("SKEY_REMOVED", SKEY_REMOVED);
	num("CREATOR_TEMPLATE", CREATOR_TEMPLATE);
	key("PORT_PROTO");
	printf("{ \"tcp\": %u, \"udp\": %u }", PORT_PROTO_TCP, PORT_PROTO_UDP);
	key("PORT_RANGE_DEFAULT");
	printf("{ \"lo\": %u, \"hi\": %u }", PORT_RANGE_DEFAULT_LO, PORT_RANGE_DEFAULT_HI);
	num("FWD_VAL_LEN", FWD_VAL_LEN);
	num("APP_VAL_FIXED", APP_VAL_FIXED);
	num("FWD_KEY_MAX", FWD_KEY_MAX);
	num("REV_KEY_LEN", REV_KEY_LEN);
	num("REV_VAL_MAX", REV_VAL_MAX);
	num("PROC_KEY_LEN", PROC_KEY_LEN);
	num("PROC_VAL_MAX", PROC_VAL_MAX);
	num("PATH_KEY_MAX", PATH_KEY_MAX);
	num("PATH_VAL_MAX", PATH_VAL_MAX);
	num("META_KEY_MAX", META_KEY_MAX);
	printf("\n}\n");
	return 0;
}
