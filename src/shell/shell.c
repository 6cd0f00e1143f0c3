/* shell.c - the shell object: what it holds (backend, model, sessions,
 * settings, value history) and the lookups every command family uses. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/sched.h"
#include "shell/shell_impl.h"

struct djn_shell *djn_shell_new(FILE *out, FILE *err)
{
	struct djn_shell *sh = djn_xcalloc(1, sizeof(*sh));

	sh->out = out ? out : stdout;
	sh->err = err ? err : stderr;
	sh->precision = 4;
	sh->elements = 16;
	sh->confirm = true;
	sh->next_disp = 1;
	sh->device = djn_xstrdup("auto");
	return sh;
}

void sh_session_release(struct sh_session *ss)
{
	for (int i = 0; i < ss->n_bps; i++) {
		for (int k = 0; k < ss->bps[i].n_cmds; k++)
			free(ss->bps[i].cmds[k]);
		free(ss->bps[i].cmds);
	}
	free(ss->bps);
	free(ss->prompt);
	if (ss->sched)
		djn_sched_remove(ss->sched, ss->s);
	djn_session_free(ss->s);
	free(ss->name);
	memset(ss, 0, sizeof(*ss));
}

void djn_shell_free(struct djn_shell *sh)
{
	if (!sh)
		return;
	sh_lua_free(sh); /* first: it borrows the sessions and the model */
	sh_remote_close(sh);
	sh_block_begin(sh, SH_BLOCK_NONE, NULL, 0);
	for (int i = 0; i < sh->n_sess; i++)
		sh_session_release(&sh->sess[i]);
	sh_sched_free(sh);
	free(sh->sess);
	djn_model_unref(sh->m);
	sh_models_free(sh);
	if (!sh->be_shared)
		djn_backend_free(sh->be);
	free(sh->device);
	sh_value_history_clear(sh);
	for (int i = 0; i < sh->n_disp; i++) {
		for (int k = 0; k < sh->disp[i].argc; k++)
			free(sh->disp[i].argv[k]);
		free(sh->disp[i].argv);
	}
	free(sh->disp);
	for (int i = 0; i < sh->n_pending; i++)
		free(sh->pending[i]);
	free(sh->pending);
	free(sh->text);
	free(sh->gen);
	cJSON_Delete(sh->res);
	free(sh);
}

struct sh_session *sh_cur(struct djn_shell *sh)
{
	return sh->n_sess ? &sh->sess[sh->cur] : NULL;
}

struct djn_session *sh_s(struct djn_shell *sh)
{
	return sh->n_sess ? sh->sess[sh->cur].s : NULL;
}

struct sh_bp *sh_bp_find(struct sh_session *ss, int id)
{
	for (int i = 0; i < ss->n_bps; i++)
		if (ss->bps[i].id == id)
			return &ss->bps[i];
	return NULL;
}

void sh_bp_forget(struct sh_session *ss, int id)
{
	for (int i = 0; i < ss->n_bps; i++) {
		if (ss->bps[i].id != id)
			continue;
		for (int k = 0; k < ss->bps[i].n_cmds; k++)
			free(ss->bps[i].cmds[k]);
		free(ss->bps[i].cmds);
		ss->bps[i] = ss->bps[--ss->n_bps];
		return;
	}
}

const char *sh_raw(const struct djn_shell *sh, int i)
{
	return sh->line + sh->off[sh->arg0 + i];
}

bool sh_files_ok(struct djn_shell *sh)
{
	if (sh->sandbox) {
		sh_fail(sh, "files are off in this shell");
		return false;
	}
	if (sh->host) {
		sh_fail(sh, "files are off on a remote target (the client's files travel "
			    "with print --save and steer's FILE.npy)");
		return false;
	}
	return true;
}

/* Text and JSON say the same: the engine's one explanation, and where to
 * look when it names no site itself. */
static void no_site(struct djn_shell *sh, const char *what, const char *name)
{
	char why[256];
	bool named = djn_site_why(&sh->m->cfg, name, why, sizeof(why));

	sh_fail(sh, "%s '%s'; %s%s", what, name, why, named ? "" : " (see \"info sites\")");
}

int sh_site_arg(struct djn_shell *sh, const char *name)
{
	const struct djn_config *c = &sh->m->cfg;
	int site = djn_site_find(c, name);

	if (site >= 0)
		return site;
	if (strpbrk(name, "*-") && djn_site_pattern_valid(c, name)) {
		sh_fail(sh, "'%s' is a pattern; name one site here", name);
		return -1;
	}
	no_site(sh, "no site", name);
	return -1;
}

bool sh_pattern_arg(struct djn_shell *sh, const char *pattern)
{
	const struct djn_config *c = &sh->m->cfg;

	if (djn_site_pattern_valid(c, pattern))
		return true;
	if (!strpbrk(pattern, "*-")) {
		sh_site_arg(sh, pattern);
		return false;
	}
	no_site(sh, "no site matches", pattern);
	return false;
}

void sh_token_str(struct djn_shell *sh, int prev, int id, char *buf, size_t n)
{
	struct djn_tokenizer *tok = sh->m ? sh->m->tok : NULL;
	const char *p;
	size_t len = 0;

	if (!tok || id < 0 || id >= djn_tok_n_vocab(tok)) {
		snprintf(buf, n, "#%d", id);
		return;
	}
	p = djn_tok_decode(tok, prev, id, &len);
	if (!len)
		p = djn_tok_piece(tok, id, &len);
	sh_escape(p, len, buf, n);
}

void sh_cursor_str(struct djn_shell *sh, struct djn_session *s, char *buf, size_t n)
{
	struct djn_cursor cur = djn_session_cursor(s);
	const int32_t *toks;
	int n_total;
	char site[40], tok[96];

	toks = djn_session_tokens(s, &n_total, NULL);
	if (cur.site < 0)
		snprintf(site, sizeof(site), "before embed");
	else
		djn_site_name(&sh->m->cfg, cur.site, site, sizeof(site));
	if (cur.n_rows > 1) {
		snprintf(buf, n, "%s at pos %d..%d (prompt, %d tokens)", site, cur.pos,
			 cur.pos + cur.n_rows - 1, cur.n_rows);
		return;
	}
	if (cur.pos < n_total) {
		sh_token_str(sh, cur.pos ? toks[cur.pos - 1] : -1, toks[cur.pos], tok, sizeof(tok));
		snprintf(buf, n, "%s at pos %d (token \"%s\")", site, cur.pos, tok);
	} else {
		snprintf(buf, n, "%s at pos %d", site, cur.pos);
	}
}

cJSON *sh_cursor_json(struct djn_shell *sh, struct djn_session *s)
{
	struct djn_cursor cur = djn_session_cursor(s);
	cJSON *o = cJSON_CreateObject();
	const int32_t *toks;
	int n_total;
	char site[40];

	toks = djn_session_tokens(s, &n_total, NULL);
	if (cur.site >= 0)
		djn_site_name(&sh->m->cfg, cur.site, site, sizeof(site));
	cJSON_AddNumberToObject(o, "pos", cur.pos);
	cJSON_AddNumberToObject(o, "n_rows", cur.n_rows);
	cJSON_AddItemToObject(o, "site", cur.site >= 0 ? cJSON_CreateString(site) : cJSON_CreateNull());
	cJSON_AddNumberToObject(o, "layer", cur.layer);
	if (cur.pos + cur.n_rows - 1 < n_total && cur.n_rows > 0) {
		int at = cur.pos + cur.n_rows - 1;
		size_t len = 0;
		const char *p = "";
		cJSON_AddNumberToObject(o, "token", toks[at]);
		if (sh->m->tok && toks[at] >= 0 && toks[at] < djn_tok_n_vocab(sh->m->tok))
			p = djn_tok_decode(sh->m->tok, at ? toks[at - 1] : -1, toks[at], &len);
		char *piece = djn_xmalloc(len + 1);
		memcpy(piece, p, len);
		piece[len] = '\0';
		cJSON_AddStringToObject(o, "piece", piece);
		free(piece);
	}
	return o;
}
