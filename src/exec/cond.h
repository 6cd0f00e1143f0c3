/* cond.h - breakpoint / watchpoint conditions (internal to src/exec).
 * The grammar is documented at djn_cond_parse in djinn/djinn.h. */
#ifndef DJINN_EXEC_COND_H
#define DJINN_EXEC_COND_H

#include <stdbool.h>

#include "djinn/djinn.h"

/* What a condition can read at a stop.  `st` is the statistics of the site's
 * tensor (last row of the chunk: the token being computed); it is computed
 * only when djn_cond_needs_stats() says so, else NULL. */
struct djn_cond_env {
	const struct djn_stats *st;
	int pos;   /* position of the last row of the chunk */
	int layer; /* -1 outside layers */
	int token; /* id of the last token fed in */
};

/* djn_cond_parse with a tokenizer for `token == "text"` (the text a stop
 * report prints for the token, " little"); tok NULL: texts are an error. */
struct djn_cond *djn_cond_parse_tok(const char *text, const struct djn_tokenizer *tok,
				    struct djn_err *err);
bool djn_cond_needs_stats(const struct djn_cond *c);
bool djn_cond_eval(const struct djn_cond *c, const struct djn_cond_env *env);
/* The text it was parsed from. */
const char *djn_cond_text(const struct djn_cond *c);

#endif
