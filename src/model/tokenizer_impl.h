/* tokenizer_impl.h - the tokenizer object's layout and helpers shared by its files (internal to src/model). */
#ifndef DJINN_MODEL_TOKENIZER_IMPL_H
#define DJINN_MODEL_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "djinn/status.h"
#include "djinn/tokenizer.h"

/* Longest piece accepted from any source: keeps concatenation buffers and
 * lengths in 32 bits with room to spare; real vocabularies stay under 256. */
#define DJN_TOK_MAX_PIECE (1u << 16)
/* Largest vocabulary accepted (GGUF vocabularies reach ~260k). */
#define DJN_TOK_MAX_VOCAB (1 << 24)
/* Largest tokenizer file read (tokenizer.json of a 256k vocabulary is ~20 MiB). */
#define DJN_TOK_MAX_FILE (1u << 30)

enum djn_tok_pre {
	DJN_TOK_PRE_GPT2,   /* the GPT-2 regex */
	DJN_TOK_PRE_SMOLLM, /* each \p{N} alone first, then the GPT-2 regex */
};

/* Open-addressing hash from piece bytes to id; slots hold id + 1 (0: empty)
 * so the table can be calloc'd. */
struct djn_tok_strmap {
	int32_t *slots;
	uint32_t mask;
};

/* Open-addressing hash from an id pair to a merge (BPE ranks). */
struct djn_tok_pair {
	uint64_t key; /* (a << 32 | b) + 1; 0: empty */
	int32_t rank;
	int32_t merged;
};

struct djn_tok_pairmap {
	struct djn_tok_pair *slots;
	uint32_t mask;
};

struct djn_tokenizer {
	enum djn_tok_kind kind;
	int n_vocab;
	int bos, eos; /* -1: none */
	int unk;      /* first UNKNOWN-typed token, -1: none */
	bool add_bos;

	/* Pieces as given, each also NUL-terminated: piece i is text + off[i]. */
	char *text;
	size_t *off;
	uint32_t *len;
	uint32_t max_len;
	int32_t *types;
	float *scores; /* SPM only */

	/* What each token prints as, precomputed so decode is a lookup and needs
	 * no per-thread buffer.  Never longer than the piece, so it shares off[]. */
	char *dtext;
	uint32_t *dlen;

	struct djn_tok_strmap map;
	/* SPM: id of "<0xXX>"; BPE: id of the byte's printable code point.  -1: none */
	int32_t byte_id[256];

	bool space_is_u2581; /* SPM */

	/* BPE */
	enum djn_tok_pre pre;
	struct djn_tok_pairmap pairs;
	int32_t *specials; /* CONTROL / USER_DEFINED ids, longest piece first */
	int n_specials;
	uint8_t special_first[32]; /* bitmap of the first bytes of specials */
};

/* Validate and copy what both kinds share (pieces, types, the piece hash);
 * the kind-specific fields are the caller's to fill.  `what` is the subject
 * of messages (a path, or "spm vocabulary").  NULL with *err set. */
struct djn_tokenizer *djn_tok_alloc(enum djn_tok_kind kind, const char *what, int n_vocab,
				    const char *const *pieces, const uint32_t *lens,
				    const int32_t *types, int bos_id, int eos_id,
				    struct djn_err *err);

static inline const char *djn_tok_str(const struct djn_tokenizer *tok, int id)
{
	return tok->text + tok->off[id];
}

/* Parse "<0xXX>" (as SentencePiece spells byte pieces); -1 if not one. */
int djn_tok_byte_piece(const char *s, size_t len);

/* Read a whole (small) file into a malloc'd buffer with a NUL after its
 * end; messages name the path. */
enum djn_status djn_tok_read_file(const char *path, uint8_t **buf, size_t *size,
				  struct djn_err *err);

/* Merge adjacent symbols by priority until no pair merges.  `pair` says
 * whether (a, b) merges, into which id and with what priority (higher first;
 * on ties, the leftmost pair).  Rewrites ids in place, returns the new count. */
typedef bool (*djn_tok_pair_fn)(const struct djn_tokenizer *tok, void *ctx, int32_t a,
				int32_t b, int32_t *merged, double *prio);
/* Scratch for djn_tok_merge, zero-initialised, grown as needed and reused
 * across the pre-tokens of one encode; djn_tok_merger_release frees it. */
struct djn_tok_merger {
	int32_t *prev, *next;
	void *heap;
	size_t cap, heap_cap;
};
int djn_tok_merge(const struct djn_tokenizer *tok, struct djn_tok_merger *m, int32_t *ids,
		  int n, djn_tok_pair_fn pair, void *ctx);
void djn_tok_merger_release(struct djn_tok_merger *m);

/* BPE: build from merges given as separate halves (tokenizer.json may spell
 * a merge as a [a, b] pair whose halves contain spaces). */
struct djn_tokenizer *djn_tok_bpe_build(const char *what, int n_vocab,
					const char *const *pieces, const uint32_t *lens,
					const int32_t *types, int n_merges,
					const char *const *left, const uint32_t *left_lens,
					const char *const *right, const uint32_t *right_lens,
					int bos_id, int eos_id, const char *pre,
					struct djn_err *err);
/* The ids of text, without BOS/EOS, into ids (room for len ids: a byte never
 * yields more than one). */
enum djn_status djn_tok_bpe_encode(const struct djn_tokenizer *tok, const char *text,
				   size_t len, int32_t *ids, int *n_ids, struct djn_err *err);

/* Split text (special tokens already cut out) into pre-tokens with the
 * regex family `pre`, calling fn on each; stops at fn's first error.  Not
 * static so that unit tests can check the splits directly. */
typedef enum djn_status (*djn_tok_piece_fn)(void *ctx, const char *s, size_t len);
enum djn_status djn_tok_bpe_pretokenize(enum djn_tok_pre pre, const char *text, size_t len,
					djn_tok_piece_fn fn, void *ctx);

#endif
