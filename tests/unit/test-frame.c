/* test-frame.c - the wire codec of `djinn serve` (src/server/frame.c): a
 * frame round-trips, and the head decoder (what the client uses to receive
 * attachments straight into their destination) checks what the whole
 * decoder checks, with the same messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "djinn/server.h"

static uint8_t *encode(const char *type, const struct djn_att_out *att, int n_att, size_t *len)
{
	cJSON *msg = cJSON_CreateObject();
	uint8_t *buf;
	struct djn_err err = { 0 };

	cJSON_AddStringToObject(msg, "type", type);
	cr_assert_eq(djn_frame_encode(msg, att, n_att, &buf, len, &err), DJN_OK, "%s", err.msg);
	cJSON_Delete(msg);
	return buf;
}

static size_t u32(const uint8_t *p)
{
	return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

Test(frame, head_and_whole_agree_on_attachments)
{
	float v[6] = { 1, 2, 3, 4, 5, 6 };
	struct djn_att_out att[2] = {
		{ .name = "t", .dtype = "f32", .n_dims = 2, .shape = { 2, 3 }, .data = v, .bytes = 24 },
		{ .name = "s", .dtype = "u8", .n_dims = 1, .shape = { 5 }, .data = "hello", .bytes = 5 },
	};
	size_t len;
	uint8_t *buf = encode("result", att, 2, &len);
	struct djn_frame whole, head;
	struct djn_err err = { 0 };

	cr_assert_eq(u32(buf), len - 4);
	cr_assert_eq(djn_frame_decode(buf + 4, len - 4, &whole, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_frame_decode_head(buf + 8, u32(buf + 4), len - 4, &head, &err), DJN_OK,
		     "%s", err.msg);
	cr_assert_eq(head.n_att, 2);
	cr_assert_str_eq(head.type, "result");
	for (int i = 0; i < 2; i++) {
		cr_assert_null(head.att[i].data);
		cr_assert_eq(head.att[i].bytes, whole.att[i].bytes);
		cr_assert_eq(head.att[i].n_dims, whole.att[i].n_dims);
	}
	cr_assert_eq(head.att[0].shape[1], 3);
	cr_assert_eq(memcmp(whole.att[0].data, v, 24), 0);
	cr_assert_eq(memcmp(whole.att[1].data, "hello", 5), 0);
	djn_frame_release(&whole);
	djn_frame_release(&head);
	free(buf);
}

Test(frame, head_refuses_a_payload_the_attachments_do_not_fill)
{
	float v[4] = { 0 };
	struct djn_att_out att = { .name = "t", .dtype = "f32", .n_dims = 1, .shape = { 4 },
				   .data = v, .bytes = 16 };
	size_t len;
	uint8_t *buf = encode("result", &att, 1, &len);
	struct djn_frame f;
	struct djn_err err = { 0 };
	size_t jlen = u32(buf + 4);

	/* a payload 3 bytes longer than the JSON and attachments say */
	cr_assert_eq(djn_frame_decode_head(buf + 8, jlen, len - 4 + 3, &f, &err), DJN_ERR_FORMAT);
	cr_assert(strstr(err.msg, "3 bytes after the attachments"), "%s", err.msg);
	/* one 4 bytes shorter: the attachment does not fit */
	cr_assert_eq(djn_frame_decode_head(buf + 8, jlen, len - 4 - 4, &f, &err), DJN_ERR_FORMAT);
	cr_assert(strstr(err.msg, "attachment 0 needs 16 bytes, 12 are left"), "%s", err.msg);
	/* JSON longer than its payload */
	cr_assert_eq(djn_frame_decode_head(buf + 8, jlen, jlen + 3, &f, &err), DJN_ERR_FORMAT);
	cr_assert(strstr(err.msg, "in a payload of"), "%s", err.msg);
	cr_assert_null(f.json);
	free(buf);
}

Test(frame, an_attachment_must_match_its_shape)
{
	const char *j = "{\"type\":\"result\",\"att\":[{\"dtype\":\"f32\",\"shape\":[2,2],\"bytes\":12}]}";
	struct djn_frame f;
	struct djn_err err = { 0 };

	cr_assert_eq(djn_frame_decode_head((const uint8_t *)j, strlen(j), 4 + strlen(j) + 12, &f,
					   &err),
		     DJN_ERR_FORMAT);
	cr_assert(strstr(err.msg, "attachment 0: 12 bytes, but its shape and dtype make 16"), "%s",
		  err.msg);
}

/* A read reply's place in the shared-memory segment: checked like an
 * attachment header, and inside the segment (the mapped size, or the
 * reply's larger one). */
static enum djn_status shm_att(const char *json, size_t mapped, size_t *off, size_t *size,
			       struct djn_err *err)
{
	cJSON *o = cJSON_Parse(json);
	struct djn_frame_att a;
	enum djn_status st;

	cr_assert_not_null(o);
	st = djn_frame_shm_att(o, mapped, &a, off, size, err);
	if (!st) {
		cr_assert_eq(a.bytes, 24);
		cr_assert_eq(a.n_dims, 2);
		cr_assert_null(a.data);
	}
	cJSON_Delete(o);
	return st;
}

Test(frame, a_shm_place_must_lie_inside_the_segment)
{
	struct djn_err err = { 0 };
	size_t off, size;

	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":40,\"bytes\":24,"
			     "\"size\":64}", 64, &off, &size, &err), DJN_OK, "%s", err.msg);
	cr_assert(off == 40 && size == 64);
	/* a grown segment: the reply's size */
	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":100,\"bytes\":24,"
			     "\"size\":128}", 64, &off, &size, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(size, 128);
	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":41,\"bytes\":24,"
			     "\"size\":64}", 64, &off, &size, &err), DJN_ERR_FORMAT);
	cr_assert_str_eq(err.msg, "shm: 24 bytes at offset 41 lie outside the 64-byte segment");
	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":18446744073709551615,"
			     "\"bytes\":24,\"size\":64}", 64, &off, &size, &err), DJN_ERR_FORMAT);
	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":0,\"bytes\":20,"
			     "\"size\":64}", 64, &off, &size, &err), DJN_ERR_FORMAT);
	cr_assert(strstr(err.msg, "but its shape and dtype make 24"), "%s", err.msg);
	cr_assert_eq(shm_att("{\"dtype\":\"f32\",\"shape\":[2,3],\"offset\":0,\"bytes\":24}", 64,
			     &off, &size, &err), DJN_ERR_FORMAT);
	cr_assert_eq(shm_att("[1]", 64, &off, &size, &err), DJN_ERR_FORMAT);
}
