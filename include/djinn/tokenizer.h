/* tokenizer.h - text <-> token ids.
 *
 * Two families:
 *  - SentencePiece-style BPE with scores (llama2.c tokenizer.bin, GGUF
 *    tokenizer.ggml.model = "llama"): pieces use U+2581 or ' ' for space and
 *    <0xXX> byte fallback; merges pick the highest-scoring pair.
 *  - Byte-level BPE with ranked merges and the GPT-2 pre-tokenizer
 *    (tokenizer.json, GGUF tokenizer.ggml.model = "gpt2"): bytes map to
 *    printable code points, merges apply by rank within each pre-token.
 *
 * A tokenizer is immutable after construction and may be shared by sessions.
 */
#ifndef DJINN_TOKENIZER_H
#define DJINN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/status.h"

struct djn_tokenizer;

enum djn_tok_kind {
	DJN_TOK_SPM, /* SentencePiece-style BPE with scores */
	DJN_TOK_BPE, /* GPT-2 byte-level BPE */
};

/* Token types, as in GGUF tokenizer.ggml.token_type. */
enum djn_tok_type {
	DJN_TOKT_NORMAL = 1,
	DJN_TOKT_UNKNOWN = 2,
	DJN_TOKT_CONTROL = 3,
	DJN_TOKT_USER_DEFINED = 4,
	DJN_TOKT_UNUSED = 5,
	DJN_TOKT_BYTE = 6,
};

/* Build a SentencePiece-style tokenizer.  pieces[i] has lens[i] bytes (not
 * NUL-terminated necessarily); scores and types may be NULL (types default to
 * NORMAL, with <0xXX> pieces detected as BYTE).  `space_is_u2581`: pieces
 * spell space as U+2581 (GGUF) rather than ' ' (llama2.c).  Copies
 * everything.  Returns NULL with *err set. */
struct djn_tokenizer *djn_tok_new_spm(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const float *scores,
				      const int32_t *types, int bos_id, int eos_id,
				      bool space_is_u2581, struct djn_err *err);

/* Build a GPT-2 byte-level BPE tokenizer: vocab pieces in the byte-to-unicode
 * encoding, merges as "a b" strings in rank order.  types may be NULL.
 * Control / user-defined tokens are matched literally in the text before
 * pre-tokenization.  `pre` names the pre-tokenizer regex family: "gpt2"
 * (default when NULL) or "llama3"/"smollm" variants where supported.
 * Copies everything.  Returns NULL with *err set. */
struct djn_tokenizer *djn_tok_new_bpe(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const int32_t *types,
				      int n_merges, const char *const *merges,
				      const uint32_t *merge_lens, int bos_id, int eos_id,
				      const char *pre, struct djn_err *err);

/* llama2.c tokenizer.bin: int32 max_token_length, then n_vocab records of
 * (f32 score, int32 len, bytes).  n_vocab comes from the model header. */
struct djn_tokenizer *djn_tok_load_llama2c(const char *path, int n_vocab,
					   struct djn_err *err);
/* Hugging Face tokenizer.json (BPE model only). */
struct djn_tokenizer *djn_tok_load_hf_json(const char *path, struct djn_err *err);

void djn_tok_free(struct djn_tokenizer *tok);

enum djn_tok_kind djn_tok_kind(const struct djn_tokenizer *tok);
int djn_tok_n_vocab(const struct djn_tokenizer *tok);
int djn_tok_bos(const struct djn_tokenizer *tok); /* -1 if none */
int djn_tok_eos(const struct djn_tokenizer *tok); /* -1 if none */
/* Add a BOS when encoding by default (GGUF tokenizer.ggml.add_bos_token). */
bool djn_tok_add_bos(const struct djn_tokenizer *tok);
void djn_tok_set_add_bos(struct djn_tokenizer *tok, bool add_bos);

/* Encode text (UTF-8, len bytes) into a malloc'd id array (caller frees).
 * bos/eos: prepend BOS / append EOS.  On success *ids, *n_ids are set. */
enum djn_status djn_tok_encode(const struct djn_tokenizer *tok, const char *text,
			       size_t len, bool bos, bool eos, int32_t **ids,
			       int *n_ids, struct djn_err *err);

/* The bytes token `id` prints as, given the previous token (SentencePiece
 * drops the leading space after BOS, as llama2.c does; <0xXX> gives the byte;
 * byte-level BPE maps back to raw bytes).  *len gets the byte count; the
 * pointer lives until the next call on tok from this thread (thread-local
 * buffer) or as long as tok.  Control tokens decode to "" */
const char *djn_tok_decode(const struct djn_tokenizer *tok, int prev, int id, size_t *len);

/* The raw vocabulary piece of id (as stored), for `info` and `--top`. */
const char *djn_tok_piece(const struct djn_tokenizer *tok, int id, size_t *len);
/* Id of an exact piece, or -1. */
int djn_tok_find(const struct djn_tokenizer *tok, const char *piece, size_t len);

#endif
