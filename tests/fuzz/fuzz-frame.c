/* fuzz-frame.c - libFuzzer target for the network frame decoder
 * (src/server/frame.c): any payload either decodes into a JSON object whose
 * attachments lie inside it, or fails with a message; a decoded frame
 * re-encodes and decodes again to the same attachments; the head alone
 * (djn_frame_decode_head, as the client reads it) agrees with the whole; a
 * "shm" object (a read reply's place in the shared-memory segment) is
 * accepted only with its bytes inside the segment (djn_frame_shm_att). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_frame f, g;
	struct djn_err err = { 0 };
	struct djn_att_out att[DJN_FRAME_MAX_ATT];
	uint8_t *buf;
	size_t len;

	if (size >= 4) {
		size_t jlen = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
			      (size_t)data[3] << 24;
		bool head_ok = jlen <= size - 4 &&
			       !djn_frame_decode_head(data + 4, jlen, size, &g, &err);
		bool whole_ok = !djn_frame_decode(data, size, &f, &err);
		if (head_ok != whole_ok)
			abort();
		if (head_ok) {
			if (g.n_att != f.n_att)
				abort();
			for (int i = 0; i < g.n_att; i++)
				if (g.att[i].data || g.att[i].bytes != f.att[i].bytes)
					abort();
			djn_frame_release(&g);
			djn_frame_release(&f);
		}
	}
	if (djn_frame_decode(data, size, &f, &err)) {
		if (!err.msg[0])
			abort(); /* a failure always says why */
		return 0;
	}
	for (int i = 0; i < f.n_att; i++) {
		if (f.att[i].data < data || f.att[i].data + f.att[i].bytes > data + size)
			abort();
		att[i] = (struct djn_att_out){ .name = f.att[i].name, .dtype = f.att[i].dtype,
					       .n_dims = f.att[i].n_dims, .data = f.att[i].data,
					       .bytes = f.att[i].bytes };
		memcpy(att[i].shape, f.att[i].shape, sizeof(att[i].shape));
	}
	{
		struct djn_frame_att a;
		size_t off, seg, mapped = (size_t)size << 8;
		const cJSON *shm = cJSON_GetObjectItemCaseSensitive(f.json, "shm");
		if (shm && !djn_frame_shm_att(shm, mapped, &a, &off, &seg, &err) &&
		    (seg < mapped || off > seg || a.bytes > seg - off || a.data))
			abort();
	}
	/* encode a copy: encoding rewrites "att", whose strings att[] borrows */
	cJSON *copy = cJSON_Duplicate(f.json, true);
	if (!djn_frame_encode(copy, att, f.n_att, &buf, &len, &err)) {
		if (djn_frame_decode(buf + 4, len - 4, &g, &err) || g.n_att != f.n_att)
			abort();
		for (int i = 0; i < g.n_att; i++)
			if (g.att[i].bytes != f.att[i].bytes ||
			    memcmp(g.att[i].data, f.att[i].data, f.att[i].bytes))
				abort();
		djn_frame_release(&g);
		free(buf);
	}
	cJSON_Delete(copy);
	djn_frame_release(&f);
	return 0;
}
