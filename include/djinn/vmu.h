/* vmu.h - the Virtual Memory Unit: Text (shared weights on a backend), Data
 * (a session's paged KV cache) and Stack (the step arena).
 *
 * All three hand out backend memory (see backend.h).  Failures return a
 * status with the message in the backend's err (bytes needed and free).
 */
#ifndef DJINN_VMU_H
#define DJINN_VMU_H

#include <stdbool.h>
#include <stddef.h>

#include "djinn/backend.h"
#include "djinn/model.h"
#include "djinn/ringbuf.h"

/* ---- Text: a model's weights resident on a backend, reference-counted per
 * model.  On the CPU backend weight.dev aliases weight.host (no copy); on
 * CUDA each weight is copied to device memory once, however many sessions
 * use it.  A model is resident on at most one backend at a time.
 *
 * With a VRAM budget (djn_ring_configure, ringbuf.h) the first acquire plans
 * the placement against the budget and working_set (the acquiring session's
 * KV cache and activations, in bytes): resident blocks are uploaded as
 * above, streamed layers go to the ring (djn_ring_of).  Later acquires share
 * what the first one made. */
enum djn_status djn_text_acquire(struct djn_model *m, struct djn_backend *be,
				 size_t working_set, struct djn_err *err);
void djn_text_release(struct djn_model *m, struct djn_backend *be);
/* Bytes of weights held on the backend for m (0 on the CPU, which maps
 * them): resident blocks, plus the ring's slots. */
size_t djn_text_bytes(const struct djn_model *m);

/* ---- Data: the KV cache in fixed-size pages.  Pages are allocated as the
 * run grows and kept until the session is freed (a new run reuses them). */
struct djn_kv {
	struct djn_backend *be;
	struct djn_kv_view view;  /* what the attention op reads */
	float **host_table;       /* page pointers (backend memory), n_cap entries */
	float **dev_table;        /* backend copy of host_table (== host_table on CPU) */
	int n_cap;                /* max pages (context / page_tokens, rounded up) */
	size_t dev_table_bytes;   /* dev_table's size (a kept buffer may be larger) */
};

/* dtype: what the pages hold, DJN_DTYPE_F32 or DJN_DTYPE_F16 (the model's
 * kv_dtype: djn_model_set_kv_dtype). */
enum djn_status djn_kv_init(struct djn_kv *kv, struct djn_backend *be, int n_layer,
			    int kv_dim, int page_tokens, int max_ctx, enum djn_dtype dtype,
			    struct djn_err *err);
/* Make sure positions 0 .. n_tokens-1 have pages. */
enum djn_status djn_kv_reserve(struct djn_kv *kv, int n_tokens, struct djn_err *err);
void djn_kv_release(struct djn_kv *kv);
/* One page of backend memory, counted in be->data_bytes against
 * be->data_limit: NULL with be->err set when the limit or the device says
 * no.  Free with djn_kv_page_free. */
float *djn_kv_page_alloc(struct djn_kv *kv);
void djn_kv_page_free(struct djn_kv *kv, float *p);
size_t djn_kv_page_bytes(const struct djn_kv *kv);

/* ---- Stack: a bump arena of backend memory, reset at every chunk. */
struct djn_arena {
	struct djn_backend *be;
	char *base;
	size_t cap, used;
};

enum djn_status djn_arena_init(struct djn_arena *a, struct djn_backend *be, size_t cap,
			       struct djn_err *err);
/* Grow to at least cap (contents are lost); no-op when big enough. */
enum djn_status djn_arena_reserve(struct djn_arena *a, size_t cap, struct djn_err *err);
/* The same, and give back an arena far larger than cap (over 16 MiB and 8
 * times cap: a prefill chunk's, when a decode step follows), so that many
 * decoding sessions hold little device memory.  Contents are lost. */
enum djn_status djn_arena_fit(struct djn_arena *a, size_t cap, struct djn_err *err);
/* n floats, 256-byte aligned; NULL when the arena is full (a bug: callers
 * reserve the chunk's whole need first). */
float *djn_arena_floats(struct djn_arena *a, size_t n);
void djn_arena_reset(struct djn_arena *a);
void djn_arena_release(struct djn_arena *a);

#endif
