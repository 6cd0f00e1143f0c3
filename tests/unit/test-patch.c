/* test-patch.c - activation patching (djn_patch_run) on the CPU: the clean
 * run patched into itself changes nothing; the whole residual at the last
 * layer's last position restores the clean metric exactly; positions before
 * the first corrupted token change nothing; misuse is refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

#include "model_fixture.h"

TestSuite(patch, .init = setup, .fini = teardown);

static const int32_t clean[] = { 1, 403, 407, 261, 378 };   /* BOS "Once upon a time" */
static const int32_t corrupt[] = { 1, 403, 407, 300, 378 }; /* position 3 differs */
#define A 11
#define B 13

Test(patch, clean_into_itself_is_zero)
{
	struct djn_patch_result r;
	struct djn_err err = { 0 };

	cr_assert_eq(djn_patch_run(model, be, clean, clean, 5, DJN_SITE_RESID_POST, A, B, &r,
				   &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(r.n_layer, model->cfg.n_layer);
	cr_assert_eq(r.n_pos, 5);
	cr_assert_eq(r.clean, r.corrupt);
	cr_assert(!r.normalised);
	for (int i = 0; i < r.n_layer * r.n_pos; i++) {
		cr_assert_eq(r.patched[i], r.clean, "run %d: %g vs %g", i, r.patched[i], r.clean);
		cr_assert_eq(r.effect[i], 0.0f);
	}
	djn_patch_result_free(&r);
}

static void check_corrupt(enum djn_site_kind kind, bool last_is_one)
{
	struct djn_patch_result r;
	struct djn_err err = { 0 };
	int L = model->cfg.n_layer;

	cr_assert_eq(djn_patch_run(model, be, clean, corrupt, 5, kind, A, B, &r, &err), DJN_OK,
		     "%s", err.msg);
	cr_assert(r.normalised, "clean %g corrupt %g", r.clean, r.corrupt);
	cr_assert_gt(fabsf(r.clean - r.corrupt), 1e-3f);
	if (last_is_one) {
		/* the whole residual at the last position: the clean logits */
		cr_assert_eq(r.patched[(L - 1) * 5 + 4], r.clean);
		cr_assert_float_eq(r.effect[(L - 1) * 5 + 4], 1.0f, 1e-6);
	}
	/* before position 3 both prompts are the same: nothing to patch */
	for (int l = 0; l < L; l++)
		for (int p = 0; p < 3; p++) {
			cr_assert_eq(r.patched[l * 5 + p], r.corrupt, "L%d pos %d", l, p);
			cr_assert_eq(r.effect[l * 5 + p], 0.0f);
		}
	djn_patch_result_free(&r);
}

Test(patch, last_layer_last_position_restores)
{
	check_corrupt(DJN_SITE_RESID_POST, true);
}

Test(patch, other_sites)
{
	check_corrupt(DJN_SITE_MLP_OUT, false);
	check_corrupt(DJN_SITE_ATTN, false);
}

Test(patch, errors)
{
	struct djn_patch_result r;
	struct djn_err err = { 0 };

	cr_assert_eq(djn_patch_run(model, be, clean, corrupt, 0, DJN_SITE_RESID_POST, A, B, &r,
				   &err), DJN_ERR_INVALID);
	cr_assert_eq(djn_patch_run(model, be, clean, corrupt, 5, DJN_SITE_LOGITS, A, B, &r, &err),
		     DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "not a per-layer site"), "%s", err.msg);
	cr_assert_eq(djn_patch_run(model, be, clean, corrupt, 5, DJN_SITE_EMBED, A, B, &r, &err),
		     DJN_ERR_INVALID);
	cr_assert_eq(djn_patch_run(model, be, clean, corrupt, 5, DJN_SITE_RESID_POST, A, 100000,
				   &r, &err), DJN_ERR_RANGE);
	cr_assert(strstr(err.msg, "100000"), "%s", err.msg);
	int32_t bad[] = { 1, 403, 407, 9999, 378 };
	cr_assert_eq(djn_patch_run(model, be, clean, bad, 5, DJN_SITE_RESID_POST, A, B, &r, &err),
		     DJN_ERR_RANGE);
	cr_assert(strstr(err.msg, "corrupted"), "%s", err.msg);
	cr_assert_null(r.effect);
}
