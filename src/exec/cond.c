/* cond.c - breakpoint conditions: a tiny expression language parsed once
 * into a tree and evaluated at every stop candidate. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec/cond.h"

enum node_kind { N_OR, N_AND, N_NOT, N_CMP, N_FLAG };
enum var { V_NORM, V_MAX, V_MIN, V_MEAN, V_STD, V_ABSMAX, V_ARGMAX, V_NAN, V_INF, V_POS,
	   V_LAYER, V_TOKEN, V_COUNT };
enum op { OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE };

static const char *const var_names[V_COUNT] = { "norm", "max", "min", "mean", "std",
						"absmax", "argmax", "nan", "inf", "pos",
						"layer", "token" };

struct node {
	enum node_kind kind;
	struct node *a, *b;
	enum var var;
	enum op op;
	double value;
};

struct djn_cond {
	struct node *root;
	char *text;
	bool needs_stats;
};

struct parser {
	const char *p;
	const char *start;
	struct djn_err *err;
	bool failed;
	bool needs_stats;
};

static void skip(struct parser *ps)
{
	while (isspace((unsigned char)*ps->p))
		ps->p++;
}

static bool word(struct parser *ps, const char *w)
{
	size_t n = strlen(w);

	skip(ps);
	if (strncmp(ps->p, w, n) || isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_')
		return false;
	ps->p += n;
	return true;
}

static bool sym(struct parser *ps, const char *s)
{
	size_t n = strlen(s);

	skip(ps);
	if (strncmp(ps->p, s, n))
		return false;
	ps->p += n;
	return true;
}

static struct node *fail(struct parser *ps, const char *what)
{
	if (!ps->failed)
		djn_err_set(ps->err, DJN_ERR_INVALID, "condition '%s': %s at column %d", ps->start,
			    what, (int)(ps->p - ps->start) + 1);
	ps->failed = true;
	return NULL;
}

static struct node *mk(enum node_kind k, struct node *a, struct node *b)
{
	struct node *n = djn_xcalloc(1, sizeof(*n));

	n->kind = k;
	n->a = a;
	n->b = b;
	return n;
}

static void node_free(struct node *n)
{
	if (!n)
		return;
	node_free(n->a);
	node_free(n->b);
	free(n);
}

static struct node *parse_or(struct parser *ps);

static struct node *parse_unary(struct parser *ps)
{
	if (word(ps, "not") || sym(ps, "!")) {
		struct node *a = parse_unary(ps);
		return a ? mk(N_NOT, a, NULL) : NULL;
	}
	if (sym(ps, "(")) {
		struct node *a = parse_or(ps);
		if (!a)
			return NULL;
		if (!sym(ps, ")")) {
			node_free(a);
			return fail(ps, "expected ')'");
		}
		return a;
	}
	skip(ps);
	for (int v = 0; v < V_COUNT; v++) {
		if (!word(ps, var_names[v]))
			continue;
		static const struct { const char *s; enum op op; } ops[] = {
			{ ">=", OP_GE }, { "<=", OP_LE }, { "==", OP_EQ }, { "!=", OP_NE },
			{ ">", OP_GT }, { "<", OP_LT }, { "=", OP_EQ },
		};
		struct node *n = mk(N_CMP, NULL, NULL);
		n->var = (enum var)v;
		if (v <= V_INF)
			ps->needs_stats = true;
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			if (sym(ps, ops[i].s)) {
				char *end;
				skip(ps);
				n->op = ops[i].op;
				n->value = strtod(ps->p, &end);
				if (end == ps->p) {
					node_free(n);
					return fail(ps, "expected a number");
				}
				ps->p = end;
				return n;
			}
		}
		if (v == V_NAN || v == V_INF) { /* bare `nan`: any NaN present */
			n->kind = N_FLAG;
			return n;
		}
		node_free(n);
		return fail(ps, "expected a comparison (> >= < <= == !=)");
	}
	return fail(ps, *ps->p ? "expected norm, max, min, mean, std, absmax, argmax, nan, "
				 "inf, pos, layer or token"
			       : "unexpected end");
}

static struct node *parse_and(struct parser *ps)
{
	struct node *a = parse_unary(ps);

	while (a && (word(ps, "and") || sym(ps, "&&"))) {
		struct node *b = parse_unary(ps);
		if (!b) {
			node_free(a);
			return NULL;
		}
		a = mk(N_AND, a, b);
	}
	return a;
}

static struct node *parse_or(struct parser *ps)
{
	struct node *a = parse_and(ps);

	while (a && (word(ps, "or") || sym(ps, "||"))) {
		struct node *b = parse_and(ps);
		if (!b) {
			node_free(a);
			return NULL;
		}
		a = mk(N_OR, a, b);
	}
	return a;
}

struct djn_cond *djn_cond_parse(const char *text, struct djn_err *err)
{
	struct parser ps = { text, text, err, false, false };
	struct node *root = parse_or(&ps);
	struct djn_cond *c;

	if (root) {
		skip(&ps);
		if (*ps.p) {
			node_free(root);
			fail(&ps, "unexpected text");
			return NULL;
		}
	}
	if (!root)
		return NULL;
	c = djn_xcalloc(1, sizeof(*c));
	c->root = root;
	c->text = djn_xstrdup(text);
	c->needs_stats = ps.needs_stats;
	return c;
}

void djn_cond_free(struct djn_cond *c)
{
	if (!c)
		return;
	node_free(c->root);
	free(c->text);
	free(c);
}

bool djn_cond_needs_stats(const struct djn_cond *c)
{
	return c->needs_stats;
}

const char *djn_cond_text(const struct djn_cond *c)
{
	return c->text;
}

static double var_value(enum var v, const struct djn_cond_env *e)
{
	const struct djn_stats *st = e->st;

	switch (v) {
	case V_POS: return e->pos;
	case V_LAYER: return e->layer;
	case V_TOKEN: return e->token;
	default: break;
	}
	if (!st)
		return NAN;
	switch (v) {
	case V_NORM: return st->l2;
	case V_MAX: return st->max;
	case V_MIN: return st->min;
	case V_MEAN: return st->mean;
	case V_STD: return st->std;
	case V_ABSMAX: return st->absmax;
	case V_ARGMAX: return (double)st->argmax;
	case V_NAN: return (double)st->n_nan;
	case V_INF: return (double)st->n_inf;
	default: return NAN;
	}
}

static bool eval(const struct node *n, const struct djn_cond_env *e)
{
	double x;

	switch (n->kind) {
	case N_OR: return eval(n->a, e) || eval(n->b, e);
	case N_AND: return eval(n->a, e) && eval(n->b, e);
	case N_NOT: return !eval(n->a, e);
	case N_FLAG: return var_value(n->var, e) > 0;
	case N_CMP:
		x = var_value(n->var, e);
		switch (n->op) {
		case OP_GT: return x > n->value;
		case OP_GE: return x >= n->value;
		case OP_LT: return x < n->value;
		case OP_LE: return x <= n->value;
		case OP_EQ: return x == n->value;
		case OP_NE: return x != n->value;
		}
	}
	return false;
}

bool djn_cond_eval(const struct djn_cond *c, const struct djn_cond_env *env)
{
	return eval(c->root, env);
}
