/* hf.h - Hugging Face model directories (internal to src/model; the public
 * entry point is djn_model_load_hf in djinn/model.h).
 */
#ifndef DJINN_MODEL_HF_H
#define DJINN_MODEL_HF_H

#include <stddef.h>

#include "djinn/model.h"
#include "djinn/status.h"

/* Parse the text of a config.json (len bytes, need not be NUL-terminated)
 * into *out and check it with djn_config_validate.  `path` is the name used
 * in messages.  Errors: DJN_ERR_FORMAT for malformed JSON, a missing field
 * or a field of the wrong type ("PATH: field 'hidden_size' must be an
 * integer, got string"); DJN_ERR_UNSUPPORTED for an architecture or a
 * setting we do not implement (rope scaling, another activation). */
enum djn_status djn_hf_parse_config(const char *json, size_t len, const char *path,
				    struct djn_config *out, struct djn_err *err);

#endif
