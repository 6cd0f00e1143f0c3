/* djinn.h - the engine API: sites, sessions, the cursor, breakpoints, steering
 * and checkpoints.  The shell and the Lua module are thin faces over this.
 *
 * The program being debugged.  A session generates tokens for a prompt.  Its
 * program counter is a cursor (pos, site): `pos` is the first position of the
 * chunk in flight (the whole prompt during prefill, one token during decode)
 * and `site` indexes the model's site list:
 *
 *     0               embed
 *     1 + 11*l + k    L{l}.attn_norm q k v attn attn_out resid_mid
 *                          mlp_norm mlp_act mlp_out resid_post   (k = 0..10)
 *     1 + 11*L        final_norm
 *     2 + 11*L        logits
 *
 * The forward pass is a loop over that list.  A stop at a site happens
 * *after* the site's tensor was computed and *before* anything reads it, so
 * a tensor written back while paused is what the rest of the pass sees.
 *
 * Ownership.  A session holds a reference on its model; it owns its KV pages
 * (Data), its step arena (Stack), its breakpoints, steers and checkpoints.
 * The backend must outlive every session made on it.  Errors: actions return
 * enum djn_status and leave the message in djn_session_errmsg(s); a failed
 * call leaves the session as it was.
 */
#ifndef DJINN_DJINN_H
#define DJINN_DJINN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/backend.h"
#include "djinn/model.h"
#include "djinn/ringbuf.h"
#include "djinn/status.h"
#include "djinn/tensor.h"
#include "djinn/tokenizer.h"

/* ---------------------------------------------------------------- sites */

enum djn_site_kind {
	DJN_SITE_EMBED,
	DJN_SITE_ATTN_NORM,
	DJN_SITE_Q,
	DJN_SITE_K,
	DJN_SITE_V,
	DJN_SITE_ATTN,
	DJN_SITE_ATTN_OUT,
	DJN_SITE_RESID_MID,
	DJN_SITE_MLP_NORM,
	DJN_SITE_MLP_ACT,
	DJN_SITE_MLP_OUT,
	DJN_SITE_RESID_POST,
	DJN_SITE_FINAL_NORM,
	DJN_SITE_LOGITS,
	DJN_SITE_KIND_COUNT
};

#define DJN_SITES_PER_LAYER 11

int djn_site_count(const struct djn_config *c);
enum djn_site_kind djn_site_kind(const struct djn_config *c, int site);
/* Layer of a site, -1 for embed, final_norm and logits. */
int djn_site_layer(const struct djn_config *c, int site);
/* Columns of the site's tensor (its rows are the chunk's tokens). */
int djn_site_width(const struct djn_config *c, int site);
/* "embed", "L3.resid_post", "logits" ... into buf. */
void djn_site_name(const struct djn_config *c, int site, char *buf, size_t n);
/* The bare kind name: "resid_post". */
const char *djn_site_kind_name(enum djn_site_kind k);
/* Exact name -> index; -1 if none. */
int djn_site_find(const struct djn_config *c, const char *name);
/* Does `pattern` match site?  Patterns: an exact name, `L*.kind`, `L3.*`,
 * `*` (every site), `L2-4.kind` (a range of layers). */
bool djn_site_match(const struct djn_config *c, const char *pattern, int site);
/* Is the pattern well formed and does it match at least one site? */
bool djn_site_pattern_valid(const struct djn_config *c, const char *pattern);
/* Up to max site names nearest to a misspelt one (a typo's edit distance, or
 * the layer kinds a truncated one begins), into out (each a buffer of 32);
 * returns how many: none for a name nothing is near, or a layer out of range. */
int djn_site_suggest(const struct djn_config *c, const char *name, char (*out)[32], int max);
/* Why name (a site name or pattern) names no site, as the end of a message,
 * the same for every front end: "did you mean L3.resid_post?", "layers are
 * L0..L4", "a layer's sites are ...", "layer numbers take no leading zero:
 * L3.q".  True when it suggests names. */
bool djn_site_why(const struct djn_config *c, const char *name, char *buf, size_t size);

/* ------------------------------------------------------------- sessions */

struct djn_session;

struct djn_session_opts {
	int kv_page_tokens; /* tokens per KV page; 0: 16 */
	int max_ctx;        /* 0: the model's seq_len */
};

struct djn_gen_opts {
	int n_new;          /* tokens to generate after the prompt; <= 0: until EOS or context */
	float temperature;  /* 0: greedy */
	float top_p;        /* 1 or 0: off */
	uint64_t seed;
	bool stop_at_eos;   /* stop at EOS (and at BOS, as llama2.c does) */
};

enum djn_run_state {
	DJN_RUN_IDLE,    /* no run: nothing started, or killed */
	DJN_RUN_PAUSED,  /* a run is live and stopped at the cursor */
	DJN_RUN_DONE,    /* the run generated everything it was asked to */
};

enum djn_stop {
	DJN_STOP_ERROR = -1,
	DJN_STOP_STEP,       /* the requested steps are done */
	DJN_STOP_BREAKPOINT, /* a breakpoint hit; djn_session_last_hit() says which */
	DJN_STOP_WATCHPOINT, /* a watchpoint triggered */
	DJN_STOP_DONE,       /* the run finished (n_new tokens, EOS, or context full) */
	DJN_STOP_INTERRUPT,  /* djn_session_interrupt() was called */
};

struct djn_cursor {
	int pos;     /* first position of the chunk in flight */
	int n_rows;  /* tokens in the chunk */
	int site;    /* site just computed; -1 before the chunk's first site */
	int layer;   /* djn_site_layer(site) */
};

struct djn_session *djn_session_new(struct djn_model *m, struct djn_backend *be,
				    const struct djn_session_opts *opts, struct djn_err *err);
void djn_session_free(struct djn_session *s);
const char *djn_session_errmsg(const struct djn_session *s);
struct djn_model *djn_session_model(const struct djn_session *s);
struct djn_backend *djn_session_backend(const struct djn_session *s);

/* Begin a run for prompt ids (n >= 1): the cursor is before the first site of
 * the prompt chunk.  Replaces any earlier run (its KV is discarded). */
enum djn_status djn_session_start(struct djn_session *s, const int32_t *ids, int n,
				  const struct djn_gen_opts *g);
/* Drop the run (state IDLE); breakpoints and steers stay. */
void djn_session_kill(struct djn_session *s);

enum djn_run_mode {
	DJN_RUN_CONTINUE, /* until a breakpoint, watchpoint, interrupt or done */
	DJN_RUN_STEP,     /* count sites */
	DJN_RUN_NEXT,     /* to the same site kind count layers on; or next layer's end */
	DJN_RUN_FINISH,   /* to the end of the current chunk (after logits, token sampled) */
	DJN_RUN_UNTIL_POS,/* until a chunk at position >= count begins (cursor before embed) */
};

/* Execute.  Breakpoints and watchpoints are honoured in every mode (as gdb
 * does).  Returns why it stopped; DJN_STOP_ERROR leaves the message in
 * errmsg and the session paused where it was. */
enum djn_stop djn_session_run(struct djn_session *s, enum djn_run_mode mode, long count);
/* Ask a running djn_session_run to stop at the next site (async-signal-safe).
 * A request made while no run is in flight is dropped when the next starts. */
void djn_session_interrupt(struct djn_session *s);

enum djn_run_state djn_session_state(const struct djn_session *s);
struct djn_cursor djn_session_cursor(const struct djn_session *s);
/* Tokens so far (prompt then generated); borrowed until the next run call. */
const int32_t *djn_session_tokens(const struct djn_session *s, int *n_total, int *n_prompt);
/* Generated text so far (decoded), borrowed until the next run call. */
const char *djn_session_text(const struct djn_session *s, size_t *len);

/* Go on with more input: append ids (n >= 0, e.g. a tool's output) to the
 * run's tokens and generate n_more (>= 1) tokens after them.  The run must be finished, or paused before a chunk's
 * first site; the KV cache is kept, so only the new tokens (and the last
 * sampled one, not yet run) are computed.  The appended ids count as input,
 * not as generated tokens.  Errors leave the run as it was: a token outside
 * the vocabulary, more tokens than the context holds, a run paused inside a
 * chunk. */
enum djn_status djn_session_extend(struct djn_session *s, const int32_t *ids, int n, int n_more);

/* Teacher forcing: while paused at `logits` of the chunk that samples (the
 * prompt's last chunk, or a decode step), make the next token `id` instead of
 * sampling one.  Applies once. */
enum djn_status djn_session_force_token(struct djn_session *s, int32_t id);

/* Callback for each generated token, as it is sampled (printing as you go). */
typedef void (*djn_token_fn)(struct djn_session *s, int32_t id, void *ud);
void djn_session_on_token(struct djn_session *s, djn_token_fn fn, void *ud);

/* ---------------------------------------------------- tensors at sites */

/* Is the site's tensor live (computed in this chunk and not overwritten)? */
bool djn_session_site_live(const struct djn_session *s, int site);
/* Shape of the live tensor at site: rows (tokens of the chunk) x cols. */
enum djn_status djn_session_site_shape(struct djn_session *s, int site, int *rows, int *cols);
/* Copy the tensor at site to host (rows*cols floats into out). */
enum djn_status djn_session_read(struct djn_session *s, int site, float *out, size_t n);
/* Copy rows [row0, row0+n_rows) of it (n_rows*cols floats into out): a big
 * tensor read in pieces, each sent while the next is copied. */
enum djn_status djn_session_read_rows(struct djn_session *s, int site, int row0, int n_rows,
				      float *out);
/* Statistics of rows [row0, row0+n_rows) of the site's tensor (n_rows 0: all),
 * computed on the backend. */
enum djn_status djn_session_stats(struct djn_session *s, int site, int row0, int n_rows,
				  struct djn_stats *out);
/* Overwrite the tensor at site (paused runs only; rows*cols floats). */
enum djn_status djn_session_write(struct djn_session *s, int site, const float *in, size_t n);

/* The logit lens.  Residual-stream sites are embed, L*.resid_mid and
 * L*.resid_post: the ones the model's head could read. */
bool djn_site_residual(const struct djn_config *c, int site);
/* Rows [row0, row0 + n_rows) of the live tensor at a residual-stream site
 * through the model's final norm and unembedding, on the backend, each row
 * with the ops the final_norm and logits sites apply to the chunk's last
 * row: n_rows * vocab_size floats into out (host, row-major).  So the last
 * layer's resid_post at the chunk's last row gives the model's own logits
 * (bit for bit on the CPU).  Steers are not applied to the head here.
 * Errors: not a residual site (DJN_ERR_INVALID), not live (DJN_ERR_STATE),
 * rows outside the chunk (DJN_ERR_RANGE), no device memory for one row's
 * scratch; the session is unchanged. */
enum djn_status djn_session_lens(struct djn_session *s, int site, int row0, int n_rows,
				 float *out);

/* Recording (TransformerLens's run_with_cache): the rows of every site a
 * pattern matches ("L*.resid_post", "L3.*", "logits"), at every position a
 * run computes, copied to the host as each site runs (after its steers: what
 * a breakpoint there reads).  A run's start forgets the last run's rows; the
 * patterns stay until djn_record_clear.  A recorded site makes the run stop
 * by there (as a breakpoint would, without stopping); nothing is recorded
 * or checked while no pattern is set.  final_norm and logits have a chunk's
 * last position only.  add: DJN_ERR_INVALID for a pattern that matches no
 * site (the message says why).  read: rows [pos0, pos0 + n) of site into out
 * (n * width floats); DJN_ERR_STATE when the site is not recorded or a
 * position was never computed, DJN_ERR_RANGE past what was recorded. */
enum djn_status djn_record_add(struct djn_session *s, const char *pattern);
void djn_record_clear(struct djn_session *s);
int djn_record_count(const struct djn_session *s);
const char *djn_record_pattern(const struct djn_session *s, int i);
bool djn_record_site(const struct djn_session *s, int site);
/* One past the last position recorded at site (0: none). */
int djn_record_positions(const struct djn_session *s, int site);
enum djn_status djn_record_read(struct djn_session *s, int site, int pos0, int n, float *out);

/* Attention patterns: softmax(q . k / sqrt(head_dim)) of query head `head`
 * (0-based) of layer `layer` over its causal window, for rows [row0, row0 +
 * n_rows) of the chunk in flight.  Row r sits at position p = cursor.pos +
 * row0 + r and has p + 1 weights (positions 0..p) followed by zeros: out is
 * n_rows * (cursor.pos + row0 + n_rows) floats (host, row-major).  Computed
 * on demand on the host, with the CPU attention's arithmetic, from the live
 * L{layer}.q (after RoPE, as stored) and K of the kv head the attention op
 * reads (h / (n_head / n_kv_head)): positions before the chunk from the KV
 * cache, the chunk's own from the cache once L{layer}.attn has stored them
 * or, at L{layer}.k and L{layer}.v, from the live L{layer}.k (what attn will
 * store).  Nothing is kept or computed during runs.  Errors: no run
 * (DJN_ERR_STATE), layer, head or rows out of range (DJN_ERR_RANGE), q not
 * live or the chunk's K not computed yet (DJN_ERR_STATE); the session is
 * unchanged (a swapped-out session's KV is swapped in). */
enum djn_status djn_session_attn_pattern(struct djn_session *s, int layer, int head, int row0,
					 int n_rows, float *out);

/* Activation patching between two prompts of the same token length n: the
 * clean prompt runs once, keeping the rows of the site of kind `kind` (a
 * per-layer kind: L*.attn_norm .. L*.resid_post) of every layer on the host;
 * then, for each layer l and position p, the corrupted prompt runs with that
 * one row set to the clean row (a persistent SET steer at L{l}.kind, position
 * p only), and the metric logit[a] - logit[b] at the last position is read
 * at the prompt's logits.  effect[l * n + p] is (patched - corrupt) /
 * (clean - corrupt): 0 where the patch changes nothing, 1 where it restores
 * the clean metric.  Where |clean - corrupt| < 1e-6 (nothing to restore)
 * the effect is the raw patched - corrupt and normalised is false.  One
 * session of its own, freed before the return; the model's breakpoints and
 * other sessions are not touched.  Errors: lengths differ or n < 1, a token
 * or a or b outside the vocabulary, a kind that is not per-layer
 * (DJN_ERR_INVALID / DJN_ERR_RANGE), and what a run can fail with. */
struct djn_patch_result {
	int n_layer, n_pos;
	float *effect;  /* n_layer * n_pos, row-major (layers), normalised */
	float *patched; /* n_layer * n_pos: the metric of each patched run */
	float clean, corrupt; /* the metric of the clean and the corrupted run */
	bool normalised;
};
enum djn_status djn_patch_run(struct djn_model *m, struct djn_backend *be,
			      const int32_t *clean, const int32_t *corrupt, int n,
			      enum djn_site_kind kind, int32_t a, int32_t b,
			      struct djn_patch_result *out, struct djn_err *err);
void djn_patch_result_free(struct djn_patch_result *r);

/* ----------------------------------------------------------- steering */

enum djn_steer_op {
	DJN_STEER_ADD,   /* x += scale * v  (v: cols floats, added to every row) */
	DJN_STEER_SCALE, /* x *= scale */
	DJN_STEER_SET,   /* x = v */
	DJN_STEER_ZERO,  /* x[idx] = 0 for the given indices (all if none) */
};

/* Apply now to the paused tensor at site (one-shot), or, with persist, every
 * time a site matching `pattern` runs from now on.  v has cols floats (may be
 * NULL for SCALE / ZERO); idx/n_idx for ZERO.  Returns the steer id (>= 1)
 * for persistent steers, 0 for one-shot, negative status on error. */
int djn_steer_add(struct djn_session *s, const char *pattern, enum djn_steer_op op,
		  const float *v, int n_v, float scale, const int *idx, int n_idx,
		  bool persist);
/* djn_steer_add for the rows at token positions [pos0, pos1) only (pos1 -1:
 * no end); rows at other positions are left as they are, bit for bit.  A
 * one-shot steer fails (DJN_ERR_RANGE) when the paused tensor holds none of
 * them; a persistent one applies (and counts) only in chunks that do.
 * djn_steer_add is this with 0, -1. */
int djn_steer_add_at(struct djn_session *s, const char *pattern, enum djn_steer_op op,
		     const float *v, int n_v, float scale, const int *idx, int n_idx, bool persist,
		     int pos0, int pos1);
/* Remove persistent steer id (0: all). */
enum djn_status djn_steer_clear(struct djn_session *s, int id);

struct djn_steer_info {
	int id;
	const char *pattern;
	enum djn_steer_op op;
	float scale;
	int n_v;
	long n_applied;
	int pos0, pos1; /* the positions [pos0, pos1) it applies to; pos1 -1: no end */
};
/* Iterate persistent steers: i from 0; false past the end. */
bool djn_steer_get(const struct djn_session *s, int i, struct djn_steer_info *out);

/* --------------------------------------------- breakpoints, watchpoints */

/* A condition: `norm > 10`, `max > 5`, `nan`, `inf`, `argmax == 42`,
 * `pos == 7`, `layer >= 3`, combined with and / or / not and parentheses.
 * Names: norm (L2), max, min, mean, std, absmax, argmax, nan (count), inf
 * (count), pos, layer, token (id of the last token).  Either order (`3 <
 * norm`); a lone `=` is an error (== compares).  Parsed once when set;
 * breakpoints set on a session also take `token == " the"` (a token's text,
 * resolved through the model's tokenizer then). */
struct djn_cond;
struct djn_cond *djn_cond_parse(const char *text, struct djn_err *err);
void djn_cond_free(struct djn_cond *c);

enum djn_bp_kind {
	DJN_BP_SITE,  /* stop at sites matching a pattern */
	DJN_BP_TOKEN, /* stop before the chunk at position `token` starts */
	DJN_BP_WATCH, /* watchpoint: checked every time the site runs */
};

struct djn_bp_info {
	int id;
	enum djn_bp_kind kind;
	const char *pattern;  /* site pattern (SITE, WATCH) */
	int token;            /* TOKEN */
	const char *cond;     /* condition text or NULL */
	bool enabled, temporary;
	long ignore_count;
	long hits;
	const char *stop_if;  /* WATCH: the condition on top of cond (the watch
			       * expression) set by djn_bp_condition, or NULL */
};

/* Add a breakpoint: pattern is a site pattern, or "token N".  cond may be
 * NULL.  Returns the id (>= 1) or a negative status (message in errmsg). */
int djn_bp_add(struct djn_session *s, const char *pattern, const char *cond, bool temporary);
/* Watchpoint: stop when cond holds at a site matching pattern. */
int djn_watch_add(struct djn_session *s, const char *pattern, const char *cond);
enum djn_status djn_bp_delete(struct djn_session *s, int id); /* 0: all */
enum djn_status djn_bp_enable(struct djn_session *s, int id, bool on);
/* A breakpoint's condition (NULL or "": none).  On a watchpoint it is checked
 * on top of the watch expression, which stays (gdb's `condition` on a
 * watchpoint). */
enum djn_status djn_bp_condition(struct djn_session *s, int id, const char *cond);
enum djn_status djn_bp_ignore(struct djn_session *s, int id, long count);
bool djn_bp_get(const struct djn_session *s, int i, struct djn_bp_info *out);
/* The breakpoint that caused the last DJN_STOP_BREAKPOINT / WATCHPOINT. */
int djn_session_last_hit(const struct djn_session *s);
/* A copy of that breakpoint as it was when it hit (hits counted), valid
 * even when it was temporary and is gone; false if the last stop was not a
 * hit.  The strings live until the next run call. */
bool djn_session_last_hit_info(const struct djn_session *s, struct djn_bp_info *out);

/* --------------------------------------------------------- checkpoints */

/* Snapshot cursor, KV pages (device to device), RNG, tokens and the live
 * activations of the step.  Returns id >= 1 or a negative status. */
int djn_checkpoint_new(struct djn_session *s);
enum djn_status djn_checkpoint_restore(struct djn_session *s, int id);
enum djn_status djn_checkpoint_delete(struct djn_session *s, int id);

struct djn_checkpoint_info {
	int id;
	struct djn_cursor cursor;
	int n_tokens;
	size_t bytes;
};
bool djn_checkpoint_get(const struct djn_session *s, int i, struct djn_checkpoint_info *out);

/* ------------------------------------------------------------- memory */

struct djn_mem_info {
	size_t text_bytes;   /* weights on the backend (shared) */
	size_t data_bytes;   /* KV pages allocated by this session */
	size_t data_pages, data_page_bytes;
	size_t stack_bytes;  /* step arena capacity */
	size_t stack_used;
	size_t ckpt_bytes;   /* checkpoints held */
	size_t swap_bytes;   /* KV pages swapped out to the host (0 when in) */
};
void djn_session_mem(const struct djn_session *s, struct djn_mem_info *out);

/* KV swap: copy the session's KV pages to a pinned host pool (on the copy
 * stream, after the compute queued so far) and free them on the device;
 * swapin allocates them again and copies them back.  A swapped-out session
 * keeps its cursor, activations and everything else; anything that needs
 * its KV (running, a new chunk, a checkpoint) swaps it in first, so a paused
 * run continues token-identically.  The pool is kept for the next swap and
 * freed with the session.  Errors: out of memory on swapin (bytes named;
 * the pages stay on the host). */
enum djn_status djn_session_swapout(struct djn_session *s);
enum djn_status djn_session_swapin(struct djn_session *s);
bool djn_session_swapped(const struct djn_session *s);
/* When the Data segment is full, paused sessions are swapped out to make
 * room highest park rank first (the scheduler gives lower classes a higher
 * rank), least recently used within a rank.  Default 0. */
void djn_session_set_park_rank(struct djn_session *s, int rank);
/* swapout without waiting for the copies (the scheduler's io_wait under
 * the signal policy): the session is swapped from here, its device pages
 * are freed by djn_session_swap_poll once the copies are done (wait: wait
 * for them), or taken back as they are by a swapin that comes first.  A
 * page allocation that finds the KV limit or the device full, and freeing
 * the session, finish pending swap-outs first. */
enum djn_status djn_session_swapout_begin(struct djn_session *s);
enum djn_status djn_session_swap_poll(struct djn_session *s, bool wait);
/* The last swap's bytes and wall time of its copies (ms). */
void djn_session_swap_last(const struct djn_session *s, size_t *bytes, double *ms);
/* Every swap of the session so far, out and in: counts, bytes, copy time. */
struct djn_swap_totals {
	long n_out, n_in;
	size_t bytes_out, bytes_in;
	double ms_out, ms_in;
};
void djn_session_swap_totals(const struct djn_session *s, struct djn_swap_totals *out);
/* Bytes of KV pages the chunk in flight needs held on the device: every
 * position up to its end. */
size_t djn_session_kv_step_bytes(const struct djn_session *s);

/* Bytes of KV pages the session may come to hold: its whole context (the
 * ctx it was made with), however its run grows (djn_session_extend). */
size_t djn_session_kv_need(const struct djn_session *s);

/* Decode steps this session ran as one recorded backend graph (CUDA graphs),
 * rather than op by op.  A step is recorded once and replayed while nothing
 * is steered, the stepping mode does not stop inside it, and the backend can
 * record; breakpoint conditions are checked after it, in site order, with
 * every site's tensor as it was when the site ran.  DJINN_GRAPH=0 in the
 * environment (read when a session is made) turns it off. */
long djn_session_graph_steps(const struct djn_session *s);

/* ------------------------------------------------------ batched steps */

/* One forward pass for the chunks in flight of several sessions of one
 * model (the scheduler's step, djinn/sched.h): each weight is read once for
 * all their rows, and each row attends over its own session's KV cache.  A
 * batch belongs to one backend; it owns the buffers of the step (and the
 * recorded graphs of decode batches of 1, 2, 4 ... rows) and is freed with
 * djn_batch_free, after its sessions' last step. */
struct djn_batch;
struct djn_batch *djn_batch_new(struct djn_backend *be, struct djn_err *err);
void djn_batch_free(struct djn_batch *b);
const char *djn_batch_errmsg(const struct djn_batch *b);
/* Steps replayed as recorded graphs. */
long djn_batch_graph_steps(const struct djn_batch *b);
/* Can s join a batched step now?  It is paused before the first site of a
 * chunk of a llama-family model kept resident (not streamed), and nothing
 * can stop or change it inside the step: no enabled breakpoint or
 * watchpoint, no steer.  A session that is not batchable runs alone
 * (djn_session_run), on the exact per-site path. */
bool djn_session_batchable(const struct djn_session *s);
/* Cut the chunk in flight (not begun: cursor before embed) to at most
 * n_rows rows; the rest of the prompt follows in later chunks (chunked
 * prefill).  Results do not depend on how a prompt is cut. */
enum djn_status djn_session_chunk_limit(struct djn_session *s, int n_rows);
/* Run the chunk in flight of each of ss[0..n) (all batchable, one model and
 * backend) as one forward pass, then take each one's token as
 * djn_session_run would: why[i] is DJN_STOP_STEP (its next chunk begun),
 * DJN_STOP_DONE, or DJN_STOP_ERROR when its next chunk could not be laid
 * out (its token was taken; the message is in djn_session_errmsg, and the
 * session retries the layout when it runs again).  Every member is swapped in first (others may be swapped
 * out to make room, never a member).  On failure the message is in
 * djn_batch_errmsg and the members that had not sampled are still before
 * their chunk. */
enum djn_status djn_batch_run(struct djn_batch *b, struct djn_session *const *ss, int n,
			      enum djn_stop *why);
/* Free the KV cache of a session paused before a chunk's first site, or of
 * a finished run (its pages, or its swapped-out copy); its next run (or
 * the run djn_session_extend goes on with) recomputes the positions before
 * its cursor as a prefill first and then goes on as it would have, token
 * for token (vLLM's preemption by recompute). */
enum djn_status djn_session_drop_kv(struct djn_session *s);

/* --------------------------------------------------- text generation */

/* Sample the next token from host logits (vocab floats, modified in place). */
struct djn_sampler;

/* Convenience for `djinn generate`: encode prompt (with BOS, as llama2.c),
 * run with no breakpoints, call on_token for each generated token. */
enum djn_status djn_generate(struct djn_session *s, const char *prompt,
			     const struct djn_gen_opts *g, djn_token_fn on_token, void *ud);

#endif
