/* ltensor.c - djinn.Tensor: host copies of activations that scripts can
 * measure, combine and hand back to s:steer / s:write; and .npy files. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/ldjinn.h"

#define MAX_ELEMS ((lua_Integer)1 << 31)

struct ldj_tensor *ldj_tensor_alloc(lua_State *L, int rows, int cols)
{
	struct ldj_tensor *t;
	size_t n;

	if (rows < 1 || cols < 1 || (lua_Integer)rows * cols > MAX_ELEMS)
		luaL_error(L, "tensor: bad shape %d x %d", rows, cols);
	n = (size_t)rows * cols;
	t = lua_newuserdatauv(L, sizeof(*t) + n * sizeof(float), 0);
	t->rows = rows;
	t->cols = cols;
	luaL_setmetatable(L, LDJ_TENSOR);
	return t;
}

struct ldj_tensor *ldj_tensor_new(lua_State *L, int rows, int cols)
{
	struct ldj_tensor *t = ldj_tensor_alloc(L, rows, cols);

	memset(t->data, 0, (size_t)rows * cols * sizeof(float));
	return t;
}

struct ldj_tensor *ldj_tensor_check(lua_State *L, int idx)
{
	return luaL_checkudata(L, idx, LDJ_TENSOR);
}

static size_t numel(const struct ldj_tensor *t)
{
	return (size_t)t->rows * t->cols;
}

void ldj_push_stats(lua_State *L, const struct djn_stats *st)
{
	lua_createtable(L, 0, 10);
	lua_pushnumber(L, st->min);
	lua_setfield(L, -2, "min");
	lua_pushnumber(L, st->max);
	lua_setfield(L, -2, "max");
	lua_pushnumber(L, st->mean);
	lua_setfield(L, -2, "mean");
	lua_pushnumber(L, st->std);
	lua_setfield(L, -2, "std");
	lua_pushnumber(L, st->l2);
	lua_setfield(L, -2, "l2");
	lua_pushnumber(L, st->absmax);
	lua_setfield(L, -2, "absmax");
	lua_pushinteger(L, st->argmax);
	lua_setfield(L, -2, "argmax");
	lua_pushinteger(L, st->n_nan);
	lua_setfield(L, -2, "nan");
	lua_pushinteger(L, st->n_inf);
	lua_setfield(L, -2, "inf");
	lua_pushinteger(L, st->n);
	lua_setfield(L, -2, "n");
}

/* ------------------------------------------------------------ building */

static float check_elem(lua_State *L, int arg, int r, int c)
{
	int ok;
	lua_Number v = lua_tonumberx(L, -1, &ok);

	if (!ok || lua_type(L, -1) != LUA_TNUMBER)
		luaL_argerror(L, arg, lua_pushfstring(L, "element [%d][%d] is %s, not a number",
						      r + 1, c + 1, luaL_typename(L, -1)));
	return (float)v;
}

/* djinn.tensor({x...}) -> 1 x n;  djinn.tensor({{...}, {...}}) -> rows x cols;
 * djinn.tensor(rows, cols [, fill]);  djinn.tensor(t) -> a copy of t. */
static int l_tensor(lua_State *L)
{
	struct ldj_tensor *t, *src;
	lua_Integer rows, cols;

	if ((src = luaL_testudata(L, 1, LDJ_TENSOR))) {
		t = ldj_tensor_new(L, src->rows, src->cols);
		memcpy(t->data, src->data, numel(src) * sizeof(float));
		return 1;
	}
	if (lua_type(L, 1) == LUA_TNUMBER) {
		float fill = (float)luaL_optnumber(L, 3, 0);
		rows = luaL_checkinteger(L, 1);
		cols = luaL_checkinteger(L, 2);
		if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX ||
		    rows * cols > MAX_ELEMS)
			return luaL_argerror(L, rows < 1 ? 1 : 2, "shape must be positive and "
								 "below 2^31 elements");
		t = ldj_tensor_new(L, (int)rows, (int)cols);
		for (size_t i = 0; i < numel(t); i++)
			t->data[i] = fill;
		return 1;
	}
	luaL_argexpected(L, lua_type(L, 1) == LUA_TTABLE, 1, "table, Tensor or rows, cols");
	rows = luaL_len(L, 1);
	if (rows < 1)
		return luaL_argerror(L, 1, "empty table");
	if (lua_geti(L, 1, 1) != LUA_TTABLE) { /* flat: one row */
		lua_pop(L, 1);
		if (rows > MAX_ELEMS)
			return luaL_argerror(L, 1, "too many elements");
		t = ldj_tensor_new(L, 1, (int)rows);
		for (lua_Integer c = 0; c < rows; c++) {
			lua_geti(L, 1, c + 1);
			t->data[c] = check_elem(L, 1, 0, (int)c);
			lua_pop(L, 1);
		}
		return 1;
	}
	cols = luaL_len(L, -1);
	lua_pop(L, 1);
	if (cols < 1 || rows > INT32_MAX || cols > INT32_MAX || rows * cols > MAX_ELEMS)
		return luaL_argerror(L, 1, "rows must be non-empty and below 2^31 elements");
	t = ldj_tensor_new(L, (int)rows, (int)cols);
	for (lua_Integer r = 0; r < rows; r++) {
		if (lua_geti(L, 1, r + 1) != LUA_TTABLE || luaL_len(L, -1) != cols)
			return luaL_argerror(L, 1, lua_pushfstring(L, "row %I is not a table of %I "
								      "numbers (rows must be equal)",
								   r + 1, cols));
		for (lua_Integer c = 0; c < cols; c++) {
			lua_geti(L, -1, c + 1);
			t->data[r * cols + c] = check_elem(L, 1, (int)r, (int)c);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	return 1;
}

/* --------------------------------------------------------- arithmetic */

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

static float apply(enum binop op, float a, float b)
{
	switch (op) {
	case OP_ADD:
		return a + b;
	case OP_SUB:
		return a - b;
	case OP_MUL:
		return a * b;
	case OP_DIV:
		return a / b;
	}
	return 0;
}

/* tensor op tensor (same shape, elementwise), tensor op number, number op tensor */
static int arith(lua_State *L, enum binop op)
{
	struct ldj_tensor *a = luaL_testudata(L, 1, LDJ_TENSOR);
	struct ldj_tensor *b = luaL_testudata(L, 2, LDJ_TENSOR);
	struct ldj_tensor *t;

	if (a && b) {
		if (a->rows != b->rows || a->cols != b->cols)
			return luaL_argerror(L, 2, lua_pushfstring(L, "shape mismatch: %dx%d and "
								      "%dx%d",
								   a->rows, a->cols, b->rows,
								   b->cols));
		t = ldj_tensor_new(L, a->rows, a->cols);
		for (size_t i = 0; i < numel(t); i++)
			t->data[i] = apply(op, a->data[i], b->data[i]);
	} else if (a) {
		float s = (float)luaL_checknumber(L, 2);
		t = ldj_tensor_new(L, a->rows, a->cols);
		for (size_t i = 0; i < numel(t); i++)
			t->data[i] = apply(op, a->data[i], s);
	} else {
		float s = (float)luaL_checknumber(L, 1);
		b = ldj_tensor_check(L, 2);
		t = ldj_tensor_new(L, b->rows, b->cols);
		for (size_t i = 0; i < numel(t); i++)
			t->data[i] = apply(op, s, b->data[i]);
	}
	return 1;
}

static int t_add(lua_State *L) { return arith(L, OP_ADD); }
static int t_sub(lua_State *L) { return arith(L, OP_SUB); }
static int t_mul(lua_State *L) { return arith(L, OP_MUL); }
static int t_div(lua_State *L) { return arith(L, OP_DIV); }

static int t_unm(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1), *t = ldj_tensor_new(L, a->rows, a->cols);

	for (size_t i = 0; i < numel(t); i++)
		t->data[i] = -a->data[i];
	return 1;
}

static int t_eq(lua_State *L)
{
	struct ldj_tensor *a = luaL_testudata(L, 1, LDJ_TENSOR);
	struct ldj_tensor *b = luaL_testudata(L, 2, LDJ_TENSOR);
	bool eq = a && b && a->rows == b->rows && a->cols == b->cols;

	for (size_t i = 0; eq && i < numel(a); i++)
		eq = a->data[i] == b->data[i];
	lua_pushboolean(L, eq);
	return 1;
}

static int t_len(lua_State *L)
{
	lua_pushinteger(L, ldj_tensor_check(L, 1)->rows);
	return 1;
}

static int t_tostring(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	size_t n = numel(t), show = n <= 6 ? n : 4;
	luaL_Buffer b;
	char num[32];

	luaL_buffinit(L, &b);
	lua_pushfstring(L, "djinn.Tensor(%dx%d f32: [", t->rows, t->cols);
	luaL_addvalue(&b);
	for (size_t i = 0; i < show; i++) {
		snprintf(num, sizeof(num), "%s%.6g", i ? ", " : "", t->data[i]);
		luaL_addstring(&b, num);
	}
	if (show < n) {
		snprintf(num, sizeof(num), ", ..., %.6g", t->data[n - 1]);
		luaL_addstring(&b, num);
	}
	luaL_addstring(&b, "])");
	luaL_pushresult(&b);
	return 1;
}

/* ------------------------------------------------------------ methods */

static int t_stats(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	struct djn_stats st;

	djn_stats_f32(t->data, (int64_t)numel(t), &st);
	ldj_push_stats(L, &st);
	return 1;
}

/* t:tolist() -> {{row 1...}, {row 2...}} (nested, as numpy's tolist) */
static int t_tolist(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);

	lua_createtable(L, t->rows, 0);
	for (int r = 0; r < t->rows; r++) {
		lua_createtable(L, t->cols, 0);
		for (int c = 0; c < t->cols; c++) {
			lua_pushnumber(L, t->data[(size_t)r * t->cols + c]);
			lua_rawseti(L, -2, c + 1);
		}
		lua_rawseti(L, -2, r + 1);
	}
	return 1;
}

/* t:flat() -> {x...}: every element, row after row */
static int t_flat(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	size_t n = numel(t);

	if (n > INT32_MAX)
		return luaL_error(L, "flat: too many elements for a table");
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_pushnumber(L, t->data[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

static int check_index(lua_State *L, int arg, int n, const char *what)
{
	lua_Integer i = luaL_checkinteger(L, arg);

	if (i < 1 || i > n)
		luaL_argerror(L, arg, lua_pushfstring(L, "%s %I outside 1..%d", what, i, n));
	return (int)i - 1;
}

/* t:get(row, col) -> number (1-based) */
static int t_get(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	int r = check_index(L, 2, t->rows, "row"), c = check_index(L, 3, t->cols, "column");

	lua_pushnumber(L, t->data[(size_t)r * t->cols + c]);
	return 1;
}

/* t:set(row, col, value) (1-based; tensors are otherwise values) */
static int t_set(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	int r = check_index(L, 2, t->rows, "row"), c = check_index(L, 3, t->cols, "column");

	t->data[(size_t)r * t->cols + c] = (float)luaL_checknumber(L, 4);
	return 0;
}

static void push_row(lua_State *L, const struct ldj_tensor *t, int r)
{
	struct ldj_tensor *row = ldj_tensor_new(L, 1, t->cols);

	memcpy(row->data, t->data + (size_t)r * t->cols, sizeof(float) * (size_t)t->cols);
}

/* t:row(i) -> 1 x cols copy of row i (1-based); also t[i] */
static int t_row(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);

	push_row(L, t, check_index(L, 2, t->rows, "row"));
	return 1;
}

static int t_clone(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1), *t = ldj_tensor_new(L, a->rows, a->cols);

	memcpy(t->data, a->data, numel(a) * sizeof(float));
	return 1;
}

/* t:reshape(rows, cols) -> a copy with the same elements in a new shape */
static int t_reshape(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1), *t;
	lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);

	if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX ||
	    (size_t)(rows * cols) != numel(a))
		return luaL_argerror(L, 2, lua_pushfstring(L, "%I x %I does not hold %d x %d",
							   rows, cols, a->rows, a->cols));
	t = ldj_tensor_new(L, (int)rows, (int)cols);
	memcpy(t->data, a->data, numel(a) * sizeof(float));
	return 1;
}

/* t:dot(u) -> sum of elementwise products (same shape) */
static int t_dot(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1), *b = ldj_tensor_check(L, 2);
	double s = 0;

	if (a->rows != b->rows || a->cols != b->cols)
		return luaL_argerror(L, 2, lua_pushfstring(L, "shape mismatch: %dx%d and %dx%d",
							   a->rows, a->cols, b->rows, b->cols));
	for (size_t i = 0; i < numel(a); i++)
		s += (double)a->data[i] * b->data[i];
	lua_pushnumber(L, s);
	return 1;
}

static int t_sum(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1);
	double s = 0;

	for (size_t i = 0; i < numel(a); i++)
		s += a->data[i];
	lua_pushnumber(L, s);
	return 1;
}

static int t_norm(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1);
	double s = 0;

	for (size_t i = 0; i < numel(a); i++)
		s += (double)a->data[i] * a->data[i];
	lua_pushnumber(L, sqrt(s));
	return 1;
}

/* t:argmax() -> 0-based flat index of the largest element (a token id for
 * a 1-row logits tensor), first on ties, NaN skipped */
static int t_argmax(lua_State *L)
{
	struct ldj_tensor *a = ldj_tensor_check(L, 1);
	size_t best = 0;

	for (size_t i = 1; i < numel(a); i++)
		if (a->data[i] > a->data[best] || isnan(a->data[best]))
			best = i;
	lua_pushinteger(L, (lua_Integer)best);
	return 1;
}

/* ---------------------------------------------------------------- npy */

static void close_file(void *f)
{
	fclose(f);
}

/* t:save(path) -> true | nil, msg: NPY v1.0, '<f4', C order, shape (rows, cols). */
static int t_save(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);
	const char *path = luaL_checkstring(L, 2);
	struct ldj_box *box = ldj_box_new(L, close_file);
	char hdr[128];
	int n = snprintf(hdr, sizeof(hdr),
			 "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", t->rows,
			 t->cols);
	/* magic(6) + version(2) + len(2) + header, padded with spaces to 64, '\n' */
	int total = (10 + n + 1 + 63) / 64 * 64;
	FILE *f;
	bool ok;

	memset(hdr + n, ' ', (size_t)(total - 10 - n - 1));
	hdr[total - 10 - 1] = '\n';
	if (!(f = fopen(path, "wb")))
		return luaL_fileresult(L, 0, path);
	box->p = f;
	ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 &&
	     fputc((total - 10) & 0xff, f) != EOF && fputc((total - 10) >> 8, f) != EOF &&
	     fwrite(hdr, 1, (size_t)(total - 10), f) == (size_t)(total - 10) &&
	     fwrite(t->data, sizeof(float), numel(t), f) == numel(t);
	box->p = NULL;
	if (fclose(f) != 0)
		ok = false;
	return luaL_fileresult(L, ok, path);
}

/* Find `'key':` in an NPY header dict and return what follows it. */
static const char *npy_field(const char *hdr, const char *key)
{
	const char *p = strstr(hdr, key);

	if (!p)
		return NULL;
	p += strlen(key);
	while (*p == ' ' || *p == ':')
		p++;
	return p;
}

/* djinn.load_npy(path) -> Tensor | nil, msg: '<f4' or '<f8', C order, 1-D
 * (a 1 x n tensor) or 2-D. */
static int l_load_npy(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct ldj_box *box = ldj_box_new(L, close_file);
	unsigned char pre[12];
	char hdr[4096];
	long dims[2] = { 1, 1 };
	int n_dims = 0, elem;
	size_t hlen, vlen;
	const char *p;
	FILE *f;
	struct ldj_tensor *t;

#define NPY_FAIL(...)                                                                      \
	do {                                                                               \
		ldj_box_free(box);                                                         \
		lua_pushnil(L);                                                            \
		lua_pushfstring(L, __VA_ARGS__);                                           \
		return 2;                                                                  \
	} while (0)
	if (!(f = fopen(path, "rb")))
		return luaL_fileresult(L, 0, path);
	box->p = f;
	if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6))
		NPY_FAIL("%s: not an .npy file (bad magic)", path);
	if (pre[6] == 1) {
		hlen = pre[8] | (size_t)pre[9] << 8;
	} else if (pre[6] == 2 || pre[6] == 3) {
		if (fread(pre + 10, 1, 2, f) != 2)
			NPY_FAIL("%s: truncated header", path);
		hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
	} else {
		NPY_FAIL("%s: unsupported .npy version %d", path, pre[6]);
	}
	if (hlen >= sizeof(hdr))
		NPY_FAIL("%s: header of %d bytes is too long", path, (int)hlen);
	if (fread(hdr, 1, hlen, f) != hlen)
		NPY_FAIL("%s: truncated header", path);
	hdr[hlen] = '\0';
	if (!(p = npy_field(hdr, "'descr'")))
		NPY_FAIL("%s: header has no 'descr'", path);
	if (!strncmp(p, "'<f4'", 5))
		elem = 4;
	else if (!strncmp(p, "'<f8'", 5))
		elem = 8;
	else {
		char d[16];
		snprintf(d, sizeof(d), "%.*s", (int)strcspn(p, ",}"), p);
		NPY_FAIL("%s: dtype %s is not supported (want '<f4' or '<f8')", path, d);
	}
	if ((p = npy_field(hdr, "'fortran_order'")) && strncmp(p, "False", 5))
		NPY_FAIL("%s: fortran_order arrays are not supported", path);
	if (!(p = npy_field(hdr, "'shape'")) || *p++ != '(')
		NPY_FAIL("%s: header has no shape", path);
	while (*p != ')') {
		char *end;
		errno = 0;
		long d = strtol(p, &end, 10);
		if (end == p || errno || d < 1 || d > INT32_MAX || n_dims == 2)
			NPY_FAIL("%s: shape must be 1-D or 2-D with positive sizes", path);
		dims[n_dims++] = d;
		p = end;
		while (*p == ',' || *p == ' ')
			p++;
	}
	if (n_dims == 0)
		NPY_FAIL("%s: a scalar array, want 1-D or 2-D", path);
	if (n_dims == 1) {
		dims[1] = dims[0];
		dims[0] = 1;
	}
	if ((lua_Integer)dims[0] * dims[1] > MAX_ELEMS)
		NPY_FAIL("%s: too many elements", path);
	t = ldj_tensor_new(L, (int)dims[0], (int)dims[1]);
	vlen = numel(t);
	if (elem == 4) {
		if (fread(t->data, 4, vlen, f) != vlen)
			NPY_FAIL("%s: data ends early (want %d x %d floats)", path, t->rows, t->cols);
	} else {
		for (size_t i = 0; i < vlen; i++) {
			double d;
			if (fread(&d, 8, 1, f) != 1)
				NPY_FAIL("%s: data ends early (want %d x %d doubles)", path, t->rows,
					 t->cols);
			t->data[i] = (float)d;
		}
	}
	ldj_box_free(box);
	return 1;
#undef NPY_FAIL
}

/* ------------------------------------------------------------ indexing */

static int t_index(lua_State *L)
{
	struct ldj_tensor *t = ldj_tensor_check(L, 1);

	if (lua_type(L, 2) == LUA_TNUMBER) {
		int ok;
		lua_Integer i = lua_tointegerx(L, 2, &ok);
		if (!ok || i < 1 || i > t->rows)
			return 0; /* nil, as a table would give */
		push_row(L, t, (int)i - 1);
		return 1;
	}
	const char *k = lua_tostring(L, 2);
	if (!k)
		return 0;
	if (!strcmp(k, "shape")) {
		lua_createtable(L, 2, 0);
		lua_pushinteger(L, t->rows);
		lua_rawseti(L, -2, 1);
		lua_pushinteger(L, t->cols);
		lua_rawseti(L, -2, 2);
	} else if (!strcmp(k, "rows")) {
		lua_pushinteger(L, t->rows);
	} else if (!strcmp(k, "cols")) {
		lua_pushinteger(L, t->cols);
	} else if (!strcmp(k, "n")) {
		lua_pushinteger(L, (lua_Integer)numel(t));
	} else if (!strcmp(k, "dtype")) {
		lua_pushliteral(L, "f32");
	} else {
		lua_pushvalue(L, 2);
		lua_rawget(L, lua_upvalueindex(1)); /* the methods */
	}
	return 1;
}

static const luaL_Reg methods[] = {
	{ "stats", t_stats },
	{ "tolist", t_tolist },
	{ "flat", t_flat },
	{ "get", t_get },
	{ "set", t_set },
	{ "row", t_row },
	{ "clone", t_clone },
	{ "reshape", t_reshape },
	{ "dot", t_dot },
	{ "sum", t_sum },
	{ "norm", t_norm },
	{ "argmax", t_argmax },
	{ "save", t_save },
	{ NULL, NULL },
};

static const luaL_Reg metamethods[] = {
	{ "__add", t_add },
	{ "__sub", t_sub },
	{ "__mul", t_mul },
	{ "__div", t_div },
	{ "__unm", t_unm },
	{ "__eq", t_eq },
	{ "__len", t_len },
	{ "__tostring", t_tostring },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "tensor", l_tensor },
	{ "load_npy", l_load_npy },
	{ NULL, NULL },
};

void ldj_open_tensor(lua_State *L)
{
	luaL_newmetatable(L, LDJ_TENSOR);
	luaL_setfuncs(L, metamethods, 0);
	luaL_newlib(L, methods);
	lua_pushcclosure(L, t_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_setfuncs(L, funcs, 0);
}
