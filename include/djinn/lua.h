/* lua.h - the embedded Lua 5.4 interpreter with the `djinn` module.
 *
 * The shell owns one djn_lua for its lifetime; `djinn script.lua` makes its
 * own.  Errors never unwind through C frames that own memory: every entry
 * runs the chunk under lua_pcall with a traceback handler and returns a
 * status with the message (traceback included) in *err.
 */
#ifndef DJINN_LUA_H
#define DJINN_LUA_H

#include "djinn/status.h"

struct djn_lua;
struct djn_model;
struct djn_session;
struct djn_backend;

/* A state with the standard libraries and `djinn` loaded (as a global and
 * via require).  NULL with *err set on failure. */
struct djn_lua *djn_lua_new(struct djn_err *err);
void djn_lua_free(struct djn_lua *L);

/* Let scripts reach the shell's current model/session (djinn.current()).
 * The objects stay owned by the caller; pass NULLs when they go away. */
void djn_lua_bind(struct djn_lua *L, struct djn_model *m, struct djn_backend *be,
		  struct djn_session *s);

enum djn_status djn_lua_run_string(struct djn_lua *L, const char *code, const char *chunkname,
				   struct djn_err *err);
/* Run a file with `arg` set as the lua interpreter does (arg[0] = path). */
enum djn_status djn_lua_run_file(struct djn_lua *L, const char *path, int argc, char **argv,
				 struct djn_err *err);

/* `djinn script.lua [ARGS...]`: returns the exit status. */
int djn_lua_main(int argc, char **argv);

#endif
