/* cpu.h - the CPU backend's private state (internal to src/backend/cpu). */
#ifndef DJINN_CPU_H
#define DJINN_CPU_H

#include "backend/cpu/pool.h"
#include "djinn/backend.h"

struct cpu_ctx {
	struct djn_pool *pool;
	struct djn_stats *slots; /* DJN_STATS_SLOTS, for stats_defer */
};

static inline struct djn_pool *cpu_pool(struct djn_backend *be)
{
	return ((struct cpu_ctx *)be->ctx)->pool;
}

/* ops.c */
enum djn_status cpu_embed(struct djn_backend *be, float *out, const struct djn_weight *table,
			  const int32_t *ids, int n);
enum djn_status cpu_rmsnorm(struct djn_backend *be, float *out, const float *x,
			    const struct djn_weight *w, int n, int dim, float eps);
enum djn_status cpu_layernorm(struct djn_backend *be, float *out, const float *x,
			      const struct djn_weight *w, const struct djn_weight *b, int n,
			      int dim, float eps);
enum djn_status cpu_rope(struct djn_backend *be, float *x, int n, int n_head, int head_dim,
			 int rot_dim, int pos0, float theta, enum djn_rope_style style);
enum djn_status cpu_swiglu(struct djn_backend *be, float *out, const float *gate,
			   const float *up, size_t n);
enum djn_status cpu_gelu(struct djn_backend *be, float *out, const float *x, size_t n);
enum djn_status cpu_add(struct djn_backend *be, float *out, const float *a, const float *b,
			size_t n);
enum djn_status cpu_axpby(struct djn_backend *be, float *y, float scale, const float *x,
			  float alpha, size_t n);
enum djn_status cpu_softmax(struct djn_backend *be, float *x, int n, int dim);
enum djn_status cpu_argmax(struct djn_backend *be, const float *x, int n, int *out);
enum djn_status cpu_stats(struct djn_backend *be, const float *x, int64_t n,
			  struct djn_stats *out);
/* matmul.c */
enum djn_status cpu_matmul(struct djn_backend *be, float *y, const float *x,
			   const struct djn_weight *w, const struct djn_weight *bias, int n);
/* attention.c */
enum djn_status cpu_kv_store(struct djn_backend *be, const struct djn_kv_view *kv, int layer,
			     int pos0, int n, const float *k, const float *v);
enum djn_status cpu_attention(struct djn_backend *be, float *out, const float *q,
			      const struct djn_kv_view *kv, const struct djn_attn_shape *s);
/* The largest head_dim a model may have (djn_config_validate). */
#define DJN_CPU_MAX_HEAD_DIM 1024

/* One query head of attention: xb (head_dim) = softmax(q k^T / sqrt(head_dim)) v
 * over positions 0 .. pos of kv head kvh of `layer`; att holds pos + 1
 * floats of scratch.  cpu_attention and cpu_attention_rows both call it, so
 * a row's result is the same bit for bit whichever op computed it. */
void cpu_attention_head(float *xb, const float *q, const struct djn_kv_view *kv, int layer,
			int head_dim, int kvh, int pos, float *att);
/* ops.c: rope() of one row (n_head * head_dim) at position pos */
void cpu_rope_row(float *x, int n_head, int head_dim, int rot_dim, int pos, float theta,
		  enum djn_rope_style style);
/* batch.c: the rows of a batch of sessions (struct djn_kv_rows) */
enum djn_status cpu_rope_rows(struct djn_backend *be, float *x, const struct djn_kv_rows *kv,
			      int n_head, int head_dim, int rot_dim, float theta,
			      enum djn_rope_style style);
enum djn_status cpu_kv_store_rows(struct djn_backend *be, const struct djn_kv_rows *kv,
				  int layer, const float *k, const float *v);
enum djn_status cpu_attention_rows(struct djn_backend *be, float *out, const float *q,
				   const struct djn_kv_rows *kv, int n_head, int n_kv_head,
				   int head_dim, int layer);
enum djn_status cpu_argmax_rows(struct djn_backend *be, const float *x, int n, int dim,
				int *out);

/* Softmax of x[0..n-1] in place, as llama2.c's run.c computes it. */
void cpu_softmax_row(float *x, int n);

#endif
