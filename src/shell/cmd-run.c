/* cmd-run.c - running the program: run, start, continue, step, next,
 * finish, until, advance, kill; and how a stop is reported. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

struct djn_session *volatile djn_shell_running;
volatile sig_atomic_t djn_shell_sigint;

/* ---------------------------------------------------------- streaming */

/* Print a piece as llama2.c's safe_printf does: a lone unprintable byte (a
 * byte token of a partial character) is dropped. */
static void stream_piece(struct djn_shell *sh, const char *p, size_t n)
{
	if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0])))
		return;
	sh_stream(sh, p, n);
}

static void on_token(struct djn_session *s, int32_t id, void *ud)
{
	struct djn_shell *sh = ud;
	int n_total;
	const int32_t *t = djn_session_tokens(s, &n_total, NULL);
	size_t n = 0;
	const char *p = djn_tok_decode(sh->m->tok, t[n_total - 2], id, &n);

	stream_piece(sh, p, n);
}

/* ------------------------------------------------------- stop reports */

static void queue_commands(struct djn_shell *sh, const struct sh_bp *bp)
{
	for (int i = 0; i < sh->n_pending; i++)
		free(sh->pending[i]);
	free(sh->pending);
	sh->pending = NULL;
	sh->n_pending = 0;
	if (!bp || !bp->n_cmds)
		return;
	sh->pending = djn_xcalloc((size_t)bp->n_cmds, sizeof(char *));
	for (int i = 0; i < bp->n_cmds; i++)
		sh->pending[i] = djn_xstrdup(bp->cmds[i]);
	sh->n_pending = bp->n_cmds;
}

static const char *cond_of(struct djn_session *s, int id)
{
	struct djn_bp_info bi;

	for (int i = 0; djn_bp_get(s, i, &bi); i++)
		if (bi.id == id)
			return bi.cond;
	return NULL;
}

static enum djn_cmd_ret report_stop(struct djn_shell *sh, enum djn_stop why)
{
	struct sh_session *ss = sh_cur(sh);
	struct djn_session *s = ss->s;
	char where[256];
	cJSON *stop = cJSON_CreateObject();
	const char *reason = "step";
	int id = 0;

	if (why == DJN_STOP_ERROR) {
		cJSON_Delete(stop);
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	}
	sh_cursor_str(sh, s, where, sizeof(where));
	switch (why) {
	case DJN_STOP_BREAKPOINT:
	case DJN_STOP_WATCHPOINT: {
		struct sh_bp *bp;
		id = djn_session_last_hit(s);
		bp = sh_bp_find(ss, id);
		reason = why == DJN_STOP_WATCHPOINT ? "watchpoint" : "breakpoint";
		if (id == sh->advance_bp) {
			reason = "step";
			sh_printf(sh, "%s\n", where);
			break;
		}
		bool silent = bp && bp->n_cmds && !strcmp(bp->cmds[0], "silent");
		if (!silent) {
			if (why == DJN_STOP_WATCHPOINT)
				sh_printf(sh, "Watchpoint %d (%s), %s\n", id, cond_of(s, id), where);
			else
				sh_printf(sh, "%s %d, %s\n",
					  bp && bp->temporary ? "Temporary breakpoint" : "Breakpoint", id,
					  where);
		}
		queue_commands(sh, bp);
		if (bp && bp->temporary)
			sh_bp_forget(ss, id);
		break;
	}
	case DJN_STOP_DONE: {
		int n_total, n_prompt;
		djn_session_tokens(s, &n_total, &n_prompt);
		reason = "done";
		sh_printf(sh, "[Run finished: %d token%s generated]\n", n_total - n_prompt,
			  n_total - n_prompt == 1 ? "" : "s");
		break;
	}
	case DJN_STOP_INTERRUPT:
		reason = "interrupt";
		sh_printf(sh, "\nProgram received signal SIGINT, Interrupt.\n%s\n", where);
		break;
	default:
		sh_printf(sh, "%s\n", where);
		break;
	}
	cJSON_AddStringToObject(stop, "reason", reason);
	if (id)
		cJSON_AddNumberToObject(stop, "id", id);
	cJSON_AddItemToObject(stop, "cursor", sh_cursor_json(sh, s));
	sh_json_add(sh, "stop", stop);
	if (why != DJN_STOP_DONE)
		sh_displays_show(sh);
	return DJN_CMD_OK;
}

enum djn_cmd_ret sh_run(struct djn_shell *sh, enum djn_run_mode mode, long count, bool single)
{
	struct djn_session *s = sh_s(sh);
	enum djn_stop why = DJN_STOP_STEP;

	if (sh->run_budget) { /* it stays at 1 once spent */
		if (sh->run_budget == 1)
			return sh_fail(sh, "out of run budget");
		sh->run_budget--;
	}
	if (single && sh->sandbox && count > 4096)
		count = 4096;

	/* Every way of moving on streams: a step or finish from logits samples
	 * the next token too, and nothing later prints it (the next continue
	 * streams from the token after). */
	if (sh->m->tok)
		djn_session_on_token(s, on_token, sh);
	if (single) {
		for (long i = 0; i < count && why == DJN_STOP_STEP; i++) {
			if (djn_shell_sigint) { /* Ctrl-C between two steps */
				why = DJN_STOP_INTERRUPT;
				break;
			}
			djn_shell_running = s;
			why = djn_session_run(s, mode, 1);
			djn_shell_running = NULL;
		}
	} else {
		djn_shell_running = s;
		why = djn_session_run(s, mode, count);
		djn_shell_running = NULL;
	}
	djn_session_on_token(s, NULL, NULL);
	sh->resumed = true;
	return report_stop(sh, why);
}

/* ----------------------------------------------------------- commands */

static enum djn_cmd_ret parse_run_args(struct djn_shell *sh, int argc, char **argv,
				       char **prompt, struct djn_gen_opts *g)
{
	struct sh_session *ss = sh_cur(sh);
	size_t len = 1;
	char *p;
	int n_words = 0;

	*g = ss->have_gen ? ss->gen
			  : (struct djn_gen_opts){ .n_new = 256, .temperature = 0, .top_p = 1,
						   .seed = 0, .stop_at_eos = true };
	for (int i = 1; i < argc; i++)
		len += strlen(argv[i]) + 1;
	p = *prompt = djn_xcalloc(1, len);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		long n;
		float f;
		if (!strcmp(a, "-n") || !strcmp(a, "-t") || !strcmp(a, "--seed") ||
		    !strcmp(a, "--top-p")) {
			if (!v)
				goto needs_value;
			i++;
			if (!strcmp(a, "-n")) {
				if (!sh_parse_long(v, 0, 1 << 24, &n))
					goto bad_value;
				g->n_new = (int)n;
			} else if (!strcmp(a, "-t")) {
				if (!sh_parse_float(v, &f) || f < 0)
					goto bad_value;
				g->temperature = f;
			} else if (!strcmp(a, "--seed")) {
				char *end;
				if (!isdigit((unsigned char)*v))
					goto bad_value;
				g->seed = strtoull(v, &end, 10);
				if (*end)
					goto bad_value;
			} else {
				if (!sh_parse_float(v, &f) || f < 0 || f > 1)
					goto bad_value;
				g->top_p = f;
			}
			continue;
needs_value:
			sh_fail(sh, "%s: option '%s' needs a value", argv[0], a);
			goto fail;
bad_value:
			sh_fail(sh, "%s: bad value '%s' for %s", argv[0], v, a);
			goto fail;
		}
		if (a[0] == '-' && a[1] == '-') {
			sh_fail(sh, "%s: unknown option '%s'", argv[0], a);
			goto fail;
		}
		p += sprintf(p, "%s%s", n_words++ ? " " : "", a);
	}
	if (!n_words && ss->prompt) {
		free(*prompt);
		*prompt = djn_xstrdup(ss->prompt);
	}
	if (sh->sandbox && (g->n_new <= 0 || g->n_new > 8))
		g->n_new = 8;
	return DJN_CMD_OK;
fail:
	free(*prompt);
	*prompt = NULL;
	return DJN_CMD_FAIL;
}

/* Begin a run (start and run share this); echo the prompt when asked. */
static enum djn_cmd_ret begin(struct djn_shell *sh, int argc, char **argv, bool echo)
{
	struct sh_session *ss = sh_cur(sh);
	struct djn_tokenizer *tok = sh->m->tok;
	struct djn_gen_opts g;
	struct djn_err err = { 0 };
	char *prompt;
	int32_t *ids = NULL;
	int n = 0;
	enum djn_cmd_ret ret;

	if (!tok)
		return sh_fail(sh, "%s: the model has no tokenizer (load it with --tokenizer FILE)",
			       argv[0]);
	if ((ret = parse_run_args(sh, argc, argv, &prompt, &g)))
		return ret;
	if (djn_session_state(ss->s) == DJN_RUN_PAUSED &&
	    !sh_query(sh, "The program being debugged has been started already.\n"
			  "Start it from the beginning? ")) {
		free(prompt);
		return sh_fail(sh, "Program not restarted.");
	}
	if (djn_tok_encode(tok, prompt, strlen(prompt), djn_tok_add_bos(tok), false, &ids, &n,
			   &err)) {
		free(prompt);
		return sh_fail(sh, "%s: %s", argv[0], err.msg);
	}
	if (n == 0 || djn_session_start(ss->s, ids, n, &g)) {
		free(ids);
		free(prompt);
		return n == 0 ? sh_fail(sh, "%s: the prompt is empty and the tokenizer adds no BOS",
					argv[0])
			      : sh_fail(sh, "%s: %s", argv[0], djn_session_errmsg(ss->s));
	}
	free(ss->prompt);
	ss->prompt = prompt;
	ss->gen = g;
	ss->have_gen = true;
	sh_json_num(sh, "prompt_tokens", n);
	for (int i = 1; i < argc - 1; i++) { /* an -n asked for that the context cannot hold */
		int ctx = sh->m->cfg.seq_len;
		if (!strcmp(argv[i], "-n") && g.n_new > ctx - n) {
			sh_printf(sh, "warning: -n %d is past the context: %d tokens, %d of them the "
				      "prompt; the run stops after %d\n", g.n_new, ctx, n, ctx - n);
			break;
		}
	}
	if (echo) {
		for (int i = 0; i < n; i++) {
			size_t len;
			const char *p;
			if (i == 0 && ids[0] == djn_tok_bos(tok))
				continue;
			p = djn_tok_decode(tok, i ? ids[i - 1] : -1, ids[i], &len);
			stream_piece(sh, p, len);
		}
	}
	free(ids);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_run)
{
	enum djn_cmd_ret ret = begin(sh, argc, argv, !sh->json);

	return ret ? ret : sh_run(sh, DJN_RUN_CONTINUE, 1, false);
}

DJN_CMD_FN(cmd_start)
{
	char where[256];
	enum djn_cmd_ret ret = begin(sh, argc, argv, false);

	if (ret)
		return ret;
	sh_cursor_str(sh, sh_s(sh), where, sizeof(where));
	sh_printf(sh, "Started: %s\n", where);
	sh_json_add(sh, "cursor", sh_cursor_json(sh, sh_s(sh)));
	return DJN_CMD_OK;
}

static bool count_arg(struct djn_shell *sh, int argc, char **argv, long *n)
{
	*n = 1;
	if (argc < 2)
		return true;
	if (!sh_parse_long(argv[1], 1, 1L << 40, n)) {
		sh_fail(sh, "%s: bad count '%s' (a positive number)", argv[0], argv[1]);
		return false;
	}
	return true;
}

DJN_CMD_FN(cmd_continue)
{
	struct djn_session *s = sh_s(sh);
	long n;
	int id = djn_session_last_hit(s);
	bool exists = false;
	struct djn_bp_info bi;

	if (!count_arg(sh, argc, argv, &n))
		return DJN_CMD_FAIL;
	for (int i = 0; id && djn_bp_get(s, i, &bi); i++)
		exists |= bi.id == id && id != sh->advance_bp;
	if (argc >= 2) {
		if (exists) {
			djn_bp_ignore(s, id, n - 1);
			sh_printf(sh, "Will ignore next %ld crossings of breakpoint %d.  Continuing.\n",
				  n - 1, id);
		} else {
			sh_printf(sh, "Not stopped at any breakpoint; argument ignored.\n");
		}
	}
	return sh_run(sh, DJN_RUN_CONTINUE, 1, false);
}

DJN_CMD_FN(cmd_step)
{
	long n;

	return count_arg(sh, argc, argv, &n) ? sh_run(sh, DJN_RUN_STEP, n, true) : DJN_CMD_FAIL;
}

DJN_CMD_FN(cmd_next)
{
	long n;

	return count_arg(sh, argc, argv, &n) ? sh_run(sh, DJN_RUN_NEXT, n, true) : DJN_CMD_FAIL;
}

DJN_CMD_FN(cmd_finish)
{
	return sh_run(sh, DJN_RUN_FINISH, 1, false);
}

DJN_CMD_FN(cmd_until)
{
	long pos;

	if (!sh_parse_long(argv[1], 0, sh->m->cfg.seq_len, &pos))
		return sh_fail(sh, "until: bad position '%s' (0..%d)", argv[1], sh->m->cfg.seq_len);
	return sh_run(sh, DJN_RUN_UNTIL_POS, pos, false);
}

DJN_CMD_FN(cmd_advance)
{
	struct djn_session *s = sh_s(sh);
	enum djn_cmd_ret ret;
	struct djn_bp_info bi;
	int id;

	if (!sh_pattern_arg(sh, argv[1]))
		return DJN_CMD_FAIL;
	if ((id = djn_bp_add(s, argv[1], NULL, true)) < 0)
		return sh_fail(sh, "advance: %s", djn_session_errmsg(s));
	sh->advance_bp = id;
	ret = sh_run(sh, DJN_RUN_CONTINUE, 1, false);
	for (int i = 0; djn_bp_get(s, i, &bi); i++) {
		if (bi.id == id) {
			djn_bp_delete(s, id);
			break;
		}
	}
	sh->advance_bp = 0;
	return ret;
}

DJN_CMD_FN(cmd_kill)
{
	djn_session_kill(sh_s(sh));
	sh_printf(sh, "[Run killed]\n");
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_text)
{
	struct djn_session *s = sh_s(sh);
	int n_total, n_prompt;
	const int32_t *t = djn_session_tokens(s, &n_total, &n_prompt);
	size_t glen, plen = 0, cap = 64;
	const char *gen = djn_session_text(s, &glen);
	char *prompt = djn_xmalloc(cap);

	for (int i = 0; i < n_prompt; i++) {
		size_t len = 0;
		if (i == 0 && t[0] == djn_tok_bos(sh->m->tok))
			continue;
		const char *p = djn_tok_decode(sh->m->tok, i ? t[i - 1] : -1, t[i], &len);
		if (plen + len + 1 > cap) {
			cap = (plen + len + 1) * 2;
			prompt = djn_xrealloc(prompt, cap);
		}
		memcpy(prompt + plen, p, len);
		plen += len;
	}
	prompt[plen] = '\0';
	sh_write(sh, prompt, plen);
	sh_write(sh, gen, glen);
	sh_write(sh, "\n", 1);
	sh_json_str(sh, "prompt", prompt);
	sh_json_str(sh, "generated", gen);
	sh_json_num(sh, "n_tokens", n_total);
	sh_json_num(sh, "n_prompt", n_prompt);
	free(prompt);
	return DJN_CMD_OK;
}
