/* frame.c - the wire codec shared by server and client: length-prefixed
 * frames holding one JSON object and the raw attachments it describes.
 * Everything here is pure (no I/O) so the fuzz target drives it directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/server.h"

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static size_t dtype_size(const char *d)
{
	if (!strcmp(d, "f32"))
		return 4;
	if (!strcmp(d, "u8"))
		return 1;
	return 0;
}

/* One attachment header; the data pointer is filled in by the caller. */
static enum djn_status att_parse(const cJSON *o, int i, struct djn_frame_att *a,
				 struct djn_err *err)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(o, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
	const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(o, "bytes");
	size_t es, n = 1;
	const cJSON *d;

	if (!cJSON_IsObject(o))
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: attachment %d is not an object", i);
	if (name && !cJSON_IsString(name))
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: attachment %d: name is not a string", i);
	if (!cJSON_IsString(dtype) || !(es = dtype_size(dtype->valuestring)))
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "frame: attachment %d: dtype must be \"f32\" or \"u8\"", i);
	if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > 4)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "frame: attachment %d: shape must be an array of 0..4 sizes", i);
	if (!cJSON_IsNumber(bytes) || bytes->valuedouble < 0 || bytes->valuedouble > 9e15 ||
	    bytes->valuedouble != floor(bytes->valuedouble))
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "frame: attachment %d: bytes must be a whole number", i);
	memset(a, 0, sizeof(*a));
	a->name = name ? name->valuestring : "";
	a->dtype = dtype->valuestring;
	cJSON_ArrayForEach(d, shape) {
		if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12 ||
		    d->valuedouble != floor(d->valuedouble))
			return djn_err_set(err, DJN_ERR_FORMAT,
					   "frame: attachment %d: shape holds a bad size", i);
		a->shape[a->n_dims++] = (int64_t)d->valuedouble;
		n *= (size_t)d->valuedouble;
		if (n > ((size_t)1 << 40))
			return djn_err_set(err, DJN_ERR_FORMAT, "frame: attachment %d is too large", i);
	}
	a->bytes = (size_t)bytes->valuedouble;
	if (a->bytes != n * es)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "frame: attachment %d: %zu bytes, but its shape and dtype make %zu",
				   i, a->bytes, n * es);
	return DJN_OK;
}

enum djn_status djn_frame_decode_head(const uint8_t *json, size_t jlen, size_t payload_len,
				      struct djn_frame *out, struct djn_err *err)
{
	const cJSON *type, *att, *o;
	const char *end = NULL;
	size_t off;
	int i = 0;

	memset(out, 0, sizeof(*out));
	if (payload_len < 4 || jlen > payload_len - 4)
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: JSON of %zu bytes in a payload of %zu",
				   jlen, payload_len);
	if (jlen > DJN_FRAME_JSON_MAX)
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: JSON of %zu bytes exceeds %zu", jlen,
				   DJN_FRAME_JSON_MAX);
	out->json = cJSON_ParseWithLengthOpts((const char *)json, jlen, &end, false);
	if (!out->json)
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: bad JSON near byte %zu",
				   end ? (size_t)(end - (const char *)json) : 0);
	if (!cJSON_IsObject(out->json)) {
		djn_frame_release(out);
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: the JSON is not an object");
	}
	type = cJSON_GetObjectItemCaseSensitive(out->json, "type");
	if (!cJSON_IsString(type) || !*type->valuestring) {
		djn_frame_release(out);
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: no \"type\" string");
	}
	out->type = type->valuestring;
	off = 4 + jlen;
	att = cJSON_GetObjectItemCaseSensitive(out->json, "att");
	if (att) {
		if (!cJSON_IsArray(att) || cJSON_GetArraySize(att) > DJN_FRAME_MAX_ATT) {
			djn_frame_release(out);
			return djn_err_set(err, DJN_ERR_FORMAT, "frame: \"att\" must be an array of at most %d",
					   DJN_FRAME_MAX_ATT);
		}
		cJSON_ArrayForEach(o, att) {
			struct djn_frame_att *a = &out->att[i];
			if (att_parse(o, i, a, err)) {
				djn_frame_release(out);
				return DJN_ERR_FORMAT;
			}
			if (a->bytes > payload_len - off) {
				size_t need = a->bytes; /* out (and a) is cleared by the release */
				djn_frame_release(out);
				return djn_err_set(err, DJN_ERR_FORMAT,
						   "frame: attachment %d needs %zu bytes, %zu are left", i,
						   need, payload_len - off);
			}
			off += a->bytes;
			i++;
		}
		out->n_att = i;
	}
	if (off != payload_len) {
		djn_frame_release(out);
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: %zu bytes after the attachments",
				   payload_len - off);
	}
	return DJN_OK;
}

enum djn_status djn_frame_shm_att(const cJSON *o, size_t mapped, struct djn_frame_att *a,
				  size_t *offset, size_t *size, struct djn_err *err)
{
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "offset");
	const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "size");

	if (!cJSON_IsObject(o))
		return djn_err_set(err, DJN_ERR_FORMAT, "shm: not an object");
	if (att_parse(o, 0, a, err)) { /* dtype, shape, bytes = their product */
		djn_err_prefix(err, "shm");
		return DJN_ERR_FORMAT;
	}
	if (!cJSON_IsNumber(off) || off->valuedouble < 0 || off->valuedouble > 9e15 ||
	    off->valuedouble != floor(off->valuedouble) || !cJSON_IsNumber(sz) ||
	    sz->valuedouble < 1 || sz->valuedouble > (double)DJN_SHM_MAX ||
	    sz->valuedouble != floor(sz->valuedouble))
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "shm: \"offset\" and \"size\" must be whole numbers (size 1 to %zu)",
				   (size_t)DJN_SHM_MAX);
	*offset = (size_t)off->valuedouble;
	*size = (size_t)sz->valuedouble;
	if (*size < mapped)
		*size = mapped;
	if (*offset > *size || a->bytes > *size - *offset)
		return djn_err_set(err, DJN_ERR_FORMAT,
				   "shm: %zu bytes at offset %zu lie outside the %zu-byte segment",
				   a->bytes, *offset, *size);
	return DJN_OK;
}

enum djn_status djn_frame_decode(const uint8_t *payload, size_t len, struct djn_frame *out,
				 struct djn_err *err)
{
	size_t jlen, off;
	enum djn_status st;

	memset(out, 0, sizeof(*out));
	if (len < 4)
		return djn_err_set(err, DJN_ERR_FORMAT, "frame: %zu bytes is too short", len);
	jlen = get_u32(payload);
	if ((st = djn_frame_decode_head(payload + 4, jlen, len, out, err)))
		return st;
	off = 4 + jlen;
	for (int i = 0; i < out->n_att; i++) {
		out->att[i].data = payload + off;
		off += out->att[i].bytes;
	}
	return DJN_OK;
}

void djn_frame_release(struct djn_frame *f)
{
	cJSON_Delete(f->json);
	memset(f, 0, sizeof(*f));
}

enum djn_status djn_frame_header(cJSON *msg, const struct djn_att_out *att, int n_att,
				 uint8_t **buf, size_t *len, size_t *att_bytes,
				 struct djn_err *err)
{
	cJSON *arr = NULL;
	char *text;
	size_t jlen, total = 0;

	*buf = NULL;
	*len = *att_bytes = 0;
	if (n_att > DJN_FRAME_MAX_ATT)
		return djn_err_set(err, DJN_ERR_RANGE, "frame: %d attachments (at most %d)", n_att,
				   DJN_FRAME_MAX_ATT);
	/* every "att" goes (a duplicate key would shadow ours on the other side) */
	while (cJSON_GetObjectItemCaseSensitive(msg, "att"))
		cJSON_DeleteItemFromObjectCaseSensitive(msg, "att");
	if (n_att) {
		arr = cJSON_AddArrayToObject(msg, "att");
		for (int i = 0; i < n_att; i++) {
			cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
			cJSON_AddStringToObject(o, "name", att[i].name ? att[i].name : "");
			cJSON_AddStringToObject(o, "dtype", att[i].dtype);
			for (int d = 0; d < att[i].n_dims; d++)
				cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)att[i].shape[d]));
			cJSON_AddItemToObject(o, "shape", sh);
			cJSON_AddNumberToObject(o, "bytes", (double)att[i].bytes);
			cJSON_AddItemToArray(arr, o);
			total += att[i].bytes;
		}
	}
	text = cJSON_PrintUnformatted(msg);
	cJSON_DeleteItemFromObjectCaseSensitive(msg, "att");
	if (!text)
		return djn_err_set(err, DJN_ERR_NOMEM, "frame: cannot print the JSON");
	jlen = strlen(text);
	if (jlen > DJN_FRAME_JSON_MAX || 4 + jlen + total > UINT32_MAX) {
		free(text);
		return djn_err_set(err, DJN_ERR_RANGE, "frame: %zu bytes is too large for a frame",
				   4 + jlen + total);
	}
	*buf = djn_xmalloc(8 + jlen);
	put_u32(*buf, (uint32_t)(4 + jlen + total));
	put_u32(*buf + 4, (uint32_t)jlen);
	memcpy(*buf + 8, text, jlen);
	free(text);
	*len = 8 + jlen;
	*att_bytes = total;
	return DJN_OK;
}

enum djn_status djn_frame_encode(cJSON *msg, const struct djn_att_out *att, int n_att,
				 uint8_t **buf, size_t *len, struct djn_err *err)
{
	uint8_t *head, *p;
	size_t hlen, total;
	enum djn_status st = djn_frame_header(msg, att, n_att, &head, &hlen, &total, err);

	if (st)
		return st;
	p = djn_xrealloc(head, hlen + total);
	*len = hlen;
	for (int i = 0; i < n_att; i++) {
		if (att[i].bytes)
			memcpy(p + *len, att[i].data, att[i].bytes);
		*len += att[i].bytes;
	}
	*buf = p;
	return DJN_OK;
}
