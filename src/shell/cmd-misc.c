/* cmd-misc.c - settings and scripting: set, show, source, echo, help, quit,
 * lua, and `info` alone. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/lua.h"
#include "shell/shell_impl.h"

/* ----------------------------------------------------------- settings */

/* Each setting is a field of the shell; one row says how to parse and show
 * it (the names themselves are declared in cmd.c's set/show tables). */
struct setting {
	const char *name;
	enum { S_BOOL, S_INT } kind;
	size_t off;
	long lo, hi;
	const char *values[2]; /* S_BOOL: the words for false and true */
	const char *show;      /* printf format, one %s: the value */
};

static const struct setting settings[] = {
	{ "output", S_BOOL, offsetof(struct djn_shell, json), 0, 1, { "text", "json" },
	  "Output format is %s.\n" },
	{ "precision", S_INT, offsetof(struct djn_shell, precision), 1, 17, { 0 },
	  "Values print with %s significant digits.\n" },
	{ "elements", S_INT, offsetof(struct djn_shell, elements), 0, 1 << 30, { 0 },
	  "Limit on values to print is %s.\n" },
	{ "confirm", S_BOOL, offsetof(struct djn_shell, confirm), 0, 1, { "off", "on" },
	  "Whether to confirm potentially dangerous operations is %s.\n" },
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *setting_find(const char *name)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (!strcmp(settings[i].name, name))
			return &settings[i];
	return NULL;
}

DJN_CMD_FN(cmd_set)
{
	const struct setting *st = setting_find(argv[0]);
	char *field;
	long n;

	DJN_ASSERT(st); /* the dispatcher only calls us for names in set_cmds */
	field = (char *)sh + st->off;
	if (st->kind == S_BOOL) {
		for (int v = 0; v < 2; v++) {
			if (!strcmp(argv[1], st->values[v])) {
				*(bool *)field = v;
				return DJN_CMD_OK;
			}
		}
		return sh_fail(sh, "set %s: bad value '%s' (%s or %s)", st->name, argv[1],
			       st->values[0], st->values[1]);
	}
	if (!sh_parse_long(argv[1], st->lo, st->hi, &n))
		return sh_fail(sh, "set %s: bad value '%s' (%ld..%ld)", st->name, argv[1], st->lo,
			       st->hi);
	*(int *)field = (int)n;
	return DJN_CMD_OK;
}

static void show_one(struct djn_shell *sh, const struct setting *st)
{
	const char *field = (const char *)sh + st->off;
	char v[32];

	if (st->kind == S_BOOL) {
		bool b = *(const bool *)field;
		snprintf(v, sizeof(v), "%s", st->values[b]);
		sh_json_str(sh, st->name, v);
	} else {
		int n = *(const int *)field;
		if (n == 0 && st->lo == 0)
			snprintf(v, sizeof(v), "unlimited");
		else
			snprintf(v, sizeof(v), "%d", n);
		sh_json_num(sh, st->name, n);
	}
	sh_printf(sh, st->show, v);
}

DJN_CMD_FN(cmd_show)
{
	const struct setting *st = setting_find(argv[0]);

	if (st) {
		show_one(sh, st);
		return DJN_CMD_OK;
	}
	if (argc > 1) /* `show X` where X is no setting is caught by the dispatcher */
		return sh_fail(sh, "usage: show [SETTING]");
	for (size_t i = 0; i < N_SETTINGS; i++)
		show_one(sh, &settings[i]);
	return DJN_CMD_OK;
}

/* ------------------------------------------------------------- source */

enum djn_cmd_ret djn_shell_source(struct djn_shell *sh, const char *path)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	size_t len = strlen(path);

	if (len > 4 && !strcmp(path + len - 4, ".lua"))
		return sh_lua_file(sh, path);
	if (!(f = fopen(path, "r")))
		return sh_fail(sh, "%s: %s.", path, strerror(errno));
	while (!sh->quit && !djn_shell_sigint && (n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		djn_shell_exec(sh, line);
	}
	free(line);
	fclose(f);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_source)
{
	enum djn_cmd_ret ret;

	if (!sh_files_ok(sh))
		return DJN_CMD_FAIL;
	if (sh->depth > 16)
		return sh_fail(sh, "source: files nested too deeply");
	ret = djn_shell_source(sh, argv[1]);
	if (ret == DJN_CMD_OK && sh->block.kind != SH_BLOCK_NONE)
		djn_shell_finish_input(sh);
	return ret;
}

/* ------------------------------------------------------- echo, quit */

DJN_CMD_FN(cmd_echo)
{
	const char *p = argc > 1 ? sh_raw(sh, 1) : "";
	size_t n = strlen(p), o = 0;
	char *out = djn_xmalloc(n + 1);

	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\\' || i + 1 == n) {
			out[o++] = p[i];
			continue;
		}
		switch (p[++i]) {
		case 'n': out[o++] = '\n'; break;
		case 't': out[o++] = '\t'; break;
		case 'a': out[o++] = '\a'; break;
		default: out[o++] = p[i]; break;
		}
	}
	sh_write(sh, out, o);
	free(out);
	return DJN_CMD_OK;
}

/* gdb's quit_confirm: what a quit would end, if anything */
static bool quit_confirmed(struct djn_shell *sh)
{
	char msg[2048], where[256];
	size_t o = 0;

	for (int i = 0; i < sh->n_sess && o < sizeof(msg); i++) {
		struct djn_session *s = sh->sess[i].s;
		struct djn_checkpoint_info ci;
		int n_ckpt = 0;
		if (!s)
			continue;
		while (djn_checkpoint_get(s, n_ckpt, &ci))
			n_ckpt++;
		if (djn_session_state(s) == DJN_RUN_PAUSED) {
			sh_cursor_str(sh, s, where, sizeof(where));
			o += (size_t)snprintf(msg + o, sizeof(msg) - o,
					      "\tSession %s, paused at %s, will be killed.\n",
					      sh->sess[i].name, where);
		}
		if (n_ckpt && o < sizeof(msg))
			o += (size_t)snprintf(msg + o, sizeof(msg) - o,
					      "\tSession %s's %d checkpoint%s will be lost.\n",
					      sh->sess[i].name, n_ckpt, n_ckpt == 1 ? "" : "s");
	}
	return !o || sh_query(sh, "A debugging session is active.\n\n%s\nQuit anyway? ", msg);
}

DJN_CMD_FN(cmd_quit)
{
	if (!quit_confirmed(sh))
		return sh_fail(sh, "Not confirmed.");
	sh->quit = true;
	return DJN_CMD_QUIT;
}

/* --------------------------------------------------------------- help */

static void list_table(struct djn_shell *sh, const struct djn_cmd *t, const char *prefix)
{
	for (const struct djn_cmd *c = t; c->name; c++) {
		if (c->flags & DJN_CMD_HIDDEN)
			continue;
		if (c->group && !*prefix)
			sh_printf(sh, "%s%s:\n", c == t ? "" : "\n", c->group);
		sh_printf(sh, "  %s%-12s -- %s\n", prefix, c->name, c->summary);
	}
}

DJN_CMD_FN(cmd_help)
{
	const struct djn_cmd *c;
	char msg[512];

	if (argc == 1) {
		sh_printf(sh, "List of commands:\n\n");
		list_table(sh, djn_cmd_table, "");
		sh_printf(sh, "\nType \"help\" followed by a command name for its documentation.\n"
			      "Command name abbreviations are allowed if unambiguous.\n");
		return DJN_CMD_OK;
	}
	if (!(c = djn_cmd_find(djn_cmd_table, argv[1], "", msg, sizeof(msg))))
		return sh_fail(sh, "%s", msg);
	if (argc == 3) {
		char what[64];
		if (!c->sub)
			return sh_fail(sh, "\"%s\" has no subcommands", c->name);
		snprintf(what, sizeof(what), "%s ", c->name);
		if (!(c = djn_cmd_find(c->sub, argv[2], what, msg, sizeof(msg))))
			return sh_fail(sh, "%s", msg);
	}
	sh_printf(sh, "%s\nusage: %s\n", c->summary, c->usage);
	if (c->alias)
		sh_printf(sh, "alias: %s\n", c->alias);
	if (c->help)
		sh_printf(sh, "\n%s\n", c->help);
	if (c->sub) {
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "%s ", c->name);
		sh_printf(sh, "\n");
		list_table(sh, c->sub, prefix);
	}
	sh_json_str(sh, "name", c->name);
	sh_json_str(sh, "usage", c->usage);
	sh_json_str(sh, "summary", c->summary);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info)
{
	if (argc > 1)
		return sh_fail(sh, "Undefined info command: \"%s\".  Try \"help info\".", argv[1]);
	sh_printf(sh, "\"info\" must be followed by the name of an info command.\n"
		      "List of info subcommands:\n\n");
	for (const struct djn_cmd *c = djn_cmd_table; c->name; c++)
		if (c->exec == cmd_info)
			list_table(sh, c->sub, "info ");
	return DJN_CMD_OK;
}

/* ---------------------------------------------------------------- Lua */

static bool lua_ready(struct djn_shell *sh)
{
	struct djn_err err = { 0 };

	if (sh->sandbox) {
		sh_fail(sh, "lua: off in this shell");
		return false;
	}
	if (sh->host) {
		sh_fail(sh, "lua: off on a remote target (script it from the client with "
			    "djinn.connect)");
		return false;
	}
	if (!sh->lua && !(sh->lua = djn_lua_new(&err))) {
		sh_fail(sh, "lua: %s", err.msg);
		return false;
	}
	djn_lua_bind(sh->lua, sh->m, sh->be, sh_s(sh));
	return true;
}

enum djn_cmd_ret sh_lua_run(struct djn_shell *sh, const char *code, const char *chunk)
{
	struct djn_err err = { 0 };

	if (!lua_ready(sh))
		return DJN_CMD_FAIL;
	fflush(sh->out);
	if (djn_lua_run_string(sh->lua, code, chunk, &err))
		return sh_fail(sh, "%s", err.msg);
	fflush(stdout);
	return DJN_CMD_OK;
}

enum djn_cmd_ret sh_lua_file(struct djn_shell *sh, const char *path)
{
	struct djn_err err = { 0 };

	if (!lua_ready(sh))
		return DJN_CMD_FAIL;
	fflush(sh->out);
	if (djn_lua_run_file(sh->lua, path, 0, NULL, &err))
		return sh_fail(sh, "%s", err.msg);
	fflush(stdout);
	return DJN_CMD_OK;
}

void sh_lua_free(struct djn_shell *sh)
{
	djn_lua_free(sh->lua);
	sh->lua = NULL;
}

DJN_CMD_FN(cmd_lua)
{
	if (sh->sandbox)
		return sh_fail(sh, "lua: off in this shell");
	if (sh->host)
		return sh_fail(sh, "lua: off on a remote target (script it from the client with "
				   "djinn.connect)");
	if (argc == 1) {
		if (sh->interactive && !sh->batch && sh->depth <= 1)
			sh_printf(sh, "Type Lua code, one line at a time; end with a line saying "
				      "just \"end\".\n");
		sh_block_begin(sh, SH_BLOCK_LUA, NULL, 0);
		return DJN_CMD_OK;
	}
	return sh_lua_run(sh, sh_raw(sh, 1), "=lua");
}
