/* A warm clone's changes to the image it restores (see clonefix.h). */
#define _GNU_SOURCE
#include "clonefix.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

int clonefix_add_move(struct clone_moves *m, char *arg)
{
	char *eq = strchr(arg, '=');
	if (!eq || arg[0] != '/' || eq[1] != '/' || m->n == CLONEFIX_MAX_MOVES) return -1;
	*eq = 0;
	m->from[m->n] = arg;
	m->to[m->n] = eq + 1;
	m->n++;
	return 0;
}

/* path moved by the first rule whose OLD is it or lies above it, into buf;
 * NULL when no rule covers it (or the result is too long). */
static const char *moved(const struct clone_moves *m, const char *path, char *buf)
{
	for (int i = 0; path && i < m->n; i++) {
		size_t n = strlen(m->from[i]);
		if (strncmp(path, m->from[i], n) || (path[n] && path[n] != '/')) continue;
		if (snprintf(buf, PATH_MAX, "%s%s", m->to[i], path + n) >= PATH_MAX) return NULL;
		return buf;
	}
	return NULL;
}

static void move_field(const struct clone_moves *m, cJSON *o, const char *name)
{
	char buf[PATH_MAX];
	const char *to = moved(m, json_str(o, name), buf);
	if (to) cJSON_ReplaceItemInObject(o, name, cJSON_CreateString(to));
}

void clonefix_apply(cJSON *files, cJSON **procs, int n, const struct clone_moves *m, int own_stdio)
{
	cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(files, "ofds"))
	{
		const char *kind = json_str(o, "kind");
		const cJSON *std = cJSON_GetObjectItem(o, "std");
		if (!kind) continue;
		if (own_stdio && !strcmp(kind, "file") && cJSON_IsNumber(std)) {
			cJSON_ReplaceItemInObject(o, "kind", cJSON_CreateString("inherit"));
			cJSON_AddNumberToObject(o, "from", std->valueint);
		} else if (!strcmp(kind, "file") || !strcmp(kind, "dir") || !strcmp(kind, "unix-listen"))
			move_field(m, o, "path");
	}
	cJSON_ArrayForEach(o, cJSON_GetObjectItem(files, "pipes")) move_field(m, o, "path"); /* FIFOs by name */
	for (int i = 0; i < n; i++) move_field(m, procs[i], "cwd");
}
