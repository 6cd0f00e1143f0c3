/* session_impl.h - the session object and the step machinery shared by the
 * files of src/exec (internal). */
#ifndef DJINN_EXEC_SESSION_IMPL_H
#define DJINN_EXEC_SESSION_IMPL_H

#include <signal.h>
#include <stdint.h>

#include "djinn/djinn.h"
#include "djinn/vmu.h"

#define DJN_MAX_CHUNK 512          /* prompt tokens per prefill chunk */
#define DJN_ARENA_KEEP_ALL (256u << 20) /* keep every site live below this */

struct bp {
	int id;
	enum djn_bp_kind kind;
	char *pattern;
	int token;
	struct djn_cond *cond;   /* a watchpoint's: the watch expression */
	struct djn_cond *stop_if; /* a watchpoint's `condition N EXPR`, or NULL */
	bool enabled, temporary;
	long ignore;
	long hits;
	unsigned char *mask; /* per site: matches */
};

/* A breakpoint check whose condition reads tensor statistics: the stats are
 * reduced on the backend without waiting (slot), and the condition is
 * evaluated at the next flush - once a token on the fast path. */
struct pending {
	int bp_id;
	int site;
	int slot; /* stats slot, or -1 */
};

struct steer {
	int id;
	char *pattern;
	enum djn_steer_op op;
	float scale;
	float *v;   /* backend memory, n_v floats, or NULL */
	int n_v;
	int *idx;
	int n_idx;
	long n_applied;
	unsigned char *mask;
	int pos0, pos1; /* the rows at positions [pos0, pos1) only; INT_MAX: no end */
};

/* Everything about a run that a checkpoint must capture, by value. */
struct run_regs {
	enum djn_run_state state;
	struct djn_gen_opts gen;
	int n_tokens, n_prompt, n_generated;
	int fill_end;   /* chunks end before this position sample nothing: the
			 * prompt's length, or the tokens so far when a dropped
			 * KV cache is recomputed */
	uint64_t rng;
	size_t text_len;
	int pos, n_rows, site;
	bool batched;   /* the chunk ran in a batch: only final_norm and logits are live */
};

struct ckpt {
	int id;
	struct run_regs r;
	int32_t *tokens;
	char *text;
	float **pages; /* backend copies of the first n_pages KV pages */
	int n_pages;
	void *arena;   /* backend copy of the arena's used bytes, in pages[0]'s allocation */
	size_t arena_bytes;
	bool head_only; /* the arena was laid out for a batch (head only) */
};

struct djn_session {
	struct djn_model *m;
	struct djn_backend *be;
	const struct djn_config *c;
	struct djn_err err;
	int n_sites, max_ctx;

	struct djn_kv kv;       /* Data */
	struct djn_arena arena; /* Stack */
	struct djn_ring *ring;  /* the model's streamed layers, or NULL (Text's) */
	struct djn_swap swap;   /* KV pages swapped out to the host */

	struct run_regs r;
	int32_t *tokens;        /* host, cap max_ctx */
	char *text;
	size_t text_cap;

	/* the chunk in flight: site buffers laid out in the arena */
	float **buf;            /* n_sites pointers */
	int *buf_rows;          /* rows of each site's tensor */
	bool aliased;           /* layer sites share buffers across layers */
	float *gate, *up;       /* MLP scratch */
	int32_t *ids;           /* backend copy of the chunk's ids */
	float *logits_host;

	struct bp *bps;
	int n_bps, next_bp_id, last_hit;
	struct djn_bp_info last_info; /* copy of the last hit, strings owned below */
	char *last_pattern, *last_cond, *last_stop_if;
	struct pending *pend;   /* DJN_STATS_SLOTS entries at most */
	int n_pend, n_slots;
	int slot_site;          /* site whose stats are in slot n_slots - 1 */
	bool slots_batched;     /* slots not yet reduced: one stats_defer_many at flush */
	const float **slot_x;   /* DJN_STATS_SLOTS: the tensors of batched slots */
	int64_t *slot_n;
	struct steer *steers;
	int n_steers, next_steer_id;
	unsigned char *armed;   /* per site: a breakpoint, watchpoint or steer matches */

	struct ckpt *ckpts;
	int n_ckpts, next_ckpt_id;

	struct djn_rec *rec;    /* record.c: recorded sites, or NULL */

	/* a decode step recorded as one backend graph (forward.c), and what it
	 * was recorded against: the arena and the KV page table */
	struct djn_graph *graph;
	const void *graph_key[2];
	uint64_t graph_ring_key; /* a pooled model's layers where they were (ringbuf.h) */
	bool graph_off;         /* DJINN_GRAPH=0, or recording keeps failing */
	int graph_fails;
	long graph_steps;       /* steps replayed */
	bool fusing;            /* site_exec runs for a recording: fuse across sites */

	bool ids_dirty;         /* ids not yet copied for the chunk begun (embed copies them) */
	bool in_batch;          /* a batch step holds its pages: never evicted */
	bool needs_begin;       /* the chunk at the cursor is not laid out yet (started, KV
				 * dropped, or no room after a batch's pass) */
	bool head_only;         /* laid out for a batch: only the head's tensors (the
				 * batch's arena holds the rest); run alone, it is laid
				 * out again in full before its first site */
	bool kv_dropped;        /* the KV cache was dropped since the last chunk began */

	int32_t forced;         /* next token by teacher forcing, or -1 */
	struct djn_session *next_live; /* every live session, for eviction */
	uint64_t last_used;            /* a clock tick of its last start or run */
	int park_rank;                 /* swapped out first when higher */
	bool deferring;                /* a batch's advance: no room lays the chunk out later */
	volatile sig_atomic_t interrupt;
	djn_token_fn on_token;
	void *on_token_ud;
};

/* forward.c */
/* Arena bytes a chunk of n_rows needs (what djn_chunk_begin reserves). */
size_t djn_chunk_arena_bytes(const struct djn_config *c, int n_rows);
enum djn_status djn_chunk_begin(struct djn_session *s, int pos, int n_rows);
/* The same for a chunk that runs in a batch (batch.c): the KV pages of
 * djn_chunk_begin, but of the arena only the head's tensors and the ids, so
 * that a batched session holds no chunk-sized arena of its own. */
enum djn_status djn_chunk_begin_batched(struct djn_session *s, int pos, int n_rows);
enum djn_status djn_site_exec(struct djn_session *s, int site);
/* The model's final norm of n rows of x (dim each) into out: what the
 * final_norm site computes (lens.c reads any residual row through it). */
enum djn_status djn_final_norm(struct djn_session *s, float *out, const float *x, int n);
/* Whether the chunk just begun (a decode step, nothing steered) may run as a
 * recorded graph; djn_chunk_graph then runs all its sites at once, with
 * *ran false when it could not (the caller runs them one by one). */
bool djn_chunk_graphable(const struct djn_session *s);
enum djn_status djn_chunk_graph(struct djn_session *s, bool *ran);
void djn_chunk_graph_free(struct djn_session *s);
/* Copy the chunk's ids to the backend if the chunk begun has not yet. */
enum djn_status djn_chunk_ids(struct djn_session *s);
/* session.c */
/* The cursor is at logits: take `next` (a token picked from the logits, or
 * -1 to pick it here from the session's logits buffer) and finish the run
 * or begin the next chunk: DJN_STOP_STEP, DJN_STOP_DONE or DJN_STOP_ERROR. */
enum djn_stop djn_session_advance(struct djn_session *s, int next);
/* How the chunk in flight picks its token: by teacher forcing (*forced), by
 * argmax (greedy), or by sampling (false for both). */
bool djn_session_greedy(const struct djn_session *s);
enum djn_status djn_session_fail(struct djn_session *s, enum djn_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void djn_session_rearm(struct djn_session *s);
/* Bring swapped-out KV pages back before anything reads or grows them. */
/* Bring a swapped-out session's KV back, swapping others out if room is
 * short (session.c). */
enum djn_status djn_session_swapped_in(struct djn_session *s);
/* Lay out the chunk at the cursor if it was left for later (a start, a
 * dropped KV cache, no room after a batch's pass), or laid out only for a
 * batch: djn_session_begun for a run alone (in full), the _batched one for a
 * batch step (the head only, when not laid out yet). */
enum djn_status djn_session_begun(struct djn_session *s);
enum djn_status djn_session_begun_batched(struct djn_session *s);
/* Swap out the least recently used other session on s's backend that holds
 * KV pages; DJN_ERR_NOMEM when there is none. */
enum djn_status djn_session_evict_other(struct djn_session *s);
/* steer.c */
enum djn_status djn_steers_apply(struct djn_session *s, int site, bool count);
void djn_steers_free(struct djn_session *s);
/* break.c */
enum djn_stop djn_breaks_check(struct djn_session *s, int site);
/* Evaluate the pending checks; on a hit at an earlier site, re-execute the
 * chunk up to it (rollback) so the stop is where the condition first held. */
enum djn_stop djn_breaks_flush(struct djn_session *s);
void djn_breaks_discard(struct djn_session *s);
bool djn_breaks_token(struct djn_session *s);
void djn_breaks_free(struct djn_session *s);
/* record.c */
/* Keep site's rows (just executed and steered) if it is recorded. */
enum djn_status djn_record_take(struct djn_session *s, int site);
/* Forget the rows of the last run (a new one starts); the patterns stay. */
void djn_record_reset(struct djn_session *s);
/* Mark the recorded sites in armed (the run loop stops by at them). */
void djn_record_arm(const struct djn_session *s, unsigned char *armed);
void djn_record_free(struct djn_session *s);
/* checkpoint.c */
void djn_ckpts_free(struct djn_session *s);
/* sample.c */
int djn_sample(float *logits, int n, float temperature, float top_p, uint64_t *rng);

#endif
