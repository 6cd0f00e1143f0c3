/* cmd-break.c - breakpoints and watchpoints: break, tbreak, watch,
 * condition, ignore, commands, delete, disable, enable, info breakpoints. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

static bool bp_exists(struct djn_session *s, int id, struct djn_bp_info *out)
{
	struct djn_bp_info bi;

	for (int i = 0; djn_bp_get(s, i, &bi); i++) {
		if (bi.id == id) {
			if (out)
				*out = bi;
			return true;
		}
	}
	return false;
}

/* $bpnum: the newest breakpoint's number (the highest; 0 when none), as in
 * gdb, so that a file of break and condition lines (save breakpoints) needs
 * no numbers. */
static int newest_id(struct djn_shell *sh)
{
	struct djn_bp_info bi;
	int last = 0;

	for (int i = 0; djn_bp_get(sh_s(sh), i, &bi); i++)
		if (bi.id > last && bi.id != sh->advance_bp)
			last = bi.id;
	return last;
}

/* Breakpoint numbers: `3`, `1-4`, `$bpnum`; false after sh_fail. */
static bool parse_ids(struct djn_shell *sh, int argc, char **argv, int **ids, int *n)
{
	*ids = NULL;
	*n = 0;
	for (int i = 0; i < argc; i++) {
		long a, b;
		char *dash = strchr(argv[i], '-');
		if (!strcmp(argv[i], "$bpnum")) {
			if (!(a = b = newest_id(sh))) {
				free(*ids);
				*ids = NULL;
				sh_fail(sh, "$bpnum: there are no breakpoints");
				return false;
			}
		} else if (dash && dash != argv[i]) {
			*dash = '\0';
			bool ok = sh_parse_long(argv[i], 1, 1 << 30, &a) &&
				  sh_parse_long(dash + 1, 1, 1 << 30, &b) && a <= b && b - a < 100000;
			*dash = '-';
			if (!ok)
				goto bad;
		} else if (sh_parse_long(argv[i], 1, 1 << 30, &a)) {
			b = a;
		} else {
			goto bad;
		}
		*ids = djn_xrealloc(*ids, sizeof(int) * (size_t)(*n + (b - a) + 1));
		for (long k = a; k <= b; k++)
			(*ids)[(*n)++] = (int)k;
		continue;
bad:
		free(*ids);
		*ids = NULL;
		sh_fail(sh, "bad breakpoint number '%s'", argv[i]);
		return false;
	}
	return true;
}

static int n_sites_matching(struct djn_shell *sh, const char *pattern)
{
	int n = 0;

	for (int i = 0; i < djn_site_count(&sh->m->cfg); i++)
		n += djn_site_match(&sh->m->cfg, pattern, i);
	return n;
}

static void remember(struct djn_shell *sh, int id, bool temporary)
{
	struct sh_session *ss = sh_cur(sh);

	ss->bps = djn_xrealloc(ss->bps, sizeof(*ss->bps) * (size_t)(ss->n_bps + 1));
	ss->bps[ss->n_bps++] = (struct sh_bp){ .id = id, .temporary = temporary };
}

static enum djn_cmd_ret add_break(struct djn_shell *sh, int argc, char **argv, bool temporary)
{
	struct djn_session *s = sh_s(sh);
	char pattern[64];
	const char *cond = NULL;
	int i = 2, id;

	if (!strcmp(argv[1], "token")) {
		if (argc < 3)
			return sh_fail(sh, "usage: %s token N [if COND]", argv[0]);
		snprintf(pattern, sizeof(pattern), "token %.50s", argv[2]);
		i = 3;
	} else {
		if (strlen(argv[1]) >= 48)
			return sh_fail(sh, "no site '%.48s...'", argv[1]);
		if (!sh_pattern_arg(sh, argv[1]))
			return DJN_CMD_FAIL;
		snprintf(pattern, sizeof(pattern), "%s", argv[1]);
	}
	if (i < argc) {
		if (strcmp(argv[i], "if"))
			return sh_fail(sh, "%s: unexpected '%s' (a condition starts with \"if\")",
				       argv[0], argv[i]);
		if (i + 1 >= argc)
			return sh_fail(sh, "%s: \"if\" needs a condition", argv[0]);
		cond = sh_raw(sh, i + 1);
	}
	if ((id = djn_bp_add(s, pattern, cond, temporary)) < 0)
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	remember(sh, id, temporary);
	if (!strncmp(pattern, "token ", 6)) {
		sh_printf(sh, "%s %d at %s\n", temporary ? "Temporary breakpoint" : "Breakpoint", id,
			  pattern);
	} else {
		int n = n_sites_matching(sh, pattern);
		if (n == 1)
			sh_printf(sh, "%s %d at %s\n", temporary ? "Temporary breakpoint" : "Breakpoint",
				  id, pattern);
		else
			sh_printf(sh, "%s %d at %s (%d sites)\n",
				  temporary ? "Temporary breakpoint" : "Breakpoint", id, pattern, n);
	}
	sh_json_num(sh, "id", id);
	sh_json_str(sh, "pattern", pattern);
	sh_json_str(sh, "cond", cond);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_break)
{
	return add_break(sh, argc, argv, false);
}

DJN_CMD_FN(cmd_tbreak)
{
	return add_break(sh, argc, argv, true);
}

DJN_CMD_FN(cmd_watch)
{
	struct djn_session *s = sh_s(sh);
	const char *cond = sh_raw(sh, 2);
	int id;

	if (strlen(argv[1]) >= 48)
		return sh_fail(sh, "no site '%.48s...'", argv[1]);
	if (!sh_pattern_arg(sh, argv[1]))
		return DJN_CMD_FAIL;
	if ((id = djn_watch_add(s, argv[1], cond)) < 0)
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	remember(sh, id, false);
	sh_printf(sh, "Watchpoint %d: %s %s\n", id, argv[1], cond);
	sh_json_num(sh, "id", id);
	return DJN_CMD_OK;
}

static bool one_id(struct djn_shell *sh, const char *word, int *id)
{
	long v;

	if (!strcmp(word, "$bpnum")) {
		if (!(*id = newest_id(sh))) {
			sh_fail(sh, "$bpnum: there are no breakpoints");
			return false;
		}
		return true;
	}
	if (!sh_parse_long(word, 1, 1 << 30, &v)) {
		sh_fail(sh, "bad breakpoint number '%s'", word);
		return false;
	}
	if (!bp_exists(sh_s(sh), (int)v, NULL)) {
		sh_fail(sh, "No breakpoint number %ld.", v);
		return false;
	}
	*id = (int)v;
	return true;
}

DJN_CMD_FN(cmd_condition)
{
	struct djn_session *s = sh_s(sh);
	const char *cond = argc > 2 ? sh_raw(sh, 2) : NULL;
	int id;

	if (!one_id(sh, argv[1], &id))
		return DJN_CMD_FAIL;
	if (djn_bp_condition(s, id, cond))
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	if (!cond)
		sh_printf(sh, "Breakpoint %d now unconditional.\n", id);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_ignore)
{
	struct djn_session *s = sh_s(sh);
	long count;
	int id;

	if (!one_id(sh, argv[1], &id))
		return DJN_CMD_FAIL;
	if (!sh_parse_long(argv[2], 0, 1L << 40, &count))
		return sh_fail(sh, "ignore: bad count '%s' (0 or more)", argv[2]);
	if (djn_bp_ignore(s, id, count))
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	if (count == 0)
		sh_printf(sh, "Will stop next time breakpoint %d is reached.\n", id);
	else if (count == 1)
		sh_printf(sh, "Will ignore next crossing of breakpoint %d.\n", id);
	else
		sh_printf(sh, "Will ignore next %ld crossings of breakpoint %d.\n", count, id);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_commands)
{
	struct sh_session *ss = sh_cur(sh);
	int *ids = NULL, n = 0;

	if (argc > 1) {
		if (!parse_ids(sh, argc - 1, argv + 1, &ids, &n))
			return DJN_CMD_FAIL;
	} else {
		struct djn_bp_info bi;
		int last = 0;
		for (int i = 0; djn_bp_get(ss->s, i, &bi); i++)
			if (bi.id > last && bi.id != sh->advance_bp)
				last = bi.id;
		if (!last)
			return sh_fail(sh, "No breakpoints specified.");
		ids = djn_xmalloc(sizeof(int));
		ids[n++] = last;
	}
	for (int i = 0; i < n; i++) {
		if (!bp_exists(ss->s, ids[i], NULL) || !sh_bp_find(ss, ids[i])) {
			enum djn_cmd_ret r = sh_fail(sh, "No breakpoint number %d.", ids[i]);
			free(ids);
			return r;
		}
	}
	if (sh->interactive && !sh->batch && sh->depth <= 1)
		sh_printf(sh, "Type commands for breakpoint(s) %s, one per line.\n"
			      "End with a line saying just \"end\".\n",
			  argc > 1 ? sh_raw(sh, 1) : "");
	sh_block_begin(sh, SH_BLOCK_COMMANDS, ids, n);
	free(ids);
	return DJN_CMD_OK;
}

static enum djn_cmd_ret for_ids(struct djn_shell *sh, int argc, char **argv, int what)
{
	struct sh_session *ss = sh_cur(sh);
	struct djn_session *s = ss->s;
	int *ids, n;
	enum djn_cmd_ret ret = DJN_CMD_OK;

	if (argc < 2) {
		struct djn_bp_info bi;
		if (what == 0) {
			bool any = false;
			for (int i = 0; djn_bp_get(s, i, &bi); i++)
				any |= bi.id != sh->advance_bp;
			if (any && !sh_query(sh, "Delete all breakpoints? "))
				return DJN_CMD_OK;
			djn_bp_delete(s, 0);
			while (ss->n_bps)
				sh_bp_forget(ss, ss->bps[0].id);
		} else {
			for (int i = 0; djn_bp_get(s, i, &bi); i++)
				djn_bp_enable(s, bi.id, what == 2);
		}
		return DJN_CMD_OK;
	}
	if (!parse_ids(sh, argc - 1, argv + 1, &ids, &n))
		return DJN_CMD_FAIL;
	for (int i = 0; i < n; i++) {
		if (!bp_exists(s, ids[i], NULL)) {
			ret = sh_fail(sh, "No breakpoint number %d.", ids[i]);
			continue;
		}
		if (what == 0) {
			djn_bp_delete(s, ids[i]);
			sh_bp_forget(ss, ids[i]);
		} else {
			djn_bp_enable(s, ids[i], what == 2);
		}
	}
	free(ids);
	return ret;
}

DJN_CMD_FN(cmd_delete)
{
	return for_ids(sh, argc, argv, 0);
}

DJN_CMD_FN(cmd_disable)
{
	return for_ids(sh, argc, argv, 1);
}

DJN_CMD_FN(cmd_enable)
{
	return for_ids(sh, argc, argv, 2);
}

static enum djn_cmd_ret list(struct djn_shell *sh, bool watch_only)
{
	struct sh_session *ss = sh_cur(sh);
	struct djn_bp_info bi;
	cJSON *arr = cJSON_CreateArray();
	int shown = 0;

	for (int i = 0; djn_bp_get(ss->s, i, &bi); i++) {
		struct sh_bp *bp = sh_bp_find(ss, bi.id);
		char what[96];
		if (bi.id == sh->advance_bp || (watch_only && bi.kind != DJN_BP_WATCH))
			continue;
		if (!shown++)
			sh_printf(sh, "Num     Type           Disp Enb What\n");
		if (bi.kind == DJN_BP_TOKEN)
			snprintf(what, sizeof(what), "token %d", bi.token);
		else if (bi.kind == DJN_BP_WATCH)
			snprintf(what, sizeof(what), "%s %s", bi.pattern, bi.cond ? bi.cond : "");
		else
			snprintf(what, sizeof(what), "%s", bi.pattern);
		sh_printf(sh, "%-7d %-14s %-4s %-3s %s\n", bi.id,
			  bi.kind == DJN_BP_WATCH ? "watchpoint" : "breakpoint",
			  bi.temporary ? "del" : "keep", bi.enabled ? "y" : "n", what);
		if (bi.cond && bi.kind != DJN_BP_WATCH)
			sh_printf(sh, "\tstop only if %s\n", bi.cond);
		if (bi.stop_if)
			sh_printf(sh, "\tstop only if %s\n", bi.stop_if);
		if (bi.hits)
			sh_printf(sh, "\tbreakpoint already hit %ld time%s\n", bi.hits,
				  bi.hits == 1 ? "" : "s");
		if (bi.ignore_count)
			sh_printf(sh, "\tWill ignore next %ld crossings of breakpoint.\n",
				  bi.ignore_count);
		for (int k = 0; bp && k < bp->n_cmds; k++)
			sh_printf(sh, "        %s\n", bp->cmds[k]);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", bi.id);
		cJSON_AddStringToObject(e, "type", bi.kind == DJN_BP_WATCH ? "watchpoint"
						   : bi.kind == DJN_BP_TOKEN ? "token" : "breakpoint");
		cJSON_AddStringToObject(e, "what", what);
		if (bi.cond)
			cJSON_AddStringToObject(e, "cond", bi.cond);
		if (bi.stop_if)
			cJSON_AddStringToObject(e, "stop_if", bi.stop_if);
		cJSON_AddBoolToObject(e, "enabled", bi.enabled);
		cJSON_AddBoolToObject(e, "temporary", bi.temporary);
		cJSON_AddNumberToObject(e, "hits", (double)bi.hits);
		cJSON_AddNumberToObject(e, "ignore", (double)bi.ignore_count);
		cJSON_AddItemToArray(arr, e);
	}
	if (!shown)
		sh_printf(sh, watch_only ? "No watchpoints.\n" : "No breakpoints or watchpoints.\n");
	sh_json_add(sh, "breakpoints", arr);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_breakpoints)
{
	return list(sh, false);
}

DJN_CMD_FN(cmd_info_watchpoints)
{
	return list(sh, true);
}

/* ------------------------------------------------------------- save */

DJN_CMD_FN(cmd_save)
{
	if (argc > 1)
		return sh_fail(sh, "Undefined save command: \"%s\".  Try \"help save\".", argv[1]);
	return sh_fail(sh, "\"save\" must be followed by what to save: breakpoints");
}

/* gdb's save breakpoints: the break, tbreak and watch lines, then each one's
 * condition on a watchpoint, ignore count, disable and commands, numbered
 * $bpnum (the one just made), so that `source FILE` makes them again. */
DJN_CMD_FN(cmd_save_breakpoints)
{
	struct sh_session *ss = sh_cur(sh);
	struct djn_bp_info bi;
	const char *path = argv[1];
	FILE *f;
	int n = 0;

	if (!sh_files_ok(sh))
		return DJN_CMD_FAIL;
	for (int i = 0; djn_bp_get(ss->s, i, &bi); i++)
		n += bi.id != sh->advance_bp;
	if (!n)
		return sh_fail(sh, "Nothing to save.");
	if (!(f = fopen(path, "w")))
		return sh_fail(sh, "save breakpoints: cannot write '%s': %s", path, strerror(errno));
	for (int i = 0; djn_bp_get(ss->s, i, &bi); i++) {
		struct sh_bp *bp = sh_bp_find(ss, bi.id);
		if (bi.id == sh->advance_bp)
			continue;
		if (bi.kind == DJN_BP_WATCH)
			fprintf(f, "watch %s %s\n", bi.pattern, bi.cond ? bi.cond : "");
		else if (bi.kind == DJN_BP_TOKEN)
			fprintf(f, "%s token %d", bi.temporary ? "tbreak" : "break", bi.token);
		else
			fprintf(f, "%s %s", bi.temporary ? "tbreak" : "break", bi.pattern);
		if (bi.kind != DJN_BP_WATCH)
			fprintf(f, bi.cond ? " if %s\n" : "\n", bi.cond);
		if (bi.stop_if)
			fprintf(f, "condition $bpnum %s\n", bi.stop_if);
		if (bi.ignore_count)
			fprintf(f, "ignore $bpnum %ld\n", bi.ignore_count);
		if (!bi.enabled)
			fprintf(f, "disable $bpnum\n");
		if (bp && bp->n_cmds) {
			fprintf(f, "commands $bpnum\n");
			for (int k = 0; k < bp->n_cmds; k++)
				fprintf(f, "%s\n", bp->cmds[k]);
			fprintf(f, "end\n");
		}
	}
	if (fclose(f))
		return sh_fail(sh, "save breakpoints: cannot write '%s': %s", path, strerror(errno));
	sh_printf(sh, "Saved to file '%s'.\n", path);
	sh_json_str(sh, "file", path);
	sh_json_num(sh, "saved", n);
	return DJN_CMD_OK;
}
