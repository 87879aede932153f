/*
 * The JSON of the image's sections, as every part of appshot-checkpoint
 * reads and writes it: addresses and other u64s as "0x..." strings (a JSON
 * number loses what is above 2^53), binary blobs as hex text.
 */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_add_addr(cJSON *o, const char *name, uint64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)v);
	cJSON_AddStringToObject(o, name, buf);
}

uint64_t json_addr(const cJSON *o, const char *name)
{
	const char *s = json_str(o, name);
	return s ? strtoull(s, NULL, 16) : 0;
}

void json_add_hex(cJSON *o, const char *name, const void *buf, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(len * 2 + 1);
	const uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) s[2 * i] = digits[p[i] >> 4], s[2 * i + 1] = digits[p[i] & 15];
	s[len * 2] = 0;
	cJSON_AddStringToObject(o, name, s);
	free(s);
}

static int nibble(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

long json_hex(const cJSON *o, const char *name, void *buf, size_t max)
{
	const char *s = json_str(o, name);
	if (!s) return -1;
	size_t len = strlen(s) / 2;
	if (len > max) return -1;
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
		if (hi < 0 || lo < 0) return -1;
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	return (long)len;
}

long json_int(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}
