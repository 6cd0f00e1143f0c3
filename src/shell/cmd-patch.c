/* cmd-patch.c - activation patching between two prompts: a table of the
 * effect of each layer's and position's clean row on a logit difference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

/* A token argument: an id, a piece of the vocabulary (",", " the"), or a
 * text that encodes to one token. */
static bool token_arg(struct djn_shell *sh, const char *w, int32_t *out)
{
	struct djn_err e = { 0 };
	int V = sh->m->cfg.vocab_size, n = 0;
	int32_t *ids = NULL;
	long id;

	if (sh_parse_long(w, 0, V - 1, &id)) {
		*out = (int32_t)id;
		return true;
	}
	if (w[0] >= '0' && w[0] <= '9') {
		sh_fail(sh, "patch: token %s is outside the vocabulary (0..%d)", w, V - 1);
		return false;
	}
	if (!sh->m->tok) {
		sh_fail(sh, "patch: '%s' is not a token id (and the model has no tokenizer)", w);
		return false;
	}
	/* a piece of the vocabulary as it is written (",", " there"), then a
	 * text that encodes to one token */
	for (int i = 0; i < djn_tok_n_vocab(sh->m->tok); i++) {
		size_t pl;
		const char *p = djn_tok_piece(sh->m->tok, i, &pl);
		if (pl == strlen(w) && !memcmp(p, w, pl)) {
			*out = i;
			return true;
		}
	}
	if (djn_tok_encode(sh->m->tok, w, strlen(w), false, false, &ids, &n, &e)) {
		sh_fail(sh, "patch: \"%s\": %s", w, e.msg);
		return false;
	}
	if (n != 1) {
		sh_fail(sh, "patch: \"%s\" is %d tokens and no piece of the vocabulary; --tokens "
			    "takes ids, pieces or texts of one token (tokenize shows how text "
			    "splits)", w, n);
		free(ids);
		return false;
	}
	*out = ids[0];
	free(ids);
	return true;
}

static bool encode(struct djn_shell *sh, const char *what, const char *text, int32_t **ids,
		   int *n)
{
	struct djn_err e = { 0 };

	if (djn_tok_encode(sh->m->tok, text, strlen(text), djn_tok_add_bos(sh->m->tok), false, ids,
			   n, &e)) {
		sh_fail(sh, "patch: the %s prompt: %s", what, e.msg);
		return false;
	}
	return true;
}

/* Token text for a table cell: escaped, quoted, cut to 7 characters. */
static void cell(struct djn_shell *sh, const int32_t *ids, int p, char *buf, size_t n)
{
	char t[96];

	if (ids[p] == djn_tok_bos(sh->m->tok))
		snprintf(t, sizeof(t), "<s>");
	else
		sh_token_str(sh, p ? ids[p - 1] : -1, ids[p], t, sizeof(t));
	snprintf(buf, n, "\"%.7s\"", t);
}

static void csv_quote(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

DJN_CMD_FN(cmd_patch)
{
	const char *text[2] = { NULL, NULL }, *site = "resid_post", *save = NULL, *tk[2] = { 0 };
	int n_text = 0, n_clean = 0, n_corrupt = 0, id;
	int32_t a, b, *clean = NULL, *corrupt = NULL;
	enum djn_site_kind kind = DJN_SITE_KIND_COUNT;
	struct djn_patch_result r;
	struct djn_err e = { 0 };
	char label[96], t1[96];
	cJSON *arr;

	for (int i = 1; i < argc; i++) {
		const char *w = argv[i];
		if (!strcmp(w, "--tokens")) {
			if (i + 2 >= argc)
				return sh_fail(sh, "patch: --tokens needs two tokens (A B: the metric "
						   "is logit[A] - logit[B])");
			tk[0] = argv[++i];
			tk[1] = argv[++i];
		} else if (!strcmp(w, "--site") || !strcmp(w, "--save")) {
			if (i + 1 >= argc)
				return sh_fail(sh, "patch: option '%s' needs a value", w);
			*(w[3] == 'i' ? &site : &save) = argv[++i];
		} else if (w[0] == '-' && w[1] == '-') {
			return sh_fail(sh, "patch: unknown option '%s' (--tokens, --site, --save)", w);
		} else if (n_text < 2) {
			text[n_text++] = w;
		} else {
			return sh_fail(sh, "patch: unexpected '%s' (two prompts, quoted)", w);
		}
	}
	if (n_text < 2 || !tk[0])
		return sh_fail(sh, "usage: patch \"CLEAN\" \"CORRUPT\" --tokens A B [--site KIND] "
				   "[--save FILE.csv]");
	if (!sh->m->tok)
		return sh_fail(sh, "patch: the model has no tokenizer (load it with --tokenizer FILE)");
	/* the kind: resid_post, or L*.resid_post as a pattern names it */
	if (!strncmp(site, "L*.", 3))
		site += 3;
	for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++)
		if (!strcmp(site, djn_site_kind_name(k)))
			kind = k;
	if (kind == DJN_SITE_KIND_COUNT)
		return sh_fail(sh, "patch: '%s' is not a per-layer site kind (attn_norm q k v attn "
				   "attn_out resid_mid mlp_norm mlp_act mlp_out resid_post)", site);
	if (!token_arg(sh, tk[0], &a) || !token_arg(sh, tk[1], &b))
		return DJN_CMD_FAIL;
	if (!encode(sh, "clean", text[0], &clean, &n_clean) ||
	    !encode(sh, "corrupted", text[1], &corrupt, &n_corrupt)) {
		free(clean);
		return DJN_CMD_FAIL;
	}
	if (n_clean != n_corrupt) {
		sh_fail(sh, "patch: the prompts differ in length: clean is %d tokens, corrupted %d "
			    "(tokenize shows how each splits)", n_clean, n_corrupt);
		goto fail;
	}
	if (djn_patch_run(sh->m, sh->be, clean, corrupt, n_clean, kind, a, b, &r, &e)) {
		sh_fail(sh, "%s", e.msg);
		goto fail;
	}
	sh_token_str(sh, -1, a, label, sizeof(label));
	sh_token_str(sh, -1, b, t1, sizeof(t1));
	sh_printf(sh, "metric: logit[%d \"%s\"] - logit[%d \"%s\"] at the last position: clean "
		  "%.4f, corrupted %.4f\n", a, label, b, t1, r.clean, r.corrupt);
	if (r.normalised)
		sh_printf(sh, "effect of patching L{l}.%s at pos p from clean into corrupted: "
			  "(patched - corrupted) / (clean - corrupted)\n", site);
	else
		sh_printf(sh, "effect of patching L{l}.%s at pos p from clean into corrupted: "
			  "patched - corrupted (clean and corrupted agree: nothing to normalise "
			  "by)\n", site);
	snprintf(label, sizeof(label), "patch(%s)", site);
	id = sh_value_record(sh, label, r.effect, r.n_layer, r.n_pos);
	sh_printf(sh, "$%d = %s [%d x %d] f32 (layers x positions)\n", id, label, r.n_layer,
		  r.n_pos);
	sh_printf(sh, "%-8s", "pos");
	for (int p = 0; p < r.n_pos; p++)
		sh_printf(sh, " %9d", p);
	sh_printf(sh, "\n%-8s", "clean");
	for (int p = 0; p < r.n_pos; p++) {
		cell(sh, clean, p, t1, sizeof(t1));
		sh_printf(sh, " %9s", t1);
	}
	sh_printf(sh, "\n%-8s", "corrupt");
	for (int p = 0; p < r.n_pos; p++) {
		cell(sh, corrupt, p, t1, sizeof(t1));
		sh_printf(sh, " %9s", clean[p] == corrupt[p] ? "" : t1);
	}
	sh_printf(sh, "\n");
	for (int l = 0; l < r.n_layer; l++) {
		sh_printf(sh, "L%-7d", l);
		for (int p = 0; p < r.n_pos; p++)
			sh_printf(sh, " %9.4f", r.effect[l * r.n_pos + p]);
		sh_printf(sh, "\n");
	}
	if (save) {
		FILE *f = fopen(save, "w");
		if (!f) {
			sh_fail(sh, "patch: cannot write '%s': %s", save, strerror(errno));
			djn_patch_result_free(&r);
			goto fail;
		}
		/* a header of positions' tokens, then a row a layer */
		fprintf(f, "layer");
		for (int p = 0; p < r.n_pos; p++) {
			char h[128];
			cell(sh, clean, p, t1, sizeof(t1));
			t1[strlen(t1) - 1] = '\0';
			snprintf(h, sizeof(h), "%d %s", p, t1 + 1);
			fputc(',', f);
			csv_quote(f, h);
		}
		fputc('\n', f);
		for (int l = 0; l < r.n_layer; l++) {
			fprintf(f, "L%d", l);
			for (int p = 0; p < r.n_pos; p++)
				fprintf(f, ",%.9g", r.effect[l * r.n_pos + p]);
			fputc('\n', f);
		}
		fclose(f);
		sh_printf(sh, "saved to %s\n", save);
	}
	sh_json_num(sh, "history", id);
	sh_json_str(sh, "site", site);
	sh_json_num(sh, "a", a);
	sh_json_num(sh, "b", b);
	sh_json_num(sh, "clean", r.clean);
	sh_json_num(sh, "corrupt", r.corrupt);
	sh_json_add(sh, "normalised", cJSON_CreateBool(r.normalised));
	arr = cJSON_CreateArray();
	for (int l = 0; l < r.n_layer; l++) {
		cJSON *row = cJSON_CreateArray();
		for (int p = 0; p < r.n_pos; p++)
			cJSON_AddItemToArray(row, cJSON_CreateNumber(r.effect[l * r.n_pos + p]));
		cJSON_AddItemToArray(arr, row);
	}
	sh_json_add(sh, "effect", arr);
	djn_patch_result_free(&r);
	free(clean);
	free(corrupt);
	return DJN_CMD_OK;
fail:
	free(clean);
	free(corrupt);
	return DJN_CMD_FAIL;
}
