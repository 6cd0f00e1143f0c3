/* test-cond.c - breakpoint conditions: a lone `=`, either order, and a
 * token's text (issue 14). */
#include <criterion/criterion.h>
#include <string.h>

#include "exec/cond.h"

static bool holds(const char *text, const struct djn_cond_env *env)
{
	struct djn_err err = { 0 };
	struct djn_cond *c = djn_cond_parse(text, &err);
	bool r;

	cr_assert_not_null(c, "%s: %s", text, err.msg);
	r = djn_cond_eval(c, env);
	djn_cond_free(c);
	return r;
}

static void rejects(const char *text, const char *what)
{
	struct djn_err err = { 0 };

	cr_assert_null(djn_cond_parse(text, &err), "%s parsed", text);
	cr_assert(strstr(err.msg, what), "%s: %s", text, err.msg);
}

Test(cond, lone_equals_is_an_error)
{
	rejects("norm = 3", "use == for equality");
	rejects("pos=3 and layer == 1", "use == for equality");
	rejects("3 = pos", "use == for equality");
}

Test(cond, either_order)
{
	struct djn_stats st = { .l2 = 5 };
	struct djn_cond_env env = { &st, 7, 2, 42 };

	cr_assert(holds("3 < norm", &env));
	cr_assert(!holds("6 < norm", &env));
	cr_assert(holds("7 >= pos and 2 == layer", &env));
	cr_assert(holds("-1 < layer", &env));
	cr_assert(!holds("8 <= pos", &env));
	cr_assert(holds("42 == token", &env));
}

Test(cond, token_text_needs_a_tokenizer)
{
	rejects("token == \" the\"", "no tokenizer");
	rejects("norm == \"x\"", "compares with token only");
}
