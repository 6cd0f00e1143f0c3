/* cmd-lens.c - what the model would say: the logit lens at any residual
 * site, and the tokens text splits into (tokenize, detokenize). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

#define LENS_TOP_DEFAULT 5

/* ------------------------------------------------------------- lens */

DJN_CMD_FN(cmd_lens)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	struct djn_cursor cur = djn_session_cursor(s);
	const char *what = NULL, *slice = NULL;
	char site_buf[64], name[64], label[128], where[48], err[256], tok[96];
	struct djn_slice sl = { 0 };
	long top = LENS_TOP_DEFAULT;
	int site, rows, cols, r0, r1, c0, c1, nr, V = c->vocab_size, n_tokens, id;
	const int32_t *tokens = djn_session_tokens(s, &n_tokens, NULL);
	float *out;
	cJSON *arr;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--top")) {
			if (i + 1 >= argc)
				return sh_fail(sh, "lens: option '--top' needs a value");
			if (!sh_parse_long(argv[++i], 1, 1 << 20, &top))
				return sh_fail(sh, "lens: bad value '%s' for --top (a positive number)",
					       argv[i]);
		} else if (a[0] == '-' && a[1] == '-') {
			return sh_fail(sh, "lens: unknown option '%s'", a);
		} else if (a[0] == '[' && !slice) {
			slice = a;
		} else if (!what && a[0] != '[') {
			const char *br = strchr(a, '[');
			snprintf(site_buf, sizeof(site_buf), "%.*s",
				 (int)(br ? br - a : (ptrdiff_t)strlen(a)), a);
			what = site_buf;
			if (br && slice)
				return sh_fail(sh, "lens: one slice at a time");
			if (br)
				slice = br;
		} else {
			return sh_fail(sh, "lens: unexpected '%s'", a);
		}
	}
	if (what) {
		if ((site = sh_site_arg(sh, what)) < 0)
			return DJN_CMD_FAIL;
	} else if ((site = cur.site) < 0) {
		return sh_fail(sh, "lens: the cursor is before the first site of this token "
				   "(\"step\" first, or name a site)");
	}
	djn_site_name(c, site, name, sizeof(name));
	if (!djn_site_residual(c, site))
		return sh_fail(sh, "lens: %s is not a residual-stream site (embed, L*.resid_mid, "
				   "L*.resid_post)", name);
	if (djn_session_site_shape(s, site, &rows, &cols))
		return sh_fail(sh, "lens: %s", djn_session_errmsg(s));
	if (slice && !djn_slice_parse(slice, &sl, err, sizeof(err)))
		return sh_fail(sh, "lens: %s", err);
	if (sl.n_dims > 1)
		return sh_fail(sh, "lens: '%s' picks columns; the lens reads whole rows ([R] or "
				   "[A:B])", slice);
	if (!djn_slice_resolve(&sl, slice ? slice : "[:]", rows, cols, &r0, &r1, &c0, &c1, err,
			       sizeof(err)))
		return sh_fail(sh, "lens: %s", err);
	nr = r1 - r0;
	out = djn_xmalloc(sizeof(float) * (size_t)nr * V);
	if (djn_session_lens(s, site, r0, nr, out)) {
		free(out);
		return sh_fail(sh, "lens: %s", djn_session_errmsg(s));
	}
	if (top > V)
		top = V;
	snprintf(label, sizeof(label), "lens(%s%s)", name, slice ? slice : "");
	if (nr == 1)
		snprintf(where, sizeof(where), "pos %d", cur.pos + r0);
	else
		snprintf(where, sizeof(where), "pos %d..%d", cur.pos + r0, cur.pos + r1 - 1);
	id = sh_value_record(sh, label, out, nr, V);
	sh_printf(sh, "$%d = %s [%d x %d] f32 (%s): final_norm and unembedding of %s\n", id, label,
		  nr, V, where, name);
	sh_json_num(sh, "history", id);
	sh_json_str(sh, "label", label);
	sh_json_str(sh, "site", name);
	arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, cJSON_CreateNumber(nr));
	cJSON_AddItemToArray(arr, cJSON_CreateNumber(V));
	sh_json_add(sh, "shape", arr);
	arr = cJSON_CreateArray();
	for (int r = 0; r < nr; r++) {
		int pos = cur.pos + r0 + r;
		cJSON *o = cJSON_CreateObject();
		tok[0] = '\0';
		if (pos < n_tokens)
			sh_token_str(sh, pos ? tokens[pos - 1] : -1, tokens[pos], tok, sizeof(tok));
		sh_printf(sh, "  pos %d, token \"%s\", top %ld:\n", pos, tok, top);
		cJSON_AddNumberToObject(o, "pos", pos);
		if (pos < n_tokens)
			cJSON_AddNumberToObject(o, "token", tokens[pos]);
		cJSON_AddItemToObject(o, "top", sh_top_tokens(sh, out + (size_t)r * V, V, top, "    "));
		cJSON_AddItemToArray(arr, o);
	}
	sh_json_add(sh, "rows", arr);
	free(out);
	return DJN_CMD_OK;
}

/* --------------------------------------------------------- tokenize */

/* Columns of UTF-8 text (code points: "▁a" is two), for aligning pieces. */
static int utf8_width(const char *p)
{
	int w = 0;

	for (; *p; p++)
		w += ((unsigned char)*p & 0xc0) != 0x80;
	return w;
}

DJN_CMD_FN(cmd_tokenize)
{
	const struct djn_tokenizer *tok = sh->m->tok;
	struct djn_err e = { 0 };
	bool bos, bos_set = false;
	size_t cap = 1, used = 0;
	char *text, *whole, piece[128], shown[128];
	int32_t *ids = NULL;
	int n = 0, n_words = 0;
	cJSON *jids, *jpieces;

	if (!tok)
		return sh_fail(sh, "tokenize: the model has no tokenizer (load it with --tokenizer "
				   "FILE)");
	bos = djn_tok_add_bos(tok);
	for (int i = 1; i < argc; i++)
		cap += strlen(argv[i]) + 1;
	text = djn_xmalloc(cap);
	text[0] = '\0';
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bos") || !strcmp(argv[i], "--no-bos")) {
			bos = argv[i][2] == 'b';
			bos_set = true;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] == '-') {
			free(text);
			return sh_fail(sh, "tokenize: unknown option '%s' (--bos, --no-bos)", argv[i]);
		}
		used += (size_t)sprintf(text + used, "%s%s", n_words++ ? " " : "", argv[i]);
	}
	if (!n_words) {
		free(text);
		return sh_fail(sh, "usage: tokenize TEXT [--bos|--no-bos]");
	}
	if (djn_tok_encode(tok, text, used, bos, false, &ids, &n, &e)) {
		free(text);
		return sh_fail(sh, "tokenize: %s", e.msg);
	}
	whole = djn_xmalloc(4 * used + 8);
	sh_escape(text, used, whole, 4 * used + 8);
	sh_printf(sh, "\"%s\" is %d token%s%s:\n", whole, n, n == 1 ? "" : "s",
		  bos && djn_tok_bos(tok) >= 0 ? (bos_set ? " with BOS" : " with BOS, as run "
						  "encodes it") : "");
	free(whole);
	sh_printf(sh, "  %-4s %-7s %-16s %s\n", "pos", "id", "piece", "text");
	jids = cJSON_CreateArray();
	jpieces = cJSON_CreateArray();
	for (int i = 0; i < n; i++) {
		size_t len;
		const char *p = djn_tok_piece(tok, ids[i], &len);
		char q[130], *raw = djn_xmalloc(len + 1);
		memcpy(raw, p, len);
		raw[len] = '\0';
		sh_escape(p, len, piece, sizeof(piece));
		snprintf(q, sizeof(q), "\"%s\"", piece);
		/* BOS is no text: run's echo leaves it out, so does detokenize */
		p = ids[i] == djn_tok_bos(tok) ? (len = 0, "")
					     : djn_tok_decode(tok, i ? ids[i - 1] : -1, ids[i], &len);
		sh_escape(p, len, shown, sizeof(shown));
		sh_printf(sh, "  %-4d %-7d %s%*s \"%s\"\n", i, ids[i], q,
			  utf8_width(q) < 16 ? 16 - utf8_width(q) : 0, "", shown);
		cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
		cJSON_AddItemToArray(jpieces, cJSON_CreateString(raw));
		free(raw);
	}
	sh_json_add(sh, "ids", jids);
	sh_json_add(sh, "pieces", jpieces);
	free(ids);
	free(text);
	return DJN_CMD_OK;
}

/* detokenize 1 403 407, or [1, 403, 407] as tokenize's JSON gives them */
DJN_CMD_FN(cmd_detokenize)
{
	const struct djn_tokenizer *tok = sh->m->tok;
	int n_vocab, n = 0, prev = -1;
	char *buf = NULL, *shown;
	size_t len = 0, cap = 0;

	if (!tok)
		return sh_fail(sh, "detokenize: the model has no tokenizer (load it with "
				   "--tokenizer FILE)");
	n_vocab = djn_tok_n_vocab(tok);
	for (int i = 1; i < argc; i++) {
		char *w = djn_xstrdup(argv[i]), *save = NULL;
		for (char *q = w; *q; q++)
			if (*q == '[' || *q == ']' || *q == ',')
				*q = ' ';
		for (char *t = strtok_r(w, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
			long id;
			size_t pl;
			const char *p;
			if (!sh_parse_long(t, 0, n_vocab - 1, &id)) {
				sh_fail(sh, "detokenize: '%s' is not a token id (0..%d)", t,
					n_vocab - 1);
				free(w);
				free(buf);
				return DJN_CMD_FAIL;
			}
			if (id == djn_tok_bos(tok)) {
				p = "";
				pl = 0;
			} else {
				p = djn_tok_decode(tok, prev, (int)id, &pl);
			}
			if (len + pl + 1 > cap) {
				cap = 2 * (len + pl + 1);
				buf = djn_xrealloc(buf, cap);
			}
			memcpy(buf + len, p, pl);
			len += pl;
			prev = (int)id;
			n++;
		}
		free(w);
	}
	if (!n)
		return sh_fail(sh, "usage: detokenize ID...");
	buf[len] = '\0';
	shown = djn_xmalloc(4 * len + 8);
	sh_escape(buf, len, shown, 4 * len + 8);
	sh_printf(sh, "\"%s\"\n", shown);
	sh_json_str(sh, "text", buf);
	free(shown);
	free(buf);
	return DJN_CMD_OK;
}

/* ---------------------------------------------------- attn_pattern */

bool sh_pattern_name(const char *w)
{
	if (w[0] != 'L' || !isdigit((unsigned char)w[1]))
		return false;
	for (w++; isdigit((unsigned char)*w); w++)
		;
	return !strncmp(w, ".attn_pattern", 13) && (!w[13] || w[13] == '[');
}

bool sh_pattern_value(struct djn_shell *sh, const char *argv0, const char *word,
		      const char *slice, struct sh_value *out, char *rows, size_t rows_n)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	struct djn_cursor cur = djn_session_cursor(s);
	struct djn_slice sl;
	char err[256], head_text[64];
	const char *br = strchr(word, '['), *end;
	long layer = strtol(word + 1, NULL, 10), head;
	int width;

	memset(out, 0, sizeof(*out));
	rows[0] = '\0';
	if (djn_session_state(s) == DJN_RUN_IDLE) {
		sh_fail(sh, "The program is not being run.");
		return false;
	}
	if (layer >= c->n_layer) {
		sh_fail(sh, "%s: no layer %ld in '%s' (layers are L0..L%d)", argv0, layer, word,
			c->n_layer - 1);
		return false;
	}
	if (br)
		slice = br;
	if (!slice) {
		sh_fail(sh, "%s: L%ld.attn_pattern needs a head: L%ld.attn_pattern[H] (heads 0..%d)",
			argv0, layer, layer, c->n_head - 1);
		return false;
	}
	/* [H] then print's rows, glued ([H][ROWS]) or as [H, ROWS] */
	end = strchr(slice, ']');
	end = end ? end + 1 : slice + strlen(slice);
	snprintf(head_text, sizeof(head_text), "%.*s", (int)(end - slice), slice);
	if (!djn_slice_parse(head_text, &sl, err, sizeof(err))) {
		sh_fail(sh, "%s", err);
		return false;
	}
	if (sl.d[0].kind != DJN_SLICE_INDEX) {
		sh_fail(sh, "%s: '%s' names no head: one head at a time, [H] (heads 0..%d)", argv0,
			head_text, c->n_head - 1);
		return false;
	}
	if (sl.n_dims == 2) {
		const char *comma = strchr(head_text, ',') + 1;
		while (*comma == ' ')
			comma++;
		snprintf(rows, rows_n, "[%s", comma);
	} else {
		snprintf(rows, rows_n, "%s", end);
	}
	head = sl.d[0].lo;
	if (head < -c->n_head || head >= c->n_head) {
		sh_fail(sh, "%s: no head %ld in L%ld.attn_pattern (heads 0..%d)", argv0, head, layer,
			c->n_head - 1);
		return false;
	}
	if (head < 0)
		head += c->n_head;
	/* every row of the chunk, so that print's row slice and row numbers
	 * are the chunk's, as for a site */
	width = cur.pos + cur.n_rows;
	out->rows = cur.n_rows;
	out->cols = width;
	out->v = djn_xmalloc(sizeof(float) * (size_t)out->rows * width);
	if (djn_session_attn_pattern(s, (int)layer, (int)head, 0, out->rows, out->v)) {
		free(out->v);
		out->v = NULL;
		sh_fail(sh, "%s", djn_session_errmsg(s));
		return false;
	}
	snprintf(out->label, sizeof(out->label), "L%ld.attn_pattern[%ld]", layer, head);
	sh_json_num(sh, "layer", layer);
	sh_json_num(sh, "head", head);
	sh_json_num(sh, "kv_head", head / (c->n_head / c->n_kv_head));
	sh_json_num(sh, "pos", cur.pos);
	return true;
}
