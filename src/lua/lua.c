/* lua.c - the embedded interpreter: state, the `djinn` module table, the
 * protected runner that every chunk goes through, and `djinn script.lua`. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "djinn/lua.h"
#include "lua/ldjinn.h"

#define MAX_BACKENDS 8

struct backend_slot {
	char spec[32];
	int threads;
	struct djn_backend *be;
	int refs;
};

struct djn_lua {
	lua_State *L;
	struct backend_slot backends[MAX_BACKENDS];
	/* what djn_lua_bind handed us; owned by the shell */
	struct djn_model *bound_m;
	struct djn_backend *bound_be;
	struct djn_session *bound_s;
};

/* Registry keys: their addresses are unique. */
static const char ctx_key = 'c', current_key = 'k', borrowed_key = 'b';

struct djn_session *volatile ldj_running;

struct djn_lua *ldj_ctx(lua_State *L)
{
	struct djn_lua *ctx;

	lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
	ctx = lua_touserdata(L, -1);
	lua_pop(L, 1);
	DJN_ASSERT(ctx != NULL);
	return ctx;
}

/* ------------------------------------------------------------ backends */

/* Models loaded for the same device share one backend: one CUDA context and
 * one set of streams however many models a script juggles. */
struct djn_backend *ldj_backend_get(lua_State *L, const char *spec, int threads,
				    struct djn_err *err)
{
	struct djn_lua *ctx = ldj_ctx(L);
	struct backend_slot *free_slot = NULL;
	struct djn_backend *be;

	for (int i = 0; i < MAX_BACKENDS; i++) {
		struct backend_slot *b = &ctx->backends[i];
		if (b->be && b->threads == threads && !strcmp(b->spec, spec)) {
			b->refs++;
			return b->be;
		}
		if (!b->be && !free_slot)
			free_slot = b;
	}
	if (strlen(spec) >= sizeof(free_slot->spec)) {
		djn_err_set(err, DJN_ERR_INVALID, "device '%s': name too long", spec);
		return NULL;
	}
	if (!free_slot) {
		djn_err_set(err, DJN_ERR_RANGE, "device '%s': more than %d backends open", spec,
			    MAX_BACKENDS);
		return NULL;
	}
	if (!(be = djn_backend_new(spec, threads, err)))
		return NULL;
	snprintf(free_slot->spec, sizeof(free_slot->spec), "%s", spec);
	free_slot->threads = threads;
	free_slot->be = be;
	free_slot->refs = 1;
	return be;
}

void ldj_backend_put(lua_State *L, struct djn_backend *be)
{
	struct djn_lua *ctx = ldj_ctx(L);

	for (int i = 0; i < MAX_BACKENDS; i++) {
		struct backend_slot *b = &ctx->backends[i];
		if (b->be == be) {
			if (--b->refs == 0) {
				djn_backend_free(be);
				memset(b, 0, sizeof(*b));
			}
			return;
		}
	}
	DJN_ASSERT(!"backend not from the pool");
}

/* -------------------------------------------------------------- errors */

/* printf formats (lua_pushfstring knows no %lld); messages past the buffer
 * are cut, which is fine for one-line errors. */
int ldj_error(lua_State *L, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	luaL_where(L, 1);
	lua_pushstring(L, msg);
	lua_concat(L, 2);
	return lua_error(L);
}

static void push_suggestions(lua_State *L, const struct djn_config *c, const char *name)
{
	char why[256];

	djn_site_why(c, name, why, sizeof(why));
	lua_pushfstring(L, " (%s)", why);
}

/* Name -> site without formatting every site's name (djn_site_find does,
 * which costs microseconds per call on a model with many layers): parse,
 * then check the one candidate by printing its name. */
static int site_lookup(const struct djn_config *c, const char *name)
{
	int n = djn_site_count(c), site = -1;
	char buf[32];

	if (name[0] == 'L' && name[1] >= '0' && name[1] <= '9') {
		char *dot;
		long l = strtol(name + 1, &dot, 10);
		if (*dot == '.' && l >= 0 && l < c->n_layer) {
			for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++)
				if (!strcmp(dot + 1, djn_site_kind_name(k)))
					site = 1 + (int)l * DJN_SITES_PER_LAYER + (k - DJN_SITE_ATTN_NORM);
		}
	} else if (!strcmp(name, "embed")) {
		site = 0;
	} else if (!strcmp(name, "final_norm")) {
		site = n - 2;
	} else if (!strcmp(name, "logits")) {
		site = n - 1;
	}
	if (site < 0)
		return djn_site_find(c, name);
	djn_site_name(c, site, buf, sizeof(buf));
	return strcmp(buf, name) ? djn_site_find(c, name) : site;
}

int ldj_check_site(lua_State *L, const struct djn_config *c, const char *what, const char *name)
{
	int site = site_lookup(c, name);

	if (site >= 0)
		return site;
	push_suggestions(L, c, name);
	return ldj_error(L, "%s: no site '%s'%s", what, name, lua_tostring(L, -1));
}

void ldj_check_pattern(lua_State *L, const struct djn_config *c, const char *what,
		       const char *pattern)
{
	if (djn_site_pattern_valid(c, pattern))
		return;
	push_suggestions(L, c, pattern);
	ldj_error(L, "%s: no site matches '%s'%s", what, pattern, lua_tostring(L, -1));
}

/* ---------------------------------------------------------- boxes, options */

static int box_gc(lua_State *L)
{
	ldj_box_free(lua_touserdata(L, 1));
	return 0;
}

struct ldj_box *ldj_box_new(lua_State *L, void (*fn)(void *))
{
	struct ldj_box *b = lua_newuserdatauv(L, sizeof(*b), 0);

	b->p = NULL;
	b->fn = fn;
	if (luaL_newmetatable(L, "djinn.box")) {
		lua_pushcfunction(L, box_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	return b;
}

void ldj_box_free(struct ldj_box *b)
{
	if (b->p)
		b->fn(b->p);
	b->p = NULL;
}

void ldj_check_opts(lua_State *L, int idx, const char *fn, const char *const *keys)
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int i = 0;
		luaL_Buffer b;

		lua_pop(L, 1);
		while (k && keys[i] && strcmp(keys[i], k))
			i++;
		if (k && keys[i])
			continue;
		luaL_buffinit(L, &b);
		for (i = 0; keys[i]; i++) {
			luaL_addstring(&b, i ? ", " : "");
			luaL_addstring(&b, keys[i]);
		}
		luaL_pushresult(&b);
		if (!k)
			ldj_error(L, "%s: option names must be strings (options are %s)", fn,
				  lua_tostring(L, -1));
		ldj_error(L, "%s: unknown option '%s' (options are %s)", fn, k, lua_tostring(L, -1));
	}
}

/* Push opts[key] (nil when there is no table); returns its type. */
static int opt_get(lua_State *L, int idx, const char *key)
{
	if (lua_isnoneornil(L, idx)) {
		lua_pushnil(L);
		return LUA_TNIL;
	}
	return lua_getfield(L, idx, key);
}

static int opt_bad(lua_State *L, const char *fn, const char *key, const char *expected)
{
	return ldj_error(L, "%s: bad option '%s' (%s expected, got %s)", fn, key, expected,
			 luaL_typename(L, -1));
}

const char *ldj_opt_string(lua_State *L, int idx, const char *fn, const char *key,
			   const char *def)
{
	const char *v = def;
	int t = opt_get(L, idx, key);

	if (t == LUA_TSTRING)
		v = lua_tostring(L, -1); /* stays alive: it is a field of the table */
	else if (t != LUA_TNIL)
		opt_bad(L, fn, key, "string");
	lua_pop(L, 1);
	return v;
}

lua_Integer ldj_opt_integer(lua_State *L, int idx, const char *fn, const char *key,
			    lua_Integer def)
{
	lua_Integer v = def;
	int t = opt_get(L, idx, key), ok;

	if (t != LUA_TNIL) {
		v = lua_tointegerx(L, -1, &ok);
		if (!ok || t != LUA_TNUMBER)
			opt_bad(L, fn, key, "integer");
	}
	lua_pop(L, 1);
	return v;
}

lua_Number ldj_opt_number(lua_State *L, int idx, const char *fn, const char *key,
			  lua_Number def)
{
	lua_Number v = def;
	int t = opt_get(L, idx, key);

	if (t == LUA_TNUMBER)
		v = lua_tonumber(L, -1);
	else if (t != LUA_TNIL)
		opt_bad(L, fn, key, "number");
	lua_pop(L, 1);
	return v;
}

bool ldj_opt_boolean(lua_State *L, int idx, const char *fn, const char *key, bool def)
{
	bool v = def;
	int t = opt_get(L, idx, key);

	if (t == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else if (t != LUA_TNIL)
		opt_bad(L, fn, key, "boolean");
	lua_pop(L, 1);
	return v;
}

/* ------------------------------------------------------ module functions */

/* djinn.clock() -> integer nanoseconds of CLOCK_MONOTONIC */
static int l_clock(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000000000 + ts.tv_nsec);
	return 1;
}

/* djinn.sleep(seconds): the host waits (an experiment's idle time) */
static int l_sleep(lua_State *L)
{
	lua_Number sec = luaL_checknumber(L, 1);
	struct timespec ts;

	if (!(sec >= 0 && sec <= 3600))
		return luaL_argerror(L, 1, "seconds in 0..3600");
	ts.tv_sec = (time_t)sec;
	ts.tv_nsec = (long)((sec - (lua_Number)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	return 0;
}

/* Remember a borrowed userdata (at the top) so that a rebind can detach it. */
static void track_borrowed(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &borrowed_key);
	lua_pushvalue(L, -2);
	lua_pushboolean(L, 1);
	lua_rawset(L, -3);
	lua_pop(L, 1);
}

/* djinn.current() -> model, session (either may be nil): the shell's own
 * objects, borrowed.  The same userdata come back until the shell rebinds. */
static int l_current(lua_State *L)
{
	struct djn_lua *ctx = ldj_ctx(L);
	struct ldj_model *lm;
	struct ldj_session *ls;

	lua_rawgetp(L, LUA_REGISTRYINDEX, &current_key); /* {model, session} */
	int cur = lua_gettop(L);
	if (lua_rawgeti(L, cur, 1) == LUA_TUSERDATA &&
	    ((struct ldj_model *)lua_touserdata(L, -1))->m) {
		lm = lua_touserdata(L, -1);
	} else {
		lua_pop(L, 1);
		lm = NULL;
		if (ctx->bound_m) {
			lm = ldj_model_push_borrowed(L, ctx->bound_m, ctx->bound_be);
			track_borrowed(L);
			lua_pushvalue(L, -1);
			lua_rawseti(L, cur, 1);
		} else {
			lua_pushnil(L);
		}
	}
	if (lua_rawgeti(L, cur, 2) == LUA_TUSERDATA &&
	    ((struct ldj_session *)lua_touserdata(L, -1))->s)
		return 2;
	lua_pop(L, 1);
	if (!ctx->bound_s || !lm || djn_session_model(ctx->bound_s) != lm->m) {
		lua_pushnil(L);
		return 2;
	}
	ls = ldj_session_push(L, cur + 1);
	ldj_session_attach(ls, lm, ctx->bound_s, true);
	track_borrowed(L);
	lua_pushvalue(L, -1);
	lua_rawseti(L, cur, 2);
	return 2;
}

static int luaopen_djinn(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "clock", l_clock },
		{ "current", l_current },
		{ "sleep", l_sleep },
		{ NULL, NULL },
	};

	luaL_newlib(L, funcs);
	ldj_open_tensor(L);
	ldj_open_model(L);
	ldj_open_session(L);
	ldj_open_sched(L);
	ldj_open_json(L);
	ldj_open_remote(L);
	lua_pushliteral(L, "0.1");
	lua_setfield(L, -2, "version");
	return 1;
}

/* ------------------------------------------------------------- the state */

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Scripts `require "stats"` from lua/lib of the tree the binary was built
 * in (build/djinn, build/<name>/djinn) or bundled with (lua/ beside it),
 * then from ./lua/lib: no machine paths baked in. */
static void set_path(lua_State *L)
{
	char exe[PATH_MAX], dir[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int parts = 0;

	lua_getglobal(L, "package");
	if (n > 0) {
		exe[n] = '\0';
		for (int up = 0; up < 4; up++) {
			char *slash = strrchr(exe, '/');
			if (!slash)
				break;
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/lua/lib", exe);
			if (is_dir(dir)) {
				lua_pushfstring(L, "%s/?.lua;", dir);
				parts++;
				break;
			}
		}
	}
	lua_pushliteral(L, "./lua/lib/?.lua;");
	lua_getfield(L, -2 - parts, "path");
	lua_concat(L, parts + 2);
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
}

static int setup(lua_State *L)
{
	struct djn_lua *ctx = lua_touserdata(L, 1);

	lua_pushlightuserdata(L, ctx);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &current_key);
	lua_newtable(L); /* weak-keyed set of borrowed userdata */
	lua_newtable(L);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &borrowed_key);

	luaL_openlibs(L);
	set_path(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_djinn);
	lua_setfield(L, -2, "djinn");
	lua_pop(L, 2);
	luaL_requiref(L, "djinn", luaopen_djinn, 1);
	return 0;
}

struct djn_lua *djn_lua_new(struct djn_err *err)
{
	struct djn_lua *ctx = djn_xcalloc(1, sizeof(*ctx));
	int st;

	if (!(ctx->L = luaL_newstate())) {
		free(ctx);
		djn_err_set(err, DJN_ERR_NOMEM, "lua: cannot create a state");
		return NULL;
	}
	lua_pushcfunction(ctx->L, setup);
	lua_pushlightuserdata(ctx->L, ctx);
	if ((st = lua_pcall(ctx->L, 1, 0, 0)) != LUA_OK) {
		djn_err_set(err, DJN_ERR_NOMEM, "lua: %s", lua_tostring(ctx->L, -1));
		lua_close(ctx->L);
		free(ctx);
		return NULL;
	}
	return ctx;
}

void djn_lua_free(struct djn_lua *ctx)
{
	if (!ctx)
		return;
	/* finalizers close every model and session; the pool empties with them */
	lua_close(ctx->L);
	for (int i = 0; i < MAX_BACKENDS; i++)
		djn_backend_free(ctx->backends[i].be);
	free(ctx);
}

/* Detach the borrowed userdata that no longer match the shell's objects:
 * the session always; the model (and the sessions a script made on it,
 * whose backend is the shell's) only when the model or backend changes. */
static int unbind(lua_State *L)
{
	bool model_changed = lua_toboolean(L, 1);

	lua_rawgetp(L, LUA_REGISTRYINDEX, &borrowed_key);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pop(L, 1);
		if (luaL_testudata(L, -1, LDJ_SESSION))
			ldj_session_close(lua_touserdata(L, -1));
		else if (model_changed && luaL_testudata(L, -1, LDJ_MODEL))
			ldj_model_close(L, lua_touserdata(L, -1));
	}
	lua_pop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &current_key);
	lua_pushnil(L);
	lua_rawseti(L, -2, 2);
	if (model_changed) {
		lua_pushnil(L);
		lua_rawseti(L, -2, 1);
	}
	return 0;
}

void djn_lua_bind(struct djn_lua *ctx, struct djn_model *m, struct djn_backend *be,
		  struct djn_session *s)
{
	bool model_changed = ctx->bound_m != m || ctx->bound_be != be;

	if (!model_changed && ctx->bound_s == s)
		return;
	lua_pushcfunction(ctx->L, unbind);
	lua_pushboolean(ctx->L, model_changed);
	if (lua_pcall(ctx->L, 1, 0, 0) != LUA_OK)
		lua_pop(ctx->L, 1); /* only on memory exhaustion: nothing better to do */
	ctx->bound_m = m;
	ctx->bound_be = be;
	ctx->bound_s = s;
}

/* ------------------------------------------------------------- running */

/* Message handler: the error and a traceback, as lua.c does. */
static int msgh(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* A script's message handler: one line where a traceback adds nothing to
 * it - the script cannot be read (a bad path, a syntax error: the message
 * names the file and line), or its main chunk itself raised the error with
 * assert or error (`assert(djinn.load(path))`: the message says it all).
 * Anything deeper keeps its traceback. */
static int script_msgh(lua_State *L)
{
	lua_Debug raiser, caller;
	bool lua_frames = false;

	if (lua_type(L, 1) != LUA_TSTRING)
		return msgh(L);
	for (int lv = 1; lua_getstack(L, lv, &caller); lv++) {
		lua_getinfo(L, "S", &caller);
		if (strcmp(caller.what, "C")) {
			lua_frames = true;
			break;
		}
	}
	if (!lua_frames)
		return 1;
	if (lua_getstack(L, 1, &raiser) && lua_getstack(L, 2, &caller)) {
		lua_getinfo(L, "Sn", &raiser);
		lua_getinfo(L, "S", &caller);
		if (!strcmp(raiser.what, "C") && raiser.name &&
		    (!strcmp(raiser.name, "assert") || !strcmp(raiser.name, "error")) &&
		    !strcmp(caller.what, "main"))
			return 1;
	}
	return msgh(L);
}

static enum djn_status docall_h(lua_State *L, int narg, lua_CFunction handler,
				struct djn_err *err)
{
	int base = lua_gettop(L) - narg;
	enum djn_status code;
	int st;

	lua_pushcfunction(L, handler);
	lua_insert(L, base);
	st = lua_pcall(L, narg, 0, base);
	lua_remove(L, base);
	if (st == LUA_OK)
		return DJN_OK;
	code = djn_err_set(err, st == LUA_ERRMEM ? DJN_ERR_NOMEM : DJN_ERR_INVALID, "%s",
			   lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)");
	lua_pop(L, 1);
	return code;
}

static enum djn_status docall(lua_State *L, int narg, struct djn_err *err)
{
	return docall_h(L, narg, msgh, err);
}

enum djn_status djn_lua_run_string(struct djn_lua *ctx, const char *code, const char *chunkname,
				   struct djn_err *err)
{
	lua_State *L = ctx->L;
	int st = luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : "=(lua)");

	if (st != LUA_OK) {
		enum djn_status ret = djn_err_set(err, st == LUA_ERRMEM ? DJN_ERR_NOMEM
									: DJN_ERR_INVALID,
						  "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		return ret;
	}
	return docall(L, 0, err);
}

struct script {
	const char *path;
	int argc;
	char **argv;
};

/* Protected: set `arg`, load, run.  Loading in here too means a script that
 * cannot be read comes out the same way as a runtime error (one line). */
static int run_script(lua_State *L)
{
	const struct script *sc = lua_touserdata(L, 1);

	lua_createtable(L, sc->argc, 2);
	lua_pushliteral(L, "djinn");
	lua_rawseti(L, -2, -1);
	lua_pushstring(L, sc->path);
	lua_rawseti(L, -2, 0);
	for (int i = 0; i < sc->argc; i++) {
		lua_pushstring(L, sc->argv[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setglobal(L, "arg");
	if (luaL_loadfile(L, sc->path) != LUA_OK)
		return lua_error(L);
	luaL_checkstack(L, sc->argc, "too many arguments");
	for (int i = 0; i < sc->argc; i++)
		lua_pushstring(L, sc->argv[i]);
	lua_call(L, sc->argc, 0);
	return 0;
}

/* argv holds the script's own arguments: arg[1..argc], and `...`. */
enum djn_status djn_lua_run_file(struct djn_lua *ctx, const char *path, int argc, char **argv,
				 struct djn_err *err)
{
	struct script sc = { path, argc, argv };

	lua_pushcfunction(ctx->L, run_script);
	lua_pushlightuserdata(ctx->L, &sc);
	return docall_h(ctx->L, 1, script_msgh, err);
}

/* Ctrl-C: stop the engine at the next site, then the script at its next
 * instruction (lua.c's hook trick: a signal handler may not raise). */
static lua_State *sig_L;

static void sig_stop(lua_State *L, lua_Debug *ar)
{
	lua_sethook(L, NULL, 0, 0);
	luaL_error(L, "interrupted!");
}

static void sig_action(int sig)
{
	struct djn_session *s = ldj_running;

	signal(sig, SIG_DFL); /* a second Ctrl-C kills */
	if (s)
		djn_session_interrupt(s);
	lua_sethook(sig_L, sig_stop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int djn_lua_main(int argc, char **argv)
{
	struct djn_err err = { 0 };
	struct djn_lua *ctx;
	enum djn_status st;

	if (argc < 1) {
		fprintf(stderr, "usage: djinn SCRIPT.lua [ARGS...]\n");
		return 2;
	}
	if (!(ctx = djn_lua_new(&err))) {
		fprintf(stderr, "djinn: %s\n", err.msg);
		return 1;
	}
	sig_L = ctx->L;
	signal(SIGINT, sig_action);
	st = djn_lua_run_file(ctx, argv[0], argc - 1, argv + 1, &err);
	signal(SIGINT, SIG_DFL);
	fflush(stdout);
	if (st)
		fprintf(stderr, "djinn: %s\n", err.msg);
	djn_lua_free(ctx);
	return st ? 1 : 0;
}
