/* cond.c - breakpoint conditions: a tiny expression language parsed once
 * into a tree and evaluated at every stop candidate. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
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
	const struct djn_tokenizer *tok; /* for `token == "text"`, or NULL */
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

static int parse_var(struct parser *ps)
{
	skip(ps);
	for (int v = 0; v < V_COUNT; v++)
		if (word(ps, var_names[v]))
			return v;
	return -1;
}

/* 1: an operator, 0: none here, -1: failed (a lone `=`). */
static int parse_op(struct parser *ps, enum op *op)
{
	static const struct { const char *s; enum op op; } ops[] = {
		{ ">=", OP_GE }, { "<=", OP_LE }, { "==", OP_EQ }, { "!=", OP_NE },
		{ ">", OP_GT }, { "<", OP_LT },
	};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (sym(ps, ops[i].s)) {
			*op = ops[i].op;
			return 1;
		}
	}
	skip(ps);
	if (*ps->p == '=') {
		fail(ps, "'=' is not a comparison (use == for equality)");
		return -1;
	}
	return 0;
}

/* `3 < norm` is `norm > 3`. */
static enum op flip(enum op op)
{
	switch (op) {
	case OP_GT: return OP_LT;
	case OP_GE: return OP_LE;
	case OP_LT: return OP_GT;
	case OP_LE: return OP_GE;
	default: return op;
	}
}

/* A piece as the stop reports print it: quoted, escaped. */
static void quote(const char *p, size_t len, char *out, size_t n)
{
	size_t w = 0;

	if (n < 8)
		return;
	out[w++] = '"';
	for (size_t i = 0; i < len && w + 6 < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '"' || ch == '\\')
			w += (size_t)snprintf(out + w, n - w, "\\%c", ch);
		else if (ch == '\n')
			w += (size_t)snprintf(out + w, n - w, "\\n");
		else if (ch < 0x20 || ch == 0x7f)
			w += (size_t)snprintf(out + w, n - w, "\\x%02x", ch);
		else
			out[w++] = (char)ch;
	}
	out[w++] = '"';
	out[w] = '\0';
}

/* The id of the token whose text is txt: the piece a stop report prints
 * (" little"); when there is none, say how the tokenizer splits it. */
static bool token_of_text(struct parser *ps, const char *txt, size_t len, double *id)
{
	const struct djn_tokenizer *tok = ps->tok;
	char q[160], msg[720];
	int32_t *ids = NULL;
	int n = 0;
	struct djn_err e = { 0 };
	size_t w;

	quote(txt, len, q, sizeof(q));
	if (!tok) {
		snprintf(msg, sizeof(msg), "token %s: the model has no tokenizer (compare token "
					   "with an id)", q);
		fail(ps, msg);
		return false;
	}
	if (len == 0) {
		fail(ps, "an empty text is no token");
		return false;
	}
	for (int i = 0; i < djn_tok_n_vocab(tok); i++) {
		size_t pl;
		const char *p = djn_tok_decode(tok, -1, i, &pl);
		if (pl == len && !memcmp(p, txt, len)) {
			*id = i;
			return true;
		}
	}
	if (djn_tok_encode(tok, txt, len, false, false, &ids, &n, &e) || n == 0) {
		snprintf(msg, sizeof(msg), "%s is not a token of this model", q);
		free(ids);
		fail(ps, msg);
		return false;
	}
	if (n == 1) {
		size_t pl;
		const char *p = djn_tok_decode(tok, -1, ids[0], &pl);
		char q1[160];
		quote(p, pl, q1, sizeof(q1));
		snprintf(msg, sizeof(msg), "%s is not a token; the tokenizer reads it as %s (id %d): "
					   "write token == %s", q, q1, ids[0], q1);
		free(ids);
		fail(ps, msg);
		return false;
	}
	w = (size_t)snprintf(msg, sizeof(msg), "%s is not one token: the tokenizer splits it "
					       "into %d:", q, n);
	for (int i = 0; i < n && w < sizeof(msg) - 40; i++) {
		size_t pl;
		const char *p = djn_tok_decode(tok, i ? ids[i - 1] : -1, ids[i], &pl);
		quote(p, pl, q, sizeof(q));
		w += (size_t)snprintf(msg + w, sizeof(msg) - w, " %s (id %d)", q, ids[i]);
	}
	free(ids);
	fail(ps, msg);
	return false;
}

/* A number, or a token's text in double quotes. */
static bool parse_value(struct parser *ps, double *v, bool *is_text)
{
	char *end;

	skip(ps);
	*is_text = false;
	if (*ps->p == '"') {
		const char *q = ps->p + 1;
		char buf[256];
		size_t n = 0;
		for (; *q && *q != '"'; q++) {
			char ch = *q;
			if (ch == '\\' && q[1]) {
				q++;
				ch = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
			}
			if (n + 1 >= sizeof(buf)) {
				fail(ps, "text too long");
				return false;
			}
			buf[n++] = ch;
		}
		if (*q != '"') {
			fail(ps, "unterminated text (a closing '\"')");
			return false;
		}
		*is_text = true;
		if (!token_of_text(ps, buf, n, v))
			return false;
		ps->p = q + 1;
		return true;
	}
	*v = strtod(ps->p, &end);
	if (end == ps->p) {
		fail(ps, "expected a number");
		return false;
	}
	ps->p = end;
	return true;
}

static struct node *cmp_node(struct parser *ps, int v, enum op op, double value, bool is_text)
{
	struct node *n;

	if (is_text && v != V_TOKEN)
		return fail(ps, "a text in quotes compares with token only");
	if (is_text && op != OP_EQ && op != OP_NE)
		return fail(ps, "a token's text compares with == or != only");
	n = mk(N_CMP, NULL, NULL);
	n->var = (enum var)v;
	n->op = op;
	n->value = value;
	if (v <= V_INF)
		ps->needs_stats = true;
	return n;
}

static struct node *parse_unary(struct parser *ps)
{
	enum op op;
	double value;
	bool is_text;
	int v, r;

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
	if ((v = parse_var(ps)) >= 0) {
		if ((r = parse_op(ps, &op)) < 0)
			return NULL;
		if (r == 0) {
			if (v == V_NAN || v == V_INF) { /* bare `nan`: any NaN present */
				struct node *n = mk(N_FLAG, NULL, NULL);
				n->var = (enum var)v;
				ps->needs_stats = true;
				return n;
			}
			return fail(ps, "expected a comparison (> >= < <= == !=)");
		}
		skip(ps);
		if (*ps->p == '"' && v != V_TOKEN)
			return fail(ps, "a text in quotes compares with token only");
		if (!parse_value(ps, &value, &is_text))
			return NULL;
		return cmp_node(ps, v, op, value, is_text);
	}
	skip(ps);
	if (*ps->p && (*ps->p == '"' || *ps->p == '-' || *ps->p == '+' || *ps->p == '.' ||
		       isdigit((unsigned char)*ps->p))) { /* `3 < norm`: either order */
		if (!parse_value(ps, &value, &is_text))
			return NULL;
		if ((r = parse_op(ps, &op)) < 0)
			return NULL;
		if (r == 0)
			return fail(ps, "expected a comparison (> >= < <= == !=)");
		if ((v = parse_var(ps)) < 0)
			return fail(ps, "expected norm, max, min, mean, std, absmax, argmax, nan, "
					"inf, pos, layer or token");
		return cmp_node(ps, v, flip(op), value, is_text);
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
	return djn_cond_parse_tok(text, NULL, err);
}

struct djn_cond *djn_cond_parse_tok(const char *text, const struct djn_tokenizer *tok,
				    struct djn_err *err)
{
	struct parser ps = { text, text, err, false, false, tok };
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
