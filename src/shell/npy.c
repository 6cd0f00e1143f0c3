/* npy.c - a small, strict .npy reader (vectors for steering) and writer
 * (print --save).  The format: "\x93NUMPY", a version, a header length, a
 * Python dict literal, then the raw data. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

#define NPY_MAX_BYTES (1u << 30)

struct hp {
	const char *p, *end;
};

static void hp_skip(struct hp *h)
{
	while (h->p < h->end && (*h->p == ' ' || *h->p == '\t'))
		h->p++;
}

static bool hp_char(struct hp *h, char c)
{
	hp_skip(h);
	if (h->p < h->end && *h->p == c) {
		h->p++;
		return true;
	}
	return false;
}

/* A quoted Python string (no escapes needed for the keys and dtypes). */
static bool hp_string(struct hp *h, char *buf, size_t n)
{
	char q;
	size_t i = 0;

	hp_skip(h);
	if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
		return false;
	q = *h->p++;
	while (h->p < h->end && *h->p != q) {
		if (*h->p == '\\' || i + 1 >= n)
			return false;
		buf[i++] = *h->p++;
	}
	if (h->p >= h->end)
		return false;
	h->p++;
	buf[i] = '\0';
	return true;
}

static bool hp_word(struct hp *h, const char *w)
{
	size_t n = strlen(w);

	hp_skip(h);
	if ((size_t)(h->end - h->p) < n || strncmp(h->p, w, n))
		return false;
	h->p += n;
	return true;
}

/* (a,), (a, b), () into dims; false when malformed. */
static bool hp_shape(struct hp *h, int64_t *dims, int *nd)
{
	*nd = 0;
	if (!hp_char(h, '('))
		return false;
	for (;;) {
		hp_skip(h);
		if (hp_char(h, ')'))
			return true;
		if (*nd == 8 || h->p >= h->end || !isdigit((unsigned char)*h->p))
			return false;
		int64_t v = 0;
		while (h->p < h->end && isdigit((unsigned char)*h->p)) {
			v = v * 10 + (*h->p++ - '0');
			if (v > (int64_t)1 << 40)
				return false;
		}
		dims[(*nd)++] = v;
		if (hp_char(h, ','))
			continue;
		return hp_char(h, ')');
	}
}

static void shape_str(const int64_t *dims, int nd, char *buf, size_t n)
{
	size_t u = (size_t)snprintf(buf, n, "(");
	for (int i = 0; i < nd && u < n; i++)
		u += (size_t)snprintf(buf + u, n - u, "%s%lld", i ? ", " : "", (long long)dims[i]);
	if (u < n)
		snprintf(buf + u, n - u, nd == 1 ? ",)" : ")");
}

enum djn_status djn_npy_parse(const void *data, size_t len, const char *name, float **out,
			      int *n_out, struct djn_err *err)
{
	const unsigned char *b = data;
	size_t hlen, hstart, need;
	char descr[16] = "", key[32], shp[96];
	int64_t dims[8];
	int nd = -1, fortran = -1, item;
	struct hp h;
	float *v;

	*out = NULL;
	*n_out = 0;
	if (len < 10)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: not a .npy file (%zu bytes)", name, len);
	if (memcmp(b, "\x93NUMPY", 6))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: not a .npy file (bad magic)", name);
	if (b[6] < 1 || b[6] > 3)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: unsupported .npy version %d.%d", name,
				   b[6], b[7]);
	if (b[6] == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		hstart = 10;
	} else {
		if (len < 12)
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: truncated header", name);
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
		hstart = 12;
	}
	if (hlen > len - hstart)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: truncated header (%zu bytes announced, %zu present)", name,
				   hlen, len - hstart);
	h.p = (const char *)b + hstart;
	h.end = h.p + hlen;
	/* the header ends with a newline, after padding spaces */
	while (h.end > h.p && (h.end[-1] == ' ' || h.end[-1] == '\n'))
		h.end--;
	if (!hp_char(&h, '{'))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (expected '{')", name);
	for (;;) {
		if (hp_char(&h, '}'))
			break;
		if (!hp_string(&h, key, sizeof(key)))
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (expected a key at byte %zu)",
					   name, hstart + (size_t)(h.p - (const char *)b - hstart));
		if (!hp_char(&h, ':'))
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (expected ':' after '%s')",
					   name, key);
		if (!strcmp(key, "descr")) {
			if (!hp_string(&h, descr, sizeof(descr)))
				return djn_err_set(err, DJN_ERR_FORMAT,
						   "%s: bad header (descr is not a simple dtype string)",
						   name);
		} else if (!strcmp(key, "fortran_order")) {
			if (hp_word(&h, "False"))
				fortran = 0;
			else if (hp_word(&h, "True"))
				fortran = 1;
			else
				return djn_err_set(err, DJN_ERR_FORMAT,
						   "%s: bad header (fortran_order is not True or False)",
						   name);
		} else if (!strcmp(key, "shape")) {
			if (!hp_shape(&h, dims, &nd))
				return djn_err_set(err, DJN_ERR_FORMAT,
						   "%s: bad header (shape is not a tuple of sizes)", name);
		} else {
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (unexpected key '%s')",
					   name, key);
		}
		if (hp_char(&h, ','))
			continue;
		if (hp_char(&h, '}'))
			break;
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (expected ',' or '}')", name);
	}
	hp_skip(&h);
	if (h.p != h.end)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (text after '}')", name);
	if (!descr[0] || fortran < 0 || nd < 0)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: bad header (missing '%s')", name,
				   !descr[0] ? "descr" : fortran < 0 ? "fortran_order" : "shape");
	if (!strcmp(descr, "<f4"))
		item = 4;
	else if (!strcmp(descr, "<f8"))
		item = 8;
	else
		return djn_err_set(err, DJN_ERR_UNSUPPORTED,
				   "%s: dtype '%s' is not supported (want '<f4' or '<f8')", name,
				   descr);
	if (fortran)
		return djn_err_set(err, DJN_ERR_UNSUPPORTED, "%s: fortran_order True is not supported",
				   name);
	shape_str(dims, nd, shp, sizeof(shp));
	if (!(nd == 1 || (nd == 2 && dims[0] == 1)))
		return djn_err_set(err, DJN_ERR_INVALID,
				   "%s: shape %s is not a vector (want (n,) or (1, n))", name, shp);
	int64_t n = dims[nd - 1];
	if (n < 1)
		return djn_err_set(err, DJN_ERR_INVALID, "%s: shape %s is empty", name, shp);
	if ((uint64_t)n * (uint64_t)item > NPY_MAX_BYTES)
		return djn_err_set(err, DJN_ERR_RANGE, "%s: shape %s is too large", name, shp);
	need = (size_t)n * (size_t)item;
	hstart += hlen;
	if (len - hstart < need)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: truncated data (%zu bytes for shape %s, %zu present)", name,
				   need, shp, len - hstart);
	if (len - hstart > need)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "%s: %zu bytes after the data of shape %s", name,
				   len - hstart - need, shp);
	v = djn_xmalloc(sizeof(float) * (size_t)n);
	for (int64_t i = 0; i < n; i++) {
		const unsigned char *q = b + hstart + (size_t)i * (size_t)item;
		if (item == 4) {
			uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
				     (uint32_t)q[3] << 24;
			memcpy(&v[i], &u, 4);
		} else {
			uint64_t u = 0;
			double d;
			for (int k = 7; k >= 0; k--)
				u = u << 8 | q[k];
			memcpy(&d, &u, 8);
			v[i] = (float)d;
		}
	}
	*out = v;
	*n_out = (int)n;
	return DJN_OK;
}

enum djn_status djn_npy_load(const char *path, float **out, int *n_out, struct djn_err *err)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0, got;
	enum djn_status st;

	*out = NULL;
	*n_out = 0;
	if (!f)
		return djn_err_set(err, DJN_ERR_IO, "%s: %s", path, strerror(errno));
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			if (cap > NPY_MAX_BYTES + 4096) {
				free(buf);
				fclose(f);
				return djn_err_set(err, DJN_ERR_RANGE, "%s: file too large", path);
			}
			buf = djn_xrealloc(buf, cap);
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	if (ferror(f)) {
		st = djn_err_set(err, DJN_ERR_IO, "%s: read error", path);
		free(buf);
		fclose(f);
		return st;
	}
	fclose(f);
	st = djn_npy_parse(buf, len, path, out, n_out, err);
	free(buf);
	return st;
}

enum djn_status djn_npy_save(const char *path, const float *v, int rows, int cols,
			     struct djn_err *err)
{
	char hdr[128];
	int hl;
	unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0 };
	FILE *f;
	bool ok;

	hl = snprintf(hdr, sizeof(hdr), "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
		      rows, cols);
	/* pad with spaces so the data starts on a 64-byte boundary; end in '\n' */
	while ((10 + hl + 1) % 64)
		hdr[hl++] = ' ';
	hdr[hl++] = '\n';
	pre[8] = (unsigned char)(hl & 0xff);
	pre[9] = (unsigned char)(hl >> 8);
	if (!(f = fopen(path, "wb")))
		return djn_err_set(err, DJN_ERR_IO, "%s: %s", path, strerror(errno));
	ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl;
	for (size_t i = 0; ok && i < (size_t)rows * cols; i++) {
		uint32_t u;
		unsigned char le[4];
		memcpy(&u, &v[i], 4);
		le[0] = (unsigned char)u;
		le[1] = (unsigned char)(u >> 8);
		le[2] = (unsigned char)(u >> 16);
		le[3] = (unsigned char)(u >> 24);
		ok = fwrite(le, 1, 4, f) == 4;
	}
	if (fclose(f) || !ok)
		return djn_err_set(err, DJN_ERR_IO, "%s: write failed", path);
	return DJN_OK;
}
