/* shell_impl.h - the shell's state, its command table and the helpers the
 * command files share (internal to src/shell; the unit tests and the fuzz
 * target include it too).
 *
 * The shell is a thin face over the engine (djinn/djinn.h): it parses words,
 * calls the engine, and formats what comes back.  Every command is declared
 * once, in the table in cmd.c; that table drives dispatch, help, completion
 * and docs/commands.md.
 *
 * Output.  Handlers write text with sh_printf() and, for --json, structured
 * fields with sh_json_*(); the dispatcher turns each command into one line of
 * text output or one JSON object.  Errors go through sh_fail(), which
 * records the message; the dispatcher prints it (stderr in text mode) and
 * counts the failure.  A failed command leaves the shell as it was.
 */
#ifndef DJINN_SHELL_IMPL_H
#define DJINN_SHELL_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "djinn/djinn.h"

/* ------------------------------------------------------------ commands */

enum djn_cmd_ret {
	DJN_CMD_OK,
	DJN_CMD_FAIL,
	DJN_CMD_QUIT,
};

enum djn_cmd_flag {
	DJN_CMD_NEEDS_MODEL = 1u << 0,  /* a model is loaded */
	DJN_CMD_NEEDS_RUN = 1u << 1,    /* a run exists (paused or finished) */
	DJN_CMD_NEEDS_PAUSED = 1u << 2, /* a run is paused (can go on) */
	DJN_CMD_REPEAT = 1u << 3,       /* an empty line repeats it (interactive) */
	DJN_CMD_HIDDEN = 1u << 4,       /* left out of `help` and completion */
	DJN_CMD_RAW = 1u << 5,          /* takes the rest of the line as written (echo, lua) */
};

/* What the words after a command are, for tab completion. */
enum djn_cmd_arg {
	DJN_ARG_NONE,
	DJN_ARG_SITE,    /* a site name or pattern */
	DJN_ARG_FILE,    /* a file path */
	DJN_ARG_CMD,     /* a command name (help) */
	DJN_ARG_SESSION, /* a session name */
	DJN_ARG_STEER,   /* SITE then an operation */
};

struct djn_shell;

struct djn_cmd {
	const char *name, *alias, *usage, *summary;
	int arity;          /* words including the name: N exact, -N at least N (Redis) */
	int max;            /* with a negative arity: at most max words (0: no limit) */
	unsigned flags;     /* enum djn_cmd_flag */
	enum djn_cmd_ret (*exec)(struct djn_shell *sh, int argc, char **argv);
	const struct djn_cmd *sub; /* a prefix command's subcommands ({0}-terminated) */
	enum djn_cmd_arg args;
	const char *help;   /* more text for `help CMD` and the docs, or NULL */
	const char *group;  /* set on the first command of each family */
};

/* The top-level table, {0}-terminated. */
extern const struct djn_cmd djn_cmd_table[];

/* Find word in table: an alias wins, then an exact name, then a unique
 * prefix.  NULL when none or several match; the message (gdb's) goes into
 * err, e.g. `ambiguous command "st": could be start, step, steer`.  `what`
 * names the table in messages ("" for the top level, "info " for info's). */
const struct djn_cmd *djn_cmd_find(const struct djn_cmd *table, const char *word,
				   const char *what, char *err, size_t n);

/* Split a command line into words: whitespace separates them except inside
 * quotes ("..." with \-escapes, '...'), brackets and parentheses (kept as
 * written, so `[0, 0:8]` and `emb("a b")` are one word each).  argv is
 * malloc'd, each word too; off[i] is where word i starts in line.  Returns
 * the number of words, or -1 with a message in err. */
int djn_shell_split(const char *line, char ***argv, int **off, char *err, size_t n);
void djn_shell_split_free(int argc, char **argv, int *off);

/* ------------------------------------------------------------- slices */

/* One dimension of a slice: everything, one index, or a range [lo, hi). */
struct djn_slice_dim {
	enum { DJN_SLICE_ALL, DJN_SLICE_INDEX, DJN_SLICE_RANGE } kind;
	long lo, hi;
	bool has_lo, has_hi;
};

struct djn_slice {
	int n_dims; /* 0..2 */
	struct djn_slice_dim d[2];
};

/* Parse `[R]` or `[R, C]` (R, C: `i`, `-i`, `a:b`, `:`, `a:`, `:b`).
 * Returns false with a message naming the text and the column. */
bool djn_slice_parse(const char *text, struct djn_slice *out, char *err, size_t n);
/* Resolve against a rows x cols tensor into half-open ranges; false with a
 * message when an index is out of range or a range is empty. */
bool djn_slice_resolve(const struct djn_slice *sl, const char *text, int rows, int cols,
		       int *r0, int *r1, int *c0, int *c1, char *err, size_t n);

/* ---------------------------------------------------------------- npy */

/* Parse a .npy file held in memory: version 1, 2 or 3, descr '<f4' or '<f8'
 * (converted to f32), fortran_order False, shape (n,) or (1, n).  On
 * success *out is a malloc'd array of *n_out floats (caller frees).  On
 * failure the message names `name` and the problem. */
enum djn_status djn_npy_parse(const void *buf, size_t len, const char *name, float **out,
			      int *n_out, struct djn_err *err);
enum djn_status djn_npy_load(const char *path, float **out, int *n_out, struct djn_err *err);
/* Write rows x cols f32 values as NPY v1.0, shape (rows, cols). */
enum djn_status djn_npy_save(const char *path, const float *v, int rows, int cols,
			     struct djn_err *err);

/* -------------------------------------------------------- shell state */

/* What the shell keeps about a breakpoint beside the engine's record. */
struct sh_bp {
	int id;
	bool temporary;
	char **cmds; /* `commands N ... end` */
	int n_cmds;
};

struct djn_sched;

struct sh_session {
	char *name;
	struct djn_session *s;
	struct djn_sched *sched;  /* the scheduler it is in, or NULL */
	struct sh_bp *bps;
	int n_bps;
	char *prompt;             /* the last run's prompt and options, for a bare `run` */
	struct djn_gen_opts gen;
	bool have_gen;
};

/* A value-history entry ($N): a host copy of what `print` showed. */
struct sh_value {
	char label[96];
	int rows, cols;
	float *v;
};

struct sh_display {
	int id;
	int argc;
	char **argv; /* print's words (site, slice, options) */
};

enum sh_block_kind { SH_BLOCK_NONE, SH_BLOCK_COMMANDS, SH_BLOCK_LUA };

/* A multi-line block being read (`commands N` ... `end`, `lua` ... `end`). */
struct sh_block {
	enum sh_block_kind kind;
	int *ids;
	int n_ids;
	char **lines;
	int n_lines;
	int lua_depth; /* open Lua blocks, so an inner `end` does not close ours */
};

struct djn_lua;
struct sh_remote;

/* A shell that serves a remote client (src/server) has a host: the model
 * comes from the server's loaded ones, and the files a command names are
 * the client's (sent with the request, or sent back with the result). */
struct djn_shell_host {
	/* `load PATH`: a new reference to a served model, or NULL with err */
	struct djn_model *(*open_model)(void *ud, const char *path, const char *tok,
					struct djn_err *err);
	/* steer's FILE.npy: a malloc'd copy of the floats (caller frees) */
	enum djn_status (*npy_load)(void *ud, const char *path, float **v, int *n,
				    struct djn_err *err);
	/* print --save FILE.npy: the values go back to the client */
	enum djn_status (*npy_save)(void *ud, const char *path, const float *v, int rows,
				    int cols, struct djn_err *err);
	void *ud;
};

struct djn_shell {
	FILE *out, *err;

	/* what is loaded: one backend, one model, sessions over it */
	struct djn_backend *be;
	struct djn_model *m;
	char *device;
	struct sh_session *sess;
	int n_sess, cur;
	/* models loaded with --name (each holds a reference; m is one of them,
	 * the current session's); the shared pool's budget, 0: none */
	struct sh_model { char *name; struct djn_model *m; } *models;
	int n_models;
	size_t pool_budget;

	/* many sessions at once (cmd-sched.c): made on first use */
	struct djn_sched *sched;
	struct djn_backend *sched_be;
	int sched_policy;         /* enum djn_sched_policy */
	int sched_budget;         /* rows a step; 0: the default */
	bool sched_dirty;         /* policy or budget changed since it was made */
	int sched_order;          /* enum djn_sched_order */
	/* the tenant `sched add` schedules for without options (a server
	 * client's, from its hello): name ("" for the default), class, SLO */
	char tenant[64];
	int tenant_class;         /* enum djn_class; 0 here means unset: standard */
	bool tenant_class_set;
	double tenant_slo_ms;

	/* settings */
	bool json;
	int precision; /* significant digits of printed floats */
	int elements;  /* most values `print` shows */
	bool confirm;

	/* mode */
	bool batch, interactive;
	bool sandbox;  /* fuzzing: no files, no Lua, short runs */
	long run_budget; /* 1 + engine runs left (0: no limit); bounds command loops */
	long n_failed;
	bool quit;

	/* value history and displays */
	struct sh_value *hist;
	int n_hist;
	struct sh_display *disp;
	int n_disp, next_disp;

	/* the command in flight */
	cJSON *res;         /* its JSON result (json mode) */
	char *text;         /* text output collected for json mode */
	size_t text_len, text_cap;
	char *gen;          /* generated text streamed during the command */
	size_t gen_len, gen_cap;
	char errmsg[1024];
	const char *line;   /* the line being run, and where its words start */
	int *off;
	int arg0;           /* index in off of the handler's argv[0] */
	bool midline;       /* streamed text left the cursor mid-line */
	bool in_stop_cmds;  /* running a breakpoint's command list */
	bool resumed;       /* a command in the list resumed execution */
	int advance_bp;     /* the temporary breakpoint of `advance` */

	/* breakpoint commands to run after the last stop */
	char **pending;
	int n_pending;

	struct sh_block block;
	struct djn_lua *lua;
	int depth;          /* nesting of source / command lists */

	/* remote debugging: a client's connection (cmd-remote.c), or, in a
	 * server's shell, its host and the backend it shares (not freed here) */
	struct sh_remote *remote;
	const struct djn_shell_host *host;
	bool be_shared;
};

struct djn_shell *djn_shell_new(FILE *out, FILE *err);
void djn_shell_free(struct djn_shell *sh);
/* Run one line (or feed it to the block being read).  Failures are counted
 * in sh->n_failed. */
enum djn_cmd_ret djn_shell_exec(struct djn_shell *sh, const char *line);
/* Run a command file (a .lua file goes to the Lua engine); the failures of
 * its commands are reported and counted as they happen. */
enum djn_cmd_ret djn_shell_source(struct djn_shell *sh, const char *path);
/* The same for -x FILE: also reports a file that cannot be read. */
enum djn_cmd_ret djn_shell_run_file(struct djn_shell *sh, const char *path);
/* Begin reading a block: the lines that follow go to it until `end`. */
void sh_block_begin(struct djn_shell *sh, enum sh_block_kind kind, const int *ids, int n);
/* End of input: a block still open is an error. */
void djn_shell_finish_input(struct djn_shell *sh);
/* docs/commands.md, from the table. */
void djn_shell_commands_md(FILE *f);

/* ------------------------------------------------ helpers for handlers */

/* Text output (json mode: collected into the result's "output"). */
void sh_printf(struct djn_shell *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sh_write(struct djn_shell *sh, const char *p, size_t n);
/* Generated text as it streams (text mode: straight out, mid-line). */
void sh_stream(struct djn_shell *sh, const char *p, size_t n);
/* Record the error and return DJN_CMD_FAIL. */
enum djn_cmd_ret sh_fail(struct djn_shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A float as `print` shows it (precision setting). */
void sh_fmt_float(const struct djn_shell *sh, double v, char *buf, size_t n);
/* JSON fields of the current result (no-ops in text mode). */
void sh_json_num(struct djn_shell *sh, const char *key, double v);
void sh_json_str(struct djn_shell *sh, const char *key, const char *v);
void sh_json_bool(struct djn_shell *sh, const char *key, bool v);
void sh_json_add(struct djn_shell *sh, const char *key, cJSON *item); /* takes item */
/* Print a JSON value's text (used by output and for errors). */
void sh_json_emit(struct djn_shell *sh, cJSON *obj);

/* The current session (NULL when no model is loaded). */
struct sh_session *sh_cur(struct djn_shell *sh);
struct djn_session *sh_s(struct djn_shell *sh);
struct sh_bp *sh_bp_find(struct sh_session *ss, int id);
void sh_bp_forget(struct sh_session *ss, int id);
void sh_session_release(struct sh_session *ss);

/* Raw text of the line from the handler's word i on (for echo, lua, if). */
const char *sh_raw(const struct djn_shell *sh, int i);

/* Strict number parsing. */
bool sh_parse_long(const char *s, long lo, long hi, long *out);
bool sh_parse_float(const char *s, float *out);

/* A site name given by the user: its index, or -1 after sh_fail with a
 * suggestion (`no site 'L3.resid_pots'; did you mean L3.resid_post?`). */
int sh_site_arg(struct djn_shell *sh, const char *name);
/* gdb's query(): ask "FMT(y or n) " at the terminal and read the answer;
 * true for yes.  With no one to ask (confirm off, batch, a pipe, a sourced
 * file, a breakpoint's commands, JSON) it is yes, unasked; EOF is yes and
 * Ctrl-C no, as in gdb. */
bool sh_query(struct djn_shell *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A site pattern: true, or false after sh_fail. */
bool sh_pattern_arg(struct djn_shell *sh, const char *pattern);
/* "L3.resid_post at pos 7 (token "Lily")" */
void sh_cursor_str(struct djn_shell *sh, struct djn_session *s, char *buf, size_t n);
cJSON *sh_cursor_json(struct djn_shell *sh, struct djn_session *s);
/* How token id prints after prev (decoded, or its piece when that is
 * empty), escaped for a quoted string. */
void sh_token_str(struct djn_shell *sh, int prev, int id, char *buf, size_t n);
void sh_escape(const char *p, size_t len, char *buf, size_t n);

/* Run the current session in mode (cmd-run.c): handles Ctrl-C, streaming,
 * the stop message, displays and the breakpoint's commands.  `single`:
 * run count times one step/next at a time (gdb's step N). */
enum djn_cmd_ret sh_run(struct djn_shell *sh, enum djn_run_mode mode, long count, bool single);
/* The session the SIGINT handler interrupts (set while the engine runs). */
extern struct djn_session *volatile djn_shell_running;
extern volatile sig_atomic_t djn_shell_sigint; /* Ctrl-C seen during this command */

/* print's work, shared with display (cmd-inspect.c). */
/* disp: 0 records a value-history entry ($N); else the display's number. */
enum djn_cmd_ret sh_print(struct djn_shell *sh, int argc, char **argv, int disp);
void sh_displays_show(struct djn_shell *sh);
/* Value history entry $N (N from `$3`, or `$` for the last); NULL after sh_fail. */
const struct sh_value *sh_value_arg(struct djn_shell *sh, const char *word);
void sh_value_history_clear(struct djn_shell *sh);
/* Keep a host copy of rows x cols values as the next $N; returns N. */
int sh_value_record(struct djn_shell *sh, const char *label, const float *v, int rows, int cols);
/* The k likeliest tokens of a row of n logits (softmax on the host): a table
 * of id, prob, logit and piece, each line after indent; returns the same as
 * a JSON array of {id, prob, logit, piece} (the caller takes it). */
cJSON *sh_top_tokens(struct djn_shell *sh, const float *row, int n, long k, const char *indent);

/* Lua (cmd-misc.c): the shell's interpreter, made on first use and bound to
 * the current model and session before each chunk runs. */
enum djn_cmd_ret sh_lua_run(struct djn_shell *sh, const char *code, const char *chunk);
enum djn_cmd_ret sh_lua_file(struct djn_shell *sh, const char *path);
void sh_lua_free(struct djn_shell *sh);

/* Is the current command allowed to touch files? (false when sandboxed) */
bool sh_files_ok(struct djn_shell *sh);

/* Handlers (one family per file). */
#define DJN_CMD_FN(name) enum djn_cmd_ret name(struct djn_shell *sh, int argc, char **argv)
/* cmd-model.c */
DJN_CMD_FN(cmd_load);
DJN_CMD_FN(cmd_unload);
DJN_CMD_FN(cmd_info_model);
DJN_CMD_FN(cmd_info_layers);
DJN_CMD_FN(cmd_info_sites);
DJN_CMD_FN(cmd_info_memory);
DJN_CMD_FN(cmd_info_kv);
DJN_CMD_FN(cmd_info_ringbuf);
DJN_CMD_FN(cmd_use);
DJN_CMD_FN(cmd_info_models);
/* The named model called name, or NULL. */
struct djn_model *sh_model_named(struct djn_shell *sh, const char *name);
/* After the current session changed: the current model is its model. */
void sh_model_follow(struct djn_shell *sh);
void sh_models_free(struct djn_shell *sh);
/* load --name: why name cannot be used (NULL: it can); register m (taking
 * the caller's reference) with its session s, made current. */
const char *sh_model_name_check(struct djn_shell *sh, const char *name);
void sh_model_add(struct djn_shell *sh, const char *name, struct djn_model *m,
		  struct djn_session *s);
enum djn_cmd_ret sh_unload_named(struct djn_shell *sh, const char *name);
/* cmd-run.c */
DJN_CMD_FN(cmd_run);
DJN_CMD_FN(cmd_start);
DJN_CMD_FN(cmd_continue);
DJN_CMD_FN(cmd_step);
DJN_CMD_FN(cmd_next);
DJN_CMD_FN(cmd_finish);
DJN_CMD_FN(cmd_until);
DJN_CMD_FN(cmd_advance);
DJN_CMD_FN(cmd_kill);
DJN_CMD_FN(cmd_info_text);
/* cmd-break.c */
DJN_CMD_FN(cmd_break);
DJN_CMD_FN(cmd_tbreak);
DJN_CMD_FN(cmd_watch);
DJN_CMD_FN(cmd_condition);
DJN_CMD_FN(cmd_ignore);
DJN_CMD_FN(cmd_commands);
DJN_CMD_FN(cmd_delete);
DJN_CMD_FN(cmd_disable);
DJN_CMD_FN(cmd_enable);
DJN_CMD_FN(cmd_info_breakpoints);
DJN_CMD_FN(cmd_save);
DJN_CMD_FN(cmd_save_breakpoints);
DJN_CMD_FN(cmd_info_watchpoints);
/* cmd-inspect.c */
DJN_CMD_FN(cmd_print);
DJN_CMD_FN(cmd_display);
DJN_CMD_FN(cmd_undisplay);
DJN_CMD_FN(cmd_delete_display);
DJN_CMD_FN(cmd_backtrace);
DJN_CMD_FN(cmd_frame);
DJN_CMD_FN(cmd_info_display);
/* cmd-lens.c */
DJN_CMD_FN(cmd_lens);
DJN_CMD_FN(cmd_tokenize);
DJN_CMD_FN(cmd_detokenize);
/* cmd-patch.c */
DJN_CMD_FN(cmd_patch);
/* print's L{l}.attn_pattern[H]: is w such a name (a slice may be glued on)?
 * sh_pattern_value: head H's pattern at every row of the chunk as a value
 * (rows x cursor pos + rows: each row's causal window, then zeros), labelled
 * L{l}.attn_pattern[H]; slice is the [H] given as its own word, when word
 * has none.  A row slice after it ([H][ROWS], or [H, ROWS]) goes to rows as
 * print's slice text ("" if none).  False after sh_fail. */
bool sh_pattern_name(const char *w);
/* cmd-record.c: "rec::SITE[ROWS]" (print's word for recorded rows), and its
 * value: every recorded position of SITE as a row (row = position), the
 * slice that followed the name into rows; false after sh_fail. */
bool sh_record_name(const char *w);
bool sh_record_value(struct djn_shell *sh, const char *argv0, const char *word,
		     struct sh_value *out, char *rows, size_t rows_n);
DJN_CMD_FN(cmd_record);
DJN_CMD_FN(cmd_info_record);
bool sh_pattern_value(struct djn_shell *sh, const char *argv0, const char *word,
		      const char *slice, struct sh_value *out, char *rows, size_t rows_n);
/* cmd-steer.c */
DJN_CMD_FN(cmd_steer);
DJN_CMD_FN(cmd_steer_clear);
DJN_CMD_FN(cmd_info_steers);
/* cmd-state.c */
DJN_CMD_FN(cmd_checkpoint);
DJN_CMD_FN(cmd_restore);
DJN_CMD_FN(cmd_delete_checkpoint);
DJN_CMD_FN(cmd_info_checkpoints);
/* cmd-sched.c */
DJN_CMD_FN(cmd_sched);
DJN_CMD_FN(cmd_sched_add);
DJN_CMD_FN(cmd_sched_remove);
DJN_CMD_FN(cmd_sched_step);
DJN_CMD_FN(cmd_sched_run);
DJN_CMD_FN(cmd_sched_policy);
DJN_CMD_FN(cmd_sched_budget);
DJN_CMD_FN(cmd_sched_order);
/* " [tenant NAME, CLASS, slo N ms]" of a scheduled session into buf, or "". */
void sh_sched_tenant_str(struct djn_shell *sh, const struct djn_session *s, char *buf, size_t n);
/* The same as a JSON object on e (tenant, class, slo_ms), if scheduled. */
void sh_sched_tenant_json(struct djn_shell *sh, const struct djn_session *s, cJSON *e);
DJN_CMD_FN(cmd_info_sched);
DJN_CMD_FN(cmd_io_wait);
DJN_CMD_FN(cmd_resume);
void sh_sched_free(struct djn_shell *sh);
/* cmd-session.c */
DJN_CMD_FN(cmd_session);
DJN_CMD_FN(cmd_session_new);
DJN_CMD_FN(cmd_session_swapout);
DJN_CMD_FN(cmd_session_swapin);
DJN_CMD_FN(cmd_info_sessions);
/* cmd-misc.c */
DJN_CMD_FN(cmd_set);
DJN_CMD_FN(cmd_show);
DJN_CMD_FN(cmd_source);
DJN_CMD_FN(cmd_echo);
DJN_CMD_FN(cmd_help);
DJN_CMD_FN(cmd_quit);
DJN_CMD_FN(cmd_lua);
DJN_CMD_FN(cmd_info);
/* cmd-remote.c */
DJN_CMD_FN(cmd_target_remote);
DJN_CMD_FN(cmd_detach);
DJN_CMD_FN(cmd_info_remote);
/* Lines go to the server while `target remote` holds: true when this one
 * does (everything but the client's own commands), after running it there. */
bool sh_remote_exec(struct djn_shell *sh, const char *line, enum djn_cmd_ret *ret);
void sh_remote_close(struct djn_shell *sh);

#endif
