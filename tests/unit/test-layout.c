/* test-layout.c - GPT-2's Conv1D weights stay in the file's [in, out]
 * layout on the CPU: no copy of them is made (the model holds its f16 bytes
 * once, in the mapping), and the logits are bit for bit those of the
 * row-major copy other backends get (djn_model_weights_rowmajor). */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "djinn/djinn.h"
#include "djinn/mkmodel.h"
#include "djinn/vmu.h"
#include "model/mapping.h"

static char tmp[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void setup(void)
{
	strcpy(tmp, "/tmp/djn-test-layout-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static void teardown(void)
{
	nftw(tmp, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(layout, .init = setup, .fini = teardown);

static void make(enum djn_dtype t)
{
	struct djn_err err = { 0 };
	struct djn_mkmodel_opts o = { .shape = "tiny-gpt2", .dtype = t, .seed = 7,
				      .out_dir = tmp, .force = true, .n_threads = 1 };

	cr_assert_eq(djn_mkmodel(&o, &err), DJN_OK, "%s", err.msg);
}

static struct djn_model *load(void)
{
	struct djn_err err = { 0 };
	struct djn_model *m = djn_model_load(tmp, NULL, &err);

	cr_assert_not_null(m, "%s", err.msg);
	return m;
}

struct copied {
	const struct djn_model *m;
	size_t in_map, copied, transposed;
};

static void count(struct djn_weight *w, void *ud)
{
	struct copied *c = ud;
	const uint8_t *p = w->host;
	size_t n = djn_weight_bytes(w);

	for (int i = 0; i < c->m->n_maps; i++) {
		const struct djn_mapping *map = c->m->maps[i];
		if (p >= map->addr && p < map->addr + map->size) {
			c->in_map += n;
			c->transposed += w->ld ? n : 0;
			return;
		}
	}
	c->copied += n;
}

static struct copied weights(struct djn_model *m)
{
	struct copied c = { m, 0, 0, 0 };

	djn_model_for_each_weight(m, count, &c);
	return c;
}

/* Greedy logits of every step of a short run, concatenated (malloc'd). */
static float *run_logits(struct djn_model *m, int *n_out)
{
	static const int32_t prompt[] = { 5, 77, 300, 12, 9 };
	const struct djn_gen_opts opts = { .n_new = 4 };
	struct djn_err err = { 0 };
	struct djn_backend *be = djn_backend_new("cpu", 2, &err);
	struct djn_session *s;
	int V = m->cfg.vocab_size, logits, n = 0;
	float *all = malloc(sizeof(float) * (size_t)V * 8);

	cr_assert_not_null(be, "%s", err.msg);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_eq(djn_text_bytes(m), 0, "the CPU backend copies no weights");
	logits = djn_site_count(&m->cfg) - 1;
	cr_assert_gt(djn_bp_add(s, "logits", NULL, false), 0);
	cr_assert_eq(djn_session_start(s, prompt, 5, &opts), DJN_OK, "%s",
		     djn_session_errmsg(s));
	while (djn_session_run(s, DJN_RUN_CONTINUE, 0) == DJN_STOP_BREAKPOINT) {
		cr_assert_lt(n, 8);
		cr_assert_eq(djn_session_read(s, logits, all + (size_t)n * V, (size_t)V), DJN_OK,
			     "%s", djn_session_errmsg(s));
		n++;
	}
	djn_session_free(s);
	djn_backend_free(be);
	*n_out = n;
	return all;
}

static void same_logits_both_layouts(enum djn_dtype t)
{
	struct djn_model *a, *b;
	struct djn_err err = { 0 };
	struct copied ca, cb;
	float *la, *lb;
	int na, nb;

	make(t);
	a = load();
	ca = weights(a);

	/* every weight is in the mapping, the Conv1D ones as the file has them */
	cr_assert_eq(ca.copied, 0, "%zu bytes of weights copied on load", ca.copied);
	cr_assert_gt(ca.transposed, ca.in_map / 2, "%zu of %zu bytes transposed", ca.transposed,
		     ca.in_map);
	la = run_logits(a, &na);

	b = load();
	cr_assert_eq(djn_model_weights_rowmajor(b, &err), DJN_OK, "%s", err.msg);
	cb = weights(b);
	cr_assert_eq(cb.transposed, 0);
	cr_assert_eq(cb.copied, ca.transposed, "the row-major copies are the Conv1D bytes");
	lb = run_logits(b, &nb);

	cr_assert_eq(na, 4, "a prompt chunk and three steps (the fourth token needs no more)");
	cr_assert_eq(nb, na);
	for (int i = 0; i < na * a->cfg.vocab_size; i++)
		cr_assert(!memcmp(&la[i], &lb[i], sizeof(float)),
			  "step %d logit %d: %.9g transposed, %.9g row-major", i / a->cfg.vocab_size,
			  i % a->cfg.vocab_size, la[i], lb[i]);
	free(la);
	free(lb);
	djn_model_unref(a);
	djn_model_unref(b);
}

Test(layout, f16_conv1d_kept_in_the_mapping_same_logits)
{
	same_logits_both_layouts(DJN_DTYPE_F16);
}

Test(layout, bf16_conv1d_kept_in_the_mapping_same_logits)
{
	same_logits_both_layouts(DJN_DTYPE_BF16);
}

Test(layout, f32_conv1d_kept_in_the_mapping_same_logits)
{
	same_logits_both_layouts(DJN_DTYPE_F32);
}

/* The widening the matmul inlines, against IEEE's definition for all 65536
 * halves (bits compared: NaN payloads and -0 included). */
static float f16_reference(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
	float f;

	if (exp == 0 && man) {
		f = (float)man * 5.9604644775390625e-8f; /* man * 2^-24 */
		return sign ? -f : f;
	}
	if (exp == 0)
		u = sign;
	else if (exp == 31)
		u = sign | 0x7f800000u | (man << 13);
	else
		u = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &u, 4);
	return f;
}

Test(layout, f16_widening_is_exact_for_every_half)
{
	for (uint32_t h = 0; h < 65536; h++) {
		float a = djn_f16_to_f32((uint16_t)h), b = f16_reference((uint16_t)h);
		cr_assert(!memcmp(&a, &b, 4), "half 0x%04x: %a, want %a", h, a, b);
	}
}
