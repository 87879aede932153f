/*
 * The snapshot file's framing, as ts/snapfile.ts writes and reads it:
 *   header   "APPSNAP\n", version u32, crc32c of those 12 bytes u32
 *   section  kind u32, 0 u32, payload length u64, payload crc32c u32,
 *            crc32c of the previous 20 bytes u32, then the payload
 * big-endian. The checkpoint's data sections (SHARED, PROC) carry a u32 JSON
 * length, the JSON, zero padding to an absolute file offset that is a
 * multiple of the page size, then the data, so pages can be mapped straight
 * from the file.
 */
#ifndef APPSHOT_CKPT_IMAGE_H
#define APPSHOT_CKPT_IMAGE_H

#include <cjson/cJSON.h>
#include "json.h"
#include <stddef.h>
#include <stdint.h>

#define IMG_HEADER_LEN 16
#define IMG_SECTION_HEADER_LEN 24

/* Writing at an offset of a file (pwrite: the harness's descriptor is
 * shared with its own writes before ours). */
struct img_writer {
	int fd;
	uint64_t pos;
	int sections;
};
/* pwrite of all of buf at offset at, through short writes and EINTR: 0 or -errno. */
int img_pwrite_all(int fd, const void *buf, size_t len, uint64_t at);
int img_write_header(struct img_writer *w);
int img_write_json(struct img_writer *w, uint32_t kind, const cJSON *value);

/* A data section being written: begun with its JSON, then its data
 * appended in order, then ended (the header goes in last, once the length
 * and checksum are known). data_at is the absolute offset of the data. */
struct img_data {
	uint64_t header_at, data_at;
	uint32_t kind, crc;
};
int img_data_begin(struct img_writer *w, struct img_data *d, uint32_t kind, const cJSON *json);
int img_data_append(struct img_writer *w, struct img_data *d, const void *buf, size_t len);
int img_data_end(struct img_writer *w, struct img_data *d);

/* Appends data written elsewhere (by img_data_copy's workers) whose own
 * checksum is crc: the section's checksum continued as if it had been
 * computed over the bytes in order. */
void img_data_appended(struct img_writer *w, struct img_data *d, uint64_t len, uint32_t crc);
/* crc32c(crc1, A ++ B) from crc1 = crc32c(0, A)... and crc2 = crc32c(0, B). */
uint32_t img_crc_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/* One section of a file being read. */
struct img_section {
	uint32_t kind;
	uint64_t offset, length; /* of the payload */
	uint32_t crc;
};
/* Reads every section of the file up to END, checking every checksum (of
 * the data too; with headers_only, only the section headers': the caller
 * checked the payloads already). 0, or -1 with err naming what is wrong. */
int img_read_sections(int fd, int headers_only, struct img_section **out, int *count, char *err, size_t errlen);
/* A JSON section's value, or a data section's JSON (data_at then gets the
 * data's offset). NULL with err set. */
cJSON *img_section_json(int fd, const struct img_section *s, uint64_t *data_at, char *err, size_t errlen);


#endif
