/* lsession.c - the djinn.Session methods: runs and the cursor, breakpoints,
 * tensors at sites, steering, checkpoints.  Engine failures raise with the
 * session's message; the engine leaves the session as it was, so a script
 * that catches the error (pcall) can go on with it. */
#include <stdlib.h>
#include <string.h>

#include "djinn/sched.h"
#include "lua/ldjinn.h"

static struct ldj_session *check(lua_State *L)
{
	struct ldj_session *ls = luaL_checkudata(L, 1, LDJ_SESSION);

	if (!ls->s)
		luaL_error(L, "session is closed");
	return ls;
}

static const struct djn_config *cfg(struct ldj_session *ls)
{
	return &djn_session_model(ls->s)->cfg;
}

static int fail(lua_State *L, struct ldj_session *ls, const char *what)
{
	return ldj_error(L, "%s: %s", what, djn_session_errmsg(ls->s));
}

/* ----------------------------------------------------------- lifetime */

struct ldj_session *ldj_session_push(lua_State *L, int model_idx)
{
	struct ldj_session *ls;

	model_idx = lua_absindex(L, model_idx);
	ls = lua_newuserdatauv(L, sizeof(*ls), 1);
	memset(ls, 0, sizeof(*ls));
	luaL_setmetatable(L, LDJ_SESSION);
	lua_pushvalue(L, model_idx); /* keeps the model (and its backend) alive */
	lua_setiuservalue(L, -2, 1);
	return ls;
}

void ldj_session_attach(struct ldj_session *ls, struct ldj_model *lm, struct djn_session *s,
			bool borrowed)
{
	ls->s = s;
	ls->owner = lm;
	ls->borrowed = borrowed;
	ls->prev = NULL;
	ls->next = lm->sessions;
	if (lm->sessions)
		lm->sessions->prev = ls;
	lm->sessions = ls;
}

void ldj_session_close(struct ldj_session *ls)
{
	if (!ls->s)
		return;
	if (ls->prev)
		ls->prev->next = ls->next;
	else
		ls->owner->sessions = ls->next;
	if (ls->next)
		ls->next->prev = ls->prev;
	if (ls->sched) /* a scheduler never holds a freed session */
		djn_sched_remove(ls->sched, ls->s);
	ls->sched = NULL;
	if (!ls->borrowed)
		djn_session_free(ls->s);
	ls->s = NULL;
	ls->prev = ls->next = NULL;
}

/* m:session{seed=, ctx=, page=} -> Session | nil, msg */
int ldj_model_session(lua_State *L)
{
	static const char *const keys[] = { "seed", "ctx", "page", NULL };
	struct ldj_model *lm = ldj_model_check(L, 1);
	struct djn_session_opts o = { 0 };
	struct djn_err err = { 0 };
	struct ldj_session *ls;
	struct djn_session *s;
	lua_Integer ctx, page, seed;

	ldj_check_opts(L, 2, "session", keys);
	seed = ldj_opt_integer(L, 2, "session", "seed", 0);
	ctx = ldj_opt_integer(L, 2, "session", "ctx", 0);
	page = ldj_opt_integer(L, 2, "session", "page", 0);
	if (ctx < 0 || ctx > lm->m->cfg.seq_len)
		return ldj_error(L, "session: ctx %lld outside 0..%d", (long long)ctx,
				 lm->m->cfg.seq_len);
	if (page < 0 || page > 4096)
		return ldj_error(L, "session: page %lld outside 0..4096", (long long)page);
	o.max_ctx = (int)ctx;
	o.kv_page_tokens = (int)page;
	ls = ldj_session_push(L, 1);
	if (!(s = djn_session_new(lm->m, lm->be, &o, &err))) {
		lua_pushnil(L);
		lua_pushfstring(L, "session: %s", err.msg);
		return 2;
	}
	ldj_session_attach(ls, lm, s, false);
	ls->seed = (uint64_t)seed;
	return 1;
}

static int s_close(lua_State *L)
{
	ldj_session_close(luaL_checkudata(L, 1, LDJ_SESSION));
	return 0;
}

static int s_model(lua_State *L)
{
	check(L);
	lua_getiuservalue(L, 1, 1);
	return 1;
}

static int s_tostring(lua_State *L)
{
	struct ldj_session *ls = luaL_checkudata(L, 1, LDJ_SESSION);
	static const char *const states[] = { "idle", "paused", "done" };

	if (!ls->s) {
		lua_pushliteral(L, "djinn.Session (closed)");
		return 1;
	}
	int n;
	djn_session_tokens(ls->s, &n, NULL);
	lua_pushfstring(L, "djinn.Session (%s, %s, %d tokens%s)", djn_session_model(ls->s)->name,
			states[djn_session_state(ls->s)], n, ls->borrowed ? ", borrowed" : "");
	return 1;
}

/* --------------------------------------------------------------- runs */

static void free_ids(void *p)
{
	free(p);
}

/* The token ids at idx (a string, encoded with BOS as `bos` says, or a
 * table of ids) into a box at the top of the stack: *ids, *n.  Raises with
 * `fn` in the message. */
static void ids_arg(lua_State *L, int idx, struct djn_model *m, const char *fn, bool bos,
		    int32_t **out, int *n_out)
{
	struct ldj_box *box = ldj_box_new(L, free_ids);
	int32_t *ids;
	int n = 0;

	if (lua_type(L, idx) == LUA_TSTRING) {
		size_t len;
		const char *text = lua_tolstring(L, idx, &len);
		struct djn_err err = { 0 };
		if (!m->tok)
			ldj_error(L, "%s: model '%s' has no tokenizer: give token ids", fn, m->name);
		if (djn_tok_encode(m->tok, text, len, bos, false, &ids, &n, &err))
			ldj_error(L, "%s: %s", fn, err.msg);
		box->p = ids;
	} else if (lua_type(L, idx) == LUA_TTABLE) {
		lua_Integer len = luaL_len(L, idx);
		if (len > m->cfg.seq_len)
			ldj_error(L, "%s: %lld tokens, the context holds %d", fn, (long long)len,
				  m->cfg.seq_len);
		box->p = ids = djn_xmalloc(sizeof(int32_t) * (size_t)(len ? len : 1));
		for (n = 0; n < len; n++) {
			int ok;
			lua_geti(L, idx, n + 1);
			lua_Integer id = lua_tointegerx(L, -1, &ok);
			lua_pop(L, 1);
			if (!ok || id < 0 || id >= m->cfg.vocab_size)
				luaL_argerror(L, idx, lua_pushfstring(L, "[%d] is not a token id in "
									 "0..%d", n + 1,
								      m->cfg.vocab_size - 1));
			ids[n] = (int32_t)id;
		}
	} else {
		luaL_typeerror(L, idx, "string or table of token ids");
	}
	*out = box->p;
	*n_out = n;
}

/* s:start(prompt [, {n=, temperature=, top_p=, seed=, eos=, bos=}]) -> n_prompt
 * prompt: a string (encoded with the model's tokenizer) or a table of ids. */
static int s_start(lua_State *L)
{
	static const char *const keys[] = { "n", "temperature", "top_p", "seed", "eos", "bos",
					    NULL };
	struct ldj_session *ls = check(L);
	struct djn_model *m = djn_session_model(ls->s);
	struct djn_gen_opts g = { 0 };
	struct ldj_box *box;
	lua_Integer n_new, seed;
	int32_t *ids;
	int n = 0;

	ldj_check_opts(L, 3, "start", keys);
	n_new = ldj_opt_integer(L, 3, "start", "n", 256);
	g.temperature = (float)ldj_opt_number(L, 3, "start", "temperature", 0);
	g.top_p = (float)ldj_opt_number(L, 3, "start", "top_p", 1);
	seed = ldj_opt_integer(L, 3, "start", "seed", (lua_Integer)ls->seed);
	g.stop_at_eos = ldj_opt_boolean(L, 3, "start", "eos", true);
	if (n_new < 0 || n_new > 1 << 24)
		return ldj_error(L, "start: n %lld outside 0..%d", (long long)n_new, 1 << 24);
	if (!(g.temperature >= 0))
		return ldj_error(L, "start: temperature must be >= 0");
	if (!(g.top_p >= 0 && g.top_p <= 1))
		return ldj_error(L, "start: top_p must be in 0..1");
	g.n_new = (int)n_new;
	g.seed = (uint64_t)seed;

	ids_arg(L, 2, m, "start",
		m->tok && ldj_opt_boolean(L, 3, "start", "bos", djn_tok_add_bos(m->tok)), &ids, &n);
	box = lua_touserdata(L, -1);
	if (n == 0)
		return ldj_error(L, "start: the prompt is empty (and the tokenizer adds no BOS)");
	if (djn_session_start(ls->s, ids, n, &g))
		return fail(L, ls, "start");
	ldj_box_free(box);
	lua_pushinteger(L, n);
	return 1;
}

static int run(lua_State *L, enum djn_run_mode mode, long count, const char *what)
{
	static const char *const reasons[] = {
		[DJN_STOP_STEP] = "step",
		[DJN_STOP_BREAKPOINT] = "breakpoint",
		[DJN_STOP_WATCHPOINT] = "watchpoint",
		[DJN_STOP_DONE] = "done",
		[DJN_STOP_INTERRUPT] = "interrupt",
	};
	struct ldj_session *ls = check(L);
	enum djn_stop why;

	ldj_running = ls->s;
	why = djn_session_run(ls->s, mode, count);
	ldj_running = NULL;
	if (why == DJN_STOP_ERROR)
		return fail(L, ls, what);
	lua_pushstring(L, reasons[why]);
	if (why == DJN_STOP_BREAKPOINT || why == DJN_STOP_WATCHPOINT) {
		lua_pushinteger(L, djn_session_last_hit(ls->s));
		return 2;
	}
	return 1;
}

static long check_count(lua_State *L, int idx, const char *what)
{
	lua_Integer n = luaL_optinteger(L, idx, 1);

	if (n < 1)
		return luaL_argerror(L, idx, lua_pushfstring(L, "%s count must be >= 1", what));
	return (long)n;
}

/* Each returns the reason it stopped: "breakpoint" (and the id),
 * "watchpoint" (and the id), "step", "done" or "interrupt". */
static int s_continue(lua_State *L)
{
	return run(L, DJN_RUN_CONTINUE, 1, "continue");
}

static int s_step(lua_State *L)
{
	return run(L, DJN_RUN_STEP, check_count(L, 2, "step"), "step");
}

static int s_next(lua_State *L)
{
	return run(L, DJN_RUN_NEXT, check_count(L, 2, "next"), "next");
}

static int s_finish(lua_State *L)
{
	return run(L, DJN_RUN_FINISH, 1, "finish");
}

/* s:extend(input, {n=}) -> true: append input (a tool's output: a string,
 * encoded without BOS, or a table of ids) and generate n (default 1) more
 * tokens, keeping the KV cache. */
static int s_extend(lua_State *L)
{
	static const char *const keys[] = { "n", NULL };
	struct ldj_session *ls = check(L);
	struct djn_model *m = djn_session_model(ls->s);
	int32_t *ids;
	int n;

	ldj_check_opts(L, 3, "extend", keys);
	lua_Integer n_more = ldj_opt_integer(L, 3, "extend", "n", 1);
	if (n_more < 1 || n_more > 1 << 24)
		return ldj_error(L, "extend: n %lld outside 1..%d", (long long)n_more, 1 << 24);
	ids_arg(L, 2, m, "extend", false, &ids, &n);
	if (djn_session_extend(ls->s, ids, n, (int)n_more))
		return fail(L, ls, "extend");
	ldj_box_free(lua_touserdata(L, -1));
	lua_pushboolean(L, 1);
	return 1;
}

/* s:run_until(pos): until the chunk at position >= pos begins. */
static int s_run_until(lua_State *L)
{
	lua_Integer pos = luaL_checkinteger(L, 2);

	if (pos < 0 || pos > 1 << 24)
		return luaL_argerror(L, 2, "position out of range");
	return run(L, DJN_RUN_UNTIL_POS, (long)pos, "run_until");
}

/* s:generate(prompt [, {n=, temperature=, top_p=, seed=}]) -> text: the plain
 * C path (djn_generate, as `djinn generate`), breakpoints honoured by going
 * on through them.  For comparisons with Lua-driven runs. */
static int s_generate(lua_State *L)
{
	static const char *const keys[] = { "n", "temperature", "top_p", "seed", NULL };
	struct ldj_session *ls = check(L);
	const char *prompt = luaL_checkstring(L, 2);
	struct djn_gen_opts g = { .stop_at_eos = true };
	lua_Integer n_new;
	size_t len;
	const char *text;

	ldj_check_opts(L, 3, "generate", keys);
	n_new = ldj_opt_integer(L, 3, "generate", "n", 256);
	g.temperature = (float)ldj_opt_number(L, 3, "generate", "temperature", 0);
	g.top_p = (float)ldj_opt_number(L, 3, "generate", "top_p", 1);
	g.seed = (uint64_t)ldj_opt_integer(L, 3, "generate", "seed", (lua_Integer)ls->seed);
	if (n_new < 0 || n_new > 1 << 24)
		return ldj_error(L, "generate: n %lld outside 0..%d", (long long)n_new, 1 << 24);
	if (!(g.temperature >= 0) || !(g.top_p >= 0 && g.top_p <= 1))
		return ldj_error(L, "generate: temperature must be >= 0 and top_p in 0..1");
	g.n_new = (int)n_new;
	ldj_running = ls->s;
	enum djn_status st = djn_generate(ls->s, prompt, &g, NULL, NULL);
	ldj_running = NULL;
	if (st)
		return fail(L, ls, "generate");
	text = djn_session_text(ls->s, &len);
	lua_pushlstring(L, text, len);
	return 1;
}

static int s_kill(lua_State *L)
{
	djn_session_kill(check(L)->s);
	return 0;
}

static const char *state_name(enum djn_run_state st)
{
	return st == DJN_RUN_PAUSED ? "paused" : st == DJN_RUN_DONE ? "done" : "idle";
}

static int s_state(lua_State *L)
{
	lua_pushstring(L, state_name(djn_session_state(check(L)->s)));
	return 1;
}

/* s:cursor() -> {pos=, n_rows=, layer=, site=, site_index=, state=}; site is
 * nil (site_index -1) before the chunk's first site, layer -1 outside layers. */
static int s_cursor(lua_State *L)
{
	struct ldj_session *ls = check(L);
	struct djn_cursor c = djn_session_cursor(ls->s);
	char name[32];

	lua_createtable(L, 0, 6);
	lua_pushinteger(L, c.pos);
	lua_setfield(L, -2, "pos");
	lua_pushinteger(L, c.n_rows);
	lua_setfield(L, -2, "n_rows");
	lua_pushinteger(L, c.layer);
	lua_setfield(L, -2, "layer");
	lua_pushinteger(L, c.site);
	lua_setfield(L, -2, "site_index");
	if (c.site >= 0) {
		djn_site_name(cfg(ls), c.site, name, sizeof(name));
		lua_pushstring(L, name);
		lua_setfield(L, -2, "site");
	}
	lua_pushstring(L, state_name(djn_session_state(ls->s)));
	lua_setfield(L, -2, "state");
	return 1;
}

/* s:text() -> the generated text so far */
static int s_text(lua_State *L)
{
	size_t len;
	const char *t = djn_session_text(check(L)->s, &len);

	lua_pushlstring(L, t, len);
	return 1;
}

/* s:tokens() -> {ids...} (prompt then generated), n_prompt */
static int s_tokens(lua_State *L)
{
	int n, n_prompt;
	const int32_t *t = djn_session_tokens(check(L)->s, &n, &n_prompt);

	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_pushinteger(L, t[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushinteger(L, n_prompt);
	return 2;
}

/* ------------------------------------------------ breakpoints, watchpoints */

/* s:break_at(pattern [, {cond=, temporary=, ignore=}]) -> id
 * pattern: a site pattern ("L3.resid_post", "L*.attn", "L1-2.q") or "token N". */
static int s_break_at(lua_State *L)
{
	static const char *const keys[] = { "cond", "temporary", "ignore", NULL };
	struct ldj_session *ls = check(L);
	const char *pattern = luaL_checkstring(L, 2);
	const char *cond;
	bool temporary;
	lua_Integer ignore;
	int id;

	ldj_check_opts(L, 3, "break_at", keys);
	cond = ldj_opt_string(L, 3, "break_at", "cond", NULL);
	temporary = ldj_opt_boolean(L, 3, "break_at", "temporary", false);
	ignore = ldj_opt_integer(L, 3, "break_at", "ignore", 0);
	if (ignore < 0)
		return ldj_error(L, "break_at: ignore must be >= 0");
	if (strncmp(pattern, "token ", 6))
		ldj_check_pattern(L, cfg(ls), "break_at", pattern);
	if ((id = djn_bp_add(ls->s, pattern, cond, temporary)) < 0)
		return fail(L, ls, "break_at");
	if (ignore > 0)
		djn_bp_ignore(ls->s, id, (long)ignore);
	lua_pushinteger(L, id);
	return 1;
}

/* s:watch(pattern, cond) -> id */
static int s_watch(lua_State *L)
{
	struct ldj_session *ls = check(L);
	const char *pattern = luaL_checkstring(L, 2);
	const char *cond = luaL_checkstring(L, 3);
	int id;

	ldj_check_pattern(L, cfg(ls), "watch", pattern);
	if ((id = djn_watch_add(ls->s, pattern, cond)) < 0)
		return fail(L, ls, "watch");
	lua_pushinteger(L, id);
	return 1;
}

/* s:delete([id]): one breakpoint or watchpoint; all without an id. */
static int s_delete(lua_State *L)
{
	struct ldj_session *ls = check(L);
	lua_Integer id = luaL_optinteger(L, 2, 0);

	if (id < 0 || id > 1 << 30 || djn_bp_delete(ls->s, (int)id))
		return ldj_error(L, "delete: no breakpoint number %lld", (long long)id);
	return 0;
}

/* s:enable(id [, on]) */
static int s_enable(lua_State *L)
{
	struct ldj_session *ls = check(L);
	lua_Integer id = luaL_checkinteger(L, 2);
	bool on = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);

	if (id < 0 || id > 1 << 30 || djn_bp_enable(ls->s, (int)id, on))
		return ldj_error(L, "enable: no breakpoint number %lld", (long long)id);
	return 0;
}

static const char *bp_kind_name(enum djn_bp_kind k)
{
	return k == DJN_BP_WATCH ? "watchpoint" : k == DJN_BP_TOKEN ? "token" : "breakpoint";
}

/* s:breakpoints() -> {{id=, kind=, pattern=, token=, cond=, stop_if=, enabled=,
 * temporary=, ignore=, hits=}...} */
static int s_breakpoints(lua_State *L)
{
	struct ldj_session *ls = check(L);
	struct djn_bp_info b;

	lua_newtable(L);
	for (int i = 0; djn_bp_get(ls->s, i, &b); i++) {
		lua_createtable(L, 0, 9);
		lua_pushinteger(L, b.id);
		lua_setfield(L, -2, "id");
		lua_pushstring(L, bp_kind_name(b.kind));
		lua_setfield(L, -2, "kind");
		if (b.kind == DJN_BP_TOKEN) {
			lua_pushinteger(L, b.token);
			lua_setfield(L, -2, "token");
		} else {
			lua_pushstring(L, b.pattern);
			lua_setfield(L, -2, "pattern");
		}
		if (b.cond) {
			lua_pushstring(L, b.cond);
			lua_setfield(L, -2, "cond");
		}
		if (b.stop_if) { /* a watchpoint's condition on top of cond */
			lua_pushstring(L, b.stop_if);
			lua_setfield(L, -2, "stop_if");
		}
		lua_pushboolean(L, b.enabled);
		lua_setfield(L, -2, "enabled");
		lua_pushboolean(L, b.temporary);
		lua_setfield(L, -2, "temporary");
		lua_pushinteger(L, b.ignore_count);
		lua_setfield(L, -2, "ignore");
		lua_pushinteger(L, b.hits);
		lua_setfield(L, -2, "hits");
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* ----------------------------------------------------------- tensors */

/* The site argument at idx, or the cursor's site when absent. */
static int site_arg(lua_State *L, struct ldj_session *ls, int idx, const char *what)
{
	if (lua_isnoneornil(L, idx)) {
		struct djn_cursor c = djn_session_cursor(ls->s);
		if (c.site < 0)
			return ldj_error(L, "%s: no site computed yet in this chunk: name one", what);
		return c.site;
	}
	return ldj_check_site(L, cfg(ls), what, luaL_checkstring(L, idx));
}

/* s:tensor([site]) -> Tensor: a host copy of the live tensor at site. */
static int s_tensor(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int site = site_arg(L, ls, 2, "tensor"), rows, cols;
	struct ldj_tensor *t;

	if (djn_session_site_shape(ls->s, site, &rows, &cols))
		return fail(L, ls, "tensor");
	t = ldj_tensor_alloc(L, rows, cols);
	if (djn_session_read(ls->s, site, t->data, (size_t)rows * cols))
		return fail(L, ls, "tensor");
	return 1;
}

/* s:lens([site [, row]]) -> Tensor: the logit lens, rows of a residual site
 * through the model's final norm and unembedding (rows x vocab; one row,
 * 1-based, with row). */
static int s_lens(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int site = site_arg(L, ls, 2, "lens"), rows, cols;
	lua_Integer row = luaL_optinteger(L, 3, 0);
	struct ldj_tensor *t;

	if (row < 0 || row > 1 << 30)
		return luaL_argerror(L, 3, "row out of range");
	if (!djn_site_residual(cfg(ls), site)) {
		char name[32];
		djn_site_name(cfg(ls), site, name, sizeof(name));
		return ldj_error(L, "lens: '%s' is not a residual-stream site (embed, "
				    "L*.resid_mid, L*.resid_post)", name);
	}
	if (djn_session_site_shape(ls->s, site, &rows, &cols))
		return fail(L, ls, "lens");
	if (row > rows)
		return luaL_argerror(L, 3, lua_pushfstring(L, "row %I outside 1..%d", row, rows));
	t = ldj_tensor_new(L, row ? 1 : rows, cfg(ls)->vocab_size);
	if (djn_session_lens(ls->s, site, row ? (int)row - 1 : 0, row ? 1 : rows, t->data))
		return fail(L, ls, "lens");
	return 1;
}

/* s:attn_pattern(layer, head [, row]) -> Tensor: head's attention weights
 * at layer (both 0-based, as in L3 and print's L3.attn_pattern[H]) for every
 * row of the chunk, or one (1-based): rows x (cursor pos + last row), each
 * row's causal window then zeros. */
static int s_attn_pattern(lua_State *L)
{
	struct ldj_session *ls = check(L);
	lua_Integer layer = luaL_checkinteger(L, 2), head = luaL_checkinteger(L, 3);
	lua_Integer row = luaL_optinteger(L, 4, 0);
	struct djn_cursor cur = djn_session_cursor(ls->s);
	struct ldj_tensor *t;
	int n;

	if (layer < 0 || layer >= cfg(ls)->n_layer)
		return luaL_argerror(L, 2, lua_pushfstring(L, "layer %I outside 0..%d", layer,
							   cfg(ls)->n_layer - 1));
	if (head < 0 || head >= cfg(ls)->n_head)
		return luaL_argerror(L, 3, lua_pushfstring(L, "head %I outside 0..%d", head,
							   cfg(ls)->n_head - 1));
	if (djn_session_state(ls->s) == DJN_RUN_IDLE)
		return ldj_error(L, "attn_pattern: the program is not being run");
	if (row < 0 || row > cur.n_rows)
		return luaL_argerror(L, 4, lua_pushfstring(L, "row %I outside 1..%d", row,
							   cur.n_rows));
	n = row ? 1 : cur.n_rows;
	t = ldj_tensor_new(L, n, cur.pos + (row ? (int)row : n));
	if (djn_session_attn_pattern(ls->s, (int)layer, (int)head, row ? (int)row - 1 : 0, n,
				     t->data))
		return ldj_error(L, "%s", djn_session_errmsg(ls->s)); /* says attn_pattern */
	return 1;
}

/* s:record{pattern, ...} (or one pattern) -> true: record those sites at
 * every position of the next runs (run_with_cache); s:record(false) stops
 * and frees it; s:record() -> the patterns, a list.  Patterns are checked
 * before any is added. */
static int s_record(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int n;

	if (lua_isnone(L, 2)) {
		lua_createtable(L, djn_record_count(ls->s), 0);
		for (int i = 0; i < djn_record_count(ls->s); i++) {
			lua_pushstring(L, djn_record_pattern(ls->s, i));
			lua_rawseti(L, -2, i + 1);
		}
		return 1;
	}
	if (lua_isboolean(L, 2) && !lua_toboolean(L, 2)) {
		djn_record_clear(ls->s);
		lua_pushboolean(L, 1);
		return 1;
	}
	if (lua_type(L, 2) == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		lua_pushvalue(L, 2);
		lua_rawseti(L, -2, 1);
		lua_replace(L, 2);
	}
	luaL_checktype(L, 2, LUA_TTABLE);
	n = (int)luaL_len(L, 2);
	if (n < 1)
		return luaL_argerror(L, 2, "no site pattern");
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_argerror(L, 2, lua_pushfstring(L, "pattern %d is not a string", i));
		ldj_check_pattern(L, cfg(ls), "record", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		if (djn_record_add(ls->s, lua_tostring(L, -1)))
			return fail(L, ls, "record");
		lua_pop(L, 1);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* s:cache(site [, pos]) -> Tensor: the rows the last run recorded at site,
 * one row per position (row i is position i - 1), or position pos alone
 * (0-based, as bt and print rec::SITE[POS] count).  final_norm and logits
 * hold each chunk's last position only: name one. */
static int s_cache(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int site = ldj_check_site(L, cfg(ls), "cache", luaL_checkstring(L, 2));
	lua_Integer pos = luaL_optinteger(L, 3, -1);
	int np = djn_record_positions(ls->s, site), w = djn_site_width(cfg(ls), site);
	struct ldj_tensor *t;

	if (!djn_record_site(ls->s, site))
		return ldj_error(L, "cache: %s is not recorded (s:record{\"%s\"} before the run)",
				 lua_tostring(L, 2), lua_tostring(L, 2));
	if (pos < -1 || pos >= np)
		return luaL_argerror(L, 3, lua_pushfstring(L, "position %I outside the %d recorded",
							   pos, np));
	if (pos < 0 && djn_site_kind(cfg(ls), site) >= DJN_SITE_FINAL_NORM)
		return ldj_error(L, "cache: %s holds each chunk's last position only: name one",
				 lua_tostring(L, 2));
	if (!np)
		return ldj_error(L, "cache: nothing recorded at %s yet (run first)",
				 lua_tostring(L, 2));
	t = ldj_tensor_new(L, pos < 0 ? np : 1, w);
	if (djn_record_read(ls->s, site, pos < 0 ? 0 : (int)pos, pos < 0 ? np : 1, t->data))
		return fail(L, ls, "cache");
	return 1;
}

/* s:stats([site [, row]]) -> stats table, computed where the tensor lives
 * (no host copy); row is 1-based, all rows without it. */
static int s_stats(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int site = site_arg(L, ls, 2, "stats");
	lua_Integer row = luaL_optinteger(L, 3, 0);
	struct djn_stats st;

	if (row < 0 || row > 1 << 30)
		return luaL_argerror(L, 3, "row out of range");
	if (djn_session_stats(ls->s, site, row ? (int)row - 1 : 0, row ? 1 : 0, &st))
		return fail(L, ls, "stats");
	ldj_push_stats(L, &st);
	return 1;
}

/* A vector argument: a Tensor, a table of numbers, or a number repeated
 * `width` times.  Returns a Tensor (pushed when converted). */
static struct ldj_tensor *vector_arg(lua_State *L, int idx, int width, const char *what)
{
	struct ldj_tensor *t;

	if ((t = luaL_testudata(L, idx, LDJ_TENSOR)))
		return t;
	if (lua_type(L, idx) == LUA_TNUMBER) {
		float v = (float)lua_tonumber(L, idx);
		t = ldj_tensor_new(L, 1, width);
		for (int i = 0; i < width; i++)
			t->data[i] = v;
		return t;
	}
	if (lua_type(L, idx) == LUA_TTABLE) {
		lua_Integer n = luaL_len(L, idx);
		if (n != width)
			luaL_argerror(L, idx, lua_pushfstring(L, "%s: the vector has %I elements, "
								 "the site has %d", what, n, width));
		t = ldj_tensor_new(L, 1, width);
		for (int i = 0; i < width; i++) {
			int ok;
			lua_geti(L, idx, i + 1);
			t->data[i] = (float)lua_tonumberx(L, -1, &ok);
			lua_pop(L, 1);
			if (!ok)
				luaL_argerror(L, idx, lua_pushfstring(L, "element %d is not a number",
								      i + 1));
		}
		return t;
	}
	luaL_typeerror(L, idx, "Tensor, table or number");
	return NULL;
}

static int width_of(lua_State *L, struct ldj_session *ls, const char *pattern, const char *what)
{
	const struct djn_config *c = cfg(ls);

	for (int i = 0; i < djn_site_count(c); i++)
		if (djn_site_match(c, pattern, i))
			return djn_site_width(c, i);
	ldj_check_pattern(L, c, what, pattern);
	return 0;
}

/* s:steer(pattern, op, value [, {persist=, scale=, pos=}]) -> id | nil
 *   "add"   x += scale * v   v: Tensor (1 x cols; or the site's full shape,
 *                            one-shot), table, or number for every element
 *   "set"   x = v            as add
 *   "scale" x *= value       value: number
 *   "zero"  x[i] = 0         value: table of 0-based column indices, or nil (all)
 * One-shot (the default) edits the paused tensor at one site; persist = true
 * applies every time a matching site runs and returns the steer's id.
 * pos = N or {A, B} changes only the rows at token position N, or A..B-1
 * (0-based positions, as in the shell's --pos N | A:B; B nil: no end). */
static int s_steer(lua_State *L)
{
	static const char *const keys[] = { "persist", "scale", "pos", NULL };
	static const char *const ops[] = { "add", "scale", "set", "zero", NULL };
	static const enum djn_steer_op op_of[] = { DJN_STEER_ADD, DJN_STEER_SCALE, DJN_STEER_SET,
						   DJN_STEER_ZERO };
	struct ldj_session *ls = check(L);
	const char *pattern = luaL_checkstring(L, 2);
	enum djn_steer_op op = op_of[luaL_checkoption(L, 3, NULL, ops)];
	bool persist;
	float scale = 1;
	struct ldj_tensor *v = NULL;
	int width, id, n_idx = 0, *idx = NULL, pos0 = 0, pos1 = -1;

	ldj_check_opts(L, 5, "steer", keys);
	persist = ldj_opt_boolean(L, 5, "steer", "persist", false);
	scale = (float)ldj_opt_number(L, 5, "steer", "scale", 1);
	if (lua_istable(L, 5) && lua_getfield(L, 5, "pos") != LUA_TNIL) {
		lua_Integer a, b = -1;
		int ok = 1, okb = 1;
		if (lua_istable(L, -1)) {
			lua_geti(L, -1, 1);
			a = lua_tointegerx(L, -1, &ok);
			lua_geti(L, -2, 2);
			if (!lua_isnil(L, -1))
				b = lua_tointegerx(L, -1, &okb);
			lua_pop(L, 2);
		} else {
			a = lua_tointegerx(L, -1, &ok);
			b = a + 1;
		}
		if (!ok || !okb || a < 0 || a > 1 << 30 || b > 1 << 30 || (b >= 0 && b <= a))
			return ldj_error(L, "steer: pos wants a position N or {A, B} (A..B-1, "
					    "0-based, B > A)");
		pos0 = (int)a;
		pos1 = (int)b;
	}
	lua_pop(L, lua_istable(L, 5) ? 1 : 0);
	width = width_of(L, ls, pattern, "steer");
	lua_settop(L, 5);

	switch (op) {
	case DJN_STEER_SCALE:
		scale *= (float)luaL_checknumber(L, 4);
		break;
	case DJN_STEER_ZERO:
		if (!lua_isnil(L, 4)) {
			luaL_checktype(L, 4, LUA_TTABLE);
			lua_Integer n = luaL_len(L, 4);
			if (n > width)
				return luaL_argerror(L, 4, "more indices than columns");
			/* the indices live in a Lua userdata: nothing to leak */
			idx = lua_newuserdatauv(L, sizeof(int) * (size_t)(n ? n : 1), 0);
			for (n_idx = 0; n_idx < n; n_idx++) {
				int ok;
				lua_geti(L, 4, n_idx + 1);
				lua_Integer k = lua_tointegerx(L, -1, &ok);
				lua_pop(L, 1);
				if (!ok || k < 0 || k >= width)
					return luaL_argerror(L, 4, lua_pushfstring(L, "index %d is not a "
										      "column in 0..%d",
										   n_idx + 1, width - 1));
				idx[n_idx] = (int)k;
			}
		}
		break;
	case DJN_STEER_ADD:
	case DJN_STEER_SET:
		v = vector_arg(L, 4, width, "steer");
		if (v->cols != width)
			return luaL_argerror(L, 4, lua_pushfstring(L, "the vector has %d columns, "
								      "'%s' has %d",
								   v->cols, pattern, width));
		if (v->rows > 1) {
			/* the site's whole tensor: edit it in place, one-shot */
			int site = ldj_check_site(L, cfg(ls), "steer", pattern), rows, cols;
			struct ldj_tensor *x;
			if (persist)
				return luaL_argerror(L, 4, "a persistent steer takes one row");
			if (pos0 != 0 || pos1 != -1)
				return luaL_argerror(L, 4, "pos takes one row (a whole tensor says "
							   "every row already)");
			if (djn_session_site_shape(ls->s, site, &rows, &cols))
				return fail(L, ls, "steer");
			if (rows != v->rows)
				return luaL_argerror(L, 4, lua_pushfstring(L, "the tensor has %d rows, "
									      "the site has %d",
									   v->rows, rows));
			x = ldj_tensor_new(L, rows, cols);
			if (op == DJN_STEER_ADD && djn_session_read(ls->s, site, x->data,
								    (size_t)rows * cols))
				return fail(L, ls, "steer");
			for (size_t i = 0; i < (size_t)rows * cols; i++)
				x->data[i] = op == DJN_STEER_ADD ? x->data[i] + scale * v->data[i]
								 : v->data[i];
			if (djn_session_write(ls->s, site, x->data, (size_t)rows * cols))
				return fail(L, ls, "steer");
			return 0;
		}
		break;
	}
	id = djn_steer_add_at(ls->s, pattern, op, v ? v->data : NULL, v ? v->cols : 0, scale, idx,
			      n_idx, persist, pos0, pos1);
	if (id < 0)
		return fail(L, ls, "steer");
	if (!persist)
		return 0;
	lua_pushinteger(L, id);
	return 1;
}

/* s:unsteer([id]): remove a persistent steer; all without an id. */
static int s_unsteer(lua_State *L)
{
	struct ldj_session *ls = check(L);
	lua_Integer id = luaL_optinteger(L, 2, 0);

	if (id < 0 || id > 1 << 30 || djn_steer_clear(ls->s, (int)id))
		return ldj_error(L, "unsteer: no steer %lld", (long long)id);
	return 0;
}

/* s:steers() -> {{id=, pattern=, op=, scale=, n_applied= [, pos=]}...} */
static int s_steers(lua_State *L)
{
	static const char *const names[] = { "add", "scale", "set", "zero" };
	struct ldj_session *ls = check(L);
	struct djn_steer_info t;

	lua_newtable(L);
	for (int i = 0; djn_steer_get(ls->s, i, &t); i++) {
		lua_createtable(L, 0, 5);
		lua_pushinteger(L, t.id);
		lua_setfield(L, -2, "id");
		lua_pushstring(L, t.pattern);
		lua_setfield(L, -2, "pattern");
		lua_pushstring(L, names[t.op]);
		lua_setfield(L, -2, "op");
		lua_pushnumber(L, t.scale);
		lua_setfield(L, -2, "scale");
		lua_pushinteger(L, t.n_applied);
		lua_setfield(L, -2, "n_applied");
		if (t.pos0 != 0 || t.pos1 != -1) { /* {A, B}: A..B-1; B nil: no end */
			lua_createtable(L, 2, 0);
			lua_pushinteger(L, t.pos0);
			lua_rawseti(L, -2, 1);
			if (t.pos1 >= 0) {
				lua_pushinteger(L, t.pos1);
				lua_rawseti(L, -2, 2);
			}
			lua_setfield(L, -2, "pos");
		}
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* s:write(site, tensor_or_table): overwrite the paused tensor at site. */
static int s_write(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int site = ldj_check_site(L, cfg(ls), "write", luaL_checkstring(L, 2)), rows, cols;
	struct ldj_tensor *t;
	size_t n;

	if (djn_session_site_shape(ls->s, site, &rows, &cols))
		return fail(L, ls, "write");
	n = (size_t)rows * cols;
	if ((t = luaL_testudata(L, 3, LDJ_TENSOR))) {
		if (t->rows != rows || t->cols != cols)
			return luaL_argerror(L, 3, lua_pushfstring(L, "shape %dx%d, the site is "
								      "%dx%d",
								   t->rows, t->cols, rows, cols));
	} else if (lua_type(L, 3) == LUA_TTABLE) {
		if ((size_t)luaL_len(L, 3) != n)
			return luaL_argerror(L, 3, lua_pushfstring(L, "%I numbers, the site has %d x %d",
								   luaL_len(L, 3), rows, cols));
		t = ldj_tensor_new(L, rows, cols);
		for (size_t i = 0; i < n; i++) {
			int ok;
			lua_geti(L, 3, (lua_Integer)i + 1);
			t->data[i] = (float)lua_tonumberx(L, -1, &ok);
			lua_pop(L, 1);
			if (!ok)
				return luaL_argerror(L, 3, "a table of numbers expected");
		}
	} else {
		return luaL_typeerror(L, 3, "Tensor or table of numbers");
	}
	if (djn_session_write(ls->s, site, t->data, n))
		return fail(L, ls, "write");
	return 0;
}

/* --------------------------------------------------------- checkpoints */

static int s_checkpoint(lua_State *L)
{
	struct ldj_session *ls = check(L);
	int id = djn_checkpoint_new(ls->s);

	if (id < 0)
		return fail(L, ls, "checkpoint");
	lua_pushinteger(L, id);
	return 1;
}

static int ckpt_id(lua_State *L)
{
	lua_Integer id = luaL_checkinteger(L, 2);

	if (id < 1 || id > 1 << 30)
		luaL_argerror(L, 2, "not a checkpoint id");
	return (int)id;
}

static int s_restore(lua_State *L)
{
	struct ldj_session *ls = check(L);

	if (djn_checkpoint_restore(ls->s, ckpt_id(L)))
		return fail(L, ls, "restore");
	return 0;
}

static int s_drop_checkpoint(lua_State *L)
{
	struct ldj_session *ls = check(L);

	if (djn_checkpoint_delete(ls->s, ckpt_id(L)))
		return fail(L, ls, "drop_checkpoint");
	return 0;
}

/* s:checkpoints() -> {{id=, pos=, site=, n_tokens=, bytes=}...} */
static int s_checkpoints(lua_State *L)
{
	struct ldj_session *ls = check(L);
	struct djn_checkpoint_info k;
	char name[32];

	lua_newtable(L);
	for (int i = 0; djn_checkpoint_get(ls->s, i, &k); i++) {
		lua_createtable(L, 0, 5);
		lua_pushinteger(L, k.id);
		lua_setfield(L, -2, "id");
		lua_pushinteger(L, k.cursor.pos);
		lua_setfield(L, -2, "pos");
		if (k.cursor.site >= 0) {
			djn_site_name(cfg(ls), k.cursor.site, name, sizeof(name));
			lua_pushstring(L, name);
			lua_setfield(L, -2, "site");
		}
		lua_pushinteger(L, k.n_tokens);
		lua_setfield(L, -2, "n_tokens");
		lua_pushinteger(L, (lua_Integer)k.bytes);
		lua_setfield(L, -2, "bytes");
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* s:memory() -> {text=, data=, data_pages=, page_bytes=, stack=, stack_used=, checkpoints=,
 * swapped=} (swapped: bytes of KV on the host, 0 when resident) */
static int s_memory(lua_State *L)
{
	struct djn_mem_info mi;

	djn_session_mem(check(L)->s, &mi);
	lua_createtable(L, 0, 8);
	lua_pushinteger(L, (lua_Integer)mi.text_bytes);
	lua_setfield(L, -2, "text");
	lua_pushinteger(L, (lua_Integer)mi.data_bytes);
	lua_setfield(L, -2, "data");
	lua_pushinteger(L, (lua_Integer)mi.data_pages);
	lua_setfield(L, -2, "data_pages");
	lua_pushinteger(L, (lua_Integer)mi.data_page_bytes);
	lua_setfield(L, -2, "page_bytes");
	lua_pushinteger(L, (lua_Integer)mi.stack_bytes);
	lua_setfield(L, -2, "stack");
	lua_pushinteger(L, (lua_Integer)mi.stack_used);
	lua_setfield(L, -2, "stack_used");
	lua_pushinteger(L, (lua_Integer)mi.ckpt_bytes);
	lua_setfield(L, -2, "checkpoints");
	lua_pushinteger(L, (lua_Integer)mi.swap_bytes);
	lua_setfield(L, -2, "swapped");
	return 1;
}

static const luaL_Reg methods[] = {
	{ "start", s_start },
	{ "continue", s_continue },
	{ "step", s_step },
	{ "next", s_next },
	{ "finish", s_finish },
	{ "run_until", s_run_until },
	{ "extend", s_extend },
	{ "generate", s_generate },
	{ "kill", s_kill },
	{ "state", s_state },
	{ "cursor", s_cursor },
	{ "text", s_text },
	{ "tokens", s_tokens },
	{ "break_at", s_break_at },
	{ "watch", s_watch },
	{ "delete", s_delete },
	{ "enable", s_enable },
	{ "breakpoints", s_breakpoints },
	{ "tensor", s_tensor },
	{ "stats", s_stats },
	{ "lens", s_lens },
	{ "attn_pattern", s_attn_pattern },
	{ "record", s_record },
	{ "cache", s_cache },
	{ "steer", s_steer },
	{ "unsteer", s_unsteer },
	{ "steers", s_steers },
	{ "write", s_write },
	{ "checkpoint", s_checkpoint },
	{ "restore", s_restore },
	{ "drop_checkpoint", s_drop_checkpoint },
	{ "checkpoints", s_checkpoints },
	{ "memory", s_memory },
	{ "model", s_model },
	{ "close", s_close },
	{ NULL, NULL },
};

static const luaL_Reg metamethods[] = {
	{ "__index", NULL },
	{ "__gc", s_close },
	{ "__close", s_close },
	{ "__tostring", s_tostring },
	{ NULL, NULL },
};

void ldj_open_session(lua_State *L)
{
	luaL_newmetatable(L, LDJ_SESSION);
	luaL_setfuncs(L, metamethods, 0);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}
