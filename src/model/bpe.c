/* bpe.c - GPT-2 byte-level BPE (temporary stub; the real one follows). */
#include "djinn/tokenizer.h"

struct djn_tokenizer *djn_tok_new_bpe(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const int32_t *types,
				      int n_merges, const char *const *merges,
				      const uint32_t *merge_lens, int bos_id, int eos_id,
				      const char *pre, struct djn_err *err)
{
	djn_err_set(err, DJN_ERR_UNSUPPORTED, "bpe tokenizer: not implemented yet");
	return NULL;
}
