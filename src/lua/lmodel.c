/* lmodel.c - djinn.load, djinn.models and the djinn.Model methods: the
 * model's facts, its tokenizer, and the sessions made on it. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/ldjinn.h"

/* Weak-keyed table {model userdata = load sequence number}: djinn.models(). */
static const char models_key = 'm';
static lua_Integer load_seq;

struct ldj_model *ldj_model_check(lua_State *L, int idx)
{
	struct ldj_model *lm = luaL_checkudata(L, idx, LDJ_MODEL);

	if (!lm->m)
		luaL_error(L, "model is closed");
	return lm;
}

void ldj_model_close(lua_State *L, struct ldj_model *lm)
{
	while (lm->sessions)
		ldj_session_close(lm->sessions);
	if (!lm->m)
		return;
	if (!lm->borrowed) {
		djn_model_unref(lm->m);
		ldj_backend_put(L, lm->be);
	}
	lm->m = NULL;
	lm->be = NULL;
}

static struct ldj_model *push_model(lua_State *L)
{
	struct ldj_model *lm = lua_newuserdatauv(L, sizeof(*lm), 0);

	memset(lm, 0, sizeof(*lm));
	luaL_setmetatable(L, LDJ_MODEL);
	return lm;
}

struct ldj_model *ldj_model_push_borrowed(lua_State *L, struct djn_model *m,
					  struct djn_backend *be)
{
	struct ldj_model *lm = push_model(L);

	lm->m = m;
	lm->be = be;
	lm->borrowed = true;
	return lm;
}

static void free_model(void *p)
{
	djn_model_unref(p);
}

/* {vram_budget = 18 * 2^30 | "18G", ring_slots = 1..8 | "sync"} of djinn.load
 * into o; false when neither is given.  Raises on a bad value. */
static bool ring_opts(lua_State *L, int idx, struct djn_ring_opts *o)
{
	bool any = false;
	int t;

	memset(o, 0, sizeof(*o));
	if (!lua_istable(L, idx))
		return false;
	t = lua_getfield(L, idx, "vram_budget");
	if (t != LUA_TNIL) {
		if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)
			o->vram_budget = (size_t)lua_tointeger(L, -1);
		else if (t != LUA_TSTRING || !djn_size_parse(lua_tostring(L, -1), &o->vram_budget) ||
			 !o->vram_budget)
			return ldj_error(L, "djinn.load: vram_budget must be bytes or a size such "
					 "as \"18G\""), false;
		any = true;
	}
	lua_pop(L, 1);
	t = lua_getfield(L, idx, "ring_slots");
	if (t != LUA_TNIL) {
		if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "sync"))
			o->sync = true;
		else if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
			 lua_tointeger(L, -1) <= DJN_RING_MAX_SLOTS)
			o->n_slots = (int)lua_tointeger(L, -1);
		else
			return ldj_error(L, "djinn.load: ring_slots must be 1..%d or \"sync\"",
					 DJN_RING_MAX_SLOTS), false;
		any = true;
	}
	lua_pop(L, 1);
	t = lua_getfield(L, idx, "pool");
	if (t != LUA_TNIL) {
		if (t != LUA_TBOOLEAN)
			return ldj_error(L, "djinn.load: pool must be true or false"), false;
		o->shared = lua_toboolean(L, -1);
		if (o->shared && !o->vram_budget)
			return ldj_error(L, "djinn.load: pool = true needs a vram_budget (the "
					 "pool's, shared by every model in it)"), false;
		if (o->shared && (o->n_slots || o->sync))
			return ldj_error(L, "djinn.load: ring_slots does not apply to a shared "
					 "pool"), false;
		any = true;
	}
	lua_pop(L, 1);
	return any;
}

/* kv_limit = bytes | "64M": the limit on the KV pages of all sessions on the
 * model's device, past which paused sessions swap out; 0 if not given. */
static size_t kv_limit_opt(lua_State *L, int idx)
{
	size_t v = 0;
	int t;

	if (!lua_istable(L, idx))
		return 0;
	t = lua_getfield(L, idx, "kv_limit");
	if (t != LUA_TNIL) {
		if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)
			v = (size_t)lua_tointeger(L, -1);
		else if (t != LUA_TSTRING || !djn_size_parse(lua_tostring(L, -1), &v) || !v)
			return ldj_error(L, "djinn.load: kv_limit must be bytes or a size such "
					 "as \"2G\""), 0;
	}
	lua_pop(L, 1);
	return v;
}

/* djinn.load(path [, {device=, dtype=, tokenizer=, threads=, vram_budget=,
 * ring_slots=, kv_limit=, kv_dtype=, pool=}]) -> Model | nil, msg.  pool =
 * true: the model joins its device's shared VRAM pool, vram_budget being the
 * pool's.  kv_dtype = "f32" (default) | "f16": its sessions' KV caches. */
static int l_load(lua_State *L)
{
	static const char *const keys[] = { "device", "dtype", "tokenizer", "threads",
					    "vram_budget", "ring_slots", "kv_limit", "kv_dtype", "pool",
					    NULL };
	struct djn_ring_opts ring;
	bool want_ring;
	const char *path = luaL_checkstring(L, 1);
	const char *device, *dtype, *tok, *kv_dtype;
	enum djn_dtype kvt;
	lua_Integer threads;
	struct djn_err err = { 0 };
	struct djn_backend *be;
	struct ldj_model *lm;
	struct ldj_box *box;

	ldj_check_opts(L, 2, "djinn.load", keys);
	device = ldj_opt_string(L, 2, "djinn.load", "device", "auto");
	dtype = ldj_opt_string(L, 2, "djinn.load", "dtype", "f32");
	tok = ldj_opt_string(L, 2, "djinn.load", "tokenizer", NULL);
	kv_dtype = ldj_opt_string(L, 2, "djinn.load", "kv_dtype", "f32");
	if (!djn_dtype_parse(kv_dtype, &kvt) || (kvt != DJN_DTYPE_F32 && kvt != DJN_DTYPE_F16))
		return ldj_error(L, "djinn.load: kv_dtype '%s' (f32 or f16)", kv_dtype);
	threads = ldj_opt_integer(L, 2, "djinn.load", "threads", 0);
	if (strcmp(dtype, "f32") && strcmp(dtype, "auto"))
		return ldj_error(L, "djinn.load: dtype '%s' is not supported (activations are f32; "
				 "weights keep their stored type)", dtype);
	if (threads < 0 || threads > 256)
		return ldj_error(L, "djinn.load: threads %lld outside 0..256", (long long)threads);
	want_ring = ring_opts(L, 2, &ring);
	size_t kv_limit = kv_limit_opt(L, 2);

	box = ldj_box_new(L, free_model);
	lm = push_model(L);
	if (!(box->p = djn_model_load(path, tok, &err))) {
		lua_pushnil(L);
		lua_pushfstring(L, "djinn.load: %s", err.msg);
		return 2;
	}
	if ((kvt != DJN_DTYPE_F32 && djn_model_set_kv_dtype(box->p, kvt, &err)) ||
	    (want_ring && djn_ring_configure(box->p, &ring, &err))) {
		ldj_box_free(box);
		lua_pushnil(L);
		lua_pushfstring(L, "djinn.load: %s", err.msg);
		return 2;
	}
	if (!(be = ldj_backend_get(L, device, (int)threads, &err))) {
		ldj_box_free(box);
		lua_pushnil(L);
		lua_pushfstring(L, "djinn.load: %s: %s", path, err.msg);
		return 2;
	}
	if (kv_limit) /* shared by every model on this device */
		be->data_limit = kv_limit;
	/* the userdata owns both from here (nothing in between can raise) */
	lm->m = box->p;
	lm->be = be;
	box->p = NULL;

	lua_rawgetp(L, LUA_REGISTRYINDEX, &models_key);
	lua_pushvalue(L, -2);
	lua_pushinteger(L, ++load_seq);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	return 1;
}

static int by_seq(const void *a, const void *b)
{
	const lua_Integer *x = a, *y = b;

	return (x[0] > y[0]) - (x[0] < y[0]);
}

/* djinn.models() -> {Model...}: the open models, in load order. */
static int l_models(lua_State *L)
{
	int n = 0, i = 0;
	lua_Integer(*order)[2];

	lua_rawgetp(L, LUA_REGISTRYINDEX, &models_key);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		n += ((struct ldj_model *)lua_touserdata(L, -2))->m != NULL;
		lua_pop(L, 1);
	}
	/* {seq, position in a scratch table}: sort without C memory at risk */
	order = lua_newuserdatauv(L, sizeof(*order) * (size_t)(n ? n : 1), 0);
	lua_createtable(L, n, 0); /* scratch: models by position */
	lua_pushnil(L);
	while (lua_next(L, -4)) {
		if (((struct ldj_model *)lua_touserdata(L, -2))->m && i < n) {
			order[i][0] = lua_tointeger(L, -1);
			order[i][1] = i + 1;
			lua_pushvalue(L, -2);
			lua_rawseti(L, -4, ++i);
		}
		lua_pop(L, 1);
	}
	qsort(order, (size_t)i, sizeof(*order), by_seq);
	lua_createtable(L, i, 0);
	for (int k = 0; k < i; k++) {
		lua_rawgeti(L, -2, order[k][1]);
		lua_rawseti(L, -2, k + 1);
	}
	return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

/* m:info() -> {arch, dim, hidden_dim, n_layer, n_head, n_kv_head, head_dim,
 * vocab, seq_len, format, name, path, weight_bytes, device, n_sites,
 * kv_dtype, kv_bytes_per_token} */
static int m_info(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	const struct djn_config *c = &lm->m->cfg;

	lua_createtable(L, 0, 20);
	set_str(L, "arch", djn_arch_name(c->arch));
	set_int(L, "dim", c->dim);
	set_int(L, "hidden_dim", c->hidden_dim);
	set_int(L, "n_layer", c->n_layer);
	set_int(L, "n_head", c->n_head);
	set_int(L, "n_kv_head", c->n_kv_head);
	set_int(L, "head_dim", c->head_dim);
	set_int(L, "vocab", c->vocab_size);
	set_int(L, "seq_len", c->seq_len);
	set_int(L, "n_sites", djn_site_count(c));
	set_str(L, "format", djn_format_name(lm->m->format));
	set_str(L, "name", lm->m->name);
	set_str(L, "path", lm->m->path);
	set_int(L, "weight_bytes", (lua_Integer)djn_model_weight_bytes(lm->m));
	set_str(L, "device", lm->be->i->name);
	set_str(L, "kv_dtype", djn_dtype_name(lm->m->kv_dtype));
	set_int(L, "kv_bytes_per_token", (lua_Integer)((size_t)c->n_layer * 2 * c->n_kv_head *
						       c->head_dim *
						       djn_kv_elem_bytes(lm->m->kv_dtype)));
	if (lm->m->tok) {
		set_int(L, "bos", djn_tok_bos(lm->m->tok));
		set_int(L, "eos", djn_tok_eos(lm->m->tok));
	}
	lua_pushboolean(L, lm->borrowed);
	lua_setfield(L, -2, "borrowed");
	return 1;
}

/* m:sites() -> {"embed", "L0.attn_norm", ..., "logits"} */
static int m_sites(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	const struct djn_config *c = &lm->m->cfg;
	int n = djn_site_count(c);
	char name[32];

	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		djn_site_name(c, i, name, sizeof(name));
		lua_pushstring(L, name);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static const struct djn_tokenizer *check_tok(lua_State *L, struct ldj_model *lm, const char *fn)
{
	if (!lm->m->tok)
		ldj_error(L, "%s: model '%s' has no tokenizer (load it with {tokenizer = FILE})", fn,
			  lm->m->name);
	return lm->m->tok;
}

/* m:tokenize(text [, bos]) -> {ids...}, {pieces...}; bos defaults to the
 * tokenizer's rule; the pieces are the vocabulary's, as stored. */
static int m_tokenize(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	size_t len;
	const char *text = luaL_checklstring(L, 2, &len);
	const struct djn_tokenizer *tok = check_tok(L, lm, "tokenize");
	bool bos = lua_isnoneornil(L, 3) ? djn_tok_add_bos(tok) : lua_toboolean(L, 3);
	struct djn_err err = { 0 };
	struct ldj_box *box = ldj_box_new(L, free);
	int32_t *ids;
	int n;

	if (djn_tok_encode(tok, text, len, bos, false, &ids, &n, &err))
		return ldj_error(L, "tokenize: %s", err.msg);
	box->p = ids;
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_pushinteger(L, ids[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		size_t pl;
		const char *p = djn_tok_piece(tok, ids[i], &pl);
		lua_pushlstring(L, p, pl);
		lua_rawseti(L, -2, i + 1);
	}
	ldj_box_free(box);
	return 2;
}

/* m:patch{clean=, corrupt=, a=, b= [, site=]} -> Tensor (layers x positions),
 * clean metric, corrupted metric: activation patching (djn_patch_run).  The
 * prompts are texts encoded as run encodes them (same length in tokens), a
 * and b token ids (the metric is logit[a] - logit[b] at the last position),
 * site a per-layer kind ("resid_post", the default, or "L*.resid_post"). */
static int m_patch(lua_State *L)
{
	static const char *const keys[] = { "clean", "corrupt", "a", "b", "site", NULL };
	struct ldj_model *lm = ldj_model_check(L, 1);
	const struct djn_tokenizer *tok = check_tok(L, lm, "patch");
	const char *text[2], *site;
	enum djn_site_kind kind = DJN_SITE_KIND_COUNT;
	struct djn_err err = { 0 };
	struct ldj_box *box[2];
	struct djn_patch_result r;
	struct ldj_tensor *t;
	int32_t *ids[2];
	int n[2];
	lua_Integer a, b;

	luaL_checktype(L, 2, LUA_TTABLE);
	ldj_check_opts(L, 2, "patch", keys);
	text[0] = ldj_opt_string(L, 2, "patch", "clean", NULL);
	text[1] = ldj_opt_string(L, 2, "patch", "corrupt", NULL);
	a = ldj_opt_integer(L, 2, "patch", "a", -1);
	b = ldj_opt_integer(L, 2, "patch", "b", -1);
	site = ldj_opt_string(L, 2, "patch", "site", "resid_post");
	if (!text[0] || !text[1])
		return ldj_error(L, "patch: needs clean = TEXT and corrupt = TEXT");
	if (a < 0 || b < 0 || a > INT32_MAX || b > INT32_MAX)
		return ldj_error(L, "patch: needs a = ID and b = ID (token ids; the metric is "
				 "logit[a] - logit[b])");
	if (!strncmp(site, "L*.", 3))
		site += 3;
	for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++)
		if (!strcmp(site, djn_site_kind_name(k)))
			kind = k;
	if (kind == DJN_SITE_KIND_COUNT)
		return ldj_error(L, "patch: '%s' is not a per-layer site kind (attn_norm .. "
				 "resid_post)", site);
	for (int i = 0; i < 2; i++) {
		box[i] = ldj_box_new(L, free);
		if (djn_tok_encode(tok, text[i], strlen(text[i]), djn_tok_add_bos(tok), false,
				   &ids[i], &n[i], &err))
			return ldj_error(L, "patch: %s", err.msg);
		box[i]->p = ids[i];
	}
	if (n[0] != n[1])
		return ldj_error(L, "patch: the prompts differ in length: clean is %d tokens, "
				 "corrupted %d", n[0], n[1]);
	if (djn_patch_run(lm->m, lm->be, ids[0], ids[1], n[0], kind, (int32_t)a, (int32_t)b, &r,
			  &err))
		return ldj_error(L, "%s", err.msg);
	t = ldj_tensor_new(L, r.n_layer, r.n_pos);
	memcpy(t->data, r.effect, sizeof(float) * (size_t)r.n_layer * r.n_pos);
	lua_pushnumber(L, r.clean);
	lua_pushnumber(L, r.corrupt);
	djn_patch_result_free(&r);
	ldj_box_free(box[0]);
	ldj_box_free(box[1]);
	return 3;
}

/* m:detokenize(ids [, prev]) -> string; prev is the token before ids[1]. */
static int m_detokenize(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	const struct djn_tokenizer *tok = check_tok(L, lm, "detokenize");
	int n_vocab = djn_tok_n_vocab(tok);
	lua_Integer prev = luaL_optinteger(L, 3, -1);
	luaL_Buffer b;
	lua_Integer n;

	luaL_checktype(L, 2, LUA_TTABLE);
	n = luaL_len(L, 2);
	luaL_buffinit(L, &b);
	for (lua_Integer i = 1; i <= n; i++) {
		int ok;
		lua_geti(L, 2, i);
		lua_Integer id = lua_tointegerx(L, -1, &ok);
		lua_pop(L, 1);
		if (!ok || id < 0 || id >= n_vocab)
			return luaL_argerror(L, 2, lua_pushfstring(L, "ids[%I] is not a token id "
								      "in 0..%d", i, n_vocab - 1));
		size_t len;
		const char *p = djn_tok_decode(tok, (int)prev, (int)id, &len);
		luaL_addlstring(&b, p, len);
		prev = id;
	}
	luaL_pushresult(&b);
	return 1;
}

/* m:residency() -> {shared, n_layer, resident, streamed, host, layers = "RRH..",
 * fixed_bytes, resident_bytes, missing_bytes, host_bytes, pinned, admitted,
 * evicted, bytes_admitted, bytes_streamed, pool_budget, pool_used,
 * pool_models}; shared false (and zeros) while no session holds the model
 * in a pool. */
static int m_residency(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	struct djn_residency r;
	char map[1024];

	djn_ring_residency(lm->m, &r);
	djn_ring_layer_map(lm->m, map, sizeof(map));
	lua_createtable(L, 0, 20);
	lua_pushboolean(L, r.shared);
	lua_setfield(L, -2, "shared");
	lua_pushboolean(L, r.pinned);
	lua_setfield(L, -2, "pinned");
	set_int(L, "n_layer", lm->m->cfg.n_layer);
	set_int(L, "resident", r.n_resident);
	set_int(L, "streamed", r.n_streamed);
	set_int(L, "host", r.n_host);
	set_str(L, "layers", map);
	set_int(L, "fixed_bytes", (lua_Integer)r.fixed_bytes);
	set_int(L, "resident_bytes", (lua_Integer)r.resident_bytes);
	set_int(L, "missing_bytes", (lua_Integer)r.missing_bytes);
	set_int(L, "host_bytes", (lua_Integer)r.host_bytes);
	set_int(L, "admitted", r.n_admitted);
	set_int(L, "evicted", r.n_evicted);
	set_int(L, "bytes_admitted", (lua_Integer)r.bytes_admitted);
	set_int(L, "bytes_streamed", (lua_Integer)r.bytes_streamed);
	set_int(L, "pool_budget", (lua_Integer)r.pool_budget);
	set_int(L, "pool_used", (lua_Integer)r.pool_used);
	set_int(L, "pool_models", r.pool_models);
	return 1;
}

/* m:prefetch() -> bytes, ms, detail | nil, msg: bring the model's missing
 * layers into the pool now and wait for them (a switch, timed apart from the
 * run); detail = { copies, evicted, queue_ms, wait_ms }. */
static int m_prefetch(lua_State *L)
{
	struct ldj_model *lm = ldj_model_check(L, 1);
	struct djn_err err = { 0 };
	struct timespec t0, t1;
	struct djn_switch sw;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (djn_ring_prefetch(lm->m, &sw, &err)) {
		lua_pushnil(L);
		lua_pushfstring(L, "prefetch: %s", err.msg);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	lua_pushinteger(L, (lua_Integer)sw.bytes);
	lua_pushnumber(L, (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			       (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, sw.n_copies);
	lua_setfield(L, -2, "copies");
	lua_pushinteger(L, sw.n_evicted);
	lua_setfield(L, -2, "evicted");
	lua_pushnumber(L, sw.queue_ms);
	lua_setfield(L, -2, "queue_ms");
	lua_pushnumber(L, sw.wait_ms);
	lua_setfield(L, -2, "wait_ms");
	return 3;
}

static int m_close(lua_State *L)
{
	ldj_model_close(L, luaL_checkudata(L, 1, LDJ_MODEL));
	return 0;
}

static int m_tostring(lua_State *L)
{
	struct ldj_model *lm = luaL_checkudata(L, 1, LDJ_MODEL);

	if (!lm->m)
		lua_pushliteral(L, "djinn.Model (closed)");
	else
		lua_pushfstring(L, "djinn.Model (%s, %d layers, %s%s)", lm->m->name,
				lm->m->cfg.n_layer, lm->be->i->name,
				lm->borrowed ? ", borrowed" : "");
	return 1;
}

static const luaL_Reg methods[] = {
	{ "info", m_info },
	{ "sites", m_sites },
	{ "session", ldj_model_session },
	{ "tokenize", m_tokenize },
	{ "detokenize", m_detokenize },
	{ "patch", m_patch },
	{ "residency", m_residency },
	{ "prefetch", m_prefetch },
	{ "close", m_close },
	{ NULL, NULL },
};

static const luaL_Reg metamethods[] = {
	{ "__index", NULL },
	{ "__gc", m_close },
	{ "__close", m_close },
	{ "__tostring", m_tostring },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "load", l_load },
	{ "models", l_models },
	{ NULL, NULL },
};

void ldj_open_model(lua_State *L)
{
	luaL_newmetatable(L, LDJ_MODEL);
	luaL_setfuncs(L, metamethods, 0);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);

	lua_newtable(L);
	lua_newtable(L);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &models_key);

	luaL_setfuncs(L, funcs, 0);
}
