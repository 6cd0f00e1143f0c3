/* lsched.c - djinn.sched{...} and the djinn.Sched methods: many sessions
 * stepped together (djinn/sched.h), and the IO_WAIT signals of agents.
 *
 * A Sched keeps the session userdatas it holds in its user value (a table
 * keyed by them), so none is collected while scheduled; a session closed
 * while scheduled leaves the scheduler first (ldj_session_close). */
#include <string.h>

#include "djinn/sched.h"
#include "lua/ldjinn.h"

#define LDJ_SCHED "djinn.Sched"

struct ldj_sched {
	struct djn_sched *q; /* made at the first add (it needs the backend) */
	struct djn_sched_opts o;
	bool closed;
};

static struct ldj_sched *check(lua_State *L)
{
	struct ldj_sched *ls = luaL_checkudata(L, 1, LDJ_SCHED);

	if (ls->closed)
		luaL_argerror(L, 1, "the scheduler is closed");
	return ls;
}

static struct ldj_session *session_arg(lua_State *L, int idx)
{
	struct ldj_session *s = luaL_checkudata(L, idx, LDJ_SESSION);

	if (!s->s)
		luaL_argerror(L, idx, "the session is closed");
	return s;
}

/* djinn.sched{policy = "signal"|"lru"|"recompute"|"none", budget = ROWS, max_batch = N,
 *             order = "fcfs"|"rr"|"priority"|"slo", aging = STEPS, headroom = 0.8,
 *             host_pool = BYTES, host_block = BYTES, model = M}: with a model the
 * scheduler is made at once on its backend, else at the first add. */
static int l_sched(lua_State *L)
{
	static const char *const keys[] = { "policy", "budget", "max_batch", "host_pool",
					    "host_block", "model", "order", "aging", "headroom", NULL };
	struct ldj_sched *ls;
	const char *policy;

	ldj_check_opts(L, 1, "djinn.sched", keys);
	ls = lua_newuserdatauv(L, sizeof(*ls), 1);
	memset(ls, 0, sizeof(*ls));
	int ud = lua_gettop(L);
	luaL_setmetatable(L, LDJ_SCHED);
	lua_newtable(L);
	lua_setiuservalue(L, -2, 1);
	policy = ldj_opt_string(L, 1, "djinn.sched", "policy", "signal");
	if (!djn_sched_policy_parse(policy, &ls->o.policy))
		return ldj_error(L, "djinn.sched: unknown policy '%s' (signal, lru, recompute, none)",
				 policy);
	const char *order = ldj_opt_string(L, 1, "djinn.sched", "order", "fcfs");
	if (!djn_sched_order_parse(order, &ls->o.order))
		return ldj_error(L, "djinn.sched: unknown order '%s' (fcfs, rr, priority, slo)",
				 order);
	lua_Integer aging = ldj_opt_integer(L, 1, "djinn.sched", "aging", 0);
	if (aging < 0 || aging > 1 << 20)
		return ldj_error(L, "djinn.sched: aging must be 0..1048576 steps");
	ls->o.aging = (int)aging;
	lua_Number headroom = ldj_opt_number(L, 1, "djinn.sched", "headroom", 0);
	if (!(headroom > 0 && headroom <= 1) && headroom != 0)
		return ldj_error(L, "djinn.sched: headroom must be in (0, 1] (a share of the slo)");
	ls->o.slo_headroom = headroom;
	lua_Integer budget = ldj_opt_integer(L, 1, "djinn.sched", "budget", 0);
	lua_Integer max = ldj_opt_integer(L, 1, "djinn.sched", "max_batch", 0);
	if (budget < 0 || budget > 1 << 20 || max < 0 || max > 1 << 16)
		return ldj_error(L, "djinn.sched: budget must be 0..1048576 rows, max_batch 0..65536");
	ls->o.token_budget = (int)budget;
	ls->o.max_batch = (int)max;
	lua_Integer pool = ldj_opt_integer(L, 1, "djinn.sched", "host_pool", 0);
	lua_Integer block = ldj_opt_integer(L, 1, "djinn.sched", "host_block", 0);
	if (pool < 0 || block < 0)
		return ldj_error(L, "djinn.sched: host_pool and host_block are bytes >= 0");
	ls->o.host_pool = (size_t)pool;
	ls->o.host_block = (size_t)block;
	/* with a model, made now on its backend (the pinning happens here) */
	if (lua_istable(L, 1) && lua_getfield(L, 1, "model") != LUA_TNIL) {
		struct ldj_model *lm = ldj_model_check(L, -1);
		struct djn_err err = { 0 };
		if (!(ls->q = djn_sched_new(lm->be, &ls->o, &err)))
			return ldj_error(L, "djinn.sched: %s", err.msg);
	}
	lua_settop(L, ud);
	return 1;
}

/* Forget every member (their userdatas stay), then the scheduler. */
static void sched_close(lua_State *L, struct ldj_sched *ls, int idx)
{
	if (ls->closed)
		return;
	lua_getiuservalue(L, idx, 1);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		struct ldj_session *s = lua_touserdata(L, -2);
		if (s)
			s->sched = NULL;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	djn_sched_free(ls->q);
	ls->q = NULL;
	ls->closed = true;
}

static int m_close(lua_State *L)
{
	struct ldj_sched *ls = luaL_checkudata(L, 1, LDJ_SCHED);

	sched_close(L, ls, 1);
	return 0;
}

/* Keep (or drop) the session userdata at idx in the Sched's user value. */
static void hold(lua_State *L, int idx, bool on)
{
	lua_getiuservalue(L, 1, 1);
	lua_pushvalue(L, idx);
	if (on)
		lua_pushboolean(L, 1);
	else
		lua_pushnil(L);
	lua_rawset(L, -3);
	lua_pop(L, 1);
}

static int expected(lua_State *L, const char *msg)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	return 2;
}

/* q:add(s [, {tenant = NAME, class = "interactive"|"standard"|"batch", slo_ms = MS}])
 * -> true | nil, msg (a refused admission under order "slo" says why) */
static int m_add(lua_State *L)
{
	static const char *const keys[] = { "tenant", "class", "slo_ms", NULL };
	struct ldj_sched *ls = check(L);
	struct ldj_session *s = session_arg(L, 2);
	struct djn_err err = { 0 };
	struct djn_tenant t = { NULL, DJN_CLASS_STANDARD, 0 };

	if (!lua_isnoneornil(L, 3)) {
		ldj_check_opts(L, 3, "add", keys);
		t.name = ldj_opt_string(L, 3, "add", "tenant", NULL);
		const char *cls = ldj_opt_string(L, 3, "add", "class", "standard");
		if (!djn_class_parse(cls, &t.cls))
			return luaL_argerror(L, 3, lua_pushfstring(L, "unknown class '%s' "
							    "(interactive, standard, batch)", cls));
		t.slo_ms = ldj_opt_number(L, 3, "add", "slo_ms", 0);
	}

	if (s->sched && s->sched != ls->q)
		return expected(L, "the session is in another scheduler");
	if (!ls->q && !(ls->q = djn_sched_new(djn_session_backend(s->s), &ls->o, &err)))
		return expected(L, err.msg);
	if (djn_sched_has(ls->q, s->s) && djn_sched_phase(ls->q, s->s) == DJN_PHASE_DONE)
		djn_sched_remove(ls->q, s->s); /* a new run of a finished member */
	if (djn_sched_add_as(ls->q, s->s, &t))
		return expected(L, djn_sched_errmsg(ls->q));
	s->sched = ls->q;
	hold(L, 2, true);
	lua_pushboolean(L, 1);
	return 1;
}

static int m_remove(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	struct ldj_session *s = session_arg(L, 2);

	if (!ls->q || djn_sched_remove(ls->q, s->s))
		return expected(L, "the session is not scheduled");
	s->sched = NULL;
	hold(L, 2, false);
	lua_pushboolean(L, 1);
	return 1;
}

static int signal_call(lua_State *L, enum djn_status (*fn)(struct djn_sched *,
							     struct djn_session *))
{
	struct ldj_sched *ls = check(L);
	struct ldj_session *s = session_arg(L, 2);

	if (!ls->q || !djn_sched_has(ls->q, s->s))
		return expected(L, "the session is not scheduled");
	if (fn(ls->q, s->s))
		return expected(L, djn_sched_errmsg(ls->q));
	lua_pushboolean(L, 1);
	return 1;
}

/* q:io_wait(s), q:resume(s) -> true | nil, msg */
static int m_io_wait(lua_State *L)
{
	return signal_call(L, djn_sched_io_wait);
}

static int m_resume(lua_State *L)
{
	return signal_call(L, djn_sched_resume);
}

/* q:phase(s) -> "compute" | "io_wait" | "stopped" | "done" | "queued" | nil */
static int m_phase(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	struct ldj_session *s = session_arg(L, 2);

	if (!ls->q || !djn_sched_has(ls->q, s->s)) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushstring(L, djn_phase_name(djn_sched_phase(ls->q, s->s)));
	return 1;
}

#define SET_INT(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, (k)))
#define SET_NUM(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, (k)))
#define SET_STR(k, v) (lua_pushstring(L, (v)), lua_setfield(L, -2, (k)))

/* q:member(s) -> {tenant, class, slo_ms, phase, parked, waited, steps, tokens,
 * violations, last_ms, max_ms[, error when stopped]} | nil when s is not
 * scheduled */
static int m_member(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	struct ldj_session *s = session_arg(L, 2);
	struct djn_member_info mi;

	if (!ls->q || djn_sched_member(ls->q, s->s, &mi)) {
		lua_pushnil(L);
		return 1;
	}
	lua_createtable(L, 0, 11);
	SET_STR("tenant", mi.tenant);
	SET_STR("class", djn_class_name(mi.cls));
	SET_NUM("slo_ms", mi.slo_ms);
	SET_STR("phase", djn_phase_name(mi.phase));
	lua_pushboolean(L, mi.parked);
	lua_setfield(L, -2, "parked");
	SET_INT("waited", mi.waited);
	SET_INT("steps", mi.steps);
	SET_INT("tokens", mi.tokens);
	SET_INT("violations", mi.violations);
	SET_NUM("last_ms", mi.last_ms);
	SET_NUM("max_ms", mi.max_ms);
	if (mi.phase == DJN_PHASE_STOPPED) /* why: the session's last error */
		SET_STR("error", djn_session_errmsg(s->s));
	return 1;
}

/* q:order([name]) -> the order (set first when named) | nil, msg */
static int m_order(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	enum djn_sched_order o;

	if (!lua_isnoneornil(L, 2)) {
		const char *name = luaL_checkstring(L, 2);
		if (!djn_sched_order_parse(name, &o))
			return expected(L, "unknown order (fcfs, rr, priority, slo)");
		ls->o.order = o;
		if (ls->q)
			(void)djn_sched_set_order(ls->q, o);
	}
	lua_pushstring(L, djn_sched_order_name(ls->o.order));
	return 1;
}

/* q:step_model([{base_ms =, row_ms =, kv_ms =, gap_ms =}]) ->
 * {base_ms, row_ms, kv_ms, gap_ms, margin_ms, n}: the step-time model (set
 * first when given; kv_ms a thousand cached positions read; margin_ms what
 * order slo's row cap keeps free for the model's over-runs, read only) */
static int m_step_model(lua_State *L)
{
	static const char *const keys[] = { "base_ms", "row_ms", "kv_ms", "gap_ms", NULL };
	struct ldj_sched *ls = check(L);
	struct djn_step_model sm = { 0 };

	if (!ls->q)
		return expected(L, "no session is scheduled");
	if (!lua_isnoneornil(L, 2)) {
		ldj_check_opts(L, 2, "step_model", keys);
		sm.base_ms = ldj_opt_number(L, 2, "step_model", "base_ms", 0);
		sm.row_ms = ldj_opt_number(L, 2, "step_model", "row_ms", 0);
		sm.kv_ms = ldj_opt_number(L, 2, "step_model", "kv_ms", 0);
		sm.gap_ms = ldj_opt_number(L, 2, "step_model", "gap_ms", 0);
		if (!(sm.base_ms >= 0 && sm.row_ms >= 0 && sm.kv_ms >= 0 && sm.gap_ms >= 0))
			return luaL_argerror(L, 2, "base_ms, row_ms, kv_ms and gap_ms are >= 0");
		djn_sched_set_step_model(ls->q, &sm);
	}
	djn_sched_step_model(ls->q, &sm);
	lua_createtable(L, 0, 6);
	SET_NUM("base_ms", sm.base_ms);
	SET_NUM("row_ms", sm.row_ms);
	SET_NUM("kv_ms", sm.kv_ms);
	SET_NUM("gap_ms", sm.gap_ms);
	SET_NUM("margin_ms", sm.margin_ms);
	SET_INT("n", sm.n);
	return 1;
}

/* q:step() -> {batched, rows, alone, stopped, done, runnable, kv,
 * predicted_ms} | nil, msg */
static int m_step(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	struct djn_step_info info;

	if (!ls->q)
		return expected(L, "no session is scheduled");
	if (djn_sched_step(ls->q, &info))
		return expected(L, djn_sched_errmsg(ls->q));
	lua_createtable(L, 0, 8);
	SET_INT("batched", info.n_batched);
	SET_INT("rows", info.n_rows);
	SET_INT("alone", info.n_alone);
	SET_INT("stopped", info.n_stopped);
	SET_INT("done", info.n_done);
	SET_INT("runnable", info.n_runnable);
	SET_NUM("kv", info.kv);
	SET_NUM("predicted_ms", info.predicted_ms);
	return 1;
}

/* q:stats() -> {steps, rows, alone_steps, graph_steps, batch_passes, swaps_out, ...} */
static int m_stats(lua_State *L)
{
	struct ldj_sched *ls = check(L);
	struct djn_sched_stats st = { 0 };

	if (ls->q)
		djn_sched_stats(ls->q, &st);
	lua_createtable(L, 0, 12);
	SET_INT("steps", st.steps);
	SET_INT("rows", st.batched_rows);
	SET_INT("alone_steps", st.alone_steps);
	SET_INT("graph_steps", st.graph_steps);
	SET_INT("batch_passes", st.batch_passes);
	SET_INT("swaps_out", st.swaps_out);
	SET_INT("swaps_in", st.swaps_in);
	SET_INT("recomputes", st.recomputes);
	SET_INT("swap_bytes_out", st.swap_bytes_out);
	SET_INT("swap_bytes_in", st.swap_bytes_in);
	SET_NUM("swap_ms_out", st.swap_ms_out);
	SET_NUM("swap_ms_in", st.swap_ms_in);
	SET_INT("max_batch", st.max_batch);
	SET_INT("kv_bytes", st.kv_bytes);
	SET_INT("kv_peak_bytes", st.kv_peak_bytes);
	SET_INT("device_peak_bytes", st.device_peak_bytes);
	lua_pushstring(L, djn_sched_policy_name(ls->o.policy));
	lua_setfield(L, -2, "policy");
	SET_STR("order", djn_sched_order_name(ls->o.order));
	return 1;
}

static int m_gc(lua_State *L)
{
	sched_close(L, lua_touserdata(L, 1), 1);
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct ldj_sched *ls = luaL_checkudata(L, 1, LDJ_SCHED);

	lua_pushfstring(L, "djinn.Sched (%s%s)", djn_sched_policy_name(ls->o.policy),
			ls->closed ? ", closed" : "");
	return 1;
}

void ldj_open_sched(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "add", m_add },         { "remove", m_remove }, { "io_wait", m_io_wait },
		{ "resume", m_resume },   { "phase", m_phase },   { "step", m_step },
		{ "stats", m_stats },     { "close", m_close },   { "member", m_member },
		{ "order", m_order },     { "step_model", m_step_model },
		{ NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__gc", m_gc },
		{ "__close", m_gc },
		{ "__tostring", m_tostring },
		{ NULL, NULL },
	};

	if (luaL_newmetatable(L, LDJ_SCHED)) {
		luaL_setfuncs(L, meta, 0);
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	lua_pushcfunction(L, l_sched);
	lua_setfield(L, -2, "sched");
}
