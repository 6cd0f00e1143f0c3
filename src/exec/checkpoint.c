/* checkpoint.c - snapshots of a run: registers and tokens on the host, KV
 * pages and the step's activations copied backend to backend (a restore
 * never goes through the host). */
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

static void ckpt_release(struct djn_session *s, struct ckpt *k)
{
	/* one allocation holds every page of a checkpoint and its arena copy
	 * (pages[0]) */
	if (k->pages && k->pages[0])
		s->be->i->dealloc(s->be, k->pages[0]);
	free(k->pages);
	free(k->tokens);
	free(k->text);
}

/* The first n KV pages to or from one contiguous checkpoint buffer: one
 * launch where the backend can gather, else a copy a page. */
static enum djn_status copy_kv(struct djn_session *s, float *contig, int n, bool to_pages)
{
	struct djn_backend *be = s->be;
	size_t pb = djn_kv_page_bytes(&s->kv);
	enum djn_status st = DJN_OK;

	if (be->i->copy_pages)
		return be->i->copy_pages(be, contig, (void *const *)s->kv.dev_table, n, pb, to_pages);
	for (int i = 0; i < n && !st; i++) {
		float *c = (float *)((char *)contig + pb * (size_t)i);
		st = to_pages ? be->i->copy_d2d(be, s->kv.host_table[i], c, pb)
			      : be->i->copy_d2d(be, c, s->kv.host_table[i], pb);
	}
	return st;
}

/* The pages up to the chunk in flight, of those the cache has: a started
 * session that has not run yet has none for its first chunk (they are taken
 * when it is laid out; a restore lays it out again). */
static int used_pages(const struct djn_session *s)
{
	int end = s->r.pos + s->r.n_rows;
	int n = (end + s->kv.view.page_tokens - 1) / s->kv.view.page_tokens;

	return n < s->kv.view.n_pages ? n : s->kv.view.n_pages;
}

int djn_checkpoint_new(struct djn_session *s)
{
	struct djn_backend *be = s->be;
	size_t pb = djn_kv_page_bytes(&s->kv);
	struct ckpt k = { 0 };
	enum djn_status st = DJN_OK;

	if (s->r.state == DJN_RUN_IDLE)
		return djn_session_fail(s, DJN_ERR_STATE, "the program is not being run");
	if ((st = djn_session_swapped_in(s)))
		return st;
	k.r = s->r;
	k.n_pages = used_pages(s);
	k.pages = djn_xcalloc((size_t)k.n_pages + 1, sizeof(float *));
	k.arena_bytes = s->arena.used;
	k.head_only = s->head_only;
	/* one allocation for the pages and the arena, not one a page: device
	 * allocations cost more than the copies at checkpoint sizes */
	size_t kv_end = (pb * (size_t)k.n_pages + 255) & ~(size_t)255;
	k.pages[0] = be->i->alloc(be, kv_end + k.arena_bytes);
	if (!k.pages[0])
		st = DJN_ERR_NOMEM;
	for (int i = 1; i < k.n_pages && !st; i++)
		k.pages[i] = (float *)((char *)k.pages[0] + pb * (size_t)i);
	if (!st)
		st = copy_kv(s, k.pages[0], k.n_pages, false);
	if (!st && k.arena_bytes) { /* none before a chunk was laid out */
		k.arena = (char *)k.pages[0] + kv_end;
		st = be->i->copy_d2d(be, k.arena, s->arena.base, k.arena_bytes);
	}
	if (!st)
		st = be->i->sync(be);
	if (st) {
		djn_session_fail(s, st, "checkpoint: %s", be->err.msg);
		ckpt_release(s, &k);
		return st;
	}
	k.tokens = djn_xmalloc(sizeof(int32_t) * (size_t)(s->r.n_tokens + 1));
	memcpy(k.tokens, s->tokens, sizeof(int32_t) * (size_t)s->r.n_tokens);
	k.text = djn_xmalloc(s->r.text_len + 1);
	memcpy(k.text, s->text ? s->text : "", s->r.text_len);
	k.text[s->r.text_len] = '\0';
	k.id = s->next_ckpt_id++;
	s->ckpts = djn_xrealloc(s->ckpts, sizeof(*s->ckpts) * (size_t)(s->n_ckpts + 1));
	s->ckpts[s->n_ckpts++] = k;
	return k.id;
}

static struct ckpt *find(struct djn_session *s, int id)
{
	for (int i = 0; i < s->n_ckpts; i++)
		if (s->ckpts[i].id == id)
			return &s->ckpts[i];
	djn_session_fail(s, DJN_ERR_NOTFOUND, "no checkpoint %d", id);
	return NULL;
}

enum djn_status djn_checkpoint_restore(struct djn_session *s, int id)
{
	struct ckpt *k = find(s, id);
	struct djn_backend *be = s->be;
	enum djn_status st;

	if (!k)
		return DJN_ERR_NOTFOUND;
	/* lay the chunk out as it was, then put the bytes back */
	memcpy(s->tokens, k->tokens, sizeof(int32_t) * (size_t)k->r.n_tokens);
	st = k->head_only ? djn_chunk_begin_batched(s, k->r.pos, k->r.n_rows)
			  : djn_chunk_begin(s, k->r.pos, k->r.n_rows);
	if (st)
		return st;
	st = copy_kv(s, k->pages[0], k->n_pages, true);
	if (!st && k->arena_bytes)
		st = be->i->copy_d2d(be, s->arena.base, k->arena, k->arena_bytes);
	if (st)
		return djn_session_fail(s, st, "restore: %s", be->err.msg);
	s->r = k->r;
	s->forced = -1;
	djn_breaks_discard(s);
	if (s->text_cap < k->r.text_len + 1) {
		s->text_cap = k->r.text_len + 1;
		s->text = djn_xrealloc(s->text, s->text_cap);
	}
	if (s->text) {
		memcpy(s->text, k->text, k->r.text_len);
		s->text[k->r.text_len] = '\0';
	}
	return DJN_OK;
}

enum djn_status djn_checkpoint_delete(struct djn_session *s, int id)
{
	struct ckpt *k = find(s, id);

	if (!k)
		return DJN_ERR_NOTFOUND;
	ckpt_release(s, k);
	*k = s->ckpts[--s->n_ckpts];
	return DJN_OK;
}

bool djn_checkpoint_get(const struct djn_session *s, int i, struct djn_checkpoint_info *out)
{
	const struct ckpt *k;

	if (i < 0 || i >= s->n_ckpts)
		return false;
	k = &s->ckpts[i];
	out->id = k->id;
	out->cursor = (struct djn_cursor){ k->r.pos, k->r.n_rows, k->r.site,
					   k->r.site >= 0 ? djn_site_layer(s->c, k->r.site) : -1 };
	out->n_tokens = k->r.n_tokens;
	out->bytes = (size_t)k->n_pages * djn_kv_page_bytes(&s->kv) + k->arena_bytes;
	return true;
}

void djn_ckpts_free(struct djn_session *s)
{
	for (int i = 0; i < s->n_ckpts; i++)
		ckpt_release(s, &s->ckpts[i]);
	free(s->ckpts);
	s->ckpts = NULL;
	s->n_ckpts = 0;
}
