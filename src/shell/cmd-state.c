/* cmd-state.c - checkpoints: checkpoint, restore, delete checkpoint,
 * info checkpoints. */
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

DJN_CMD_FN(cmd_checkpoint)
{
	struct djn_session *s = sh_s(sh);
	char where[256];
	int id = djn_checkpoint_new(s);

	if (id < 0)
		return sh_fail(sh, "%s", djn_session_errmsg(s));
	sh_cursor_str(sh, s, where, sizeof(where));
	sh_printf(sh, "Checkpoint %d at %s\n", id, where);
	sh_json_num(sh, "id", id);
	sh_json_add(sh, "cursor", sh_cursor_json(sh, s));
	return DJN_CMD_OK;
}

static bool ckpt_id(struct djn_shell *sh, const char *word, int *id)
{
	long v;

	if (!sh_parse_long(word, 1, 1 << 30, &v)) {
		sh_fail(sh, "bad checkpoint id '%s'", word);
		return false;
	}
	*id = (int)v;
	return true;
}

DJN_CMD_FN(cmd_restore)
{
	struct djn_session *s = sh_s(sh);
	char where[256];
	int id;

	if (!ckpt_id(sh, argv[1], &id))
		return DJN_CMD_FAIL;
	if (djn_checkpoint_restore(s, id))
		return sh_fail(sh, "restore: %s", djn_session_errmsg(s));
	sh_cursor_str(sh, s, where, sizeof(where));
	sh_printf(sh, "Restored checkpoint %d: %s\n", id, where);
	sh_json_add(sh, "cursor", sh_cursor_json(sh, s));
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_delete_checkpoint)
{
	struct djn_session *s = sh_s(sh);
	enum djn_cmd_ret ret = DJN_CMD_OK;
	int id;

	for (int i = 1; i < argc; i++) {
		if (!ckpt_id(sh, argv[i], &id))
			ret = DJN_CMD_FAIL;
		else if (djn_checkpoint_delete(s, id))
			ret = sh_fail(sh, "delete checkpoint: %s", djn_session_errmsg(s));
	}
	return ret;
}

DJN_CMD_FN(cmd_info_checkpoints)
{
	struct djn_session *s = sh_s(sh);
	struct djn_checkpoint_info ci;
	cJSON *arr = cJSON_CreateArray();
	int i;

	for (i = 0; djn_checkpoint_get(s, i, &ci); i++) {
		char site[40];
		if (!i)
			sh_printf(sh, "Id   Cursor                     Tokens  Bytes\n");
		if (ci.cursor.site < 0)
			snprintf(site, sizeof(site), "before embed");
		else
			djn_site_name(&sh->m->cfg, ci.cursor.site, site, sizeof(site));
		char cur[80];
		snprintf(cur, sizeof(cur), "%s @ pos %d", site, ci.cursor.pos);
		sh_printf(sh, "%-4d %-26s %-7d %zu\n", ci.id, cur, ci.n_tokens, ci.bytes);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", ci.id);
		cJSON_AddStringToObject(e, "site", site);
		cJSON_AddNumberToObject(e, "pos", ci.cursor.pos);
		cJSON_AddNumberToObject(e, "n_tokens", ci.n_tokens);
		cJSON_AddNumberToObject(e, "bytes", (double)ci.bytes);
		cJSON_AddItemToArray(arr, e);
	}
	if (!i)
		sh_printf(sh, "No checkpoints.\n");
	sh_json_add(sh, "checkpoints", arr);
	return DJN_CMD_OK;
}
