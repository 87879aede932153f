/* The image's JSON: hex u64s and blobs, numbers, strings (json.c). */
#ifndef APPSHOT_CKPT_JSON_H
#define APPSHOT_CKPT_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Hex in JSON: addresses as "0x..." strings, binary blobs as hex text. */
void json_add_addr(cJSON *o, const char *name, uint64_t v);
uint64_t json_addr(const cJSON *o, const char *name);
void json_add_hex(cJSON *o, const char *name, const void *buf, size_t len);
/* Decodes into buf; the length, or -1 if missing or longer than max. */
long json_hex(const cJSON *o, const char *name, void *buf, size_t max);
long json_int(const cJSON *o, const char *name);
const char *json_str(const cJSON *o, const char *name);

#endif
