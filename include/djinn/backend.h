/* backend.h - the backend interface: memory, copies, streams, and the ops of a
 * transformer forward pass.
 *
 * A backend is a vtable (struct djn_backend_i, filled with designated
 * initializers) plus its private state.  The CPU backend is the reference:
 * plain C and threads, always built.  The CUDA backend implements the same
 * ops on the GPU and is checked against the CPU one.
 *
 * Memory.  Every float / weight pointer passed to an op is *backend memory*
 * (host memory for the CPU backend, device memory for CUDA), obtained from
 * alloc() or, for weights, from struct djn_weight.dev.  Pointers marked
 * "host" are ordinary host memory.
 *
 * Ordering.  Ops are enqueued on the backend's compute stream in call order;
 * a call that returns data to the host (argmax, stats, copy_d2h) waits for
 * the work before it.  On the CPU every op is synchronous.
 *
 * Errors.  Ops return DJN_OK or a negative status with be->err set.  A sticky
 * device error (illegal address) sets be->poisoned: every later call fails
 * fast with DJN_ERR_DEVICE and the process stays up.
 */
#ifndef DJINN_BACKEND_H
#define DJINN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/status.h"
#include "djinn/tensor.h"

struct djn_backend;
struct djn_event; /* opaque: a cudaEvent_t on CUDA, a token on the CPU */
struct djn_graph; /* opaque: a recorded decode step (a CUDA graph) */

enum djn_rope_style {
	DJN_ROPE_INTERLEAVED, /* llama2.c / GGUF: rotate pairs (2i, 2i+1) */
	DJN_ROPE_HALF,        /* Hugging Face: rotate (i, i + head_dim/2) */
};

/* The paged KV cache of one session, as the ops see it.  Page p holds
 * page_tokens consecutive positions of every layer, laid out
 *     [layer][0 = K, 1 = V][token in page][kv_dim]   f32 or f16
 * so a page can be copied, swapped or checkpointed as one block.
 * `pages` is backend-visible (on CUDA a device array of device pointers);
 * `pages_host` is the same table in host memory.  With dtype F16 the page
 * pointers point at halves (IEEE binary16): kv_store rounds k and v to
 * nearest even, attention reads them back exactly; every op reads and
 * writes the cache through its dtype, the rest of the engine moves pages
 * as bytes (djn_kv_page_bytes). */
struct djn_kv_view {
	float *const *pages;
	float *const *pages_host;
	int n_pages;
	int page_tokens;
	int n_layer;
	int kv_dim;
	enum djn_dtype dtype; /* DJN_DTYPE_F32 (0) or DJN_DTYPE_F16 */
};

/* Elements of one page, and bytes of one element of a cache of dtype t. */
static inline size_t djn_kv_page_elems(const struct djn_kv_view *kv)
{
	return (size_t)kv->n_layer * 2 * kv->page_tokens * kv->kv_dim;
}

static inline size_t djn_kv_elem_bytes(enum djn_dtype t)
{
	return t == DJN_DTYPE_F16 ? 2 : 4;
}

/* Shape of one attention call. */
struct djn_attn_shape {
	int n_head, n_kv_head, head_dim;
	int layer;
	int pos0;   /* position of row 0; row i is at pos0 + i */
	int n_rows; /* query rows; row i attends to positions 0 .. pos0 + i */
};

/* The rows of a batch of sessions (the scheduler's step): row i belongs to
 * the paged KV cache whose page table is tables[i] (a backend-visible array
 * of page pointers, as djn_kv_view.pages) and sits at position pos[i].  A
 * row with pos[i] < 0 is padding: nothing is stored for it and its
 * attention output is zero.  tables and pos are backend memory; their
 * contents may change between calls and between replays of a recorded
 * graph, their addresses do not.  Every cache of a batch has the same
 * page_tokens, n_layer and kv_dim; max_len bounds pos[i] + 1 (the
 * sessions' context), so that launches can be sized without reading pos.
 * The caller guarantees that tables[i] has pages for positions 0 .. pos[i]
 * (djn_kv_reserve) and that two rows of one cache never store the same
 * position.  The CPU checks pos[i] < max_len and the pages it touches and
 * fails with DJN_ERR_RANGE; CUDA cannot read pos without a wait, so there
 * these are the caller's invariants (a row past max_len is still computed
 * correctly, only more slowly). */
struct djn_kv_rows {
	float *const *const *tables; /* n_rows */
	const int32_t *pos;          /* n_rows */
	int n_rows;
	int page_tokens, n_layer, kv_dim;
	int max_len;
	enum djn_dtype dtype; /* of every cache of the batch, as djn_kv_view's */
};

/* RoPE and the KV-cache store that follow a decode step's q/k/v projection,
 * for a matmul_group that does them in the same pass. */
struct djn_qkv_rope {
	const struct djn_kv_view *kv;
	int layer, pos, head_dim;
	float theta;
	enum djn_rope_style style;
};

struct djn_backend_i {
	const char *name; /* "cpu", "cuda" */
	void (*free)(struct djn_backend *be);
	/* One line describing the device (model, memory) for `info`. */
	void (*describe)(struct djn_backend *be, char *buf, size_t n);
	/* Free and total device memory in bytes (host RAM on the CPU). */
	enum djn_status (*mem_info)(struct djn_backend *be, size_t *free_b, size_t *total_b);

	/* --- memory: alloc returns NULL and sets be->err (bytes needed and free) */
	void *(*alloc)(struct djn_backend *be, size_t bytes);
	void (*dealloc)(struct djn_backend *be, void *p);
	enum djn_status (*copy_h2d)(struct djn_backend *be, void *dst, const void *src, size_t n);
	enum djn_status (*copy_d2h)(struct djn_backend *be, void *dst, const void *src, size_t n);
	enum djn_status (*copy_d2d)(struct djn_backend *be, void *dst, const void *src, size_t n);
	enum djn_status (*memset0)(struct djn_backend *be, void *dst, size_t n);
	/* Gather n_pages pages (pages: a backend-visible array of page pointers)
	 * into contig, or scatter contig into them (to_pages), in one pass:
	 * checkpoints of a paged KV cache.  page_bytes a multiple of 16.  May
	 * be NULL: callers copy page by page. */
	enum djn_status (*copy_pages)(struct djn_backend *be, void *contig, void *const *pages,
				      int n_pages, size_t page_bytes, bool to_pages);
	enum djn_status (*sync)(struct djn_backend *be);

	/* --- ops (f32 activations, row-major, n = rows) --- */
	/* out[i] = table[ids[i]] for i < n; ids is backend memory. */
	enum djn_status (*embed)(struct djn_backend *be, float *out,
				 const struct djn_weight *table, const int32_t *ids, int n);
	enum djn_status (*rmsnorm)(struct djn_backend *be, float *out, const float *x,
				   const struct djn_weight *w, int n, int dim, float eps);
	/* b may be NULL (no bias). */
	enum djn_status (*layernorm)(struct djn_backend *be, float *out, const float *x,
				     const struct djn_weight *w, const struct djn_weight *b,
				     int n, int dim, float eps);
	/* y (n, w->rows) = x (n, w->cols) . W^T (+ bias); bias may be NULL. */
	enum djn_status (*matmul)(struct djn_backend *be, float *y, const float *x,
				  const struct djn_weight *w, const struct djn_weight *bias, int n);
	/* Several weights over the same x, read in one pass where the backend
	 * can (one launch at decode): ys[i] (n, ws[i]->rows) = x . ws[i]^T, no
	 * biases; all ws have the same cols.  With swiglu (n_w == 2) ys[0] gets
	 * silu(x.ws[0]^T) * (x.ws[1]^T) and ys[1] is scratch the backend may
	 * overwrite.  With rope (n == 1, n_w == 3: q, k and v, no swiglu), q and
	 * k are then rotated in place as rope() rotates them and k and v stored
	 * into the cache at rope->pos as kv_store() stores them.  May be NULL:
	 * callers fall back to matmul (+ swiglu, rope, kv_store). */
	enum djn_status (*matmul_group)(struct djn_backend *be, float *const *ys, const float *x,
					const struct djn_weight *const *ws, int n_w, int n,
					bool swiglu, const struct djn_qkv_rope *rope);
	/* y (n, w->rows) = x . W^T and z = r + y, in one pass: an output
	 * projection with the residual add after it.  z may alias r.  May be
	 * NULL: callers use matmul and add. */
	enum djn_status (*matmul_add)(struct djn_backend *be, float *y, float *z, const float *x,
				      const struct djn_weight *w, const float *r, int n);
	/* In place on x (n, n_head * head_dim); row i at position pos0 + i.
	 * Rotates the first rot_dim dims of each head (rot_dim == head_dim usually). */
	enum djn_status (*rope)(struct djn_backend *be, float *x, int n, int n_head,
				int head_dim, int rot_dim, int pos0, float theta,
				enum djn_rope_style style);
	/* Write k, v (n, kv_dim) into the cache at positions pos0 .. pos0+n-1. */
	enum djn_status (*kv_store)(struct djn_backend *be, const struct djn_kv_view *kv,
				    int layer, int pos0, int n, const float *k, const float *v);
	/* out (n, n_head*head_dim) = softmax(q k^T / sqrt(head_dim)) v, causal, GQA
	 * (query head h reads kv head h / (n_head / n_kv_head)). */
	enum djn_status (*attention)(struct djn_backend *be, float *out, const float *q,
				     const struct djn_kv_view *kv, const struct djn_attn_shape *s);
	/* --- the rows of a batch of sessions (struct djn_kv_rows above): each
	 * row at its own position in its own cache, all rows in one call (one
	 * launch on CUDA).  For every row the result is what the per-session op
	 * gives for it; the CPU's is bit-identical to rope / kv_store /
	 * attention / argmax on that row.  All four may be NULL: the backend
	 * then batches no sessions (djn_batch_run refuses; each runs alone). */
	/* rope() on each row of x (kv->n_rows, n_head * head_dim) at its own
	 * position kv->pos[i]; padding rows are left as they are. */
	enum djn_status (*rope_rows)(struct djn_backend *be, float *x, const struct djn_kv_rows *kv,
				     int n_head, int head_dim, int rot_dim, float theta,
				     enum djn_rope_style style);
	/* kv_store() of row i of k, v (n_rows, kv_dim) into cache tables[i] at
	 * pos[i]; nothing for padding rows. */
	enum djn_status (*kv_store_rows)(struct djn_backend *be, const struct djn_kv_rows *kv,
					 int layer, const float *k, const float *v);
	/* attention() of row i of q (n_rows, n_head * head_dim) over positions
	 * 0 .. pos[i] of cache tables[i], into out (same shape); zeros for
	 * padding rows.  out must not alias q. */
	enum djn_status (*attention_rows)(struct djn_backend *be, float *out, const float *q,
					  const struct djn_kv_rows *kv, int n_head, int n_kv_head,
					  int head_dim, int layer);
	/* Index of the largest value of each of n rows of x (n, dim), first on
	 * ties, NaN never (all NaN: 0), as argmax() per row, into host out[n]:
	 * one wait for all rows.  Not recordable (it returns to the host). */
	enum djn_status (*argmax_rows)(struct djn_backend *be, const float *x, int n, int dim,
				       int *out);
	/* rope_rows() on q (n_head heads) and on k (n_kv_head heads), rot_dim
	 * = head_dim, then kv_store_rows() of k and v, in one pass (one launch
	 * on CUDA): the same bits in q, k and the caches as the three calls.
	 * May be NULL: callers make the three calls. */
	enum djn_status (*rope_store_rows)(struct djn_backend *be, float *q, float *k,
					   const float *v, const struct djn_kv_rows *kv, int layer,
					   int n_head, int n_kv_head, int head_dim, float theta,
					   enum djn_rope_style style);

	/* --- f16 activations for f16 weights (a batch's GEMMs) ---
	 * A GEMM over f16 weights with more than a few rows takes x rounded to
	 * f16 (matmul(), cuBLAS on CUDA); these let the op before it write x
	 * so, with no f32 round trip and no conversion pass between.  Halves
	 * are IEEE binary16 rounded to nearest even: rmsnorm_f16 and
	 * swiglu_f16 give bit for bit what rmsnorm() and swiglu() give,
	 * rounded (djn_f32_to_f16).  All three may be NULL (the CPU's are):
	 * callers use the f32 ops. */
	/* rmsnorm() of x (n, dim) into out (n, dim) halves. */
	enum djn_status (*rmsnorm_f16)(struct djn_backend *be, uint16_t *out, const float *x,
				       const struct djn_weight *w, int n, int dim, float eps);
	/* swiglu() into out (n halves). */
	enum djn_status (*swiglu_f16)(struct djn_backend *be, uint16_t *out, const float *gate,
				      const float *up, size_t n);
	/* y (n, w->rows) = x (n, w->cols) . W^T for an f16 weight, x halves
	 * (x_dtype DJN_DTYPE_F16) or floats (DJN_DTYPE_F32: rounded to f16
	 * first, as matmul() rounds them); f32 accumulation, no bias.  With
	 * accumulate, y += x . W^T: the residual add folded into the GEMM
	 * (the sum of y and the product rounded once, as add() rounds it; the
	 * product's own rounding order may differ from matmul()'s).  At any n
	 * x goes through f16 here: as matmul() for n > 8 (its GEMV reads x as
	 * f32 at n <= 8, so callers use this op above that only). */
	enum djn_status (*matmul_f16)(struct djn_backend *be, float *y, const void *x,
				      enum djn_dtype x_dtype, const struct djn_weight *w, int n,
				      bool accumulate);

	/* out = silu(gate) * up */
	enum djn_status (*swiglu)(struct djn_backend *be, float *out, const float *gate,
				  const float *up, size_t n);
	/* out = gelu(x), tanh approximation (GPT-2's gelu_new) */
	enum djn_status (*gelu)(struct djn_backend *be, float *out, const float *x, size_t n);
	/* out = a + b (out may alias a or b) */
	enum djn_status (*add)(struct djn_backend *be, float *out, const float *a,
			       const float *b, size_t n);
	/* y = y * scale + alpha * x; x may be NULL (then y *= scale).  Steering. */
	enum djn_status (*axpby)(struct djn_backend *be, float *y, float scale,
				 const float *x, float alpha, size_t n);
	/* Row-wise softmax, in place. */
	enum djn_status (*softmax)(struct djn_backend *be, float *x, int n, int dim);
	/* Index of the largest of x[0..n-1] (first on ties), into host *out. */
	enum djn_status (*argmax)(struct djn_backend *be, const float *x, int n, int *out);
	/* Statistics of x[0..n-1] into host *out. */
	enum djn_status (*stats)(struct djn_backend *be, const float *x, int64_t n,
				 struct djn_stats *out);
	/* Deferred statistics, for breakpoint conditions on the fast path:
	 * stats_defer enqueues the reduction of x into slot `slot` (0 ..
	 * DJN_STATS_SLOTS-1) and returns at once; stats_collect waits once and
	 * returns slots 0 .. n_slots-1 to the host.  A slot is valid until it
	 * is deferred into again. */
	enum djn_status (*stats_defer)(struct djn_backend *be, const float *x, int64_t n,
				       int slot);
	enum djn_status (*stats_collect)(struct djn_backend *be, struct djn_stats *out,
					 int n_slots);
	/* stats_defer of n tensors into slots slot0 .. slot0+n-1 in one launch
	 * (xs, ns: host arrays).  For breakpoints on tensors that stay live to
	 * the end of the step: one reduction a token, not one a site. */
	enum djn_status (*stats_defer_many)(struct djn_backend *be, const float *const *xs,
					    const int64_t *ns, int n, int slot0);

	/* --- streams, events, pinned host memory (the ring buffer, KV swap) ---
	 * Two streams: DJN_STREAM_COMPUTE runs every op above, DJN_STREAM_COPY
	 * the weight prefetches and KV swaps.  Work on one stream runs in order;
	 * across streams only events order it, and no call here makes the host
	 * wait except event_sync.  On the CPU every copy happens at the call and
	 * every event is complete: the same code runs, synchronously. */
	/* Host memory for async copies: page-locked when possible.  When pinning
	 * fails the backend says why once (stderr) and hands out ordinary
	 * memory, with *pinned false and the reason in be->err; async copies
	 * from it still work, staged and slower.  NULL (be->err set) only when
	 * even that fails.  Free with host_free, passing the same flag. */
	void *(*host_alloc)(struct djn_backend *be, size_t bytes, bool *pinned);
	void (*host_free)(struct djn_backend *be, void *p, bool pinned);
	/* Optional (NULL where host memory is the backend's own): page-lock
	 * memory allocated elsewhere (a shared-memory segment), so copies to
	 * and from it run at the pinned bandwidth.  p and bytes page-aligned;
	 * a failure (be->err says why) leaves it pageable, and copies still
	 * work.  host_unregister before the memory goes. */
	enum djn_status (*host_register)(struct djn_backend *be, void *p, size_t bytes);
	void (*host_unregister)(struct djn_backend *be, void *p);
	/* NULL with be->err set on failure; event_free(NULL) is fine. */
	struct djn_event *(*event_new)(struct djn_backend *be);
	void (*event_free)(struct djn_backend *be, struct djn_event *ev);
	/* ev completes when the work queued on `stream` so far has. */
	enum djn_status (*event_record)(struct djn_backend *be, struct djn_event *ev, int stream);
	/* Work queued on `stream` after this waits for ev (the host does not). */
	enum djn_status (*event_wait)(struct djn_backend *be, int stream, struct djn_event *ev);
	/* The host waits for ev. */
	enum djn_status (*event_sync)(struct djn_backend *be, struct djn_event *ev);
	/* Whether ev has completed, without waiting (an error counts as
	 * completed: event_sync then reports it). */
	bool (*event_done)(struct djn_backend *be, struct djn_event *ev);
	/* n bytes host -> backend / backend -> host, queued on `stream`; the host
	 * side must stay untouched until an event recorded after it completes. */
	enum djn_status (*copy_h2d_async)(struct djn_backend *be, void *dst, const void *src,
					  size_t n, int stream);
	enum djn_status (*copy_d2h_async)(struct djn_backend *be, void *dst, const void *src,
					  size_t n, int stream);

	/* --- decode-step graphs (all NULL where the backend has none) ---
	 * graph_begin starts recording the compute stream: the ops called until
	 * graph_end are captured, not run.  What may be recorded:
	 *   - the ops that take a position (rope, kv_store, attention,
	 *     matmul_group with rope): one row (n == 1) at position `pos`; they
	 *     record a read of it from device memory, so one recording replays
	 *     at any position of the same KV cache, buffers and weights;
	 *   - the *_rows ops (a batch of sessions), at any n_rows: they read
	 *     tables and pos from backend memory when they run, so a replay
	 *     sees the contents the caller put there before graph_launch (whose
	 *     `pos` they ignore: a step of only *_rows ops records and replays
	 *     at any pos >= 0, say 0);
	 *   - the ops without a position (embed, rmsnorm, layernorm, matmul,
	 *     matmul_group without rope, matmul_add, swiglu, gelu, add, axpby,
	 *     softmax) at any n, which the recording fixes, as it fixes every
	 *     pointer and shape: a batch padded to another n is another
	 *     recording.  matmul with n > 8 (cuBLAS, and for f16/bf16/quantized
	 *     weights a scratch buffer) records as well, provided its scratch is
	 *     already big enough: run the step op by op once at that n first.
	 * Not recordable: whatever returns data to the host (argmax,
	 * argmax_rows, stats, copy_d2h, sync) and allocation.  graph_end always
	 * ends the recording; it fails (and *out is NULL) if an op failed or
	 * could not be recorded (a scratch buffer that had to grow, the rope
	 * table for another theta, a position op with n > 1 or another pos),
	 * and nothing ran: the caller runs the step op by op, which makes the
	 * room, and records again.  graph_launch runs a recording at `pos`; it
	 * fails with DJN_ERR_STATE, running nothing, when backend state the
	 * recording refers to (scratch buffers, the rope table) has moved
	 * since: record again. */
	enum djn_status (*graph_begin)(struct djn_backend *be, int pos);
	enum djn_status (*graph_end)(struct djn_backend *be, struct djn_graph **out);
	enum djn_status (*graph_launch)(struct djn_backend *be, struct djn_graph *g, int pos);
	void (*graph_free)(struct djn_backend *be, struct djn_graph *g);
};

/* Stream ids for event_record / event_wait / copy_*_async. */
enum djn_stream {
	DJN_STREAM_COMPUTE = 0,
	DJN_STREAM_COPY = 1,
};

#define DJN_STATS_SLOTS 1024

#define DJN_KEPT_MAX 16
#define DJN_PAGE_SIZES 4

struct djn_backend {
	const struct djn_backend_i *i;
	void *ctx;
	struct djn_err err;
	bool poisoned;
	bool host_memory; /* backend memory is host memory (CPU backend) */
	/* > 0: a row's numbers in a batch (djn_batch_run) do not depend on
	 * the other rows while a step has at most this many: the scheduler
	 * then caps its steps' rows to it and runs a batch of one through the
	 * batch path too, so a session's tokens are the same alone and batched
	 * (CUDA with DJN_SKINNY=1: 64; the CPU backend's batch and alone paths
	 * are the same bits anyway, it leaves this 0). */
	int invariant_rows;
	/* The VMU's Data segment on this backend (src/vmu/kv.c): bytes of KV
	 * pages held by all sessions, and a limit on them (0: none) past which
	 * paused sessions are swapped out to make room. */
	size_t data_bytes, data_limit;
	/* KV pages given back, kept for the next page (src/vmu/kv.c): a
	 * page's allocation and free (cudaFree waits for the whole device)
	 * stay out of the step loop.  Kept pages are not in data_bytes;
	 * djn_backend_trim frees them (a full device, djn_backend_free). */
	struct djn_kept_pages {
		size_t page; /* the bytes of each */
		void **p;
		int n, cap;
	} data_kept[DJN_PAGE_SIZES]; /* a stack per page size (per KV shape) */
	int n_data_kept;             /* pages kept, of all sizes */
	/* Other buffers given back for reuse (activation arenas, KV page
	 * tables: djn_backend_keep), the oldest freed first when full. */
	struct {
		void *p;
		size_t bytes;
	} kept[DJN_KEPT_MAX];
	int n_kept;
	/* Called by djn_backend_free before the backend goes: a module above
	 * that keeps backend memory for reuse (the pinned swap pool,
	 * ringbuf.h) gives it back here.  NULL: nothing kept. */
	void (*release_hook)(struct djn_backend *be);
};

/* Create a backend from "auto", "cpu", "cuda" or "cuda:N".  "auto" picks CUDA
 * when built with it and a GPU is present, else the CPU.  n_threads <= 0 means
 * one per online core.  Returns NULL with *err set. Free with djn_backend_free. */
struct djn_backend *djn_backend_new(const char *spec, int n_threads, struct djn_err *err);
void djn_backend_free(struct djn_backend *be);

struct djn_backend *djn_backend_cpu_new(int n_threads, struct djn_err *err);

/* Free the kept KV pages and buffers; the CUDA backend does it itself when
 * an allocation finds the device full, and tries once more. */
void djn_backend_trim(struct djn_backend *be);
/* Free the pages kept of one size (src/vmu/kv.c, when a fifth size comes). */
void djn_backend_trim_pages(struct djn_backend *be, struct djn_kept_pages *k);
/* Backend memory of at least bytes: the smallest kept buffer of bytes up
 * to max_bytes, else a new one; *got says how large it is.  NULL with
 * be->err set when the device says no.  Give back with djn_backend_keep. */
void *djn_backend_take(struct djn_backend *be, size_t bytes, size_t max_bytes, size_t *got);
/* Keep p (from djn_backend_take, got bytes) for the next take.  Whatever
 * is queued on the compute stream before the next user's work still runs
 * first; other streams must wait for it themselves. */
void djn_backend_keep(struct djn_backend *be, void *p, size_t bytes);
/* Bytes of the kept KV pages and buffers. */
size_t djn_backend_kept_bytes(const struct djn_backend *be);

#include "djinn/backend_cuda.h"

#endif
