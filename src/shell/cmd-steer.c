/* cmd-steer.c - changing activations: steer SITE add|scale|set|zero, steer
 * clear, info steers; vectors from .npy files, the value history, or a
 * token's embedding. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

static const char *const op_names[] = { "add", "scale", "set", "zero" };

/* emb("word") / emb(word): the embedding row of word's single token. */
static float *emb_vector(struct djn_shell *sh, const char *spec, int *n)
{
	const struct djn_weight *w = &sh->m->tok_embd;
	size_t len = strlen(spec);
	char *word;
	int32_t *ids = NULL;
	int n_ids = 0;
	struct djn_err err = { 0 };
	float *v;

	if (len < 6 || spec[len - 1] != ')') {
		sh_fail(sh, "steer: bad vector '%s' (emb(\"word\") needs a closing ')')", spec);
		return NULL;
	}
	word = djn_xstrdup(spec + 4);
	word[len - 5] = '\0';
	len -= 5;
	if (len >= 2 && (word[0] == '"' || word[0] == '\'') && word[len - 1] == word[0]) {
		memmove(word, word + 1, len - 2);
		word[len - 2] = '\0';
	} else if (len && (word[0] == '"' || word[0] == '\'')) {
		sh_fail(sh, "steer: bad vector '%s' (unterminated quote)", spec);
		free(word);
		return NULL;
	}
	if (!*word) {
		sh_fail(sh, "steer: emb() needs a word");
		free(word);
		return NULL;
	}
	if (!sh->m->tok) {
		sh_fail(sh, "steer: emb(\"%s\") needs a tokenizer", word);
		free(word);
		return NULL;
	}
	if (djn_tok_encode(sh->m->tok, word, strlen(word), false, false, &ids, &n_ids, &err)) {
		sh_fail(sh, "steer: emb(\"%s\"): %s", word, err.msg);
		free(word);
		return NULL;
	}
	if (n_ids != 1) {
		/* say how it splits, so the user can pick a piece that is one */
		char split[320] = "", piece[64];
		size_t u = 0;
		for (int i = 0; i < n_ids && i < 8 && u < sizeof(split) - 80; i++) {
			size_t pl;
			const char *p = djn_tok_piece(sh->m->tok, ids[i], &pl);
			sh_escape(p, pl, piece, sizeof(piece));
			u += (size_t)snprintf(split + u, sizeof(split) - u, "%s\"%s\" (%d)",
					      i ? ", " : ": ", piece, ids[i]);
		}
		if (n_ids > 8)
			snprintf(split + u, sizeof(split) - u, ", ...");
		sh_fail(sh, "steer: emb(\"%s\"): \"%s\" is %d tokens%s; emb needs a word of one "
			    "token (tokenize shows how text splits)", word, word, n_ids, split);
		free(ids);
		free(word);
		return NULL;
	}
	v = djn_xmalloc(sizeof(float) * (size_t)w->cols);
	djn_weight_row_f32(w, ids[0], v);
	*n = (int)w->cols;
	free(ids);
	free(word);
	return v;
}

/* A vector argument: FILE.npy, $N / $, or emb("word").  Malloc'd. */
static float *vector_arg(struct djn_shell *sh, const char *spec, int *n)
{
	if (spec[0] == '$') {
		const struct sh_value *hv = sh_value_arg(sh, spec);
		float *v;
		if (!hv)
			return NULL;
		if (hv->rows != 1) {
			sh_fail(sh, "steer: %s (%s) is %d x %d; a vector is one row "
				    "(print the row you want, e.g. [-1])", spec, hv->label, hv->rows,
				hv->cols);
			return NULL;
		}
		v = djn_xmalloc(sizeof(float) * (size_t)hv->cols);
		memcpy(v, hv->v, sizeof(float) * (size_t)hv->cols);
		*n = hv->cols;
		return v;
	}
	if (!strncmp(spec, "emb(", 4))
		return emb_vector(sh, spec, n);
	size_t len = strlen(spec);
	if (len > 4 && !strcmp(spec + len - 4, ".npy")) {
		struct djn_err err = { 0 };
		float *v;
		if (sh->host ? sh->host->npy_load(sh->host->ud, spec, &v, n, &err)
			     : !sh_files_ok(sh) ? (enum djn_status)DJN_ERR_INVALID
			     : djn_npy_load(spec, &v, n, &err)) {
			if (!err.msg[0]) /* sh_files_ok said why */
				return NULL;
			sh_fail(sh, "steer: %s", err.msg);
			return NULL;
		}
		return v;
	}
	sh_fail(sh, "steer: bad vector '%s' (FILE.npy, $N, or emb(\"word\"))", spec);
	return NULL;
}

/* --pos N, A:B (A..B-1, as in slices), A: or :B -> [pos0, pos1), pos1 -1: no end */
static bool pos_arg(struct djn_shell *sh, const char *w, int *pos0, int *pos1)
{
	const char *colon = strchr(w, ':');
	char a[24] = "", b[24] = "";
	long x = 0, y = -1;

	if (strlen(w) >= sizeof(a))
		goto bad;
	if (!colon) {
		if (!sh_parse_long(w, 0, 1 << 30, &x))
			goto bad;
		y = x + 1;
	} else {
		snprintf(a, sizeof(a), "%.*s", (int)(colon - w), w);
		snprintf(b, sizeof(b), "%s", colon + 1);
		if ((a[0] && !sh_parse_long(a, 0, 1 << 30, &x)) ||
		    (b[0] && !sh_parse_long(b, 0, 1 << 30, &y)))
			goto bad;
		if (y >= 0 && y <= x) {
			sh_fail(sh, "steer: --pos %s holds no position (A:B is A..B-1)", w);
			return false;
		}
	}
	*pos0 = (int)x;
	*pos1 = (int)y;
	return true;
bad:
	sh_fail(sh, "steer: bad --pos '%s' (a position N, or A:B for A..B-1, A: or :B)", w);
	return false;
}

/* " at pos 4", " at pos 2..4", " at pos 2 on", or "" for all */
static void pos_text(int pos0, int pos1, char *buf, size_t n)
{
	if (pos0 == 0 && pos1 < 0)
		buf[0] = '\0';
	else if (pos1 < 0)
		snprintf(buf, n, " at pos %d on", pos0);
	else if (pos1 == pos0 + 1)
		snprintf(buf, n, " at pos %d", pos0);
	else
		snprintf(buf, n, " at pos %d..%d", pos0, pos1 - 1);
}

static void pos_json(struct djn_shell *sh, cJSON *o, int pos0, int pos1)
{
	cJSON *a;

	if (pos0 == 0 && pos1 < 0)
		return;
	a = cJSON_CreateArray();
	cJSON_AddItemToArray(a, cJSON_CreateNumber(pos0));
	cJSON_AddItemToArray(a, pos1 < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(pos1));
	if (o)
		cJSON_AddItemToObject(o, "pos", a);
	else
		sh_json_add(sh, "pos", a);
}

DJN_CMD_FN(cmd_steer)
{
	struct djn_session *s = sh_s(sh);
	const char *site_arg = argv[1], *vec_text = NULL;
	bool persist = false;
	char **words = djn_xcalloc((size_t)argc + 1, sizeof(char *));
	int n = 0, op = -1, n_v = 0, *idx = NULL, n_idx = 0, id, pos0 = 0, pos1 = -1;
	char where[48];
	float scale = 1.0f, *v = NULL;
	char *glued = NULL;
	enum djn_cmd_ret ret = DJN_CMD_FAIL;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--persist")) {
			persist = true;
		} else if (!strcmp(argv[i], "--pos")) {
			if (i + 1 >= argc) {
				sh_fail(sh, "steer: --pos needs a position (N, or A:B for A..B-1)");
				goto out;
			}
			if (!pos_arg(sh, argv[++i], &pos0, &pos1))
				goto out;
		} else if (!strncmp(argv[i], "--", 2) && argv[i][2] && !isdigit((unsigned char)argv[i][2])) {
			sh_fail(sh, "steer: unknown option '%s' (--persist, --pos)", argv[i]);
			goto out;
		} else
			words[n++] = argv[i];
	}
	if (n == 0) {
		sh_fail(sh, "usage: steer SITE add|scale|set|zero ARGS [--pos P] [--persist]");
		goto out;
	}
	for (int k = 0; k < 4; k++)
		if (!strcmp(words[0], op_names[k]))
			op = k;
	if (op < 0) {
		sh_fail(sh, "steer: unknown operation '%s' (add, scale, set or zero)", words[0]);
		goto out;
	}
	/* the site first: a one-shot steer names the paused tensor */
	if (strlen(site_arg) >= 48) {
		sh_fail(sh, "no site '%.48s...'", site_arg);
		goto out;
	}
	if (persist) {
		if (!sh_pattern_arg(sh, site_arg))
			goto out;
	} else {
		if (sh_site_arg(sh, site_arg) < 0)
			goto out;
		if (djn_session_state(s) != DJN_RUN_PAUSED) {
			sh_fail(sh, djn_session_state(s) == DJN_RUN_IDLE
					    ? "The program is not being run."
					    : "The run has finished.  Use \"run\" to start another.");
			goto out;
		}
	}
	/* `add VEC*SCALE` written without spaces: split at the last '*' outside
	 * parentheses */
	if (op == DJN_STEER_ADD && n == 2) {
		int depth = 0;
		char *star = NULL;
		for (char *p = words[1]; *p; p++) {
			depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
			if (*p == '*' && depth == 0)
				star = p;
		}
		if (star && star != words[1]) {
			glued = djn_xstrdup(words[1]);
			glued[star - words[1]] = '\0';
			words[1] = glued;
			words[2] = star; /* "*SCALE", in argv */
			n = 3;
		}
	}
	switch (op) {
	case DJN_STEER_ADD:
		if (n != 2 && n != 4 && !(n == 3 && words[2][0] == '*' && words[2][1])) {
			sh_fail(sh, "usage: steer SITE add VEC [* SCALE] [--persist]");
			goto out;
		}
		if (n > 2) {
			const char *x = n == 4 ? words[3] : words[2] + 1;
			if ((n == 4 && strcmp(words[2], "*")) || !sh_parse_float(x, &scale)) {
				sh_fail(sh, "steer: bad scale '%s' (add VEC * SCALE)",
					n == 4 ? (strcmp(words[2], "*") ? words[2] : words[3]) : words[2]);
				goto out;
			}
		}
		vec_text = words[1];
		break;
	case DJN_STEER_SET:
		if (n != 2) {
			sh_fail(sh, "usage: steer SITE set VEC [--persist]");
			goto out;
		}
		vec_text = words[1];
		break;
	case DJN_STEER_SCALE:
		if (n != 2) {
			sh_fail(sh, "usage: steer SITE scale X [--persist]");
			goto out;
		}
		if (!sh_parse_float(words[1], &scale)) {
			sh_fail(sh, "steer: bad scale '%s'", words[1]);
			goto out;
		}
		break;
	case DJN_STEER_ZERO:
		idx = djn_xcalloc((size_t)n, sizeof(int));
		for (int i = 1; i < n; i++) {
			long x;
			if (!sh_parse_long(words[i], 0, 1 << 30, &x)) {
				sh_fail(sh, "steer: bad index '%s' (0 or more)", words[i]);
				goto out;
			}
			idx[n_idx++] = (int)x;
		}
		break;
	}
	if (vec_text && !(v = vector_arg(sh, vec_text, &n_v)))
		goto out;
	id = djn_steer_add_at(s, site_arg, (enum djn_steer_op)op, v, n_v, scale, idx, n_idx, persist,
			      pos0, pos1);
	if (id < 0) {
		sh_fail(sh, "%s", djn_session_errmsg(s));
		goto out;
	}
	char what[160];
	size_t u = (size_t)snprintf(what, sizeof(what), "%s", op_names[op]);
	if (vec_text)
		u += (size_t)snprintf(what + u, sizeof(what) - u, " %s", vec_text);
	if (op == DJN_STEER_SCALE || (op == DJN_STEER_ADD && scale != 1.0f))
		u += (size_t)snprintf(what + u, sizeof(what) - u, "%s%g",
				      op == DJN_STEER_ADD ? " * " : " ", scale);
	for (int i = 0; i < n_idx && u < sizeof(what); i++)
		u += (size_t)snprintf(what + u, sizeof(what) - u, " %d", idx[i]);
	pos_text(pos0, pos1, where, sizeof(where));
	if (persist) {
		sh_printf(sh, "Steer %d: %s %s%s, every time it runs\n", id, site_arg, what, where);
		sh_json_num(sh, "id", id);
	} else {
		sh_printf(sh, "Steered %s: %s%s (once, now)\n", site_arg, what, where);
	}
	pos_json(sh, NULL, pos0, pos1);
	sh_json_str(sh, "site", site_arg);
	sh_json_str(sh, "op", op_names[op]);
	sh_json_bool(sh, "persist", persist);
	ret = DJN_CMD_OK;
out:
	free(glued);
	free(words);
	free(idx);
	free(v);
	return ret;
}

DJN_CMD_FN(cmd_steer_clear)
{
	struct djn_session *s = sh_s(sh);
	long id = 0;

	if (argc > 1 && !sh_parse_long(argv[1], 1, 1 << 30, &id))
		return sh_fail(sh, "steer clear: bad steer number '%s'", argv[1]);
	if (djn_steer_clear(s, (int)id))
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_steers)
{
	struct djn_steer_info si;
	cJSON *arr = cJSON_CreateArray();
	char sc[32];
	int i;

	for (i = 0; djn_steer_get(sh_s(sh), i, &si); i++) {
		if (!i)
			sh_printf(sh, "Num  Site               Op     Scale      Vec    Applied\n");
		char w[16] = "-";
		if (si.op == DJN_STEER_ZERO)
			snprintf(sc, sizeof(sc), "-");
		else
			sh_fmt_float(sh, si.scale, sc, sizeof(sc));
		if (si.n_v)
			snprintf(w, sizeof(w), "%d", si.n_v);
		char where[48];
		pos_text(si.pos0, si.pos1, where, sizeof(where));
		sh_printf(sh, "%-4d %-18s %-6s %-10s %-6s %ld%s\n", si.id, si.pattern,
			  op_names[si.op], sc, w, si.n_applied, where);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", si.id);
		cJSON_AddStringToObject(e, "site", si.pattern);
		cJSON_AddStringToObject(e, "op", op_names[si.op]);
		cJSON_AddNumberToObject(e, "scale", si.scale);
		cJSON_AddNumberToObject(e, "applied", (double)si.n_applied);
		pos_json(sh, e, si.pos0, si.pos1);
		cJSON_AddItemToArray(arr, e);
	}
	if (!i)
		sh_printf(sh, "No steers.\n");
	sh_json_add(sh, "steers", arr);
	return DJN_CMD_OK;
}
