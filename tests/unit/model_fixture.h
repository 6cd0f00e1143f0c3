/* model_fixture.h - the Criterion fixture that the unit tests on the test
 * model share: stories260K with its tokenizer on the backend that
 * DJINN_TEST_DEVICE names (the CPU with 2 threads when unset), refusing a
 * quiet fallback to the CPU.  Include after criterion.h and djinn.h. */
#ifndef DJINN_TESTS_MODEL_FIXTURE_H
#define DJINN_TESTS_MODEL_FIXTURE_H

#include <stdlib.h>
#include <string.h>

static struct djn_model *model;
static struct djn_backend *be;

static void setup(void)
{
	struct djn_err err = { 0 };
	const char *dev = getenv("DJINN_TEST_DEVICE");

	model = djn_model_load("models/stories260K.bin", "models/tok512.bin", &err);
	cr_assert_not_null(model, "%s", err.msg);
	be = djn_backend_new(dev ? dev : "cpu", 2, &err);
	cr_assert_not_null(be, "%s", err.msg);
	/* DJINN_TEST_DEVICE=cuda must not quietly fall back to the CPU */
	cr_assert_str_eq(be->i->name, dev && !strncmp(dev, "cuda", 4) ? "cuda" : "cpu");
}

static void teardown(void)
{
	djn_model_unref(model);
	djn_backend_free(be);
}

#endif
