/* region.c - first-fit ranges over one allocation, coalescing on free: the
 * shared pool carves its layers, embeddings and slots out of it, so that a
 * switch or an eviction makes no device call. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/ringbuf.h"
#include "ringbuf/region.h"

static size_t round_up(const struct djn_region *r, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - (r->align - 1))
		return 0; /* wrapped: no region holds it */
	return (n + r->align - 1) & ~(r->align - 1);
}

void djn_region_init(struct djn_region *r, size_t cap, size_t align)
{
	DJN_ASSERT(align >= 1 && (align & (align - 1)) == 0);
	memset(r, 0, sizeof(*r));
	r->align = align;
	r->cap = cap & ~(align - 1);
	r->n_cap = 16;
	r->ext = djn_xcalloc((size_t)r->n_cap, sizeof(*r->ext));
	if (r->cap) {
		r->ext[0] = (struct djn_extent){ 0, r->cap, false };
		r->n = 1;
	}
}

void djn_region_release(struct djn_region *r)
{
	free(r->ext);
	memset(r, 0, sizeof(*r));
}

/* Make room for one more extent after index i (shifting the rest up). */
static void insert_after(struct djn_region *r, int i)
{
	if (r->n == r->n_cap) {
		r->n_cap *= 2;
		r->ext = djn_xrealloc(r->ext, sizeof(*r->ext) * (size_t)r->n_cap);
	}
	memmove(&r->ext[i + 2], &r->ext[i + 1], sizeof(*r->ext) * (size_t)(r->n - i - 1));
	r->n++;
}

static void remove_at(struct djn_region *r, int i)
{
	memmove(&r->ext[i], &r->ext[i + 1], sizeof(*r->ext) * (size_t)(r->n - i - 1));
	r->n--;
}

enum djn_status djn_region_alloc(struct djn_region *r, size_t bytes, bool high, size_t *off,
				 struct djn_err *err)
{
	size_t need = round_up(r, bytes);
	int pick = -1;

	for (int k = 0; need && k < r->n; k++) {
		int i = high ? r->n - 1 - k : k;
		if (!r->ext[i].live && r->ext[i].size >= need) {
			pick = i;
			break;
		}
	}
	if (pick < 0) {
		char a[32], b[32], c[32];
		djn_size_str(bytes, a, sizeof(a));
		djn_size_str(djn_region_free_bytes(r), b, sizeof(b));
		djn_size_str(djn_region_largest_free(r), c, sizeof(c));
		return djn_err_set(err, DJN_ERR_NOMEM,
				   "pool region: no free range of %s (%zu bytes): %s free, the "
				   "largest range %s", a, bytes, b, c);
	}
	struct djn_extent *e = &r->ext[pick];
	if (e->size == need) {
		e->live = true;
		*off = e->off;
	} else if (!high) {
		/* the front of the hole; the rest stays free after it */
		insert_after(r, pick);
		e = &r->ext[pick];
		r->ext[pick + 1] = (struct djn_extent){ e->off + need, e->size - need, false };
		e->size = need;
		e->live = true;
		*off = e->off;
	} else {
		/* the back of the hole */
		insert_after(r, pick);
		e = &r->ext[pick];
		r->ext[pick + 1] = (struct djn_extent){ e->off + e->size - need, need, true };
		e->size -= need;
		*off = r->ext[pick + 1].off;
	}
	r->live_bytes += need;
	r->n_live++;
	return DJN_OK;
}

size_t djn_region_free(struct djn_region *r, size_t off)
{
	int lo = 0, hi = r->n - 1, i = -1;
	size_t size;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		if (r->ext[mid].off == off) {
			i = mid;
			break;
		}
		if (r->ext[mid].off < off)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	if (i < 0 || !r->ext[i].live)
		return 0;
	size = r->ext[i].size;
	r->ext[i].live = false;
	r->live_bytes -= size;
	r->n_live--;
	if (i + 1 < r->n && !r->ext[i + 1].live) {
		r->ext[i].size += r->ext[i + 1].size;
		remove_at(r, i + 1);
	}
	if (i > 0 && !r->ext[i - 1].live) {
		r->ext[i - 1].size += r->ext[i].size;
		remove_at(r, i);
	}
	return size;
}

size_t djn_region_largest_free(const struct djn_region *r)
{
	size_t best = 0;

	for (int i = 0; i < r->n; i++)
		if (!r->ext[i].live && r->ext[i].size > best)
			best = r->ext[i].size;
	return best;
}

size_t djn_region_free_bytes(const struct djn_region *r)
{
	return r->cap - r->live_bytes;
}

bool djn_region_fits(const struct djn_region *r, size_t bytes)
{
	size_t need = round_up(r, bytes);

	return need && djn_region_largest_free(r) >= need;
}

bool djn_region_check(const struct djn_region *r)
{
	size_t at = 0, live = 0;
	int n_live = 0;

	for (int i = 0; i < r->n; i++) {
		const struct djn_extent *e = &r->ext[i];
		if (e->off != at || e->size == 0 || e->off % r->align || e->size % r->align)
			return false;
		if (!e->live && i > 0 && !r->ext[i - 1].live)
			return false;
		if (e->live) {
			live += e->size;
			n_live++;
		}
		at += e->size;
	}
	return at == r->cap && live == r->live_bytes && n_live == r->n_live;
}
