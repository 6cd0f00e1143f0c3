/* plan.c - the planner: which blocks stay in VRAM, which stream, how big and
 * how many the slots are, from a budget; and the size arithmetic it uses. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/ringbuf.h"

static size_t align_up(size_t n)
{
	return (n + DJN_RING_ALIGN - 1) & ~(size_t)(DJN_RING_ALIGN - 1);
}

int djn_ring_block_weights(struct djn_model *m, int b, struct djn_weight **w)
{
	int n = 0, n_layer = m->cfg.n_layer;

	if (b == 0) {
		struct djn_weight *top[] = { &m->tok_embd, &m->pos_embd };
		for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
			if (djn_weight_present(top[i]))
				w[n++] = top[i];
	} else if (b == n_layer + 1) {
		bool tied = m->output.host == m->tok_embd.host;
		struct djn_weight *top[] = { &m->final_norm, &m->final_norm_b, &m->output };
		for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
			if (djn_weight_present(top[i]) && !(top[i] == &m->output && tied))
				w[n++] = top[i];
	} else if (b > 0 && b <= n_layer) {
		struct djn_layer *L = &m->layers[b - 1];
		struct djn_weight *ws[] = { &L->attn_norm, &L->attn_norm_b, &L->wq, &L->wk,
					    &L->wv, &L->bq, &L->bk, &L->bv, &L->wo, &L->bo,
					    &L->mlp_norm, &L->mlp_norm_b, &L->w_gate, &L->w_up,
					    &L->b_up, &L->w_down, &L->b_down };
		_Static_assert(sizeof(ws) / sizeof(ws[0]) == DJN_RING_BLOCK_MAX_WEIGHTS,
			       "a layer's weights");
		for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
			if (djn_weight_present(ws[i]))
				w[n++] = ws[i];
	}
	return n;
}

size_t djn_ring_block_bytes(const struct djn_model *m, int b)
{
	struct djn_weight *w[DJN_RING_BLOCK_MAX_WEIGHTS];
	int n = djn_ring_block_weights((struct djn_model *)m, b, w);
	size_t bytes = 0;

	for (int i = 0; i < n; i++)
		bytes += align_up(djn_weight_bytes(w[i]));
	return bytes;
}

void djn_size_str(size_t b, char *buf, size_t n)
{
	if (b >= (size_t)1 << 30)
		snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
	else if (b >= (size_t)1 << 20)
		snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
	else if (b >= 1024)
		snprintf(buf, n, "%.1f KiB", (double)b / 1024);
	else
		snprintf(buf, n, "%zu B", b);
}

/* A minimum in GiB, rounded up at a precision that keeps it within 1%: the
 * number printed is always enough when given back as a budget. */
static void gib_up(size_t b, char *buf, size_t n)
{
	double g = (double)b / (1 << 30);
	int d = g >= 1 ? 2 : g >= 0.1 ? 3 : g >= 0.01 ? 4 : 6;
	double scale = pow(10, d);

	snprintf(buf, n, "%.*f GiB", d, ceil(g * scale) / scale);
}

bool djn_size_parse(const char *s, size_t *out)
{
	char *end;
	double v, mult = 1;

	if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
		return false;
	v = strtod(s, &end);
	if (end == s || !isfinite(v) || v < 0)
		return false;
	switch (tolower((unsigned char)*end)) {
	case '\0': break;
	case 'k': mult = 1024.0; end++; break;
	case 'm': mult = 1024.0 * 1024; end++; break;
	case 'g': mult = 1024.0 * 1024 * 1024; end++; break;
	case 't': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	case 'b': break;
	default: return false;
	}
	/* "G", "GB", "GiB", "B" */
	if (mult > 1 && (*end == 'i' || *end == 'I'))
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return false;
	v = v * mult + 0.5;
	if (v >= 18446744073709551615.0)
		return false;
	*out = (size_t)v;
	return true;
}

void djn_ring_plan_release(struct djn_ring_plan *p)
{
	free(p->block_bytes);
	free(p->block_streamed);
	free(p->streamed);
	memset(p, 0, sizeof(*p));
}

struct by_size {
	int layer;
	size_t bytes;
};

static int cmp_size(const void *a, const void *b)
{
	const struct by_size *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? -1 : 1;
	return x->layer - y->layer;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The n layers to stream.  Equal layers (the usual case): spread evenly, so
 * resident layers sit between streamed ones and give the copies time to
 * land.  Unequal: the n smallest, which streams the fewest bytes through
 * the smallest slots. */
static void choose(const struct djn_ring_plan *p, int n_layer, int n, int *out)
{
	const size_t *lb = p->block_bytes + 1;
	bool equal = true;

	for (int l = 1; l < n_layer; l++)
		equal &= lb[l] == lb[0];
	if (equal) {
		for (int k = 0; k < n; k++)
			out[k] = (int)(((2 * (long)k + 1) * n_layer) / (2 * (long)n));
		return;
	}
	struct by_size *v = djn_xmalloc(sizeof(*v) * (size_t)n_layer);
	for (int l = 0; l < n_layer; l++)
		v[l] = (struct by_size){ l, lb[l] };
	qsort(v, (size_t)n_layer, sizeof(*v), cmp_size);
	for (int k = 0; k < n; k++)
		out[k] = v[k].layer;
	free(v);
	qsort(out, (size_t)n, sizeof(*out), cmp_int);
}

static void note(struct djn_ring_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct djn_ring_plan *p, const char *fmt, ...)
{
	size_t len = strlen(p->note);
	va_list ap;

	if (len && len + 2 < sizeof(p->note)) {
		memcpy(p->note + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(p->note + len, sizeof(p->note) - len, fmt, ap);
	va_end(ap);
}

enum djn_status djn_ring_plan_compute(struct djn_ring_plan *p, const struct djn_model *m,
				      const struct djn_ring_opts *o, size_t working_set,
				      size_t free_vram, struct djn_err *err)
{
	static const struct djn_ring_opts none = { 0 };
	int n_layer = m->cfg.n_layer, nb = n_layer + 2, k_cfg, k_min, n = 0, k = 0;
	size_t must, layers = 0, largest = 0, eff, need = 0, slot = 0, streamed = 0;
	char a[32], b[32], c[32], d[32], e[32];
	int *pick;

	memset(p, 0, sizeof(*p));
	if (!o)
		o = &none;
	if (o->n_slots < 0 || o->n_slots > DJN_RING_MAX_SLOTS)
		return djn_err_set(err, DJN_ERR_INVALID, "ring slots %d outside 1..%d", o->n_slots,
				   DJN_RING_MAX_SLOTS);
	if (o->sync && o->n_slots > 1)
		return djn_err_set(err, DJN_ERR_INVALID,
				   "synchronous copies use one slot, not %d", o->n_slots);
	if (o->n_stream_min < 0 || o->n_stream_min > n_layer)
		return djn_err_set(err, DJN_ERR_INVALID, "%d streamed layers asked, %s has %d",
				   o->n_stream_min, m->name, n_layer);
	p->budget = o->vram_budget;
	p->free_vram = free_vram;
	p->working_set = working_set;
	p->sync = o->sync;
	p->n_blocks = nb;
	p->block_bytes = djn_xcalloc((size_t)nb, sizeof(size_t));
	p->block_streamed = djn_xcalloc((size_t)nb, sizeof(bool));
	p->streamed = djn_xcalloc((size_t)n_layer + 1, sizeof(int));
	for (int i = 0; i < nb; i++)
		p->block_bytes[i] = djn_ring_block_bytes(m, i);
	must = p->block_bytes[0] + p->block_bytes[nb - 1];
	for (int l = 1; l <= n_layer; l++) {
		layers += p->block_bytes[l];
		if (p->block_bytes[l] > largest)
			largest = p->block_bytes[l];
	}
	p->resident_bytes = must + layers;
	p->device_bytes = must + layers + working_set;
	p->budget_used = o->vram_budget;
	k_cfg = o->sync ? 1 : o->n_slots;
	k_min = k_cfg ? k_cfg : 2;
	if (k_min > n_layer)
		k_min = n_layer;
	p->min_budget = must + (size_t)k_min * largest + working_set;
	if (!o->vram_budget && !o->n_stream_min)
		return DJN_OK; /* no budget: everything resident, as without a ring */

	eff = o->vram_budget ? o->vram_budget : (size_t)-1;
	if (free_vram && eff > free_vram) {
		djn_size_str(free_vram, a, sizeof(a));
		if (o->vram_budget) {
			djn_size_str(o->vram_budget, b, sizeof(b));
			note(p, "the budget of %s exceeds the %s free on the device; planned for %s",
			     b, a, a);
		}
		eff = free_vram;
	}
	p->budget_used = eff;
	if (p->device_bytes <= eff && !o->n_stream_min) {
		if (o->sync || o->n_slots)
			note(p, "everything fits: nothing is streamed");
		return DJN_OK;
	}
	if (eff < p->min_budget) {
		gib_up(p->min_budget, a, sizeof(a));
		djn_size_str(must, b, sizeof(b));
		djn_size_str(largest, c, sizeof(c));
		djn_size_str(working_set, d, sizeof(d));
		djn_size_str(eff, e, sizeof(e));
		return djn_err_set(err, DJN_ERR_NOMEM,
				   "%s: %s %s is below the minimum of %s (embedding and head %s + "
				   "%d slot%s of %s, the largest layer + working set %s)",
				   m->name, eff == o->vram_budget ? "vram budget" : "free vram", e,
				   a, b, k_min, k_min == 1 ? "" : "s", c, d);
	}

	/* the fewest streamed layers that fit, at the fewest slots */
	pick = djn_xmalloc(sizeof(int) * (size_t)n_layer);
	for (n = o->n_stream_min > 1 ? o->n_stream_min : 1; n <= n_layer; n++) {
		choose(p, n_layer, n, pick);
		slot = streamed = 0;
		for (int i = 0; i < n; i++) {
			size_t bb = p->block_bytes[1 + pick[i]];
			streamed += bb;
			if (bb > slot)
				slot = bb;
		}
		k = k_cfg ? k_cfg : 2;
		if (k > n)
			k = n;
		need = must + (layers - streamed) + (size_t)k * slot + working_set;
		if (need <= eff)
			break;
	}
	DJN_ASSERT(n <= n_layer); /* n_layer streamed at k_min slots is min_budget */
	if (k_cfg && k < k_cfg)
		note(p, "%d slot%s asked, %d layer%s streamed: %d slot%s", k_cfg,
		     k_cfg == 1 ? "" : "s", n, n == 1 ? "" : "s", k, k == 1 ? "" : "s");
	/* what the budget leaves buys more slots (more copies in flight), not a
	 * resident layer: that would have been found above */
	while (!k_cfg && k < DJN_RING_AUTO_SLOTS && k < n && need + slot <= eff) {
		k++;
		need += slot;
	}
	memcpy(p->streamed, pick, sizeof(int) * (size_t)n);
	free(pick);
	p->n_streamed = n;
	for (int i = 0; i < n; i++)
		p->block_streamed[1 + p->streamed[i]] = true;
	p->n_slots = k;
	p->slot_bytes = slot;
	p->host_bytes = streamed;
	p->stream_bytes = streamed;
	p->resident_bytes = must + layers - streamed;
	p->device_bytes = need;
	return DJN_OK;
}

void djn_ring_describe(const struct djn_ring_plan *p, const struct djn_ring_stats *st,
		       char *buf, size_t n)
{
	char a[32], b[32], c[32], d[32], e[32];
	size_t len = 0;

#define OUT(...)                                                              \
	do {                                                                  \
		if (len < n)                                                  \
			len += (size_t)snprintf(buf + len, n - len, __VA_ARGS__); \
	} while (0)
	buf[0] = '\0';
	djn_size_str(p->budget, a, sizeof(a));
	djn_size_str(p->device_bytes, b, sizeof(b));
	djn_size_str(p->working_set, c, sizeof(c));
	if (!p->budget && !p->n_streamed) {
		OUT("No VRAM budget: every block is resident.\n");
		return;
	}
	OUT("Budget:    %s (plan uses %s, of which working set %s)\n", a, b, c);
	djn_size_str(p->resident_bytes, a, sizeof(a));
	OUT("Resident:  embedding, head and %d of %d layers, %s\n",
	    p->n_blocks - 2 - p->n_streamed, p->n_blocks - 2, a);
	if (!p->n_streamed) {
		OUT("Streamed:  none (everything fits)\n");
	} else {
		OUT("Streamed:  %d layer%s:", p->n_streamed, p->n_streamed == 1 ? "" : "s");
		for (int i = 0; i < p->n_streamed; i++) {
			/* runs of consecutive layers as a-b */
			int j = i;
			while (j + 1 < p->n_streamed && p->streamed[j + 1] == p->streamed[j] + 1)
				j++;
			if (j > i)
				OUT(" L%d-%d", p->streamed[i], p->streamed[j]);
			else
				OUT(" L%d", p->streamed[i]);
			i = j;
		}
		OUT("\n");
		djn_size_str(p->slot_bytes, a, sizeof(a));
		djn_size_str(p->stream_bytes, b, sizeof(b));
		djn_size_str(p->host_bytes, c, sizeof(c));
		if (p->sync)
			OUT("Slots:     1 x %s, synchronous copies (no prefetch)\n", a);
		else
			OUT("Slots:     %d x %s (K = %d), copy stream ordered by ready/done events\n",
			    p->n_slots, a, p->n_slots);
		OUT("Per token: %s copied host to device\n", b);
		if (st)
			OUT("Host:      %s %s%s%s\n", c, st->pinned ? "pinned" : "pageable",
			    st->host_note && *st->host_note ? ": " : "",
			    st->host_note ? st->host_note : "");
	}
	if (st && p->n_streamed) {
		djn_size_str(st->bytes_copied, d, sizeof(d));
		OUT("Copies:    %ld block%s (%s), %ld out of order\n", st->n_copies,
		    st->n_copies == 1 ? "" : "s", d, st->n_resync);
		if (st->h2d_gbps > 0) {
			double bound = (double)p->stream_bytes / (st->h2d_gbps * 1e9) * 1e3;
			OUT("Bandwidth: %.1f GB/s host to device; PCIe bound %.2f ms/token\n",
			    st->h2d_gbps, bound);
		}
	}
	djn_size_str(p->min_budget, e, sizeof(e));
	OUT("Minimum:   %s budget\n", e);
	if (p->note[0])
		OUT("Note:      %s\n", p->note);
#undef OUT
}
