/* ljson.c - djinn.json: Lua values <-> JSON text through cJSON, for result
 * files and traces.  Trees under construction live in a box, so an error
 * part-way (a function in the table, a cycle) frees them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lua/ldjinn.h"

#define MAX_DEPTH 200

static void free_json(void *p)
{
	cJSON_Delete(p);
}

static void free_text(void *p)
{
	cJSON_free(p);
}

/* Is the table at idx a sequence 1..n (n >= 0)?  *n gets its length. */
static bool is_array(lua_State *L, int idx, lua_Integer *n)
{
	lua_Integer count = 0, max = 0;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
			lua_pop(L, 1);
			return false;
		}
		if (lua_tointeger(L, -1) > max)
			max = lua_tointeger(L, -1);
		count++;
	}
	*n = count;
	return max == count;
}

static cJSON *encode(lua_State *L, int idx, int depth);

static cJSON *add_member(lua_State *L, cJSON *obj, int depth)
{
	/* key at -2, value at -1; a copy of the key so lua_tostring does not
	 * turn a number key into a string under lua_next */
	char num[64];
	const char *key;

	switch (lua_type(L, -2)) {
	case LUA_TSTRING:
		key = lua_tostring(L, -2);
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, -2))
			snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, -2));
		else
			snprintf(num, sizeof(num), "%.17g", lua_tonumber(L, -2));
		key = num;
		break;
	default:
		luaL_error(L, "json.encode: table keys must be strings or numbers, not %s",
			   luaL_typename(L, -2));
		return NULL;
	}
	cJSON *child = encode(L, lua_gettop(L), depth + 1);
	if (!cJSON_AddItemToObject(obj, key, child)) {
		cJSON_Delete(child);
		luaL_error(L, "json.encode: out of memory");
	}
	return child;
}

/* The value at idx as a new item (owned by the caller's tree at once:
 * callers attach it before anything else can raise). */
static cJSON *encode(lua_State *L, int idx, int depth)
{
	lua_Integer n;

	if (depth > MAX_DEPTH)
		luaL_error(L, "json.encode: nesting deeper than %d (a cycle?)", MAX_DEPTH);
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return cJSON_CreateNull();
	case LUA_TBOOLEAN:
		return cJSON_CreateBool(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		return cJSON_CreateNumber(lua_tonumber(L, idx));
	case LUA_TSTRING:
		return cJSON_CreateString(lua_tostring(L, idx));
	case LUA_TLIGHTUSERDATA:
		if (!lua_touserdata(L, idx)) /* djinn.json.null */
			return cJSON_CreateNull();
		break;
	case LUA_TTABLE:
		luaL_checkstack(L, 4, "json.encode");
		return is_array(L, idx, &n) ? cJSON_CreateArray() : cJSON_CreateObject();
	default:
		break;
	}
	luaL_error(L, "json.encode: cannot encode a %s value", luaL_typename(L, idx));
	return NULL;
}

static int by_key(const void *a, const void *b)
{
	return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Lua iterates tables in an order that changes from run to run (string
 * hashes are seeded per state); sorted keys make a result file a function
 * of its content, so runs can be diffed.  cJSON keeps children in a list
 * whose head's prev points at the tail. */
static void sort_members(lua_State *L, cJSON *obj)
{
	int n = cJSON_GetArraySize(obj), i = 0;
	cJSON **v, *c;

	if (n < 2)
		return;
	v = lua_newuserdatauv(L, sizeof(*v) * (size_t)n, 0);
	for (c = obj->child; c; c = c->next)
		v[i++] = c;
	qsort(v, (size_t)n, sizeof(*v), by_key);
	for (i = 0; i < n; i++) {
		v[i]->prev = i ? v[i - 1] : v[n - 1];
		v[i]->next = i + 1 < n ? v[i + 1] : NULL;
	}
	obj->child = v[0];
	lua_pop(L, 1);
}

/* Fill the container `item` (made by encode for the table at idx). */
static void fill(lua_State *L, cJSON *item, int idx, int depth);

static void fill_children(lua_State *L, cJSON *item, int idx, int depth)
{
	if (cJSON_IsArray(item)) {
		lua_Integer n = luaL_len(L, idx);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_geti(L, idx, i);
			cJSON *child = encode(L, lua_gettop(L), depth + 1);
			if (!cJSON_AddItemToArray(item, child)) {
				cJSON_Delete(child);
				luaL_error(L, "json.encode: out of memory");
			}
			fill(L, child, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		fill(L, add_member(L, item, depth), lua_gettop(L), depth + 1);
		lua_pop(L, 1);
	}
	sort_members(L, item);
}

static void fill(lua_State *L, cJSON *item, int idx, int depth)
{
	if (cJSON_IsArray(item) || cJSON_IsObject(item))
		fill_children(L, item, idx, depth);
}

/* json.encode(value [, {indent = true}]) -> string.  Tables with keys 1..n
 * (and empty tables) become arrays, others objects (number keys as strings)
 * with their keys sorted; nil and json.null become null; NaN and infinities
 * become null. */
static int j_encode(lua_State *L)
{
	static const char *const keys[] = { "indent", NULL };
	struct ldj_box *tree, *text;
	bool indent;

	luaL_checkany(L, 1);
	ldj_check_opts(L, 2, "json.encode", keys);
	indent = ldj_opt_boolean(L, 2, "json.encode", "indent", false);
	lua_settop(L, 1);
	tree = ldj_box_new(L, free_json);
	text = ldj_box_new(L, free_text);
	if (!(tree->p = encode(L, 1, 0)))
		return luaL_error(L, "json.encode: out of memory");
	fill(L, tree->p, 1, 0);
	text->p = indent ? cJSON_Print(tree->p) : cJSON_PrintUnformatted(tree->p);
	if (!text->p)
		return luaL_error(L, "json.encode: out of memory");
	lua_pushstring(L, text->p);
	ldj_box_free(text);
	ldj_box_free(tree);
	return 1;
}

static void push_json(lua_State *L, const cJSON *j, int depth)
{
	const cJSON *c;
	int i = 0;

	luaL_checkstack(L, 3, "json.decode");
	if (depth > MAX_DEPTH)
		luaL_error(L, "json.decode: nesting deeper than %d", MAX_DEPTH);
	if (cJSON_IsNull(j)) {
		lua_pushlightuserdata(L, NULL);
	} else if (cJSON_IsBool(j)) {
		lua_pushboolean(L, cJSON_IsTrue(j));
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0)
			lua_pushinteger(L, (lua_Integer)d);
		else
			lua_pushnumber(L, d);
	} else if (cJSON_IsString(j)) {
		lua_pushstring(L, j->valuestring);
	} else if (cJSON_IsArray(j)) {
		lua_createtable(L, cJSON_GetArraySize(j), 0);
		cJSON_ArrayForEach(c, j)
		{
			push_json(L, c, depth + 1);
			lua_rawseti(L, -2, ++i);
		}
	} else if (cJSON_IsObject(j)) {
		lua_createtable(L, 0, cJSON_GetArraySize(j));
		cJSON_ArrayForEach(c, j)
		{
			push_json(L, c, depth + 1);
			lua_setfield(L, -2, c->string);
		}
	} else {
		lua_pushnil(L);
	}
}

/* json.decode(text) -> value | nil, msg.  null decodes to json.null (so
 * arrays keep their length); integral numbers below 2^53 to integers. */
static int j_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	struct ldj_box *tree = ldj_box_new(L, free_json);
	const char *end = NULL;

	if (!(tree->p = cJSON_ParseWithLengthOpts(s, len, &end, false))) {
		const char *at = cJSON_GetErrorPtr();
		lua_pushnil(L);
		if (at && at >= s && at <= s + len)
			lua_pushfstring(L, "json.decode: syntax error at byte %d",
					(int)(at - s) + 1);
		else
			lua_pushliteral(L, "json.decode: syntax error");
		return 2;
	}
	while (end && end < s + len && (*end == ' ' || *end == '\n' || *end == '\t' ||
					*end == '\r'))
		end++;
	if (end && end < s + len) {
		ldj_box_free(tree);
		lua_pushnil(L);
		lua_pushfstring(L, "json.decode: trailing characters at byte %d", (int)(end - s) + 1);
		return 2;
	}
	push_json(L, tree->p, 0);
	ldj_box_free(tree);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "encode", j_encode },
	{ "decode", j_decode },
	{ NULL, NULL },
};

void ldj_open_json(lua_State *L)
{
	luaL_newlib(L, funcs);
	lua_pushlightuserdata(L, NULL);
	lua_setfield(L, -2, "null");
	lua_setfield(L, -2, "json");
}
