/* parse.c - the words of a command line, numbers, and tensor slices. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

int djn_shell_split(const char *line, char ***argv_out, int **off_out, char *err, size_t n)
{
	size_t len = strlen(line);
	char **argv = NULL;
	int *off = NULL, argc = 0;
	const char *p = line;

	*argv_out = NULL;
	*off_out = NULL;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		char *w = djn_xmalloc(len + 1), *o = w;
		int depth = 0;
		const char *start = p;
		while (*p && (depth > 0 || !isspace((unsigned char)*p))) {
			char c = *p;
			if (depth > 0) {
				/* inside ( ) or [ ]: kept as written, quotes included */
				if (c == '"' || c == '\'') {
					const char *q = p++;
					*o++ = c;
					while (*p && *p != c) {
						if (c == '"' && *p == '\\' && p[1])
							*o++ = *p++;
						*o++ = *p++;
					}
					if (!*p) {
						snprintf(err, n, "unterminated quote at column %d",
							 (int)(q - line) + 1);
						goto fail;
					}
					*o++ = *p++;
					continue;
				}
				if (c == '(' || c == '[')
					depth++;
				else if (c == ')' || c == ']')
					depth--;
				*o++ = *p++;
				continue;
			}
			if (c == '(' || c == '[') {
				depth++;
				*o++ = *p++;
			} else if (c == '"') {
				const char *q = p++;
				while (*p && *p != '"') {
					if (*p == '\\' && p[1]) {
						p++;
						switch (*p) {
						case 'n': *o++ = '\n'; break;
						case 't': *o++ = '\t'; break;
						default: *o++ = *p; break;
						}
						p++;
						continue;
					}
					*o++ = *p++;
				}
				if (!*p) {
					snprintf(err, n, "unterminated quote at column %d", (int)(q - line) + 1);
					goto fail;
				}
				p++;
			} else if (c == '\'') {
				const char *q = p++;
				while (*p && *p != '\'')
					*o++ = *p++;
				if (!*p) {
					snprintf(err, n, "unterminated quote at column %d", (int)(q - line) + 1);
					goto fail;
				}
				p++;
			} else {
				*o++ = *p++;
			}
		}
		*o = '\0';
		argv = djn_xrealloc(argv, sizeof(char *) * (size_t)(argc + 2));
		off = djn_xrealloc(off, sizeof(int) * (size_t)(argc + 2));
		argv[argc] = w;
		off[argc] = (int)(start - line);
		argc++;
		argv[argc] = NULL;
		continue;
fail:
		free(w);
		djn_shell_split_free(argc, argv, off);
		return -1;
	}
	if (!argc) {
		argv = djn_xcalloc(1, sizeof(char *));
		off = djn_xcalloc(1, sizeof(int));
	}
	*argv_out = argv;
	*off_out = off;
	return argc;
}

void djn_shell_split_free(int argc, char **argv, int *off)
{
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
	free(off);
}

bool sh_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool sh_parse_float(const char *s, float *out)
{
	char *end;
	float v;

	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	errno = 0;
	v = strtof(s, &end);
	if (*end || errno == ERANGE || !isfinite(v))
		return false;
	*out = v;
	return true;
}

/* ------------------------------------------------------------- slices */

struct sp {
	const char *start, *p;
	char *err;
	size_t n;
};

static void sp_skip(struct sp *s)
{
	while (*s->p == ' ' || *s->p == '\t')
		s->p++;
}

static bool sp_fail(struct sp *s, const char *what)
{
	snprintf(s->err, s->n, "bad slice '%s': %s at column %d", s->start, what,
		 (int)(s->p - s->start) + 1);
	return false;
}

static bool sp_int(struct sp *s, long *v, bool *has)
{
	const char *q;
	char *end;

	sp_skip(s);
	q = s->p;
	if (*q == '-' || *q == '+')
		q++;
	if (!isdigit((unsigned char)*q)) {
		*has = false;
		return true;
	}
	errno = 0;
	*v = strtol(s->p, &end, 10);
	if (errno || *v > 1000000000L || *v < -1000000000L)
		return sp_fail(s, "index too large");
	s->p = end;
	*has = true;
	return true;
}

static bool sp_dim(struct sp *s, struct djn_slice_dim *d)
{
	long v = 0;
	bool has;

	memset(d, 0, sizeof(*d));
	if (!sp_int(s, &v, &has))
		return false;
	sp_skip(s);
	if (*s->p != ':') {
		if (!has)
			return sp_fail(s, "expected an index or a range");
		d->kind = DJN_SLICE_INDEX;
		d->lo = v;
		return true;
	}
	s->p++;
	d->kind = DJN_SLICE_RANGE;
	d->lo = v;
	d->has_lo = has;
	if (!sp_int(s, &d->hi, &d->has_hi))
		return false;
	sp_skip(s);
	if (*s->p == ':')
		return sp_fail(s, "steps are not supported");
	if (!d->has_lo && !d->has_hi)
		d->kind = DJN_SLICE_ALL;
	return true;
}

bool djn_slice_parse(const char *text, struct djn_slice *out, char *err, size_t n)
{
	struct sp s = { text, text, err, n };

	memset(out, 0, sizeof(*out));
	sp_skip(&s);
	if (*s.p != '[')
		return sp_fail(&s, "expected '['");
	s.p++;
	for (;;) {
		if (out->n_dims == 2)
			return sp_fail(&s, "too many indices (a site's tensor has rows and columns)");
		if (!sp_dim(&s, &out->d[out->n_dims]))
			return false;
		out->n_dims++;
		sp_skip(&s);
		if (*s.p == ',') {
			s.p++;
			continue;
		}
		if (*s.p == ']')
			break;
		return sp_fail(&s, *s.p ? "expected ',' or ']'" : "expected ']'");
	}
	s.p++;
	sp_skip(&s);
	if (*s.p)
		return sp_fail(&s, "unexpected text after ']'");
	return true;
}

static bool resolve_dim(const struct djn_slice_dim *d, int size, int *lo, int *hi,
			const char *text, const char *what, char *err, size_t n)
{
	long a, b;

	switch (d->kind) {
	case DJN_SLICE_ALL:
		*lo = 0;
		*hi = size;
		return true;
	case DJN_SLICE_INDEX:
		a = d->lo < 0 ? d->lo + size : d->lo;
		if (a < 0 || a >= size) {
			snprintf(err, n, "slice %s: %s %ld out of range (%d %s%s)", text, what, d->lo,
				 size, what, size == 1 ? "" : "s");
			return false;
		}
		*lo = (int)a;
		*hi = (int)a + 1;
		return true;
	case DJN_SLICE_RANGE:
		a = !d->has_lo ? 0 : d->lo < 0 ? d->lo + size : d->lo;
		b = !d->has_hi ? size : d->hi < 0 ? d->hi + size : d->hi;
		if (a < 0 || b > size || a >= b) {
			char r[64], x[24] = "", y[24] = "";
			if (d->has_lo)
				snprintf(x, sizeof(x), "%ld", d->lo);
			if (d->has_hi)
				snprintf(y, sizeof(y), "%ld", d->hi);
			snprintf(r, sizeof(r), "%s:%s", x, y);
			snprintf(err, n, "slice %s: %s range %s %s (%d %s%s)", text, what, r,
				 a >= b && a >= 0 && b <= size ? "is empty" : "is out of range", size,
				 what, size == 1 ? "" : "s");
			return false;
		}
		*lo = (int)a;
		*hi = (int)b;
		return true;
	}
	return false;
}

bool djn_slice_resolve(const struct djn_slice *sl, const char *text, int rows, int cols,
		       int *r0, int *r1, int *c0, int *c1, char *err, size_t n)
{
	struct djn_slice_dim all = { .kind = DJN_SLICE_ALL };

	return resolve_dim(sl->n_dims > 0 ? &sl->d[0] : &all, rows, r0, r1, text, "row", err, n) &&
	       resolve_dim(sl->n_dims > 1 ? &sl->d[1] : &all, cols, c0, c1, text, "column", err, n);
}
