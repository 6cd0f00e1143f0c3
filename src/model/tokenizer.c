/* tokenizer.c - the tokenizer object (temporary stubs; the real one follows). */
#include <stdlib.h>

#include "djinn/tokenizer.h"

struct djn_tokenizer {
	enum djn_tok_kind kind;
	int n_vocab, bos, eos;
	bool add_bos;
};

struct djn_tokenizer *djn_tok_new_spm(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const float *scores,
				      const int32_t *types, int bos_id, int eos_id,
				      bool space_is_u2581, struct djn_err *err)
{
	djn_err_set(err, DJN_ERR_UNSUPPORTED, "tokenizer: not implemented yet");
	return NULL;
}

struct djn_tokenizer *djn_tok_load_llama2c(const char *path, int n_vocab,
					   struct djn_err *err)
{
	djn_err_set(err, DJN_ERR_UNSUPPORTED, "%s: tokenizer not implemented yet", path);
	return NULL;
}

void djn_tok_free(struct djn_tokenizer *tok) { free(tok); }
enum djn_tok_kind djn_tok_kind(const struct djn_tokenizer *tok) { return tok->kind; }
int djn_tok_n_vocab(const struct djn_tokenizer *tok) { return tok->n_vocab; }
int djn_tok_bos(const struct djn_tokenizer *tok) { return tok->bos; }
int djn_tok_eos(const struct djn_tokenizer *tok) { return tok->eos; }
bool djn_tok_add_bos(const struct djn_tokenizer *tok) { return tok->add_bos; }
void djn_tok_set_add_bos(struct djn_tokenizer *tok, bool add_bos) { tok->add_bos = add_bos; }

enum djn_status djn_tok_encode(const struct djn_tokenizer *tok, const char *text,
			       size_t len, bool bos, bool eos, int32_t **ids,
			       int *n_ids, struct djn_err *err)
{
	return djn_err_set(err, DJN_ERR_UNSUPPORTED, "tokenizer: not implemented yet");
}

const char *djn_tok_decode(const struct djn_tokenizer *tok, int prev, int id, size_t *len)
{
	*len = 0;
	return "";
}

const char *djn_tok_piece(const struct djn_tokenizer *tok, int id, size_t *len)
{
	*len = 0;
	return "";
}

int djn_tok_find(const struct djn_tokenizer *tok, const char *piece, size_t len)
{
	return -1;
}
