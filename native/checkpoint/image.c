/* The snapshot file's framing (see image.h). */
#define _GNU_SOURCE
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/snapshot.h"

#define PAGE 4096UL
static const char MAGIC[8] = "APPSNAP\n";
#define VERSION 1

static void be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void be64(uint8_t *p, uint64_t v) { be32(p, v >> 32), be32(p + 4, (uint32_t)v); }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

int img_pwrite_all(int fd, const void *buf, size_t len, uint64_t at)
{
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)at);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) return -errno;
		p += n, len -= (size_t)n, at += (uint64_t)n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t at)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)at);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) return n < 0 ? -errno : -ENODATA;
		p += n, len -= (size_t)n, at += (uint64_t)n;
	}
	return 0;
}

int img_write_header(struct img_writer *w)
{
	uint8_t h[IMG_HEADER_LEN];
	memcpy(h, MAGIC, 8);
	be32(h + 8, VERSION);
	be32(h + 12, crc32c(0, h, 12));
	int rc = img_pwrite_all(w->fd, h, sizeof h, w->pos);
	if (!rc) w->pos += sizeof h;
	return rc;
}

static void section_header(uint8_t *h, uint32_t kind, uint64_t len, uint32_t crc)
{
	memset(h, 0, IMG_SECTION_HEADER_LEN);
	be32(h, kind);
	be64(h + 8, len);
	be32(h + 16, crc);
	be32(h + 20, crc32c(0, h, 20));
}

int img_write_json(struct img_writer *w, uint32_t kind, const cJSON *value)
{
	char *text = cJSON_PrintUnformatted(value);
	if (!text) return -ENOMEM;
	size_t len = strlen(text);
	uint8_t h[IMG_SECTION_HEADER_LEN];
	section_header(h, kind, len, crc32c(0, text, len));
	int rc = img_pwrite_all(w->fd, h, sizeof h, w->pos);
	if (!rc) rc = img_pwrite_all(w->fd, text, len, w->pos + sizeof h);
	free(text);
	if (!rc) w->pos += sizeof h + len, w->sections++;
	return rc;
}

int img_data_begin(struct img_writer *w, struct img_data *d, uint32_t kind, const cJSON *json)
{
	char *text = cJSON_PrintUnformatted(json);
	if (!text) return -ENOMEM;
	size_t len = strlen(text);
	d->kind = kind;
	d->header_at = w->pos;
	uint64_t at = w->pos + IMG_SECTION_HEADER_LEN;
	uint8_t lead[4];
	be32(lead, (uint32_t)len);
	d->data_at = (at + 4 + len + PAGE - 1) & ~(PAGE - 1);
	size_t pad = d->data_at - (at + 4 + len);
	char *zero = calloc(1, pad + 1);
	int rc = zero ? 0 : -ENOMEM;
	if (!rc) rc = img_pwrite_all(w->fd, lead, 4, at);
	if (!rc) rc = img_pwrite_all(w->fd, text, len, at + 4);
	if (!rc) rc = img_pwrite_all(w->fd, zero, pad, at + 4 + len);
	if (!rc) d->crc = crc32c(crc32c(crc32c(0, lead, 4), text, len), zero, pad);
	free(zero);
	free(text);
	w->pos = d->data_at;
	return rc;
}

int img_data_append(struct img_writer *w, struct img_data *d, const void *buf, size_t len)
{
	d->crc = crc32c(d->crc, buf, len); /* first: write copies from a warm cache */
	int rc = img_pwrite_all(w->fd, buf, len, w->pos);
	if (!rc) w->pos += len;
	return rc;
}

/* CRC combination over GF(2), as zlib's crc32_combine, with CRC-32C's
 * polynomial: the checksum of B shifted past len2 zero bytes. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (; vec; vec >>= 1, mat++)
		if (vec & 1) sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *sq, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++) sq[n] = gf2_times(mat, mat[n]);
}

uint32_t img_crc_combine(uint32_t crc1, uint32_t crc2, uint64_t len2)
{
	uint32_t even[32], odd[32], row = 1;
	if (!len2) return crc1;
	odd[0] = 0x82f63b78; /* one zero bit */
	for (int n = 1; n < 32; n++) odd[n] = row, row <<= 1;
	gf2_square(even, odd); /* two zero bits */
	gf2_square(odd, even); /* four */
	do {
		gf2_square(even, odd);
		if (len2 & 1) crc1 = gf2_times(even, crc1);
		len2 >>= 1;
		if (!len2) break;
		gf2_square(odd, even);
		if (len2 & 1) crc1 = gf2_times(odd, crc1);
		len2 >>= 1;
	} while (len2);
	return crc1 ^ crc2;
}

void img_data_appended(struct img_writer *w, struct img_data *d, uint64_t len, uint32_t crc)
{
	d->crc = img_crc_combine(d->crc, crc, len);
	w->pos += len;
}

int img_data_end(struct img_writer *w, struct img_data *d)
{
	uint8_t h[IMG_SECTION_HEADER_LEN];
	section_header(h, d->kind, w->pos - d->header_at - IMG_SECTION_HEADER_LEN, d->crc);
	int rc = img_pwrite_all(w->fd, h, sizeof h, d->header_at);
	if (!rc) w->sections++;
	return rc;
}

/* The payload's checksum, read in chunks. */
static int payload_crc(int fd, uint64_t at, uint64_t len, uint32_t *crc)
{
	static char *buf;
	const size_t chunk = 4 << 20;
	if (!buf && !(buf = malloc(chunk))) return -ENOMEM;
	uint32_t c = 0;
	while (len) {
		size_t n = len < chunk ? (size_t)len : chunk;
		int rc = pread_all(fd, buf, n, at);
		if (rc) return rc;
		c = crc32c(c, buf, n);
		at += n, len -= n;
	}
	*crc = c;
	return 0;
}

int img_read_sections(int fd, int headers_only, struct img_section **out, int *count, char *err, size_t errlen)
{
	struct stat st;
	uint8_t h[IMG_SECTION_HEADER_LEN];
	if (fstat(fd, &st) != 0 || pread_all(fd, h, IMG_HEADER_LEN, 0) != 0 || memcmp(h, MAGIC, 8) != 0 || get32(h + 12) != crc32c(0, h, 12)) {
		snprintf(err, errlen, "it is not an appshot snapshot (its header is missing or damaged)");
		return -1;
	}
	if (get32(h + 8) != VERSION) {
		snprintf(err, errlen, "it is of format version %u, this appshot reads %u", get32(h + 8), VERSION);
		return -1;
	}
	uint64_t pos = IMG_HEADER_LEN, size = (uint64_t)st.st_size;
	int n = 0, cap = 16;
	struct img_section *s = malloc(cap * sizeof *s);
	for (;;) {
		if (pos + IMG_SECTION_HEADER_LEN > size || pread_all(fd, h, sizeof h, pos) != 0) {
			snprintf(err, errlen, "it is truncated: section %d at byte %llu is cut off", n + 1, (unsigned long long)pos);
			goto bad;
		}
		if (get32(h + 20) != crc32c(0, h, 20)) {
			snprintf(err, errlen, "the header of section %d at byte %llu is damaged", n + 1, (unsigned long long)pos);
			goto bad;
		}
		struct img_section one = {get32(h), pos + IMG_SECTION_HEADER_LEN, get64(h + 8), get32(h + 16)};
		if (one.length > size - one.offset) {
			snprintf(err, errlen, "it is truncated: section %d at byte %llu needs %llu bytes", n + 1, (unsigned long long)pos, (unsigned long long)one.length);
			goto bad;
		}
		uint32_t crc;
		if (!headers_only && (payload_crc(fd, one.offset, one.length, &crc) != 0 || crc != one.crc)) {
			snprintf(err, errlen, "section %d at byte %llu fails its checksum", n + 1, (unsigned long long)pos);
			goto bad;
		}
		if (one.kind == 0xffff) break;
		if (n == cap) s = realloc(s, (cap *= 2) * sizeof *s);
		s[n++] = one;
		pos = one.offset + one.length;
	}
	*out = s, *count = n;
	return 0;
bad:
	free(s);
	return -1;
}

cJSON *img_section_json(int fd, const struct img_section *s, uint64_t *data_at, char *err, size_t errlen)
{
	uint64_t at = s->offset, len = s->length;
	if (data_at) {
		uint8_t lead[4];
		if (len < 4 || pread_all(fd, lead, 4, at) != 0 || get32(lead) > len - 4) {
			snprintf(err, errlen, "section at byte %llu has a bad JSON length", (unsigned long long)at);
			return NULL;
		}
		len = get32(lead);
		at += 4;
		*data_at = (at + len + PAGE - 1) & ~(PAGE - 1);
	}
	char *text = malloc(len + 1);
	if (!text || pread_all(fd, text, len, at) != 0) {
		free(text);
		snprintf(err, errlen, "section at byte %llu cannot be read", (unsigned long long)at);
		return NULL;
	}
	text[len] = 0;
	cJSON *j = cJSON_Parse(text);
	free(text);
	if (!j) snprintf(err, errlen, "section at byte %llu is not JSON though its checksum holds", (unsigned long long)at);
	return j;
}
