/* cmd-inspect.c - looking at the program: print / inspect (with slices, top
 * tokens, .npy export and the value history), display, backtrace. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

/* ------------------------------------------------------ value history */

void sh_value_history_clear(struct djn_shell *sh)
{
	for (int i = 0; i < sh->n_hist; i++)
		free(sh->hist[i].v);
	free(sh->hist);
	sh->hist = NULL;
	sh->n_hist = 0;
}

const struct sh_value *sh_value_arg(struct djn_shell *sh, const char *word)
{
	long n;

	if (word[0] != '$') {
		sh_fail(sh, "'%s' is not a value-history entry ($N)", word);
		return NULL;
	}
	if (!word[1]) {
		if (!sh->n_hist) {
			sh_fail(sh, "History is empty.");
			return NULL;
		}
		return &sh->hist[sh->n_hist - 1];
	}
	if (!sh_parse_long(word + 1, 1, 1 << 30, &n)) {
		sh_fail(sh, "bad value-history reference '%s' (want $N)", word);
		return NULL;
	}
	if (n > sh->n_hist) {
		sh_fail(sh, "History has not yet reached %s.", word);
		return NULL;
	}
	return &sh->hist[n - 1];
}

int sh_value_record(struct djn_shell *sh, const char *label, const float *v, int rows, int cols)
{
	struct sh_value *e;

	sh->hist = djn_xrealloc(sh->hist, sizeof(*sh->hist) * (size_t)(sh->n_hist + 1));
	e = &sh->hist[sh->n_hist++];
	snprintf(e->label, sizeof(e->label), "%s", label);
	e->rows = rows;
	e->cols = cols;
	e->v = djn_xmalloc(sizeof(float) * (size_t)rows * cols);
	memcpy(e->v, v, sizeof(float) * (size_t)rows * cols);
	return sh->n_hist;
}

/* ---------------------------------------------- arithmetic on $N */

/* print's small expressions on the value history, nothing more: a value, an
 * operator, a value ($A + $B, $A - $B, $A * $B elementwise, $A * X, X * $A,
 * $A / X), or a function of values: cos($A, $B), dot($A, $B) (per row, a
 * column of rows x 1), norm($A) (the L2 norm of each row).  $ is the last
 * entry; X a number.  Shapes must match exactly: no broadcasting. */

struct operand {
	const struct sh_value *v; /* NULL: a number */
	float x;
	char text[24];
};

static bool is_func(const char *w)
{
	return !strncmp(w, "cos(", 4) || !strncmp(w, "dot(", 4) || !strncmp(w, "norm(", 5);
}

/* Does print's first word begin an expression? */
static bool expr_start(const char *w, const char *next)
{
	if (is_func(w))
		return true;
	if (w[0] != '$' && !isdigit((unsigned char)w[0]) &&
	    !(w[0] == '-' && (isdigit((unsigned char)w[1]) || w[1] == '.')))
		return false;
	if (next && next[0] != '[' && strncmp(next, "--", 2))
		return true;
	return w[0] == '$' && w[strcspn(w, "+-*/")]; /* glued: $1-$2 */
}

static const char *skip_sp(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

static const char *scan_operand(struct djn_shell *sh, const char *p, struct operand *o,
				const char *expr)
{
	const char *q = p;
	char word[24];

	memset(o, 0, sizeof(*o));
	if (*q == '$') {
		q++;
		while (isdigit((unsigned char)*q))
			q++;
	} else {
		char *end;
		strtof(p, &end);
		q = end;
	}
	if (q == p || (size_t)(q - p) >= sizeof(word)) {
		sh_fail(sh, "print: bad expression '%s' (want $N or a number at '%.16s')", expr, p);
		return NULL;
	}
	snprintf(word, sizeof(word), "%.*s", (int)(q - p), p);
	snprintf(o->text, sizeof(o->text), "%s", word);
	if (word[0] == '$') {
		if (!(o->v = sh_value_arg(sh, word)))
			return NULL;
	} else if (!sh_parse_float(word, &o->x)) {
		sh_fail(sh, "print: bad number '%s' in '%s'", word, expr);
		return NULL;
	}
	return skip_sp(q);
}

static bool same_shape(struct djn_shell *sh, const struct operand *a, const struct operand *b,
		       const char *expr)
{
	if (a->v->rows == b->v->rows && a->v->cols == b->v->cols)
		return true;
	sh_fail(sh, "print: %s: the shapes differ: %s (%s) is %d x %d, %s (%s) is %d x %d", expr,
		a->text, a->v->label, a->v->rows, a->v->cols, b->text, b->v->label, b->v->rows,
		b->v->cols);
	return false;
}

/* Evaluate expr into out (rows, cols, v malloc'd; label the expression). */
static bool eval_expr(struct djn_shell *sh, const char *expr, struct sh_value *out)
{
	struct operand a, b;
	const char *p = skip_sp(expr);
	char op = 0;

	memset(out, 0, sizeof(*out));
	if (is_func(p)) {
		char fn[8];
		int nf = p[0] == 'n' ? 4 : 3;
		snprintf(fn, sizeof(fn), "%.*s", nf, p);
		p = skip_sp(p + nf + 1);
		if (!(p = scan_operand(sh, p, &a, expr)))
			return false;
		if (nf == 3) {
			if (*p != ',') {
				sh_fail(sh, "print: %s(A, B) takes two values ('%s')", fn, expr);
				return false;
			}
			if (!(p = scan_operand(sh, skip_sp(p + 1), &b, expr)))
				return false;
		}
		if (*p != ')' || *skip_sp(p + 1)) {
			sh_fail(sh, "print: bad expression '%s' (want %s)", expr,
				nf == 3 ? "cos($A, $B) or dot($A, $B)" : "norm($A)");
			return false;
		}
		if (!a.v || (nf == 3 && !b.v)) {
			sh_fail(sh, "print: %s() takes values from the history ($N), not numbers", fn);
			return false;
		}
		if (nf == 3 && !same_shape(sh, &a, &b, expr))
			return false;
		out->rows = a.v->rows;
		out->cols = 1;
		out->v = djn_xmalloc(sizeof(float) * (size_t)out->rows);
		for (int r = 0; r < out->rows; r++) {
			const float *x = a.v->v + (size_t)r * a.v->cols;
			const float *y = nf == 3 ? b.v->v + (size_t)r * b.v->cols : x;
			double xy = 0, xx = 0, yy = 0;
			for (int c = 0; c < a.v->cols; c++) {
				xy += (double)x[c] * y[c];
				xx += (double)x[c] * x[c];
				yy += (double)y[c] * y[c];
			}
			out->v[r] = fn[0] == 'd'   ? (float)xy
				    : fn[0] == 'n' ? (float)sqrt(xx)
				    : xx > 0 && yy > 0 ? (float)(xy / (sqrt(xx) * sqrt(yy)))
						     : NAN;
		}
		if (nf == 3)
			snprintf(out->label, sizeof(out->label), "%s(%s, %s)", fn, a.text, b.text);
		else
			snprintf(out->label, sizeof(out->label), "norm(%s)", a.text);
		return true;
	}
	if (!(p = scan_operand(sh, p, &a, expr)))
		return false;
	if (!*p || !strchr("+-*/", *p)) {
		sh_fail(sh, "print: bad expression '%s' (want A + B, A - B, A * B, A / X, "
			    "cos(A, B), dot(A, B) or norm(A))", expr);
		return false;
	}
	op = *p;
	if (!(p = scan_operand(sh, skip_sp(p + 1), &b, expr)))
		return false;
	if (*p) {
		if (strchr("+-*/", *p))
			sh_fail(sh, "print: one operator at a time ('%s'; print a part first, "
				    "then use its $N)", expr);
		else
		{
			int k = (int)(p - expr);
			while (k > 0 && expr[k - 1] == ' ')
				k--;
			sh_fail(sh, "print: unexpected '%s' after %.*s", p, k, expr);
		}
		return false;
	}
	if (!a.v && !b.v) {
		sh_fail(sh, "print: %s has no value from the history ($N)", expr);
		return false;
	}
	if ((op == '+' || op == '-') && (!a.v || !b.v)) {
		sh_fail(sh, "print: %s: %c takes two values ($A %c $B), not a number", expr, op, op);
		return false;
	}
	if (op == '/' && (!a.v || b.v)) {
		sh_fail(sh, "print: %s: / divides a value by a number ($A / X)", expr);
		return false;
	}
	if (a.v && b.v && !same_shape(sh, &a, &b, expr))
		return false;
	const struct sh_value *m = a.v ? a.v : b.v;
	size_t n = (size_t)m->rows * m->cols;
	out->rows = m->rows;
	out->cols = m->cols;
	out->v = djn_xmalloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++) {
		float x = a.v ? a.v->v[i] : a.x, y = b.v ? b.v->v[i] : b.x;
		out->v[i] = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
	}
	snprintf(out->label, sizeof(out->label), "%s %c %s", a.text, op, b.text);
	return true;
}

/* ------------------------------------------------------------- print */

struct print_args {
	const char *what;  /* site name, $N, or NULL (the cursor) */
	char *slice;       /* slice text or NULL */
	long top;          /* --top K, 0: none */
	const char *save;  /* --save FILE */
};

static bool parse_print_args(struct djn_shell *sh, int argc, char **argv, struct print_args *pa,
			     char *site_buf, size_t site_n)
{
	memset(pa, 0, sizeof(*pa));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--top") || !strcmp(a, "--save")) {
			if (i + 1 >= argc) {
				sh_fail(sh, "%s: option '%s' needs a value", argv[0], a);
				return false;
			}
			if (!strcmp(a, "--save")) {
				pa->save = argv[++i];
			} else if (!sh_parse_long(argv[++i], 1, 1 << 20, &pa->top)) {
				sh_fail(sh, "%s: bad value '%s' for --top (a positive number)", argv[0],
					argv[i]);
				return false;
			}
		} else if (a[0] == '-' && a[1] == '-') {
			sh_fail(sh, "%s: unknown option '%s'", argv[0], a);
			return false;
		} else if (a[0] == '[') {
			if (pa->slice) {
				sh_fail(sh, "%s: one slice at a time", argv[0]);
				return false;
			}
			pa->slice = argv[i];
		} else if (!pa->what) {
			const char *br = strchr(a, '[');
			if (br) {
				if (pa->slice) {
					sh_fail(sh, "%s: one slice at a time", argv[0]);
					return false;
				}
				snprintf(site_buf, site_n, "%.*s", (int)(br - a), a);
				pa->what = site_buf;
				pa->slice = (char *)br;
			} else {
				pa->what = a;
			}
		} else {
			sh_fail(sh, "%s: unexpected '%s'", argv[0], a);
			return false;
		}
	}
	return true;
}

static void print_stats(struct djn_shell *sh, const struct djn_stats *st)
{
	char a[32], b[32], c[32], d[32], e[32];
	cJSON *o = cJSON_CreateObject();

	sh_fmt_float(sh, st->min, a, sizeof(a));
	sh_fmt_float(sh, st->max, b, sizeof(b));
	sh_fmt_float(sh, st->mean, c, sizeof(c));
	sh_fmt_float(sh, st->std, d, sizeof(d));
	sh_fmt_float(sh, st->l2, e, sizeof(e));
	sh_printf(sh, "  min %s  max %s  mean %s  std %s  l2 %s  nan %lld  inf %lld\n", a, b, c, d,
		  e, (long long)st->n_nan, (long long)st->n_inf);
	cJSON_AddNumberToObject(o, "n", (double)st->n);
	cJSON_AddItemToObject(o, "min", isfinite(st->min) ? cJSON_CreateNumber(st->min) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "max", isfinite(st->max) ? cJSON_CreateNumber(st->max) : cJSON_CreateNull());
	cJSON_AddNumberToObject(o, "mean", isfinite(st->mean) ? st->mean : 0);
	cJSON_AddNumberToObject(o, "std", isfinite(st->std) ? st->std : 0);
	cJSON_AddNumberToObject(o, "l2", isfinite(st->l2) ? st->l2 : 0);
	cJSON_AddNumberToObject(o, "absmax", isfinite(st->absmax) ? st->absmax : 0);
	cJSON_AddNumberToObject(o, "nan", (double)st->n_nan);
	cJSON_AddNumberToObject(o, "inf", (double)st->n_inf);
	sh_json_add(sh, "stats", o);
}

static void print_values(struct djn_shell *sh, const float *v, int rows, int cols, int row0,
			 int col0)
{
	long limit = sh->elements > 0 ? sh->elements : -1, shown = 0;
	cJSON *arr = cJSON_CreateArray();
	char num[40];
	bool truncated = false;

	for (int r = 0; r < rows; r++) {
		size_t cap = 64 + (size_t)cols * 32, u = 0;
		char *line;
		cJSON *row;
		if (limit >= 0 && shown >= limit) {
			sh_printf(sh, "  ... (%d more row%s)\n", rows - r, rows - r == 1 ? "" : "s");
			truncated = true;
			break;
		}
		line = djn_xmalloc(cap);
		row = cJSON_CreateArray();
		u += (size_t)snprintf(line + u, cap - u, "  [%d", row0 + r);
		if (col0 || cols > 1)
			u += (size_t)snprintf(line + u, cap - u, ", %d:%d", col0, col0 + cols);
		u += (size_t)snprintf(line + u, cap - u, "] {");
		for (int c = 0; c < cols; c++) {
			if (limit >= 0 && shown >= limit) {
				u += (size_t)snprintf(line + u, cap - u, "...(%d more)", cols - c);
				truncated = true;
				break;
			}
			sh_fmt_float(sh, v[(size_t)r * cols + c], num, sizeof(num));
			u += (size_t)snprintf(line + u, cap - u, "%s%s", c ? ", " : "", num);
			float x = v[(size_t)r * cols + c];
			cJSON_AddItemToArray(row, isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull());
			shown++;
		}
		snprintf(line + u, cap - u, "}\n");
		sh_printf(sh, "%s", line);
		free(line);
		cJSON_AddItemToArray(arr, row);
	}
	sh_json_add(sh, "values", arr);
	if (truncated)
		sh_json_bool(sh, "truncated", true);
}

struct top {
	int id;
	float logit;
	double p;
};

static int top_cmp(const void *a, const void *b)
{
	const struct top *x = a, *y = b;

	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->id - y->id;
}

cJSON *sh_top_tokens(struct djn_shell *sh, const float *row, int n, long k, const char *indent)
{
	struct top *t = djn_xmalloc(sizeof(*t) * (size_t)n);
	double mx = -INFINITY, sum = 0;
	cJSON *arr = cJSON_CreateArray();
	char piece[128], p[32], l[32];

	for (int i = 0; i < n; i++)
		if (row[i] > mx)
			mx = row[i];
	for (int i = 0; i < n; i++) {
		t[i].id = i;
		t[i].logit = row[i];
		t[i].p = isnan(row[i]) ? 0 : exp(row[i] - mx);
		sum += t[i].p;
	}
	qsort(t, (size_t)n, sizeof(*t), top_cmp);
	if (k > n)
		k = n;
	sh_printf(sh, "%s%-6s %-10s %-10s %s\n", indent, "id", "prob", "logit", "piece");
	for (long i = 0; i < k; i++) {
		double prob = sum > 0 ? t[i].p / sum : 0;
		size_t len = 0;
		const char *raw = "";
		if (sh->m->tok && t[i].id < djn_tok_n_vocab(sh->m->tok))
			raw = djn_tok_piece(sh->m->tok, t[i].id, &len);
		sh_escape(raw, len, piece, sizeof(piece));
		sh_fmt_float(sh, prob, p, sizeof(p));
		sh_fmt_float(sh, t[i].logit, l, sizeof(l));
		sh_printf(sh, "%s%-6d %-10s %-10s \"%s\"\n", indent, t[i].id, p, l, piece);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", t[i].id);
		cJSON_AddNumberToObject(e, "prob", prob);
		cJSON_AddNumberToObject(e, "logit", t[i].logit);
		char *ps = djn_xmalloc(len + 1);
		memcpy(ps, raw, len);
		ps[len] = '\0';
		cJSON_AddStringToObject(e, "piece", ps);
		free(ps);
		cJSON_AddItemToArray(arr, e);
	}
	free(t);
	return arr;
}

static enum djn_cmd_ret print_impl(struct djn_shell *sh, int argc, char **argv, int disp,
				   const struct sh_value *expr)
{
	struct djn_session *s = sh_s(sh);
	struct print_args pa;
	char site_buf[64], label[96], err[256], where[64] = "";
	const struct sh_value *hv = NULL;
	int site = -1, rows, cols, r0, r1, c0, c1;
	float *all = NULL, *sel;
	struct djn_slice sl = { 0 };
	struct djn_stats st;
	bool whole_rows;

	if (!parse_print_args(sh, argc, argv, &pa, site_buf, sizeof(site_buf)))
		return DJN_CMD_FAIL;
	if (pa.slice && !djn_slice_parse(pa.slice, &sl, err, sizeof(err)))
		return sh_fail(sh, "%s", err);
	if (expr && pa.what)
		return sh_fail(sh, "%s: unexpected '%s' after %s", argv[0], pa.what, expr->label);
	if (expr) {
		hv = expr;
		rows = hv->rows;
		cols = hv->cols;
		snprintf(label, sizeof(label), "%s", hv->label);
	} else if (pa.what && pa.what[0] == '$') {
		if (!(hv = sh_value_arg(sh, pa.what)))
			return DJN_CMD_FAIL;
		rows = hv->rows;
		cols = hv->cols;
		snprintf(label, sizeof(label), "%s", pa.what);
	} else {
		if (djn_session_state(s) == DJN_RUN_IDLE)
			return sh_fail(sh, "The program is not being run.");
		if (pa.what) {
			if ((site = sh_site_arg(sh, pa.what)) < 0)
				return DJN_CMD_FAIL;
		} else if ((site = djn_session_cursor(s).site) < 0) {
			return sh_fail(sh, "%s: the cursor is before the first site of this token "
					   "(\"step\" first, or name a site)", argv[0]);
		}
		if (djn_session_site_shape(s, site, &rows, &cols))
			return sh_fail(sh, "%s", djn_session_errmsg(s));
		djn_site_name(&sh->m->cfg, site, label, sizeof(label));
	}
	if (!djn_slice_resolve(&sl, pa.slice ? pa.slice : "[:]", rows, cols, &r0, &r1, &c0, &c1,
			       err, sizeof(err)))
		return sh_fail(sh, "%s", err);
	if (!hv) { /* the positions of the rows shown */
		struct djn_cursor cur = djn_session_cursor(s);
		int p0 = cur.pos + r0, p1 = cur.pos + r1 - 1;
		if (djn_site_kind(&sh->m->cfg, site) >= DJN_SITE_FINAL_NORM || rows != cur.n_rows)
			p0 = p1 = cur.pos + cur.n_rows - 1;
		if (p0 == p1)
			snprintf(where, sizeof(where), " (pos %d)", p0);
		else
			snprintf(where, sizeof(where), " (pos %d..%d)", p0, p1);
	}
	if (pa.top && (c0 != 0 || c1 != cols))
		return sh_fail(sh, "%s: --top reads whole rows of logits; slice rows only ([R])",
			       argv[0]);
	if (pa.top && (hv ? cols != sh->m->cfg.vocab_size
			  : djn_site_kind(&sh->m->cfg, site) != DJN_SITE_LOGITS))
		return sh_fail(sh, "%s: --top needs logits (%s is not)", argv[0], label);
	if (pa.save && !sh->host && !sh_files_ok(sh))
		return DJN_CMD_FAIL;

	if (hv) {
		all = hv->v;
	} else {
		all = djn_xmalloc(sizeof(float) * (size_t)rows * cols);
		if (djn_session_read(s, site, all, (size_t)rows * cols)) {
			free(all);
			return sh_fail(sh, "%s", djn_session_errmsg(s));
		}
	}
	whole_rows = c0 == 0 && c1 == cols;
	int nr = r1 - r0, nc = c1 - c0;
	sel = djn_xmalloc(sizeof(float) * (size_t)nr * nc);
	for (int r = 0; r < nr; r++)
		memcpy(sel + (size_t)r * nc, all + (size_t)(r0 + r) * cols + c0, sizeof(float) * nc);
	if (!hv)
		free(all);
	if (pa.slice) {
		size_t u = strlen(label);
		snprintf(label + u, sizeof(label) - u, "%s", pa.slice);
	}
	/* the statistics come from the engine (on the device) when whole rows
	 * of a live site are asked; a column slice or a history entry is on the
	 * host already */
	if (!hv && whole_rows) {
		if (djn_session_stats(s, site, r0, nr, &st)) {
			free(sel);
			return sh_fail(sh, "%s", djn_session_errmsg(s));
		}
	} else {
		djn_stats_f32(sel, (int64_t)nr * nc, &st);
	}
	if (pa.save) {
		struct djn_err e = { 0 };
		if (sh->host ? sh->host->npy_save(sh->host->ud, pa.save, sel, nr, nc, &e)
			     : djn_npy_save(pa.save, sel, nr, nc, &e)) {
			free(sel);
			return sh_fail(sh, "%s: %s", argv[0], e.msg);
		}
	}
	if (disp) {
		sh_printf(sh, "%d: %s [%d x %d] f32%s\n", disp, label, nr, nc, where);
	} else {
		int id = sh_value_record(sh, label, sel, nr, nc);
		sh_printf(sh, "$%d = %s [%d x %d] f32%s\n", id, label, nr, nc, where);
		sh_json_num(sh, "history", id);
	}
	sh_json_str(sh, "label", label);
	cJSON *shape = cJSON_CreateArray();
	cJSON_AddItemToArray(shape, cJSON_CreateNumber(nr));
	cJSON_AddItemToArray(shape, cJSON_CreateNumber(nc));
	sh_json_add(sh, "shape", shape);
	sh_json_str(sh, "dtype", "f32");
	print_stats(sh, &st);
	if (pa.top) {
		sh_printf(sh, "  top %ld:\n", pa.top < nc ? pa.top : nc);
		sh_json_add(sh, "top", sh_top_tokens(sh, sel, nc, pa.top, "    "));
	} else
		print_values(sh, sel, nr, nc, r0, c0);
	if (pa.save) {
		sh_printf(sh, "  saved to %s\n", pa.save);
		sh_json_str(sh, "saved", pa.save);
	}
	free(sel);
	return DJN_CMD_OK;
}

enum djn_cmd_ret sh_print(struct djn_shell *sh, int argc, char **argv, int disp)
{
	struct sh_value val;
	char text[256], rows[64] = "", **rest;
	size_t u = 0;
	int i, n = 1;
	enum djn_cmd_ret ret;

	if (argc >= 2 && sh_record_name(argv[1])) {
		i = 2;
		if (!sh_record_value(sh, argv[0], argv[1], &val, rows, sizeof(rows)))
			return DJN_CMD_FAIL;
		goto show;
	}
	if (argc >= 2 && sh_pattern_name(argv[1])) {
		/* L3.attn_pattern[H]: computed now, then shown as a value */
		i = argc > 2 && !strchr(argv[1], '[') && argv[2][0] == '[' ? 3 : 2;
		if (!sh_pattern_value(sh, argv[0], argv[1], i == 3 ? argv[2] : NULL, &val, rows,
				      sizeof(rows)))
			return DJN_CMD_FAIL;
		goto show;
	}
	if (argc < 2 || !expr_start(argv[1], argc > 2 ? argv[2] : NULL))
		return print_impl(sh, argc, argv, disp, NULL);
	/* the expression: the words up to a slice or an option */
	text[0] = '\0';
	for (i = 1; i < argc && argv[i][0] != '[' && strncmp(argv[i], "--", 2); i++) {
		if (u + strlen(argv[i]) + 2 >= sizeof(text))
			return sh_fail(sh, "%s: expression too long", argv[0]);
		u += (size_t)snprintf(text + u, sizeof(text) - u, "%s%s", i > 1 ? " " : "", argv[i]);
	}
	if (!eval_expr(sh, text, &val))
		return DJN_CMD_FAIL;
show:
	rest = djn_xcalloc((size_t)argc + 2, sizeof(char *));
	rest[0] = argv[0];
	if (rows[0])
		rest[n++] = rows;
	for (; i < argc; i++)
		rest[n++] = argv[i];
	ret = print_impl(sh, n, rest, disp, &val);
	free(rest);
	free(val.v);
	return ret;
}

DJN_CMD_FN(cmd_print)
{
	return sh_print(sh, argc, argv, 0);
}

/* ------------------------------------------------------------ display */

static void show_one(struct djn_shell *sh, struct sh_display *d)
{
	char saved[sizeof(sh->errmsg)];

	struct djn_session *s = sh_s(sh);
	int site = -1;

	/* a site not computed at this stop shows as such, not as an error */
	if (d->argc > 1 && d->argv[1][0] != '[' && d->argv[1][0] != '-') {
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(d->argv[1], "["), d->argv[1]);
		if (sh_pattern_name(d->argv[1])) /* live with its q */
			snprintf(name, sizeof(name), "L%ld.q", strtol(d->argv[1] + 1, NULL, 10));
		site = djn_site_find(&sh->m->cfg, name);
	}
	if (site >= 0 && !djn_session_site_live(s, site)) {
		sh_printf(sh, "%d: %s <not live here>\n", d->id, d->argv[1]);
		return;
	}
	memcpy(saved, sh->errmsg, sizeof(saved));
	if (sh_print(sh, d->argc, d->argv, d->id) != DJN_CMD_OK)
		sh_printf(sh, "%d: %s: %s\n", d->id, d->argc > 1 ? d->argv[1] : "(cursor)",
			  sh->errmsg);
	memcpy(sh->errmsg, saved, sizeof(saved));
}

void sh_displays_show(struct djn_shell *sh)
{
	for (int i = 0; i < sh->n_disp; i++)
		show_one(sh, &sh->disp[i]);
}

DJN_CMD_FN(cmd_display)
{
	struct sh_display *d;
	struct print_args pa;
	struct djn_slice sl;
	char site_buf[64], err[256];

	if (argc == 1) {
		if (sh->m && djn_session_state(sh_s(sh)) != DJN_RUN_IDLE)
			sh_displays_show(sh);
		return DJN_CMD_OK;
	}
	if (!sh->m)
		return sh_fail(sh, "No model loaded.  Use \"load PATH\".");
	/* check the words now, not at every stop */
	if (!parse_print_args(sh, argc, argv, &pa, site_buf, sizeof(site_buf)))
		return DJN_CMD_FAIL;
	if (pa.save)
		return sh_fail(sh, "display: --save is for print");
	if (pa.what && pa.what[0] == '$')
		return sh_fail(sh, "display: a value-history entry does not change; print it");
	if (pa.what && sh_pattern_name(pa.what)) {
		if (!pa.slice)
			return sh_fail(sh, "display: %s needs a head: %s[H]", pa.what, pa.what);
		if (pa.top)
			return sh_fail(sh, "display: --top needs logits (%s is not)", pa.what);
	} else if (pa.what && sh_site_arg(sh, pa.what) < 0) {
		return DJN_CMD_FAIL;
	} else if (pa.slice && !djn_slice_parse(pa.slice, &sl, err, sizeof(err))) {
		return sh_fail(sh, "%s", err);
	}
	sh->disp = djn_xrealloc(sh->disp, sizeof(*sh->disp) * (size_t)(sh->n_disp + 1));
	d = &sh->disp[sh->n_disp++];
	d->id = sh->next_disp++;
	d->argc = argc;
	d->argv = djn_xcalloc((size_t)argc + 1, sizeof(char *));
	d->argv[0] = djn_xstrdup("display");
	for (int i = 1; i < argc; i++)
		d->argv[i] = djn_xstrdup(argv[i]);
	sh_json_num(sh, "id", d->id);
	if (djn_session_state(sh_s(sh)) != DJN_RUN_IDLE)
		show_one(sh, d);
	return DJN_CMD_OK;
}

static void disp_free(struct sh_display *d)
{
	for (int k = 0; k < d->argc; k++)
		free(d->argv[k]);
	free(d->argv);
}

DJN_CMD_FN(cmd_undisplay)
{
	enum djn_cmd_ret ret = DJN_CMD_OK;

	if (argc == 1) {
		if (sh->n_disp && !sh_query(sh, "Delete all auto-display expressions? "))
			return DJN_CMD_OK;
		for (int i = 0; i < sh->n_disp; i++)
			disp_free(&sh->disp[i]);
		sh->n_disp = 0;
		return DJN_CMD_OK;
	}
	for (int a = 1; a < argc; a++) {
		long id;
		int i;
		if (!sh_parse_long(argv[a], 1, 1 << 30, &id)) {
			ret = sh_fail(sh, "bad display number '%s'", argv[a]);
			continue;
		}
		for (i = 0; i < sh->n_disp && sh->disp[i].id != id; i++)
			;
		if (i == sh->n_disp) {
			ret = sh_fail(sh, "No display number %ld.", id);
			continue;
		}
		disp_free(&sh->disp[i]);
		memmove(&sh->disp[i], &sh->disp[i + 1], sizeof(*sh->disp) * (size_t)(sh->n_disp - i - 1));
		sh->n_disp--;
	}
	return ret;
}

DJN_CMD_FN(cmd_delete_display)
{
	return cmd_undisplay(sh, argc, argv);
}

DJN_CMD_FN(cmd_info_display)
{
	cJSON *arr = cJSON_CreateArray();

	if (!sh->n_disp)
		sh_printf(sh, "There are no auto-display expressions now.\n");
	else
		sh_printf(sh, "Auto-display expressions now in effect:\nNum Enb Expression\n");
	for (int i = 0; i < sh->n_disp; i++) {
		char expr[256] = "";
		size_t u = 0;
		for (int k = 1; k < sh->disp[i].argc && u < sizeof(expr); k++)
			u += (size_t)snprintf(expr + u, sizeof(expr) - u, "%s%s", k > 1 ? " " : "",
					      sh->disp[i].argv[k]);
		sh_printf(sh, "%-3d y   %s\n", sh->disp[i].id, expr);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", sh->disp[i].id);
		cJSON_AddStringToObject(e, "expr", expr);
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "displays", arr);
	return DJN_CMD_OK;
}

/* ---------------------------------------------------------- backtrace */

/* gdb's frame, up and down: the pass has no frames (docs/sites.md says why);
 * say what names the thing a frame would have selected. */
DJN_CMD_FN(cmd_frame)
{
	return sh_fail(sh, "%s: no call frames here: the forward pass is a loop over sites, and "
			   "bt's lines are scopes of one place; name a site instead: print L2.q "
			   "(any live site, see \"info sites\"), print rec::SITE[POS] (an earlier "
			   "position, kept by \"record\")", argv[0]);
}

DJN_CMD_FN(cmd_backtrace)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	struct djn_cursor cur = djn_session_cursor(s);
	int n_total, n_prompt;
	const int32_t *t = djn_session_tokens(s, &n_total, &n_prompt);
	size_t glen;
	const char *gen = djn_session_text(s, &glen);
	char site[40], tok[128], *text;
	bool done = djn_session_state(s) == DJN_RUN_DONE;

	if (cur.site < 0)
		snprintf(site, sizeof(site), "before embed");
	else
		djn_site_name(c, cur.site, site, sizeof(site));
	sh_printf(sh, "#0  %-16s site %d of %d%s\n", site, cur.site, djn_site_count(c),
		  done ? " (run finished)" : "");
	if (cur.layer >= 0)
		sh_printf(sh, "#1  layer %d of %d\n", cur.layer, c->n_layer);
	else
		sh_printf(sh, "#1  %s\n", cur.site <= 0 ? "before the layers" : "after the layers");
	if (cur.n_rows > 1) {
		sh_printf(sh, "#2  pos %d..%d (prompt, %d tokens)\n", cur.pos, cur.pos + cur.n_rows - 1,
			  cur.n_rows);
	} else {
		sh_token_str(sh, cur.pos ? t[cur.pos - 1] : -1, t[cur.pos], tok, sizeof(tok));
		sh_printf(sh, "#2  pos %d, token \"%s\" (id %d)\n", cur.pos, tok, t[cur.pos]);
	}
	sh_printf(sh, "#3  run: %d prompt token%s, %d generated\n", n_prompt,
		  n_prompt == 1 ? "" : "s", n_total - n_prompt);
	if (!done && cur.pos < n_prompt && n_total == n_prompt) { /* nothing generated yet */
		int read = cur.pos + cur.n_rows < n_prompt ? cur.pos + cur.n_rows : n_prompt;
		sh_printf(sh, "text so far: none yet (reading the prompt: %d of %d token%s)\n",
			  read, n_prompt, n_prompt == 1 ? "" : "s");
		sh_json_num(sh, "prompt_read", read);
	} else {
		text = djn_xmalloc(glen * 4 + 8);
		sh_escape(gen, glen, text, glen * 4 + 8);
		sh_printf(sh, "text so far: \"%s\"\n", text);
		free(text);
	}
	sh_json_add(sh, "cursor", sh_cursor_json(sh, s));
	sh_json_num(sh, "n_prompt", n_prompt);
	sh_json_num(sh, "n_generated", n_total - n_prompt);
	sh_json_str(sh, "generated", gen);
	sh_json_bool(sh, "done", done);
	return DJN_CMD_OK;
}
