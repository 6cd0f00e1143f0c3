/* test-lua.c - the embedding interface (lua.h): every failure comes back as a
 * status with the message and a traceback, the state stays usable, borrowed
 * objects are detached on rebind, and nothing leaks (run under ASan). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "djinn/djinn.h"
#include "djinn/lua.h"

#define MODEL "models/stories260K.gguf"

static struct djn_lua *L;
static struct djn_err err;

static void setup(void)
{
	memset(&err, 0, sizeof(err));
	L = djn_lua_new(&err);
	cr_assert_not_null(L, "%s", err.msg);
}

static void teardown(void)
{
	djn_lua_free(L);
}

TestSuite(lua, .init = setup, .fini = teardown);

static enum djn_status run(const char *code)
{
	memset(&err, 0, sizeof(err));
	return djn_lua_run_string(L, code, "=test", &err);
}

Test(lua, runs_code_with_djinn_loaded)
{
	cr_assert_eq(run("assert(djinn and require('djinn') == djinn)"), DJN_OK, "%s", err.msg);
	cr_assert_eq(run("assert(type(djinn.clock()) == 'number' and math.type(djinn.clock()) == 'integer')"),
		     DJN_OK, "%s", err.msg);
	cr_assert_eq(run("assert(require('stats').mean{1, 3} == 2)"), DJN_OK, "lua/lib on the path: %s",
		     err.msg);
}

Test(lua, syntax_error)
{
	cr_assert_eq(run("local x = = 1"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "test:1:") && strstr(err.msg, "unexpected symbol near '='"), "%s",
		  err.msg);
}

Test(lua, runtime_error_has_traceback)
{
	cr_assert_eq(run("local function f() error('boom') end\nf()"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "test:1: boom"), "%s", err.msg);
	cr_assert(strstr(err.msg, "stack traceback:") && strstr(err.msg, "in local 'f'"), "%s",
		  err.msg);
}

Test(lua, non_string_error_object)
{
	cr_assert_eq(run("error({})"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "(error object is a table value)"), "%s", err.msg);
	cr_assert_eq(run("error(setmetatable({}, {__tostring = function() return 'custom' end}))"),
		     DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "custom"), "%s", err.msg);
}

Test(lua, wrong_argument_types)
{
	cr_assert_eq(run("djinn.load({})"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "bad argument #1 to 'load' (string expected, got table)"), "%s",
		  err.msg);
	cr_assert_eq(run("local _ = djinn.tensor{1, 2} + djinn.tensor{1}"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "shape mismatch"), "%s", err.msg);
	cr_assert_eq(run("djinn.json.encode({f = print})"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "cannot encode a function"), "%s", err.msg);
}

Test(lua, state_survives_errors)
{
	cr_assert_eq(run("kept = 41"), DJN_OK);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(run("local t = djinn.tensor(64, 64); error('again')"), DJN_ERR_INVALID);
	cr_assert_eq(run("kept = kept + 1; assert(kept == 42)"), DJN_OK, "%s", err.msg);
}

Test(lua, expected_failures_are_nil_msg)
{
	cr_assert_eq(run("local m, msg = djinn.load('models/nonexistent.gguf')\n"
			 "assert(m == nil and msg == 'djinn.load: models/nonexistent.gguf: no such file or directory', msg)"),
		     DJN_OK, "%s", err.msg);
	cr_assert_eq(run("assert(djinn.json.decode('{') == nil)"), DJN_OK, "%s", err.msg);
}

Test(lua, run_file_sets_arg)
{
	char path[] = "/tmp/djinn-test-lua-XXXXXX";
	int fd = mkstemp(path);
	char *argv[] = { "a", "b c" };
	FILE *f;

	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	fputs("local x, y = ...\n"
	      "assert(arg[0] == select(1, ...) and false or true)\n"
	      "assert(arg[1] == 'a' and arg[2] == 'b c' and x == 'a' and y == 'b c')\n"
	      "assert(select('#', ...) == 2 and arg[-1] == 'djinn')\n"
	      "error('at the end')\n", f);
	fclose(f);
	cr_assert_eq(djn_lua_run_file(L, path, 2, argv, &err), DJN_ERR_INVALID);
	/* error() in the main chunk: the message is the whole story, one line */
	cr_assert(strstr(err.msg, ":5: at the end") && !strstr(err.msg, "stack traceback"), "%s",
		  err.msg);
	f = fopen(path, "w");
	fputs("local function f() error('deeper') end\nf()\n", f);
	fclose(f);
	cr_assert_eq(djn_lua_run_file(L, path, 0, NULL, &err), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, ":1: deeper") && strstr(err.msg, "stack traceback:") &&
		  strstr(err.msg, "in local 'f'"), "%s", err.msg);
	unlink(path);
	cr_assert_neq(djn_lua_run_file(L, "/nonexistent/x.lua", 0, NULL, &err), DJN_OK);
	cr_assert(strstr(err.msg, "cannot open /nonexistent/x.lua") &&
		  !strstr(err.msg, "traceback"), "%s", err.msg);
}

/* Models and sessions left open are closed by djn_lua_free (ASan: no leak). */
Test(lua, objects_left_open_are_freed)
{
	cr_assert_eq(run("m = assert(djinn.load('" MODEL "', {device = 'cpu'}))\n"
			 "s = m:session()\n"
			 "s:break_at('L2.resid_post')\n"
			 "s:start('Once upon a time', {n = 8})\n"
			 "assert(s:continue() == 'breakpoint')\n"
			 "ck = s:checkpoint()\n"
			 "s:steer('L2.resid_post', 'add', 1, {persist = true})\n"
			 "t = s:tensor()\n"
			 "m2 = djinn.load('" MODEL "', {device = 'cpu'})\n"
			 "s2 = m2:session()"),
		     DJN_OK, "%s", err.msg);
	cr_assert_eq(run("s:tensor('L2.resid_pst')"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "did you mean L2.resid_post"), "%s", err.msg);
	cr_assert_eq(run("assert(s:continue() == 'breakpoint'); assert(#djinn.models() == 2)"), DJN_OK,
		     "session usable after the error: %s", err.msg);
}

Test(lua, closed_session)
{
	cr_assert_eq(run("m = assert(djinn.load('" MODEL "', {device = 'cpu'})); s = m:session(); s:close()"),
		     DJN_OK, "%s", err.msg);
	cr_assert_eq(run("s:start('x')"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "session is closed") && strstr(err.msg, "stack traceback:"), "%s",
		  err.msg);
	cr_assert_eq(run("m:close(); m:close(); collectgarbage()"), DJN_OK, "%s", err.msg);
	cr_assert_eq(run("m:info()"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "model is closed"), "%s", err.msg);
}

/* djinn.current(): the shell's objects, borrowed; detached on rebind and
 * never freed by Lua. */
Test(lua, bind_borrows)
{
	struct djn_model *m = djn_model_load(MODEL, NULL, &err);
	struct djn_backend *be = djn_backend_cpu_new(1, &err);
	struct djn_session *s;
	int32_t ids[] = { 1, 403, 407, 261, 378 };
	struct djn_gen_opts g = { .n_new = 8, .stop_at_eos = true };

	cr_assert(m && be, "%s", err.msg);
	s = djn_session_new(m, be, NULL, &err);
	cr_assert_not_null(s, "%s", err.msg);
	cr_assert_eq(djn_session_start(s, ids, 5, &g), DJN_OK);

	cr_assert_eq(run("local m, s = djinn.current(); assert(m == nil and s == nil)"), DJN_OK);
	djn_lua_bind(L, m, be, s);
	cr_assert_eq(run("cm, cs = djinn.current()\n"
			 "assert(cm:info().borrowed and cs:step(3) == 'step')\n"
			 "assert(select(2, djinn.current()) == cs, 'the same userdata')\n"
			 "own = cm:session()\n"
			 "own:start('Once', {n = 2})\n"
			 "cs:close() -- detaches only"),
		     DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_session_cursor(s).site, 2, "the script moved the shell's session");
	cr_assert_eq(run("local _, s2 = djinn.current(); assert(s2 and s2 ~= cs and s2:cursor().site == 'L0.q')"),
		     DJN_OK, "%s", err.msg);
	djn_lua_bind(L, m, be, NULL); /* the shell's session went: the model stays */
	cr_assert_eq(run("local m2, s2 = djinn.current(); assert(m2 == cm and s2 == nil)\n"
			 "assert(own:text() ~= nil and cm:info().n_layer == 5)"),
		     DJN_OK, "%s", err.msg);
	djn_lua_bind(L, NULL, NULL, NULL);
	cr_assert_eq(run("cm:info()"), DJN_ERR_INVALID);
	cr_assert(strstr(err.msg, "model is closed"), "%s", err.msg);
	cr_assert_eq(run("own:text()"), DJN_ERR_INVALID, "sessions on a borrowed model go at rebind");
	cr_assert_eq(run("collectgarbage(); collectgarbage()"), DJN_OK);
	/* the shell's objects are intact */
	cr_assert_eq(djn_session_run(s, DJN_RUN_CONTINUE, 1), DJN_STOP_DONE);
	djn_session_free(s);
	djn_model_unref(m);
	djn_backend_free(be);
}
