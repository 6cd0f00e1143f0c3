/* sites.c - the site list of a model: names, kinds, widths, patterns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/djinn.h"

static const char *const kind_names[DJN_SITE_KIND_COUNT] = {
	[DJN_SITE_EMBED] = "embed",
	[DJN_SITE_ATTN_NORM] = "attn_norm",
	[DJN_SITE_Q] = "q",
	[DJN_SITE_K] = "k",
	[DJN_SITE_V] = "v",
	[DJN_SITE_ATTN] = "attn",
	[DJN_SITE_ATTN_OUT] = "attn_out",
	[DJN_SITE_RESID_MID] = "resid_mid",
	[DJN_SITE_MLP_NORM] = "mlp_norm",
	[DJN_SITE_MLP_ACT] = "mlp_act",
	[DJN_SITE_MLP_OUT] = "mlp_out",
	[DJN_SITE_RESID_POST] = "resid_post",
	[DJN_SITE_FINAL_NORM] = "final_norm",
	[DJN_SITE_LOGITS] = "logits",
};

int djn_site_count(const struct djn_config *c)
{
	return 3 + DJN_SITES_PER_LAYER * c->n_layer;
}

enum djn_site_kind djn_site_kind(const struct djn_config *c, int site)
{
	int last = djn_site_count(c) - 1;

	if (site <= 0)
		return DJN_SITE_EMBED;
	if (site == last)
		return DJN_SITE_LOGITS;
	if (site == last - 1)
		return DJN_SITE_FINAL_NORM;
	return (enum djn_site_kind)(DJN_SITE_ATTN_NORM + (site - 1) % DJN_SITES_PER_LAYER);
}

int djn_site_layer(const struct djn_config *c, int site)
{
	if (site <= 0 || site >= djn_site_count(c) - 2)
		return -1;
	return (site - 1) / DJN_SITES_PER_LAYER;
}

int djn_site_width(const struct djn_config *c, int site)
{
	switch (djn_site_kind(c, site)) {
	case DJN_SITE_Q:
	case DJN_SITE_ATTN:
		return c->n_head * c->head_dim;
	case DJN_SITE_K:
	case DJN_SITE_V:
		return c->n_kv_head * c->head_dim;
	case DJN_SITE_MLP_ACT:
		return c->hidden_dim;
	case DJN_SITE_LOGITS:
		return c->vocab_size;
	default:
		return c->dim;
	}
}

const char *djn_site_kind_name(enum djn_site_kind k)
{
	return (unsigned)k < DJN_SITE_KIND_COUNT ? kind_names[k] : "?";
}

void djn_site_name(const struct djn_config *c, int site, char *buf, size_t n)
{
	int l = djn_site_layer(c, site);
	const char *k = kind_names[djn_site_kind(c, site)];

	if (l < 0)
		snprintf(buf, n, "%s", k);
	else
		snprintf(buf, n, "L%d.%s", l, k);
}

int djn_site_find(const struct djn_config *c, const char *name)
{
	int last = djn_site_count(c) - 1;
	char *end;
	long l;

	/* parsed, not searched: the shell and Lua look names up on every call */
	if (!strcmp(name, "embed"))
		return 0;
	if (!strcmp(name, "final_norm"))
		return last - 1;
	if (!strcmp(name, "logits"))
		return last;
	if (name[0] != 'L' || name[1] < '0' || name[1] > '9')
		return -1;
	l = strtol(name + 1, &end, 10);
	if (*end != '.' || l >= c->n_layer || (end - name > 2 && name[1] == '0'))
		return -1;
	for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++)
		if (!strcmp(end + 1, kind_names[k]))
			return 1 + (int)l * DJN_SITES_PER_LAYER + (k - DJN_SITE_ATTN_NORM);
	return -1;
}

/* Parse "L<a>", "L<a>-<b>" or "L*" into a layer range; false if malformed. */
static bool parse_layers(const char *p, size_t len, int n_layer, int *lo, int *hi)
{
	char *end;
	long a, b;

	if (len < 2 || p[0] != 'L')
		return false;
	if (len == 2 && p[1] == '*') {
		*lo = 0;
		*hi = n_layer - 1;
		return true;
	}
	/* one spelling per layer, as djn_site_find: L3, never L03 */
	if (p[1] < '0' || p[1] > '9' || (p[1] == '0' && len > 2 && p[2] >= '0' && p[2] <= '9'))
		return false;
	a = strtol(p + 1, &end, 10);
	b = a;
	if (end < p + len && *end == '-') {
		const char *q = end + 1;
		if (q >= p + len || *q < '0' || *q > '9' ||
		    (q[0] == '0' && q + 1 < p + len && q[1] >= '0' && q[1] <= '9'))
			return false;
		b = strtol(q, &end, 10);
	}
	if (end != p + len || a > b)
		return false;
	*lo = (int)a;
	*hi = (int)b;
	return true;
}

bool djn_site_match(const struct djn_config *c, const char *pattern, int site)
{
	const char *dot = strchr(pattern, '.');
	int layer = djn_site_layer(c, site), lo, hi;
	const char *kind = kind_names[djn_site_kind(c, site)];

	if (!strcmp(pattern, "*"))
		return true;
	if (!dot)
		return layer < 0 && !strcmp(pattern, kind);
	if (layer < 0 || !parse_layers(pattern, (size_t)(dot - pattern), c->n_layer, &lo, &hi))
		return false;
	if (layer < lo || layer > hi)
		return false;
	return !strcmp(dot + 1, "*") || !strcmp(dot + 1, kind);
}

bool djn_site_pattern_valid(const struct djn_config *c, const char *pattern)
{
	for (int s = 0; s < djn_site_count(c); s++)
		if (djn_site_match(c, pattern, s))
			return true;
	return false;
}

static int edit_distance(const char *a, const char *b)
{
	int la = (int)strlen(a), lb = (int)strlen(b);
	int *row = djn_xmalloc(sizeof(int) * (size_t)(lb + 1)), d;

	for (int j = 0; j <= lb; j++)
		row[j] = j;
	for (int i = 1; i <= la; i++) {
		int prev = row[0];
		row[0] = i;
		for (int j = 1; j <= lb; j++) {
			int cur = row[j];
			int sub = prev + (a[i - 1] != b[j - 1]);
			int del = row[j] + 1, ins = row[j - 1] + 1;
			row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
			prev = cur;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

/* A typo, not another word: at most two edits, and at most half the word. */
static bool near_enough(int d, size_t len)
{
	return d <= 2 && 2 * (size_t)d <= len;
}

static bool is_layer_kind(const char *k)
{
	for (int i = DJN_SITE_ATTN_NORM; i <= DJN_SITE_RESID_POST; i++)
		if (!strcmp(k, kind_names[i]))
			return true;
	return false;
}

/* "L<layers>.<kind>" with a well-formed layer part (in range or not): where
 * the kind starts, and the layers; NULL for anything else. */
static const char *split_layers(const struct djn_config *c, const char *name, int *lo, int *hi)
{
	const char *dot = strchr(name, '.');

	if (!dot || !parse_layers(name, (size_t)(dot - name), c->n_layer, lo, hi))
		return NULL;
	return dot + 1;
}

int djn_site_suggest(const struct djn_config *c, const char *name, char (*out)[32], int max)
{
	int n = 0, best = 1 << 30, lo, hi;
	const char *kind = split_layers(c, name, &lo, &hi);
	char buf[40];

	if (kind && hi >= c->n_layer)
		return 0; /* L9.q on five layers: no other name is nearer than the range */
	if (kind && strcmp(kind, "*") && !is_layer_kind(kind)) {
		/* the layers are right: the kind's typos and the kinds it begins */
		size_t len = strlen(kind);
		for (int pass = 0; pass < 2; pass++) {
			for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++) {
				int d = len && !strncmp(kind_names[k], kind, len)
						? 0
						: edit_distance(kind, kind_names[k]);
				if (!near_enough(d, len))
					continue;
				if (pass == 0 && d < best)
					best = d;
				if (pass == 1 && d == best && n < max &&
				    snprintf(buf, sizeof(buf), "%.*s%s", (int)(kind - name), name,
					     kind_names[k]) < 32)
					memcpy(out[n++], buf, 32);
			}
		}
		return n;
	}
	/* two passes: find the best distance, then list the sites at it; a
	 * layerless site (embed, final_norm, logits) also by its beginning */
	for (int pass = 0; pass < 2; pass++) {
		for (int s = 0; s < djn_site_count(c); s++) {
			size_t len = strlen(name);
			djn_site_name(c, s, buf, sizeof(buf));
			int d = len >= 2 && djn_site_layer(c, s) < 0 && !strncmp(buf, name, len)
					? 0
					: edit_distance(name, buf);
			if (!near_enough(d, len))
				continue;
			if (pass == 0 && d < best)
				best = d;
			else if (pass == 1 && d == best && n < max)
				memcpy(out[n++], buf, 32);
		}
	}
	return n;
}

/* "L03.q", "L1-04.*": the name without its layer numbers' leading zeros
 * into buf, or false when it has none (or is no layer name). */
static bool strip_zeros(const char *name, char *buf, size_t size)
{
	const char *dot = strchr(name, '.');
	size_t o = 0;
	bool any = false;

	if (name[0] != 'L' || !dot || size < 2)
		return false;
	buf[o++] = 'L';
	for (const char *p = name + 1; *p && o + 1 < size; p++) {
		bool digit_start = p < dot && (p[-1] == 'L' || p[-1] == '-');
		while (digit_start && p[0] == '0' && p[1] >= '0' && p[1] <= '9') {
			p++;
			any = true;
		}
		buf[o++] = *p;
	}
	buf[o] = '\0';
	return any;
}

bool djn_site_why(const struct djn_config *c, const char *name, char *buf, size_t size)
{
	char sug[4][32], plain[40];
	int n, lo, hi, last = c->n_layer - 1;
	const char *kind = split_layers(c, name, &lo, &hi);
	size_t o;

	if (strip_zeros(name, plain, sizeof(plain)) && djn_site_pattern_valid(c, plain)) {
		if (size)
			snprintf(buf, size, "layer numbers take no leading zero: %s", plain);
		return true;
	}
	n = djn_site_suggest(c, name, sug, 4);
	if (!size)
		return n > 0;
	if (n > 0) {
		o = (size_t)snprintf(buf, size, "did you mean ");
		for (int i = 0; i < n && o < size; i++)
			o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? (i == n - 1 ? " or " : ", ") : "",
					      sug[i]);
		if (o < size)
			snprintf(buf + o, size - o, "?");
		return true;
	}
	if (kind && hi > last)
		snprintf(buf, size, "layers are L0..L%d", last);
	else if (is_layer_kind(name))
		snprintf(buf, size, "name its layer: L0.%s .. L%d.%s", name, last, name);
	else if (kind && strcmp(kind, "*") && !is_layer_kind(kind)) {
		o = (size_t)snprintf(buf, size, "a layer's sites are ");
		for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST && o < size; k++)
			o += (size_t)snprintf(buf + o, size - o, "%s%s", k > DJN_SITE_ATTN_NORM ? ", " : "",
					      kind_names[k]);
	} else
		snprintf(buf, size, "sites are embed, L0..L%d.<kind>, final_norm, logits", last);
	return false;
}
