/* cmd-session.c - several runs over one loaded model: session new NAME,
 * session NAME, session swapout NAME, session swapin NAME, info sessions.  Sessions share the model's weights (the
 * Text segment is reference-counted), each has its own KV cache,
 * breakpoints, steers and checkpoints. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

static int find(struct djn_shell *sh, const char *name)
{
	for (int i = 0; i < sh->n_sess; i++)
		if (!strcmp(sh->sess[i].name, name))
			return i;
	return -1;
}

static bool name_ok(const char *n)
{
	if (!*n || strlen(n) > 32)
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return false;
	return true;
}

DJN_CMD_FN(cmd_session_new)
{
	struct djn_err err = { 0 };
	struct djn_session *s;
	struct djn_model *m = sh->m;

	if (argc == 4 && !strcmp(argv[2], "--model")) {
		if (!(m = sh_model_named(sh, argv[3])))
			return sh_fail(sh, "session: no model '%s' (see \"info models\")", argv[3]);
	} else if (argc > 2) {
		return sh_fail(sh, "usage: session new NAME [--model NAME]");
	}
	if (!name_ok(argv[1]))
		return sh_fail(sh, "session: bad name '%s' (letters, digits, _ - .; up to 32)",
			       argv[1]);
	if (find(sh, argv[1]) >= 0)
		return sh_fail(sh, "session: '%s' exists already", argv[1]);
	if (sh->sandbox && sh->n_sess >= 4)
		return sh_fail(sh, "session: too many sessions");
	if (!(s = djn_session_new(m, sh->be, NULL, &err)))
		return sh_fail(sh, "session: %s", err.msg);
	sh->sess = djn_xrealloc(sh->sess, sizeof(*sh->sess) * (size_t)(sh->n_sess + 1));
	memset(&sh->sess[sh->n_sess], 0, sizeof(*sh->sess));
	sh->sess[sh->n_sess].name = djn_xstrdup(argv[1]);
	sh->sess[sh->n_sess].s = s;
	sh->cur = sh->n_sess++;
	sh_model_follow(sh);
	sh_printf(sh, "[New session '%s' over %s; switching to it]\n", argv[1], sh->m->name);
	sh_json_str(sh, "session", argv[1]);
	return DJN_CMD_OK;
}

static const char *state_str(enum djn_run_state st)
{
	return st == DJN_RUN_PAUSED ? "paused" : st == DJN_RUN_DONE ? "finished" : "no run";
}

DJN_CMD_FN(cmd_session)
{
	int i = find(sh, argv[1]);
	char where[256] = "";

	if (i < 0)
		return sh_fail(sh, "No session '%s' (see \"info sessions\").", argv[1]);
	sh->cur = i;
	sh_model_follow(sh);
	if (djn_session_state(sh->sess[i].s) != DJN_RUN_IDLE)
		sh_cursor_str(sh, sh->sess[i].s, where, sizeof(where));
	sh_printf(sh, "[Switching to session '%s' (%s%s%s)]\n", argv[1],
		  state_str(djn_session_state(sh->sess[i].s)), *where ? ", " : "", where);
	sh_json_str(sh, "session", argv[1]);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_sessions)
{
	cJSON *arr = cJSON_CreateArray();

	sh_printf(sh, "  Name             State     Where\n");
	for (int i = 0; i < sh->n_sess; i++) {
		struct djn_session *s = sh->sess[i].s;
		enum djn_run_state st = djn_session_state(s);
		char where[256] = "";
		if (st != DJN_RUN_IDLE)
			sh_cursor_str(sh, s, where, sizeof(where));
		char replays[48] = ""; /* decode steps run as recorded CUDA graphs */
		long g = djn_session_graph_steps(s);
		if (g > 0)
			snprintf(replays, sizeof(replays), " [%ld steps replayed]", g);
		char who[160]; /* its tenant, when scheduled */
		sh_sched_tenant_str(sh, s, who, sizeof(who));
		sh_printf(sh, "%c %-16s %-9s %s%s%s%s\n", i == sh->cur ? '*' : ' ', sh->sess[i].name,
			  state_str(st), where, djn_session_swapped(s) ? " [KV swapped out]" : "",
			  replays, who);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", sh->sess[i].name);
		cJSON_AddStringToObject(e, "state", state_str(st));
		cJSON_AddBoolToObject(e, "current", i == sh->cur);
		cJSON_AddBoolToObject(e, "swapped", djn_session_swapped(s));
		cJSON_AddNumberToObject(e, "graph_steps", (double)djn_session_graph_steps(s));
		sh_sched_tenant_json(sh, s, e);
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "sessions", arr);
	return DJN_CMD_OK;
}

/* session swapout NAME / session swapin NAME: the KV pages to host memory
 * and back (the run stays where it is; running it swaps it in). */
static enum djn_cmd_ret swap(struct djn_shell *sh, const char *name, bool out)
{
	int i = find(sh, name);
	struct djn_session *s;
	size_t bytes;
	double ms;
	char sz[32];

	if (i < 0)
		return sh_fail(sh, "No session '%s' (see \"info sessions\").", name);
	s = sh->sess[i].s;
	if (djn_session_swapped(s) == out) {
		sh_printf(sh, "[Session '%s' is already swapped %s]\n", name, out ? "out" : "in");
		sh_json_str(sh, "session", name);
		sh_json_bool(sh, "swapped", out);
		return DJN_CMD_OK;
	}
	if ((out ? djn_session_swapout(s) : djn_session_swapin(s)))
		return sh_fail(sh, "session %s: %s", out ? "swapout" : "swapin", djn_session_errmsg(s));
	djn_session_swap_last(s, &bytes, &ms);
	djn_size_str(bytes, sz, sizeof(sz));
	sh_printf(sh, "[Swapped session '%s' %s: %s of KV pages %s host memory in %.1f ms (%.1f GB/s)]\n",
		  name, out ? "out" : "in", sz, out ? "to" : "from", ms,
		  ms > 0 ? (double)bytes / (ms * 1e6) : 0.0);
	sh_json_str(sh, "session", name);
	sh_json_bool(sh, "swapped", out);
	sh_json_num(sh, "bytes", (double)bytes);
	sh_json_num(sh, "ms", ms);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_session_swapout)
{
	return swap(sh, argv[1], true);
}

DJN_CMD_FN(cmd_session_swapin)
{
	return swap(sh, argv[1], false);
}
