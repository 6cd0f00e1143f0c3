/* generate.c - plain text generation over a session (djinn generate). */
#include <stdlib.h>
#include <string.h>

#include "exec/session_impl.h"

enum djn_status djn_generate(struct djn_session *s, const char *prompt,
			     const struct djn_gen_opts *g, djn_token_fn on_token, void *ud)
{
	struct djn_tokenizer *tok = s->m->tok;
	int32_t *ids = NULL;
	int n = 0;
	enum djn_status st;
	enum djn_stop why;

	if (!tok)
		return djn_session_fail(s, DJN_ERR_STATE, "%s: the model has no tokenizer",
					s->m->name);
	st = djn_tok_encode(tok, prompt, strlen(prompt), djn_tok_add_bos(tok), false, &ids, &n,
			    &s->err);
	if (st)
		return st;
	if (n == 0) { /* a tokenizer that adds no BOS, and an empty prompt */
		free(ids);
		return djn_session_fail(s, DJN_ERR_INVALID,
					"the prompt is empty and the tokenizer adds no BOS");
	}
	st = djn_session_start(s, ids, n, g);
	free(ids);
	if (st)
		return st;
	djn_session_on_token(s, on_token, ud);
	do
		why = djn_session_run(s, DJN_RUN_CONTINUE, 1);
	while (why == DJN_STOP_BREAKPOINT || why == DJN_STOP_WATCHPOINT);
	djn_session_on_token(s, NULL, NULL);
	return why == DJN_STOP_ERROR ? s->err.code : DJN_OK;
}
