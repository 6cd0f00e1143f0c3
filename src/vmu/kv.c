/* kv.c - the Data segment: a session's KV cache in fixed-size pages, each
 * holding page_tokens positions of every layer, so a page is the unit of
 * growth, swap and checkpoint copies. */
#include <stdlib.h>
#include <string.h>

#include "djinn/vmu.h"

size_t djn_kv_page_bytes(const struct djn_kv *kv)
{
	return djn_kv_page_elems(&kv->view) * djn_kv_elem_bytes(kv->view.dtype);
}

enum djn_status djn_kv_init(struct djn_kv *kv, struct djn_backend *be, int n_layer,
			    int kv_dim, int page_tokens, int max_ctx, enum djn_dtype dtype,
			    struct djn_err *err)
{
	memset(kv, 0, sizeof(*kv));
	if (dtype != DJN_DTYPE_F32 && dtype != DJN_DTYPE_F16)
		return djn_err_set(err, DJN_ERR_INVALID, "kv cache: dtype %s (f32 or f16)",
				   djn_dtype_name(dtype));
	kv->be = be;
	kv->n_cap = (max_ctx + page_tokens - 1) / page_tokens;
	kv->host_table = djn_xcalloc((size_t)kv->n_cap, sizeof(float *));
	if (be->host_memory) {
		kv->dev_table = kv->host_table;
	} else {
		size_t tb = sizeof(float *) * (size_t)kv->n_cap;
		kv->dev_table = djn_backend_take(be, tb, 2 * tb, &kv->dev_table_bytes);
		if (!kv->dev_table) {
			free(kv->host_table);
			return djn_err_set(err, DJN_ERR_NOMEM, "kv cache: %s", be->err.msg);
		}
	}
	kv->view.pages = kv->dev_table;
	kv->view.pages_host = kv->host_table;
	kv->view.n_pages = 0;
	kv->view.page_tokens = page_tokens;
	kv->view.n_layer = n_layer;
	kv->view.kv_dim = kv_dim;
	kv->view.dtype = dtype;
	return DJN_OK;
}

/* The stack of kept pages of pb bytes; with make, a fifth size takes the
 * place of the size with the fewest pages kept, which go. */
static struct djn_kept_pages *kept_of(struct djn_backend *be, size_t pb, bool make)
{
	struct djn_kept_pages *fewest = NULL;

	for (int i = 0; i < DJN_PAGE_SIZES; i++) {
		struct djn_kept_pages *k = &be->data_kept[i];
		if (k->page == pb)
			return k;
		if (!fewest || k->n < fewest->n)
			fewest = k;
	}
	if (!make)
		return NULL;
	djn_backend_trim_pages(be, fewest);
	fewest->page = pb;
	return fewest;
}

float *djn_kv_page_alloc(struct djn_kv *kv)
{
	struct djn_backend *be = kv->be;
	size_t pb = djn_kv_page_bytes(kv);
	struct djn_kept_pages *k = kept_of(be, pb, false);
	float *p;

	if (be->data_limit && be->data_bytes + pb > be->data_limit) {
		djn_err_set(&be->err, DJN_ERR_NOMEM,
			    "the KV limit of %zu bytes is reached (%zu in use)", be->data_limit,
			    be->data_bytes);
		return NULL;
	}
	if (k && k->n) {
		p = k->p[--k->n];
		be->n_data_kept--;
	} else {
		p = be->i->alloc(be, pb);
	}
	if (p)
		be->data_bytes += pb;
	return p;
}

/* The page is kept for the next one rather than freed: whatever reads or
 * writes it next is queued after the work queued so far on its stream
 * (a swap-in's copies wait for the compute stream first). */
void djn_kv_page_free(struct djn_kv *kv, float *p)
{
	struct djn_backend *be = kv->be;
	size_t pb = djn_kv_page_bytes(kv);

	if (!p)
		return;
	be->data_bytes -= pb;
	if (be->poisoned) {
		be->i->dealloc(be, p);
		return;
	}
	struct djn_kept_pages *k = kept_of(be, pb, true);
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 64;
		k->p = djn_xrealloc(k->p, sizeof(void *) * (size_t)k->cap);
	}
	k->p[k->n++] = p;
	be->n_data_kept++;
}

enum djn_status djn_kv_reserve(struct djn_kv *kv, int n_tokens, struct djn_err *err)
{
	int need = (n_tokens + kv->view.page_tokens - 1) / kv->view.page_tokens;
	int first = kv->view.n_pages;
	struct djn_backend *be = kv->be;

	if (need > kv->n_cap)
		return djn_err_set(err, DJN_ERR_RANGE,
				   "kv cache: %d tokens exceed the context of %d", n_tokens,
				   kv->n_cap * kv->view.page_tokens);
	enum djn_status st = DJN_OK;
	while (kv->view.n_pages < need) {
		float *p = djn_kv_page_alloc(kv);
		if (!p) {
			st = djn_err_set(err, DJN_ERR_NOMEM, "kv cache page %d: %s", kv->view.n_pages,
					 be->err.msg);
			break;
		}
		kv->host_table[kv->view.n_pages++] = p;
	}
	/* the pages got so far are the cache's even when the next one failed
	 * (a retry after making room starts past them): the device's table
	 * must have them too */
	if (!be->host_memory && kv->view.n_pages > first) {
		enum djn_status cst = be->i->copy_h2d(be, kv->dev_table + first,
						      kv->host_table + first,
						      sizeof(float *) * (size_t)(kv->view.n_pages - first));
		if (cst)
			return djn_err_set(err, cst, "kv cache: page table: %s", be->err.msg);
	}
	return st;
}

void djn_kv_release(struct djn_kv *kv)
{
	if (!kv->host_table)
		return;
	for (int i = 0; i < kv->view.n_pages; i++)
		djn_kv_page_free(kv, kv->host_table[i]);
	if (kv->dev_table != kv->host_table)
		djn_backend_keep(kv->be, kv->dev_table, kv->dev_table_bytes);
	free(kv->host_table);
	memset(kv, 0, sizeof(*kv));
}
