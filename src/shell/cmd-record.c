/* cmd-record.c - record (run_with_cache): which sites' rows a run keeps for
 * every position, what was kept, and print rec::SITE reading them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

static int n_matching(struct djn_shell *sh, const char *pattern)
{
	int n = 0;

	for (int t = 0; t < djn_site_count(&sh->m->cfg); t++)
		n += djn_site_match(&sh->m->cfg, pattern, t);
	return n;
}

DJN_CMD_FN(cmd_info_record)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	cJSON *pats = cJSON_CreateArray(), *sites = cJSON_CreateArray();
	char name[32];
	int n = djn_record_count(s), shown = 0;

	if (!n)
		sh_printf(sh, "Not recording (\"record SITE...\" keeps sites for every position).\n");
	for (int i = 0; i < n; i++) {
		const char *p = djn_record_pattern(s, i);
		int k = n_matching(sh, p);
		sh_printf(sh, "Recording %s (%d site%s)\n", p, k, k == 1 ? "" : "s");
		cJSON_AddItemToArray(pats, cJSON_CreateString(p));
	}
	for (int t = 0; t < djn_site_count(c); t++) {
		int np = djn_record_positions(s, t);
		if (!djn_record_site(s, t) || !np)
			continue;
		djn_site_name(c, t, name, sizeof(name));
		if (!shown++)
			sh_printf(sh, "Last run: positions 0..%d of", np - 1);
		sh_printf(sh, " %s", name);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "site", name);
		cJSON_AddNumberToObject(e, "positions", np);
		cJSON_AddNumberToObject(e, "width", djn_site_width(c, t));
		cJSON_AddItemToArray(sites, e);
	}
	if (shown)
		sh_printf(sh, "\n  (print rec::SITE[POS] reads them)\n");
	else if (n)
		sh_printf(sh, "Nothing recorded yet: the next run keeps them.\n");
	sh_json_add(sh, "record", pats);
	sh_json_add(sh, "recorded", sites);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_record)
{
	struct djn_session *s = sh_s(sh);

	if (argc == 1)
		return cmd_info_record(sh, argc, argv);
	if (argc == 2 && !strcmp(argv[1], "off")) {
		djn_record_clear(s);
		sh_printf(sh, "Recording off.\n");
		return DJN_CMD_OK;
	}
	/* all or nothing: check every pattern before adding one */
	for (int i = 1; i < argc; i++) {
		char why[160];
		if (!djn_site_pattern_valid(&sh->m->cfg, argv[i])) {
			djn_site_why(&sh->m->cfg, argv[i], why, sizeof(why));
			return sh_fail(sh, "record: no site matches '%s'; %s", argv[i], why);
		}
	}
	for (int i = 1; i < argc; i++) {
		int k = n_matching(sh, argv[i]);
		if (djn_record_add(s, argv[i]))
			return sh_fail(sh, "record: %s", djn_session_errmsg(s));
		sh_printf(sh, "Recording %s (%d site%s) at every position of the next run.\n",
			  argv[i], k, k == 1 ? "" : "s");
	}
	return DJN_CMD_OK;
}

bool sh_record_name(const char *w)
{
	return !strncmp(w, "rec::", 5);
}

bool sh_record_value(struct djn_shell *sh, const char *argv0, const char *word,
		     struct sh_value *out, char *rows, size_t rows_n)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	const char *br = strchr(word, '[');
	char name[48];
	int site, np;

	memset(out, 0, sizeof(*out));
	rows[0] = '\0';
	snprintf(name, sizeof(name), "%.*s", br ? (int)(br - word - 5) : (int)strlen(word + 5),
		 word + 5);
	if ((site = sh_site_arg(sh, name)) < 0)
		return false;
	if (!djn_record_site(s, site)) {
		sh_fail(sh, "%s: %s is not recorded (\"record %s\", then run)", argv0, name, name);
		return false;
	}
	if (!(np = djn_record_positions(s, site))) {
		sh_fail(sh, "%s: nothing recorded at %s yet (run first)", argv0, name);
		return false;
	}
	/* every position, so that print's rows are positions */
	out->rows = np;
	out->cols = djn_site_width(c, site);
	out->v = djn_xmalloc(sizeof(float) * (size_t)np * out->cols);
	if (djn_site_kind(c, site) >= DJN_SITE_FINAL_NORM) {
		/* the head's rows exist at chunks' last positions only: a slice
		 * names them, a whole read would meet the gaps */
		if (!br) {
			free(out->v);
			out->v = NULL;
			sh_fail(sh, "%s: %s holds each chunk's last position only; name one: "
				    "rec::%s[POS]", argv0, name, name);
			return false;
		}
		struct djn_slice sl;
		char err[160];
		int r0, r1, c0, c1;
		if (!djn_slice_parse(br, &sl, err, sizeof(err)) ||
		    !djn_slice_resolve(&sl, br, np, out->cols, &r0, &r1, &c0, &c1, err,
				       sizeof(err))) {
			free(out->v);
			out->v = NULL;
			sh_fail(sh, "%s", err);
			return false;
		}
		memset(out->v, 0, sizeof(float) * (size_t)np * out->cols);
		for (int p = r0; p < r1; p++)
			if (djn_record_read(s, site, p, 1, out->v + (size_t)p * out->cols)) {
				free(out->v);
				out->v = NULL;
				sh_fail(sh, "%s: %s", argv0, djn_session_errmsg(s));
				return false;
			}
	} else if (djn_record_read(s, site, 0, np, out->v)) {
		free(out->v);
		out->v = NULL;
		sh_fail(sh, "%s: %s", argv0, djn_session_errmsg(s));
		return false;
	}
	snprintf(out->label, sizeof(out->label), "rec::%s", name);
	if (br)
		snprintf(rows, rows_n, "%s", br);
	sh_json_str(sh, "recorded", name);
	return true;
}
