/* cmd-models.c - several named models on one backend (load --name): use,
 * unload NAME, info models, and the bookkeeping that keeps the current
 * model the current session's. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/lua.h"
#include "shell/shell_impl.h"

struct djn_model *sh_model_named(struct djn_shell *sh, const char *name)
{
	for (int i = 0; i < sh->n_models; i++)
		if (!strcmp(sh->models[i].name, name))
			return sh->models[i].m;
	return NULL;
}

static void set_current(struct djn_shell *sh, struct djn_model *m)
{
	if (m == sh->m)
		return;
	if (m)
		djn_model_ref(m);
	djn_model_unref(sh->m);
	sh->m = m;
	if (sh->lua) /* scripts hold borrowed handles to the model they were bound to */
		djn_lua_bind(sh->lua, NULL, NULL, NULL);
}

void sh_model_follow(struct djn_shell *sh)
{
	if (sh->n_models && sh->n_sess)
		set_current(sh, djn_session_model(sh->sess[sh->cur].s));
}

void sh_models_free(struct djn_shell *sh)
{
	for (int i = 0; i < sh->n_models; i++) {
		djn_model_unref(sh->models[i].m);
		free(sh->models[i].name);
	}
	free(sh->models);
	sh->models = NULL;
	sh->n_models = 0;
	sh->pool_budget = 0;
}

static int session_of(struct djn_shell *sh, const struct djn_model *m)
{
	for (int i = 0; i < sh->n_sess; i++)
		if (djn_session_model(sh->sess[i].s) == m)
			return i;
	return -1;
}

static int model_index(struct djn_shell *sh, const char *name)
{
	for (int i = 0; i < sh->n_models; i++)
		if (!strcmp(sh->models[i].name, name))
			return i;
	return -1;
}

DJN_CMD_FN(cmd_use)
{
	int i = model_index(sh, argv[1]), k;
	struct djn_model *m;

	if (i < 0)
		return sh_fail(sh, "use: no model '%s' (see \"info models\")", argv[1]);
	m = sh->models[i].m;
	if ((k = session_of(sh, m)) < 0) {
		struct djn_err err = { 0 };
		struct djn_session *s = djn_session_new(m, sh->be, NULL, &err);
		if (!s)
			return sh_fail(sh, "use: %s", err.msg);
		if (sh->lua)
			djn_lua_bind(sh->lua, NULL, NULL, NULL);
		sh->sess = djn_xrealloc(sh->sess, sizeof(*sh->sess) * (size_t)(sh->n_sess + 1));
		memset(&sh->sess[sh->n_sess], 0, sizeof(*sh->sess));
		sh->sess[sh->n_sess].name = djn_xstrdup(argv[1]);
		sh->sess[sh->n_sess].s = s;
		k = sh->n_sess++;
	}
	sh->cur = k;
	sh_model_follow(sh);
	sh_printf(sh, "[Using model '%s' (%s) in session '%s']\n", argv[1], m->name,
		  sh->sess[k].name);
	sh_json_str(sh, "model", argv[1]);
	sh_json_str(sh, "session", sh->sess[k].name);
	return DJN_CMD_OK;
}

/* unload NAME: the model and its sessions; the others stay. */
enum djn_cmd_ret sh_unload_named(struct djn_shell *sh, const char *name)
{
	int i = model_index(sh, name);
	struct djn_model *m;
	char cur[64] = "";

	if (i < 0)
		return sh_fail(sh, "unload: no model '%s' (see \"info models\")", name);
	m = sh->models[i].m;
	for (int k = 0; k < sh->n_sess; k++)
		if (djn_session_model(sh->sess[k].s) == m &&
		    djn_session_state(sh->sess[k].s) == DJN_RUN_PAUSED)
			return sh_fail(sh, "unload: a run is paused in session '%s'; \"kill\" it "
					   "first", sh->sess[k].name);
	if (sh->lua) /* scripts hold borrowed handles to what goes away */
		djn_lua_bind(sh->lua, NULL, NULL, NULL);
	snprintf(cur, sizeof(cur), "%s", sh->sess[sh->cur].name);
	for (int k = 0; k < sh->n_sess;) {
		if (djn_session_model(sh->sess[k].s) == m) {
			sh_session_release(&sh->sess[k]);
			memmove(&sh->sess[k], &sh->sess[k + 1],
				sizeof(*sh->sess) * (size_t)(sh->n_sess - k - 1));
			sh->n_sess--;
		} else {
			k++;
		}
	}
	sh->cur = 0;
	for (int k = 0; k < sh->n_sess; k++)
		if (!strcmp(sh->sess[k].name, cur))
			sh->cur = k;
	sh_printf(sh, "Unloaded %s (%s).\n", name, m->name);
	free(sh->models[i].name);
	memmove(&sh->models[i], &sh->models[i + 1],
		sizeof(*sh->models) * (size_t)(sh->n_models - i - 1));
	sh->n_models--;
	if (sh->m == m) {
		djn_model_unref(sh->m);
		sh->m = NULL;
	}
	djn_model_unref(m); /* the list's reference: the pool gets its bytes back */
	if (!sh->n_sess) {
		/* the last one: nothing is loaded any more */
		sh_models_free(sh);
		free(sh->sess);
		sh->sess = NULL;
		sh->cur = 0;
		return DJN_CMD_OK;
	}
	if (!sh->m)
		set_current(sh, djn_session_model(sh->sess[sh->cur].s));
	return DJN_CMD_OK;
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

const char *sh_model_name_check(struct djn_shell *sh, const char *name)
{
	if (!name_ok(name))
		return "bad name (letters, digits, _ - .; up to 32)";
	if (sh_model_named(sh, name))
		return "a model of that name is loaded";
	for (int i = 0; i < sh->n_sess; i++)
		if (!strcmp(sh->sess[i].name, name))
			return "a session of that name exists";
	if (sh->m && !sh->n_models)
		return "a model loaded without --name is in the way (\"unload\" it, or load "
		       "every model with --name)";
	return NULL;
}

void sh_model_add(struct djn_shell *sh, const char *name, struct djn_model *m,
		  struct djn_session *s)
{
	if (sh->lua)
		djn_lua_bind(sh->lua, NULL, NULL, NULL);
	sh->models = djn_xrealloc(sh->models, sizeof(*sh->models) * (size_t)(sh->n_models + 1));
	sh->models[sh->n_models].name = djn_xstrdup(name);
	sh->models[sh->n_models].m = m; /* the caller's reference */
	sh->n_models++;
	sh->sess = djn_xrealloc(sh->sess, sizeof(*sh->sess) * (size_t)(sh->n_sess + 1));
	memset(&sh->sess[sh->n_sess], 0, sizeof(*sh->sess));
	sh->sess[sh->n_sess].name = djn_xstrdup(name);
	sh->sess[sh->n_sess].s = s;
	sh->cur = sh->n_sess++;
	set_current(sh, m);
}

DJN_CMD_FN(cmd_info_models)
{
	cJSON *arr = cJSON_CreateArray();
	struct djn_residency r = { 0 };
	char a[32], b[32], c[32], d[32], lf[32], map[512];

	if (!sh->n_models) {
		sh_printf(sh, "One model, loaded without --name: %s (see \"info memory\").\n",
			  sh->m->name);
		sh_json_add(sh, "models", arr);
		return DJN_CMD_OK;
	}
	sh_printf(sh, "  Name         Layers R/S/H    On device   Host copies  Sessions\n");
	for (int i = 0; i < sh->n_models; i++) {
		struct djn_model *m = sh->models[i].m;
		int n_s = 0;
		for (int k = 0; k < sh->n_sess; k++)
			n_s += djn_session_model(sh->sess[k].s) == m;
		djn_ring_residency(m, &r);
		if (!r.shared) {
			r.n_layer = r.n_resident = m->cfg.n_layer;
			r.resident_bytes = djn_model_weight_bytes(m);
		}
		djn_size_str(r.shared ? r.fixed_bytes - r.working_set + r.resident_bytes +
					r.slot_bytes : r.resident_bytes, a, sizeof(a));
		djn_size_str(r.host_bytes, b, sizeof(b));
		char rsh[32];
		snprintf(rsh, sizeof(rsh), "%d/%d/%d", r.n_resident, r.n_streamed, r.n_host);
		sh_printf(sh, "%c %-12s %-15s %-11s %-12s %d\n", m == sh->m ? '*' : ' ',
			  sh->models[i].name, rsh, a, r.shared ? b : "-", n_s);
		djn_ring_layer_map(m, map, sizeof(map));
		if (*map)
			sh_printf(sh, "    %s\n", map);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", sh->models[i].name);
		cJSON_AddStringToObject(e, "model", m->name);
		cJSON_AddBoolToObject(e, "current", m == sh->m);
		cJSON_AddBoolToObject(e, "shared", r.shared);
		cJSON_AddNumberToObject(e, "n_layer", r.n_layer);
		cJSON_AddNumberToObject(e, "resident", r.n_resident);
		cJSON_AddNumberToObject(e, "streamed", r.n_streamed);
		cJSON_AddNumberToObject(e, "host", r.n_host);
		cJSON_AddNumberToObject(e, "fixed_bytes", (double)r.fixed_bytes);
		cJSON_AddNumberToObject(e, "resident_bytes", (double)r.resident_bytes);
		cJSON_AddNumberToObject(e, "slot_bytes", (double)r.slot_bytes);
		cJSON_AddNumberToObject(e, "host_bytes", (double)r.host_bytes);
		cJSON_AddNumberToObject(e, "evicted", (double)r.n_evicted);
		cJSON_AddStringToObject(e, "layers", map);
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "models", arr);
	/* the pool, as any member sees it */
	for (int i = 0; i < sh->n_models; i++) {
		djn_ring_residency(sh->models[i].m, &r);
		if (!r.shared)
			continue;
		djn_size_str(r.pool_used, a, sizeof(a));
		djn_size_str(r.pool_budget, b, sizeof(b));
		djn_size_str(r.pool_budget - r.pool_used, c, sizeof(c));
		djn_size_str(r.pool_region, d, sizeof(d));
		djn_size_str(r.pool_largest_free, lf, sizeof(lf));
		sh_printf(sh, "Pool on %s: %s of %s in use by %d model%s (%s free); region %s, "
			  "largest free range %s; R resident, S streamed, H host only\n",
			  sh->be->i->name, a, b, r.pool_models, r.pool_models == 1 ? "" : "s", c, d, lf);
		sh_json_num(sh, "pool_budget", (double)r.pool_budget);
		sh_json_num(sh, "pool_used", (double)r.pool_used);
		sh_json_num(sh, "pool_region", (double)r.pool_region);
		sh_json_num(sh, "pool_largest_free", (double)r.pool_largest_free);
		break;
	}
	return DJN_CMD_OK;
}
