/* System IDs in the arguments of an interrupted call (see restart.h). */
#define _GNU_SOURCE
#include "restart.h"

#include <stdio.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "../../tables/schema.h"
#include "image.h"
#include "rows.h"

/* The register holding the ID for call nr, and its resource type; 0 when
 * the call names none (or names it in a way not translated: a pid <= 0). */
static size_t id_register(const struct user_regs_struct *r, uint8_t *type)
{
	switch ((long)r->orig_rax) {
	case SYS_semop:
	case SYS_semtimedop:
		*type = RT_SEM;
		return offsetof(struct user_regs_struct, rdi);
	case SYS_msgsnd:
	case SYS_msgrcv:
		*type = RT_MSG;
		return offsetof(struct user_regs_struct, rdi);
	case SYS_wait4:
		*type = RT_PID;
		return (long)r->rdi > 0 ? offsetof(struct user_regs_struct, rdi) : 0;
	case SYS_waitid:
		*type = RT_PID;
		return r->rdi == P_PID ? offsetof(struct user_regs_struct, rsi) : 0;
	}
	return 0;
}

void restart_note(const struct ckpt_ctx *ctx, cJSON *t)
{
	struct user_regs_struct r;
	uint8_t type;
	if (!ctx->tables || json_hex(t, "regs", &r, sizeof r) != sizeof r || (long)r.rax >= 0 || (long)r.rax < -516) return;
	size_t at = id_register(&r, &type);
	uint32_t vrid;
	if (!at || ckpt_rows_vrid(ctx, type, (uint32_t) * (uint64_t *)((char *)&r + at), &vrid) != 0) return;
	cJSON *o = cJSON_AddObjectToObject(t, "restart");
	cJSON_AddNumberToObject(o, "reg", (double)at);
	cJSON_AddNumberToObject(o, "type", type);
	cJSON_AddNumberToObject(o, "vrid", vrid);
}

int restart_translate(const struct ckpt_ctx *ctx, cJSON *t, char *err, size_t errlen)
{
	const cJSON *o = cJSON_GetObjectItem(t, "restart");
	struct user_regs_struct r;
	if (!o || !ctx->tables || json_hex(t, "regs", &r, sizeof r) != sizeof r) return 0;
	long at = json_int(o, "reg");
	uint32_t vrid = (uint32_t)json_int(o, "vrid"), srid;
	if (at < 0 || at + 8 > (long)sizeof r || ckpt_rows_srid(ctx, (uint8_t)json_int(o, "type"), vrid, &srid) != 0) {
		snprintf(err, errlen, "a thread waits in a system call on ID %u, which was not restored with it", vrid);
		return -1;
	}
	*(uint64_t *)((char *)&r + at) = srid;
	cJSON_DeleteItemFromObject(t, "regs");
	json_add_hex(t, "regs", &r, sizeof r);
	return 0;
}
