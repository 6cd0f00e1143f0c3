/* mkmodel.h - synthetic Hugging Face model directories at real sizes.
 *
 * `djinn mkmodel` writes what transformers' save_pretrained would for a
 * Llama-2, Mistral or GPT-2 model, with seeded random weights instead of
 * trained ones: config.json, the safetensors weights (model.safetensors, or
 * model-0000i-of-0000N.safetensors shards with model.safetensors.index.json
 * once they pass the shard size), and a byte-level tokenizer.json (+
 * tokenizer_config.json) in which each byte of text is one token.  Real
 * weights of these sizes are out of reach of the test machines; these let
 * djinn and transformers be compared, and timed, on the same directory.
 *
 * Weights.  Every element is a function of (seed, tensor name, index) only,
 * so the bytes do not depend on the number of threads or on the shard size:
 * matrices are normal(0, 0.02) (a sum of four uniforms, bounded at 3.5
 * sigma), norm gains 1, biases 0 -- the initialisation transformers itself
 * uses -- except Llama's input embeddings, normal(0, 1), so that the token
 * still shows in the last hidden state after 32 random layers and greedy
 * decoding does not repeat one token.  Activations stay finite in f16 and
 * logits spread out (std ~1.3 for llama-2-7b).  Tensor names and layouts are the Hub's:
 * Linear weights [out, in]; GPT-2's Conv1D weights [in, out], unprefixed
 * ("h.0.attn.c_attn.weight"), tied embeddings (no lm_head.weight).
 *
 * Files are written by several threads with large pwrite()s (disk speed);
 * config.json is written last, so an interrupted run never leaves a
 * directory that looks loadable.  On failure the files written so far are
 * removed.
 */
#ifndef DJINN_MKMODEL_H
#define DJINN_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "djinn/status.h"
#include "djinn/tensor.h"

struct djn_mkmodel_opts {
	const char *shape;    /* a name from djn_mkmodel_shape_name() */
	enum djn_dtype dtype; /* F16, BF16 or F32 */
	uint64_t seed;
	const char *out_dir;  /* created if absent (its parent must exist) */
	bool force;           /* write into a non-empty out_dir, replacing our files */
	int n_threads;        /* 0: online CPUs, at most 16 */
	uint64_t shard_bytes; /* 0: 5e9 (save_pretrained's "5GB") */
	bool progress;        /* a one-line progress meter on stderr */
};

/* Write the model.  Errors (message in *err): DJN_ERR_INVALID for an unknown
 * shape or a dtype other than F16/BF16/F32; DJN_ERR_STATE when out_dir is
 * not empty and !force; DJN_ERR_IO for a directory or file that cannot be
 * made or written, or too little free space (needed and free bytes named);
 * DJN_ERR_NOMEM for buffers. */
enum djn_status djn_mkmodel(const struct djn_mkmodel_opts *o, struct djn_err *err);

/* Shape names for i = 0, 1, ...; NULL past the end. */
const char *djn_mkmodel_shape_name(int i);

/* Bytes of weights the shape has in dtype (the index's total_size); 0 for an
 * unknown shape or dtype. */
uint64_t djn_mkmodel_weight_bytes(const char *shape, enum djn_dtype dtype);

/* `djinn mkmodel --shape S [--dtype T] [--seed N] [--force] [--threads N]
 * [--shard-size BYTES] OUT_DIR`.  argv[0] is "mkmodel".  Returns the exit
 * status: 0 ok, 1 failure, 2 bad usage. */
int djn_mkmodel_main(int argc, char **argv);

#endif
