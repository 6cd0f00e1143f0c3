/* tokenizer_json.c - Hugging Face tokenizer.json loader (temporary stub). */
#include "djinn/tokenizer.h"

struct djn_tokenizer *djn_tok_load_hf_json(const char *path, struct djn_err *err)
{
	djn_err_set(err, DJN_ERR_UNSUPPORTED, "%s: tokenizer.json not implemented yet", path);
	return NULL;
}
