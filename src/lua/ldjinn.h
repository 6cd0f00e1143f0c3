/* ldjinn.h - the parts of the `djinn` Lua module shared by its files
 * (internal to src/lua; scripts see only what luaopen_djinn registers).
 *
 * Object model.  Every engine object reaches Lua as a full userdata with a
 * named metatable:
 *
 *     "djinn.Model"    struct ldj_model    a model and the backend it runs on
 *     "djinn.Session"  struct ldj_session  a session on a Model
 *     "djinn.Tensor"   struct ldj_tensor   a host copy of an activation
 *
 * A Model keeps a list of the Sessions made on it; closing the Model (by
 * m:close(), __close or __gc) closes those first, so the backend is never
 * freed under a live session.  A Session keeps its Model userdata in its
 * user value, so the collector cannot finalise a Model that a reachable
 * Session still needs.  Borrowed objects (djinn.current()) point at the
 * shell's model and session: closing them only detaches the userdata.
 */
#ifndef DJINN_LUA_LDJINN_H
#define DJINN_LUA_LDJINN_H

#include <stdbool.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "djinn/djinn.h"

#define LDJ_MODEL "djinn.Model"
#define LDJ_SESSION "djinn.Session"
#define LDJ_TENSOR "djinn.Tensor"

struct ldj_session;

struct ldj_model {
	struct djn_model *m;          /* NULL once closed */
	struct djn_backend *be;
	bool borrowed;                /* the shell's: never freed here */
	struct ldj_session *sessions; /* made on this model, still open */
};

struct ldj_session {
	struct djn_session *s;        /* NULL once closed */
	struct ldj_model *owner;
	struct ldj_session *prev, *next;
	uint64_t seed;                /* default for s:start */
	bool borrowed;
	struct djn_sched *sched;      /* the scheduler holding it (lsched.c), or NULL */
};

/* rows x cols f32, row-major, stored inline after the header so the whole
 * tensor is one Lua allocation: nothing to leak when an error unwinds. */
struct ldj_tensor {
	int rows, cols;
	float data[];
};

/* lua.c: the interpreter's context (backends shared by models) */
/* The session inside djn_session_run, for Ctrl-C (djinn script.lua). */
extern struct djn_session *volatile ldj_running;
struct djn_lua;
struct djn_lua *ldj_ctx(lua_State *L);
/* A backend for spec/threads, shared with other models that asked for the
 * same; NULL with *err set.  Every get is paired with one put. */
struct djn_backend *ldj_backend_get(lua_State *L, const char *spec, int threads,
				    struct djn_err *err);
void ldj_backend_put(lua_State *L, struct djn_backend *be);

/* A userdata at the top that frees p with fn when collected: C memory and
 * files held across calls that can raise live in one of these. */
struct ldj_box {
	void *p;
	void (*fn)(void *);
};
struct ldj_box *ldj_box_new(lua_State *L, void (*fn)(void *));
/* Release the boxed thing now (the box stays, empty). */
void ldj_box_free(struct ldj_box *b);

/* Options tables: `idx` may be absent or nil; otherwise it must be a table
 * whose keys are all in `keys` (a typo is an error, not a silent default). */
void ldj_check_opts(lua_State *L, int idx, const char *fn, const char *const *keys);
const char *ldj_opt_string(lua_State *L, int idx, const char *fn, const char *key,
			   const char *def);
lua_Integer ldj_opt_integer(lua_State *L, int idx, const char *fn, const char *key,
			    lua_Integer def);
lua_Number ldj_opt_number(lua_State *L, int idx, const char *fn, const char *key,
			  lua_Number def);
bool ldj_opt_boolean(lua_State *L, int idx, const char *fn, const char *key, bool def);

/* lmodel.c */
void ldj_open_model(lua_State *L); /* metatable; module functions into the table at the top */
struct ldj_model *ldj_model_push_borrowed(lua_State *L, struct djn_model *m,
					  struct djn_backend *be);
struct ldj_model *ldj_model_check(lua_State *L, int idx);
/* Close its sessions, then drop the model and the backend (not if borrowed). */
void ldj_model_close(lua_State *L, struct ldj_model *lm);

/* lsession.c */
void ldj_open_session(lua_State *L);
/* m:session{...}: a method of djinn.Model, defined with the sessions. */
int ldj_model_session(lua_State *L);
/* Push an empty session userdata on the model userdata at `model_idx`, then
 * attach the engine session to it (attach cannot raise). */
struct ldj_session *ldj_session_push(lua_State *L, int model_idx);
void ldj_session_attach(struct ldj_session *ls, struct ldj_model *lm, struct djn_session *s,
			bool borrowed);
void ldj_session_close(struct ldj_session *ls);

/* lsched.c: djinn.sched into the module table at the top */
void ldj_open_sched(lua_State *L);
/* ltensor.c */
void ldj_open_tensor(lua_State *L);
/* A new zero-filled rows x cols tensor on the stack. */
struct ldj_tensor *ldj_tensor_new(lua_State *L, int rows, int cols);
/* The same, its data left unset: for a caller that fills every element. */
struct ldj_tensor *ldj_tensor_alloc(lua_State *L, int rows, int cols);
struct ldj_tensor *ldj_tensor_check(lua_State *L, int idx);
void ldj_push_stats(lua_State *L, const struct djn_stats *st);

/* ljson.c */
void ldj_open_json(lua_State *L);

/* lremote.c: djinn.connect and "djinn.Remote" (into the table at the top) */
void ldj_open_remote(lua_State *L);

/* Raise "<what>: <msg>" with the caller's position (never returns). */
int ldj_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Resolve a site name for `what`, raising with the nearest names when it is
 * not one. */
int ldj_check_site(lua_State *L, const struct djn_config *c, const char *what, const char *name);
/* Raise for a pattern that matches no site, with suggestions. */
void ldj_check_pattern(lua_State *L, const struct djn_config *c, const char *what,
		       const char *pattern);

#endif
