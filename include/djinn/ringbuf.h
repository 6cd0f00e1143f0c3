/* ringbuf.h - running a model whose weights exceed the VRAM budget: the
 * planner, the ring of device slots that streamed layers flow through, and
 * the pinned host pool that a session's KV pages are swapped out to.
 *
 * Blocks.  A model's weights are grouped into blocks: block 0 is the
 * embedding (token, and GPT-2's position table), block 1 + l is everything
 * of layer l, block n_layer + 1 is the final norm and the output head (when
 * the embeddings are tied the head lives in block 0).  A block's size counts
 * each tensor rounded up to DJN_RING_ALIGN bytes, which is how it is laid
 * out in a slot.
 *
 * The plan.  Given a VRAM budget (weights + one session's working set:
 * its KV cache for the context and its activation arena), the planner keeps
 * blocks 0 and n_layer + 1 resident, keeps as many layers resident as fit,
 * and streams the rest through K device slots of slot_bytes each (the
 * largest streamed block): streamed bytes per token are the smallest the
 * budget allows.  K is 2..4 from what the budget leaves unless configured.
 * Each token (and each prefill chunk) copies every streamed block once.
 *
 * The ring.  Streamed blocks are copied once into pinned host memory, laid
 * out exactly as in a slot, so one copy moves a block.  The engine calls
 * djn_ring_layer_begin before every site of a layer and djn_ring_layer_end
 * after its last: begin makes the compute stream wait for the block's
 * `ready` event and points the layer's djn_weight.dev at the slot (a
 * streamed layer has device addresses only while it is in a slot); end
 * records `done` on the compute stream and queues, on the copy stream after
 * `done`, the copy of the streamed block K places later in the order
 * (wrapping to the next token's first ones) into the slot just freed,
 * followed by `ready`.  No host thread waits.  A begin out of the expected
 * order (a breakpoint replaying the chunk, a restored checkpoint, another
 * session on the same model, a killed run) re-issues the copies it needs.
 *
 * Ownership.  The ring belongs to the model's Text segment (src/vmu/text.c),
 * which creates it on the first session and frees it with the last.
 * Pointers returned here are borrowed from it.
 */
#ifndef DJINN_RINGBUF_H
#define DJINN_RINGBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/backend.h"
#include "djinn/model.h"
#include "djinn/status.h"

#define DJN_RING_ALIGN 256     /* every tensor in a slot starts on this boundary */
#define DJN_RING_MAX_SLOTS 8   /* K at most */
#define DJN_RING_AUTO_SLOTS 4  /* the planner picks K from 2 up to this */

/* How a model's weights are to be placed.  Zero-initialised: no budget
 * (every weight resident, as without a ring). */
struct djn_ring_opts {
	size_t vram_budget; /* bytes for weights and one session's working set; 0: none */
	int n_slots;        /* K, 1..DJN_RING_MAX_SLOTS; 0: the planner picks 2..4 */
	bool sync;          /* ablation: no ring; each streamed block is copied into one
			     * slot when it is needed, the host waiting (what hooks that
			     * offload layer by layer do) */
	int n_stream_min;   /* tests and ablations: stream at least this many layers */
	bool shared;        /* plan in the backend's shared pool (several models):
			     * vram_budget is then the pool's, for every model in
			     * it; n_slots, sync and n_stream_min do not apply */
};

struct djn_ring_plan {
	size_t budget;        /* as configured */
	size_t budget_used;   /* what was planned against: the budget, or the free VRAM
			       * when the budget exceeds it */
	size_t free_vram;     /* free device memory when planned (0: unknown) */
	size_t working_set;   /* KV cache + activations of one session, estimated */
	int n_blocks;         /* n_layer + 2 */
	size_t *block_bytes;  /* n_blocks, tensors rounded up to DJN_RING_ALIGN */
	bool *block_streamed; /* n_blocks */
	int n_streamed;
	int *streamed;        /* the streamed layers in streaming order (ascending) */
	int n_slots;          /* K (1 in sync mode) */
	bool sync;
	size_t slot_bytes;    /* the largest streamed block */
	size_t resident_bytes;   /* blocks kept on the device */
	size_t host_bytes;       /* streamed blocks, held in host memory */
	size_t stream_bytes;     /* copied per token (per prefill chunk): the streamed blocks */
	size_t device_bytes;     /* resident + K slots + working set */
	size_t min_budget;       /* the smallest budget this configuration accepts */
	char note[256];          /* what the planner changed or noticed, or "" */
};

/* Plan the placement of m's weights.  free_vram 0 means unknown.  When the
 * weights and working set fit the budget (or there is none), the plan
 * streams nothing.  Errors: DJN_ERR_NOMEM when the budget (or the free VRAM,
 * when it is smaller) is below the minimum - the message names the minimum
 * in GiB and what it is made of; DJN_ERR_INVALID for bad options.  Release
 * the plan with djn_ring_plan_release (also after a failure). */
enum djn_status djn_ring_plan_compute(struct djn_ring_plan *p, const struct djn_model *m,
				      const struct djn_ring_opts *o, size_t working_set,
				      size_t free_vram, struct djn_err *err);
void djn_ring_plan_release(struct djn_ring_plan *p);

#define DJN_RING_BLOCK_MAX_WEIGHTS 17

/* The present weights of block b (0 .. n_layer + 1) into w, in a fixed
 * order; returns how many.  A tied head is not in the head block. */
int djn_ring_block_weights(struct djn_model *m, int b, struct djn_weight **w);
/* Bytes of block b of m, as planned (tensors rounded up to DJN_RING_ALIGN). */
size_t djn_ring_block_bytes(const struct djn_model *m, int b);

/* ---- the ring (used by the Text segment and the engine) */

struct djn_ring;

/* Build the ring for plan p (which it takes over, leaving *p empty): copy
 * the streamed blocks into pinned host memory, allocate the K slots and
 * prefetch the first K streamed blocks.  Resident weights are not touched
 * (the Text segment uploads them).  NULL with *err set on failure. */
struct djn_ring *djn_ring_new(struct djn_model *m, struct djn_backend *be,
			      struct djn_ring_plan *p, struct djn_err *err);
/* The ring of a model in the backend's shared pool (ringbuf.h's pool
 * section): reserves fixed_bytes (the model's embedding, head and
 * working_set), evicting other models' layers if it must, makes the host
 * copies of every layer and brings in as many layers as fit.  budget sets
 * the pool's (the latest one given wins).  DJN_ERR_NOMEM, naming the
 * minimum, when the budget cannot hold the fixed parts of every model in
 * the pool and one layer of this one. */
struct djn_ring *djn_ring_new_shared(struct djn_model *m, struct djn_backend *be,
				     size_t fixed_bytes, size_t working_set, size_t budget,
				     struct djn_err *err);
/* Waits for the copies in flight, frees slots and host memory, and leaves
 * the streamed layers' dev pointers NULL.  NULL is fine. */
void djn_ring_free(struct djn_ring *r);

/* Before any site of layer l (every one: it returns at once when the layer
 * is already in place).  Resident layers: nothing to do. */
enum djn_status djn_ring_layer_begin(struct djn_ring *r, int layer, struct djn_err *err);
/* After the last site of layer l. */
enum djn_status djn_ring_layer_end(struct djn_ring *r, int layer, struct djn_err *err);
/* Is layer l streamed? */
bool djn_ring_streams(const struct djn_ring *r, int layer);

const struct djn_ring_plan *djn_ring_plan(const struct djn_ring *r);

struct djn_ring_stats {
	bool pinned;           /* host copies are page-locked */
	const char *host_note; /* why not, or "" */
	long n_copies;         /* blocks copied into slots */
	long n_resync;         /* of which re-issued out of order (replays, switches) */
	size_t bytes_copied;
	double h2d_gbps;       /* measured by djn_ring_measure, 0 if not yet */
};
void djn_ring_stats(const struct djn_ring *r, struct djn_ring_stats *out);

/* Measure the host-to-device bandwidth of the copy stream: a few slot-sized
 * copies from pinned host memory, timed.  Only between runs (it waits for
 * both streams, and the slot it used is reloaded at its next use). */
enum djn_status djn_ring_measure(struct djn_ring *r, double *gbps, struct djn_err *err);

/* Lines for `info ringbuf` / `info memory` into buf (plan and stats). */
void djn_ring_describe(const struct djn_ring_plan *p, const struct djn_ring_stats *st,
		       char *buf, size_t n);

/* ---- the model-level face (what the shell and Lua use; the state is the
 * Text segment's, so src/vmu/text.c implements these) */

/* Set the placement for m's weights.  Takes effect when the weights are
 * next made resident (the first session); DJN_ERR_STATE while a session
 * holds them.  o NULL clears it.  Set it after djn_model_cast. */
enum djn_status djn_ring_configure(struct djn_model *m, const struct djn_ring_opts *o,
				   struct djn_err *err);
/* m's ring while resident with one, else NULL (borrowed). */
struct djn_ring *djn_ring_of(const struct djn_model *m);

/* ---- the shared pool: several models on one backend, one budget
 *
 * Models configured with `shared` share one pool per backend.  Per model,
 * the embedding and head blocks and one session's working set are reserved
 * while the model is resident (a model's fixed part); every layer has a
 * host copy laid out as on the device (pinned on CUDA, made once: nothing
 * is read from the model file twice), and is either resident (a device
 * block of its own) or in host memory only.  The pool's clock stamps a
 * layer at every djn_ring_layer_begin (LRU over blocks).
 *
 * Placement is decided as layers are needed.  Making a model resident (its
 * first session) reserves its fixed part and brings in as many of its
 * layers as fit; a begin of a layer that is not resident brings in that
 * layer and every other missing one of the model, in order, on the copy
 * stream (one copy per layer, back to back: PCIe speed; the compute stream
 * waits for each layer's `ready` only when it reaches it).  Room is made by
 * evicting the least recently used layers of the other models, whole
 * layers, never one that is begun and not ended (a session stopped inside
 * it).  A layer that cannot be made resident (the model does not fit
 * beside what cannot be evicted) streams through one slot of the model's
 * largest layer, prefetched at the end of the layer before it.
 *
 * A pooled model always has a ring (djn_ring_of), so the engine brackets
 * every layer with begin/end; when its layers are resident a begin is a
 * flag test and a clock stamp.  While all of them are resident its decode
 * steps may be recorded as graphs (djn_ring_graph_key). */

struct djn_residency {
	bool shared;            /* in a shared pool (the rest is zero if not) */
	int n_layer;
	int n_resident;         /* layers with a device block of their own */
	int n_streamed;         /* not resident; the last use went through the slot */
	int n_host;             /* not resident, not streamed since it left */
	size_t fixed_bytes;     /* embedding + head + working set, reserved */
	size_t working_set;
	size_t resident_bytes;  /* resident layers */
	size_t slot_bytes;      /* the streaming slot, once made */
	size_t missing_bytes;   /* layers not on the device */
	size_t host_bytes;      /* host copies of the layers */
	bool pinned;            /* they are page-locked */
	long n_admitted, n_evicted, n_streamed_copies;
	size_t bytes_admitted, bytes_streamed;
	/* the pool this model is in */
	size_t pool_budget, pool_used;
	int pool_models;
	size_t pool_region;       /* its one allocation (weights and slots are ranges of it) */
	size_t pool_largest_free; /* the largest free range in it */
};

/* Fill *out for m (resident or not; zero when m is not in a pool). */
void djn_ring_residency(const struct djn_model *m, struct djn_residency *out);
/* One letter per layer into buf (n >= n_layer + 1): R resident, S
 * streamed, H host only; "" when m is not resident in a pool. */
void djn_ring_layer_map(const struct djn_model *m, char *buf, size_t n);
/* Decode steps as recorded graphs (src/exec/forward.c): a graph holds the
 * weights' device addresses.  Nonzero when every layer of r's model has a
 * place of its own on the device (a pooled model whose layers are all
 * resident; never a model that streams through a ring or a slot): a step
 * may be recorded then, and replayed for as long as the key stays the same
 * (a new one whenever a layer of the model is brought in or evicted). */
uint64_t djn_ring_graph_key(const struct djn_ring *r);
/* Before recording or replaying a step under that key: the compute stream
 * waits for copies it has not waited for yet (no host wait), and every
 * layer is stamped as used (a replay makes no djn_ring_layer_begin). */
enum djn_status djn_ring_graph_prepare(struct djn_ring *r, struct djn_err *err);

/* What one switch did and where its time went (host clock). */
struct djn_switch {
	size_t bytes;      /* copied: the missing layers that fit (0: all were resident) */
	int n_copies;      /* one copy per layer, host to device, on the copy stream */
	int n_evicted;     /* layers of other models given up for them */
	double queue_ms;   /* choosing victims, carving ranges, queuing the copies */
	double wait_ms;    /* then waiting for the copies to land */
};
/* Bring every missing layer of m in now (evicting as above) and wait for
 * the copies; *out says what it did.  For measuring a switch apart from the
 * run; a run does the same without waiting.  Layers that do not fit stay in
 * host memory (not an error).  DJN_ERR_STATE when m is not resident in a
 * pool. */
enum djn_status djn_ring_prefetch(struct djn_model *m, struct djn_switch *out,
				  struct djn_err *err);

/* ---- KV swap: a session's pages to a pinned host pool and back */

struct djn_kv; /* vmu.h */

struct djn_swap {
	struct djn_backend *be;
	void *host;         /* the pool: page-locked when possible, kept for reuse */
	size_t cap;
	bool pinned;
	struct djn_event *ev;
	bool out;           /* the pages are on the host (or on their way: pending) */
	bool pending;       /* out, and the device pages not freed yet (djn_swap_finish) */
	int n_pages;        /* pages held while out */
	double t_begin;     /* when the pending swap-out was queued (ms) */
	double last_ms;     /* the last swap's wall time (copies included) */
	size_t last_bytes;
	/* every swap so far: counts, bytes and copy time, out and in */
	long n_out, n_in;
	size_t bytes_out, bytes_in;
	double ms_out, ms_in;
};

/* Copy kv's pages to the pool (after the compute queued so far) and free
 * them on the device.  On failure nothing changed.  No-op when out. */
enum djn_status djn_swap_out(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err);
/* The same without waiting: the copies are queued on the copy stream behind
 * the compute queued so far, the cache reads as empty from here (out and
 * pending), and the device pages stay allocated (and counted) until
 * djn_swap_finish sees the copies done.  A djn_swap_in before that takes
 * the pages back as they are, copying nothing. */
enum djn_status djn_swap_out_begin(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err);
/* Frees the device pages of a pending swap-out whose copies are done; with
 * wait, waits for them first.  No-op when nothing is pending. */
enum djn_status djn_swap_finish(struct djn_swap *sw, struct djn_kv *kv, bool wait,
				struct djn_err *err);
/* Allocate the pages again, copy them back, rebuild the page table.  On
 * failure (out of memory: bytes named) the pages stay on the host. */
enum djn_status djn_swap_in(struct djn_swap *sw, struct djn_kv *kv, struct djn_err *err);
/* Give the session's block back to the backend's pool (waiting for copies
 * in flight). */
void djn_swap_release(struct djn_swap *sw);
/* Pin blocks of `block` bytes ahead of need until the backend's pool holds
 * `bytes` free (a session's first swap then pins nothing: pinning costs
 * tens of ms a GiB).  The pool's blocks are freed with the backend. */
enum djn_status djn_swap_pool_reserve(struct djn_backend *be, size_t bytes, size_t block,
				      struct djn_err *err);
/* Bytes of free blocks in the backend's pool. */
size_t djn_swap_pool_bytes(const struct djn_backend *be);

/* ---- sizes */

/* "18G", "18GiB", "1.5g", "512M", "64k", "1073741824" (binary units). */
bool djn_size_parse(const char *s, size_t *out);
/* 2.5 GiB, 512 MiB, ... into buf. */
void djn_size_str(size_t b, char *buf, size_t n);

#endif
