/* model.h - a loaded model: its configuration, its weights (the VMU's Text
 * segment, host side) and its tokenizer.
 *
 * Loaders validate everything they read before trusting it and fail with one
 * message naming the file and the problem.  Weights point into a read-only
 * mmap of the file where the stored layout is usable as is; the few that must
 * be rearranged (GPT-2's Conv1D transposes, fused qkv) are copied into
 * buffers the model owns.  A model is immutable after loading and may be
 * shared by any number of sessions (reference-counted: djn_model_ref /
 * djn_model_unref).
 */
#ifndef DJINN_MODEL_H
#define DJINN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/backend.h"
#include "djinn/status.h"
#include "djinn/tensor.h"
#include "djinn/tokenizer.h"

enum djn_arch {
	DJN_ARCH_LLAMA, /* Llama, Mistral, SmolLM: RMSNorm, RoPE, SwiGLU, GQA */
	DJN_ARCH_GPT2,  /* GPT-2: LayerNorm with bias, learned positions, GELU */
};

enum djn_format {
	DJN_FORMAT_LLAMA2C,
	DJN_FORMAT_GGUF,
	DJN_FORMAT_HF, /* config.json + safetensors */
};

struct djn_config {
	enum djn_arch arch;
	int dim;        /* hidden size */
	int hidden_dim; /* MLP inner size */
	int n_layer;
	int n_head;
	int n_kv_head;
	int head_dim;   /* dim / n_head unless the file says otherwise */
	int vocab_size;
	int seq_len;    /* maximum context */
	float norm_eps;
	float rope_theta;
	enum djn_rope_style rope_style;
	bool tied_embeddings; /* output shares tok_embd */
};

struct djn_layer {
	struct djn_weight attn_norm, attn_norm_b; /* (1, dim); _b GPT-2 only */
	struct djn_weight wq, wk, wv;             /* (n_head*hd, dim), (n_kv_head*hd, dim) x2 */
	struct djn_weight bq, bk, bv;             /* biases (1, rows); optional */
	struct djn_weight wo, bo;                 /* (dim, n_head*hd) */
	struct djn_weight mlp_norm, mlp_norm_b;   /* (1, dim) */
	struct djn_weight w_gate;                 /* (hidden, dim)  llama only */
	struct djn_weight w_up, b_up;             /* (hidden, dim)  GPT-2: c_fc */
	struct djn_weight w_down, b_down;         /* (dim, hidden)  GPT-2: c_proj */
};

struct djn_mapping; /* an mmapped file; see model/mapping.h */

struct djn_model {
	int refcount;
	enum djn_format format;
	char *path;
	char *name;          /* general.name, or the file's base name */
	struct djn_config cfg;
	struct djn_weight tok_embd;                 /* (vocab, dim) */
	struct djn_weight pos_embd;                 /* (seq_len, dim) GPT-2 only */
	struct djn_weight final_norm, final_norm_b; /* (1, dim) */
	struct djn_weight output;                   /* (vocab, dim); == tok_embd when tied */
	struct djn_layer *layers;                   /* n_layer */
	struct djn_tokenizer *tok;                  /* may be NULL until attached */
	char *chat_template;                        /* GGUF tokenizer.chat_template, or NULL */
	char *tok_found;     /* the tokenizer file found beside a llama2.c .bin, or NULL */
	void *text;                                 /* Text-segment state (src/vmu/text.c) */
	enum djn_dtype kv_dtype; /* of its sessions' KV caches: f32 (default) or f16 */

	/* ownership of the bytes behind the weights */
	struct djn_mapping **maps;
	int n_maps;
	void **owned;
	int n_owned;
};

/* Load any supported model: a directory (Hugging Face), *.gguf, or a
 * llama2.c *.bin.  tokenizer_path may be NULL (then the model's own, or for
 * .bin a tokenizer.bin or tok<vocab>.bin beside it: tok_found).  Returns
 * NULL with *err set. */
struct djn_model *djn_model_load(const char *path, const char *tokenizer_path,
				 struct djn_err *err);

struct djn_model *djn_model_load_llama2c(const char *path, const char *tok_path,
					 struct djn_err *err);
struct djn_model *djn_model_load_gguf(const char *path, struct djn_err *err);
struct djn_model *djn_model_load_hf(const char *dir, struct djn_err *err);

void djn_model_ref(struct djn_model *m);
/* Drops a reference; the last one frees the model. NULL is fine. */
void djn_model_unref(struct djn_model *m);

/* Names for `info` and scripts: "llama", "gpt2"; "llama2.c", "gguf", "hf". */
const char *djn_arch_name(enum djn_arch a);
const char *djn_format_name(enum djn_format f);

/* Convert every weight matrix to dtype t (f32, f16 or bf16; 1-D norm gains
 * and biases stay as they are), into buffers the model owns.  Quantized
 * sources are dequantized first.  Only before any session uses the model
 * (DJN_ERR_STATE otherwise).  On failure the model is unchanged. */
enum djn_status djn_model_cast(struct djn_model *m, enum djn_dtype t, struct djn_err *err);

/* Make every transposed weight (ld > 0: GPT-2's Conv1D kept as the file
 * stores it, which only the CPU backend computes from) row-major, each into
 * a buffer the model owns; the Text segment calls it before weights go to
 * any other backend or a ring.  Nothing to do costs nothing.  On failure
 * (DJN_ERR_NOMEM, naming the tensor and bytes) the weights done so far stay
 * row-major, the rest as they were: both layouts are valid. */
enum djn_status djn_model_weights_rowmajor(struct djn_model *m, struct djn_err *err);

/* The dtype of the KV cache of the model's sessions from now on: f32 (the
 * default, exact) or f16 (half the bytes, what f16 engines keep; k and v
 * rounded to nearest even when stored).  Only while no session of m is
 * alive (DJN_ERR_STATE otherwise: a batch holds one dtype); other dtypes
 * DJN_ERR_INVALID. */
enum djn_status djn_model_set_kv_dtype(struct djn_model *m, enum djn_dtype t,
				       struct djn_err *err);

/* --- for loaders --- */
struct djn_model *djn_model_alloc(enum djn_format fmt, const char *path);
/* Keep a mapping / a malloc'd buffer alive for the model's lifetime. */
void djn_model_own_map(struct djn_model *m, struct djn_mapping *map);
void *djn_model_own(struct djn_model *m, void *buf);
/* Check the config for consistency (positive sizes, divisibility); fills
 * head_dim when 0.  Message prefixed with `path`. */
enum djn_status djn_config_validate(struct djn_config *c, const char *path,
				    struct djn_err *err);
/* Check every weight the architecture needs is present with the right shape.
 * Message names the missing / misshapen tensor. */
enum djn_status djn_model_validate(const struct djn_model *m, struct djn_err *err);
/* Sum of weight bytes (what the Text segment must hold). */
size_t djn_model_weight_bytes(const struct djn_model *m);
/* Call fn on every weight of the model (output skipped when tied). */
void djn_model_for_each_weight(struct djn_model *m,
			       void (*fn)(struct djn_weight *w, void *ud), void *ud);

#endif
