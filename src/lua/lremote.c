/* lremote.c - djinn.connect(addr): a remote djinn server from Lua.  A
 * "djinn.Remote" runs shell commands in this client's shell on the server
 * (r:command), reads site tensors as djinn.Tensor (binary, never JSON
 * numbers), steers with a Tensor, and reports each request's phases. */
#include <stdlib.h>
#include <string.h>

#include "djinn/server.h"
#include "lua/ldjinn.h"

#define LDJ_REMOTE "djinn.Remote"

struct ldj_remote {
	struct djn_remote *r; /* NULL once closed */
	char stop[32];        /* reason of the last "stopped" event */
	int stop_bp;
	char *streamed;       /* output events of the command in flight (malloc'd) */
	size_t n_streamed, cap_streamed;
};

static struct ldj_remote *check_remote(lua_State *L)
{
	struct ldj_remote *lr = luaL_checkudata(L, 1, LDJ_REMOTE);

	if (!lr->r)
		luaL_error(L, "remote is closed");
	return lr;
}

static void append_output(struct ldj_remote *lr, const uint8_t *p, size_t n)
{
	if (lr->n_streamed + n > lr->cap_streamed) {
		lr->cap_streamed = 2 * (lr->n_streamed + n) + 256;
		lr->streamed = djn_xrealloc(lr->streamed, lr->cap_streamed);
	}
	memcpy(lr->streamed + lr->n_streamed, p, n);
	lr->n_streamed += n;
}

static void on_event(struct djn_remote *r, const struct djn_frame *ev, void *ud)
{
	struct ldj_remote *lr = ud;
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(ev->json, "reason");
	const cJSON *bp = cJSON_GetObjectItemCaseSensitive(ev->json, "bp");

	(void)r;
	if (!strcmp(ev->type, "output")) { /* kept for the command's result */
		for (int i = 0; i < ev->n_att; i++) {
			const struct djn_frame_att *a = &ev->att[i];
			if (!strcmp(a->name, "output"))
				append_output(lr, a->data, a->bytes);
		}
		return;
	}
	if (strcmp(ev->type, "stopped") || !cJSON_IsString(reason))
		return;
	snprintf(lr->stop, sizeof(lr->stop), "%s", reason->valuestring);
	lr->stop_bp = cJSON_IsNumber(bp) ? bp->valueint : 0;
}

/* djinn.connect(addr [, {token=, resume=, tenant=, class=, slo_ms=, shm=}]) ->
 * Remote, or nil, msg; the tenant fields schedule this client's sessions on
 * the server; shm=false keeps reads on the socket (a server on this host
 * sends them through shared memory otherwise) */
static int l_connect(lua_State *L)
{
	static const char *const keys[] = { "token", "resume", "tenant", "class", "slo_ms", "shm", NULL };
	const char *addr = luaL_checkstring(L, 1);
	struct djn_remote_opts o = { 0 };
	struct ldj_remote *lr;
	struct djn_err err = { 0 };

	ldj_check_opts(L, 2, "connect", keys);
	o.token = ldj_opt_string(L, 2, "connect", "token", NULL);
	o.resume = ldj_opt_string(L, 2, "connect", "resume", NULL);
	o.tenant = ldj_opt_string(L, 2, "connect", "tenant", NULL);
	o.cls = ldj_opt_string(L, 2, "connect", "class", NULL);
	o.slo_ms = ldj_opt_number(L, 2, "connect", "slo_ms", 0);
	o.no_shm = !ldj_opt_boolean(L, 2, "connect", "shm", true);
	lr = lua_newuserdatauv(L, sizeof(*lr), 0); /* empty first: an error leaks nothing */
	memset(lr, 0, sizeof(*lr));
	luaL_setmetatable(L, LDJ_REMOTE);
	if (!(lr->r = djn_remote_open(addr, &o, &err))) {
		lua_pushnil(L);
		lua_pushfstring(L, "djinn.connect: %s", err.msg);
		return 2;
	}
	djn_remote_on_event(lr->r, on_event, lr);
	return 1;
}

/* One call; on a transport failure raise, on a refused request return
 * false with the message at the top.  The reply is released before any
 * raise: nothing C-owned crosses a longjmp. */
static bool call(lua_State *L, struct ldj_remote *lr, cJSON *msg, const struct djn_att_out *att,
		 int n_att, struct djn_remote_reply *rep)
{
	struct djn_err err = { 0 };

	lr->stop[0] = '\0';
	if (djn_remote_call(lr->r, msg, att, n_att, rep, &err)) {
		cJSON_Delete(msg);
		luaL_error(L, "remote: %s", err.msg);
	}
	cJSON_Delete(msg);
	if (!strcmp(rep->f.type, "error")) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(rep->f.json, "error");
		lua_pushstring(L, cJSON_IsString(e) ? e->valuestring : "error");
		djn_remote_reply_release(rep);
		return false;
	}
	return true;
}

/* r:command(line [, {json=}]) -> ok, output (stdout and stderr as written),
 * stop reason (when the command moved a run) */
static int l_command(lua_State *L)
{
	struct ldj_remote *lr = check_remote(L);
	const char *line = luaL_checkstring(L, 2);
	bool json = lua_istable(L, 3) && (lua_getfield(L, 3, "json"), lua_toboolean(L, -1));
	struct djn_remote_reply rep;
	cJSON *msg = cJSON_CreateObject();
	bool ok;

	cJSON_AddStringToObject(msg, "type", "cmd");
	cJSON_AddStringToObject(msg, "line", line);
	cJSON_AddBoolToObject(msg, "json", json);
	lr->n_streamed = 0;
	if (!call(L, lr, msg, NULL, 0, &rep)) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "ok"));
	/* the output: what streamed, then the rest; gathered in lr (freed by
	 * __gc) and the reply released before anything that can raise */
	for (int i = 0; i < rep.f.n_att; i++)
		if (!strcmp(rep.f.att[i].name, "output"))
			append_output(lr, rep.f.att[i].data, rep.f.att[i].bytes);
	djn_remote_reply_release(&rep);
	lua_pushboolean(L, ok);
	lua_pushlstring(L, lr->streamed ? lr->streamed : "", lr->n_streamed);
	lr->n_streamed = 0;
	if (lr->stop[0])
		lua_pushstring(L, lr->stop);
	else
		lua_pushnil(L);
	return 3;
}

/* The Tensor the read's reply lands in: made under lua_pcall (an error
 * must not jump over djn_remote_call's frames), left on the stack. */
struct tensor_sink {
	lua_State *L;
	struct ldj_tensor *t;
};

static int make_tensor(lua_State *L)
{
	ldj_tensor_alloc(L, (int)lua_tointeger(L, 1), (int)lua_tointeger(L, 2));
	return 1;
}

static void *tensor_sink(void *ud, const struct djn_frame_att *a, int i)
{
	struct tensor_sink *ts = ud;

	if (i != 0 || ts->t || strcmp(a->dtype, "f32") || a->n_dims != 2 || a->shape[0] < 1 ||
	    a->shape[1] < 1 || a->shape[0] > 1 << 20 || a->shape[1] > 1 << 28)
		return NULL;
	lua_pushcfunction(ts->L, make_tensor);
	lua_pushinteger(ts->L, (lua_Integer)a->shape[0]);
	lua_pushinteger(ts->L, (lua_Integer)a->shape[1]);
	if (lua_pcall(ts->L, 2, 1, 0) != LUA_OK) {
		lua_pop(ts->L, 1);
		return NULL;
	}
	ts->t = lua_touserdata(ts->L, -1);
	return ts->t->data;
}

/* r:tensor([site [, session]]) -> Tensor (rows = tokens of the chunk); the
 * bytes are received straight into the Tensor */
static int l_tensor(lua_State *L)
{
	struct ldj_remote *lr = check_remote(L);
	const char *site = luaL_optstring(L, 2, NULL), *sess = luaL_optstring(L, 3, NULL);
	struct djn_remote_reply rep;
	struct tensor_sink ts = { .L = L };
	struct djn_err err = { 0 };
	cJSON *msg = cJSON_CreateObject();
	enum djn_status st;
	bool ok;

	lua_settop(L, 3);
	cJSON_AddStringToObject(msg, "type", "read");
	if (site)
		cJSON_AddStringToObject(msg, "site", site);
	if (sess)
		cJSON_AddStringToObject(msg, "session", sess);
	lr->stop[0] = '\0';
	st = djn_remote_call_into(lr->r, msg, NULL, 0, tensor_sink, &ts, &rep, &err);
	cJSON_Delete(msg);
	if (st)
		return luaL_error(L, "remote: %s", err.msg);
	if (!strcmp(rep.f.type, "error")) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(rep.f.json, "error");
		lua_pushstring(L, cJSON_IsString(e) ? e->valuestring : "error");
		djn_remote_reply_release(&rep);
		return lua_error(L);
	}
	ok = ts.t && rep.f.n_att == 1 && rep.f.att[0].data == (const uint8_t *)ts.t->data;
	djn_remote_reply_release(&rep);
	if (!ok)
		return luaL_error(L, "tensor: the server sent no f32 matrix");
	return 1; /* the Tensor, at the top */
}

/* r:steer(pattern, op [, value [, {persist=, scale=, session=, pos=}]]) -> id
 * (0: one-shot); pos: N, or {A, B} for positions A..B-1 (as s:steer's) */
static int l_steer(lua_State *L)
{
	static const char *const keys[] = { "persist", "scale", "session", "pos", NULL };
	struct ldj_remote *lr = check_remote(L);
	const char *pat = luaL_checkstring(L, 2), *op = luaL_checkstring(L, 3);
	struct djn_remote_reply rep;
	struct djn_att_out att = { .name = "v", .dtype = "f32", .n_dims = 1 };
	int n_att = 0;
	cJSON *msg;
	double scale;
	bool persist, have_pos = false;
	const char *sess;
	lua_Integer pa = 0, pb = -1;

	ldj_check_opts(L, 5, "steer", keys);
	scale = ldj_opt_number(L, 5, "steer", "scale", 1.0);
	if (lua_isnumber(L, 4) && !strcmp(op, "scale")) {
		scale = lua_tonumber(L, 4);
	} else if (!lua_isnoneornil(L, 4)) {
		struct ldj_tensor *t = ldj_tensor_check(L, 4);
		att.shape[0] = (int64_t)t->rows * t->cols;
		att.data = t->data;
		att.bytes = sizeof(float) * (size_t)t->rows * (size_t)t->cols;
		n_att = 1;
	}
	/* everything that can raise before msg exists */
	persist = ldj_opt_boolean(L, 5, "steer", "persist", false);
	sess = ldj_opt_string(L, 5, "steer", "session", NULL);
	if (lua_istable(L, 5) && lua_getfield(L, 5, "pos") != LUA_TNIL) {
		int oka = 1, okb = 1;
		pb = -1;
		if (lua_istable(L, -1)) {
			lua_geti(L, -1, 1);
			pa = lua_tointegerx(L, -1, &oka);
			lua_geti(L, -2, 2);
			if (!lua_isnil(L, -1))
				pb = lua_tointegerx(L, -1, &okb);
			lua_pop(L, 2);
		} else {
			pa = lua_tointegerx(L, -1, &oka);
			pb = pa + 1;
		}
		if (!oka || !okb || pa < 0 || pa > 1 << 30 || pb > 1 << 30 || (pb >= 0 && pb <= pa))
			return luaL_error(L, "steer: pos wants a position N or {A, B} (A..B-1, "
					     "0-based, B > A)");
		have_pos = true;
	}
	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", "steer");
	cJSON_AddStringToObject(msg, "pattern", pat);
	cJSON_AddStringToObject(msg, "op", op);
	cJSON_AddNumberToObject(msg, "scale", scale);
	cJSON_AddBoolToObject(msg, "persist", persist);
	if (sess)
		cJSON_AddStringToObject(msg, "session", sess);
	if (have_pos) {
		cJSON *p = cJSON_AddArrayToObject(msg, "pos");
		cJSON_AddItemToArray(p, cJSON_CreateNumber((double)pa));
		cJSON_AddItemToArray(p, cJSON_CreateNumber((double)pb));
	}
	if (!call(L, lr, msg, &att, n_att, &rep))
		return lua_error(L);
	{
		const cJSON *sid = cJSON_GetObjectItemCaseSensitive(rep.f.json, "steer");
		lua_Integer n = cJSON_IsNumber(sid) ? (lua_Integer)sid->valuedouble : 0;
		djn_remote_reply_release(&rep);
		lua_pushinteger(L, n);
	}
	return 1;
}

static void push_phases(lua_State *L, const struct djn_remote_phases *p)
{
	lua_createtable(L, 0, 9);
	lua_pushnumber(L, p->serialize_us), lua_setfield(L, -2, "serialize_us");
	lua_pushnumber(L, p->send_us), lua_setfield(L, -2, "send_us");
	lua_pushnumber(L, p->queue_us), lua_setfield(L, -2, "queue_us");
	lua_pushnumber(L, p->exec_us), lua_setfield(L, -2, "exec_us");
	lua_pushnumber(L, p->result_us), lua_setfield(L, -2, "result_us");
	lua_pushnumber(L, p->receive_us), lua_setfield(L, -2, "receive_us");
	lua_pushnumber(L, p->total_us), lua_setfield(L, -2, "total_us");
	lua_pushinteger(L, (lua_Integer)p->bytes_out), lua_setfield(L, -2, "bytes_out");
	lua_pushinteger(L, (lua_Integer)p->bytes_in), lua_setfield(L, -2, "bytes_in");
}

/* r:phases() -> last, sum, n: where the time of the requests went */
static int l_phases(lua_State *L)
{
	struct ldj_remote *lr = check_remote(L);
	struct djn_remote_phases last, sum;
	long n;

	djn_remote_stats(lr->r, &last, &sum, &n);
	push_phases(L, &last);
	push_phases(L, &sum);
	lua_pushinteger(L, n);
	return 3;
}

/* r:ping() -> round trip in microseconds (through the engine's queue) */
static int l_ping(lua_State *L)
{
	struct ldj_remote *lr = check_remote(L);
	struct djn_remote_reply rep;
	cJSON *msg = cJSON_CreateObject();

	cJSON_AddStringToObject(msg, "type", "ping");
	if (!call(L, lr, msg, NULL, 0, &rep))
		return lua_error(L);
	lua_pushnumber(L, rep.ph.total_us);
	djn_remote_reply_release(&rep);
	return 1;
}

static int l_token(lua_State *L)
{
	lua_pushstring(L, djn_remote_token(check_remote(L)->r));
	return 1;
}

/* r:shm() -> whether reads come through a shared-memory segment, and its
 * size mapped now */
static int l_shm(lua_State *L)
{
	struct ldj_remote *lr = check_remote(L);
	size_t size = 0;
	bool on = lr->r && djn_remote_shm(lr->r, &size);

	lua_pushboolean(L, on);
	lua_pushinteger(L, (lua_Integer)size);
	return 2;
}

/* r:close(): detach (the sessions stay on the server); also __gc, __close */
static int l_close(lua_State *L)
{
	struct ldj_remote *lr = luaL_checkudata(L, 1, LDJ_REMOTE);

	djn_remote_free(lr->r);
	lr->r = NULL;
	free(lr->streamed);
	lr->streamed = NULL;
	lr->n_streamed = lr->cap_streamed = 0;
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct ldj_remote *lr = luaL_checkudata(L, 1, LDJ_REMOTE);

	lua_pushfstring(L, "djinn.Remote(%s)", lr->r ? djn_remote_addr(lr->r) : "closed");
	return 1;
}

/* The methods of a local session that are commands on the server, written
 * over r:command in --json mode (the shell's JSON is the protocol's
 * vocabulary): r:start, r:run, r:continue, r:step, r:next, r:finish,
 * r:break_at, r:delete, r:breakpoints.  Each returns what s:... returns,
 * and raises "what: message" where s:... raises. */
static const char session_methods[] =
	"local M, djinn = ...\n"
	"local function q(s)\n"
	"  s = tostring(s):gsub('[\\\\\"]', '\\\\%0'):gsub('\\n', '\\\\n'):gsub('\\t', '\\\\t')\n"
	"  return '\"' .. s .. '\"'\n"
	"end\n"
	"local function cmd(r, what, line)\n"
	"  local ok, out = r:command(line, {json = true})\n"
	"  local last\n"
	"  for l in out:gmatch('[^\\n]+') do last = l end\n"
	"  local okj, j = pcall(djinn.json.decode, last or '')\n"
	"  if not okj or type(j) ~= 'table' then j = {} end\n"
	"  if not ok then error(what .. ': ' .. (j.error or out), 3) end\n"
	"  return j\n"
	"end\n"
	"local function opts(what, o, keys)\n"
	"  for k in pairs(o or {}) do\n"
	"    if not keys[k] then error(what .. \": unknown option '\" .. tostring(k) .. \"'\", 3) end\n"
	"  end\n"
	"  return o or {}\n"
	"end\n"
	"local GEN = {n = ' -n ', temperature = ' -t ', seed = ' --seed ', top_p = ' --top-p '}\n"
	"local function gen_line(verb, prompt, o)\n"
	"  local line = verb .. ' ' .. q(prompt)\n"
	"  for k, flag in pairs(GEN) do\n"
	"    if o[k] ~= nil then line = line .. flag .. tostring(o[k]) end\n"
	"  end\n"
	"  return line\n"
	"end\n"
	"local function stop(j)\n"
	"  local s = j.stop or {reason = 'done'}\n"
	"  if s.reason == 'breakpoint' or s.reason == 'watchpoint' then return s.reason, s.id end\n"
	"  return s.reason\n"
	"end\n"
	"function M.start(r, prompt, o)\n"
	"  o = opts('start', o, GEN)\n"
	"  return cmd(r, 'start', gen_line('start', prompt, o)).prompt_tokens\n"
	"end\n"
	"function M.run(r, prompt, o)\n"
	"  o = opts('run', o, GEN)\n"
	"  return stop(cmd(r, 'run', gen_line('run', prompt, o)))\n"
	"end\n"
	"for _, verb in ipairs({'continue', 'step', 'next', 'finish'}) do\n"
	"  M[verb] = function(r, n)\n"
	"    local line = verb\n"
	"    if n ~= nil and verb ~= 'continue' and verb ~= 'finish' then\n"
	"      n = math.tointeger(n)\n"
	"      if not n or n < 1 then error(verb .. ' count must be >= 1', 2) end\n"
	"      line = line .. ' ' .. n\n"
	"    end\n"
	"    return stop(cmd(r, verb, line))\n"
	"  end\n"
	"end\n"
	"function M.break_at(r, pattern, o)\n"
	"  o = opts('break_at', o, {cond = true})\n"
	"  local line = 'break ' .. q(pattern)\n"
	"  if o.cond then line = line .. ' if ' .. o.cond end\n"
	"  return cmd(r, 'break_at', line).id\n"
	"end\n"
	"function M.delete(r, id)\n"
	"  cmd(r, 'delete', id and ('delete ' .. math.tointeger(id)) or 'delete')\n"
	"end\n"
	"function M.breakpoints(r)\n"
	"  local t = {}\n"
	"  for i, b in ipairs(cmd(r, 'breakpoints', 'info breakpoints').breakpoints or {}) do\n"
	"    t[i] = {id = b.id, kind = b.type, pattern = b.type ~= 'token' and b.what or nil,\n"
	"            token = b.token, cond = b.cond, stop_if = b.stop_if, enabled = b.enabled,\n"
	"            temporary = b.temporary, ignore = b.ignore, hits = b.hits}\n"
	"  end\n"
	"  return t\n"
	"end\n";

void ldj_open_remote(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "command", l_command }, { "tensor", l_tensor }, { "steer", l_steer },
		{ "phases", l_phases },   { "ping", l_ping },     { "token", l_token },
		{ "shm", l_shm },
		{ "close", l_close },     { NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__gc", l_close }, { "__close", l_close }, { "__tostring", l_tostring },
		{ NULL, NULL },
	};

	luaL_newmetatable(L, LDJ_REMOTE);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	if (luaL_loadbuffer(L, session_methods, sizeof(session_methods) - 1, "=djinn.Remote") !=
	    LUA_OK)
		lua_error(L); /* a bug in the text above */
	lua_pushvalue(L, -2);  /* the methods */
	lua_pushvalue(L, -5);  /* the djinn table */
	lua_call(L, 2, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_connect);
	lua_setfield(L, -2, "connect");
}
