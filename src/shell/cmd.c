/* cmd.c - the command table and the dispatcher: one declaration per command
 * drives dispatch, help, completion and docs/commands.md. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

/* `set X` / `show X`: the settings. */
static const struct djn_cmd set_cmds[] = {
	{ .name = "output", .usage = "set output text|json", .arity = 2,
	  .summary = "print results as text, or as one JSON object per command",
	  .exec = cmd_set },
	{ .name = "precision", .usage = "set precision N", .arity = 2,
	  .summary = "significant digits of printed values (1..17, default 4)", .exec = cmd_set },
	{ .name = "elements", .usage = "set elements N", .arity = 2,
	  .summary = "most values print shows (0: no limit, default 16)", .exec = cmd_set },
	{ .name = "confirm", .usage = "set confirm on|off", .arity = 2,
	  .summary = "ask before restarting a run, deleting all, or quitting (interactive only)",
	  .exec = cmd_set },
	{ 0 }
};

static const struct djn_cmd show_cmds[] = {
	{ .name = "output", .usage = "show output", .arity = 1,
	  .summary = "the output format", .exec = cmd_show },
	{ .name = "precision", .usage = "show precision", .arity = 1,
	  .summary = "significant digits of printed values", .exec = cmd_show },
	{ .name = "elements", .usage = "show elements", .arity = 1,
	  .summary = "most values print shows", .exec = cmd_show },
	{ .name = "confirm", .usage = "show confirm", .arity = 1,
	  .summary = "whether a restart, delete, undisplay or quit asks first", .exec = cmd_show },
	{ 0 }
};

static const struct djn_cmd info_cmds[] = {
	{ .name = "breakpoints", .alias = "b", .usage = "info breakpoints", .arity = 1,
	  .summary = "breakpoints and watchpoints, with conditions and hit counts",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_breakpoints },
	{ .name = "checkpoints", .usage = "info checkpoints", .arity = 1,
	  .summary = "checkpoints of the current session", .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_info_checkpoints },
	{ .name = "display", .usage = "info display", .arity = 1,
	  .summary = "what is printed at every stop", .exec = cmd_info_display },
	{ .name = "kv", .usage = "info kv", .arity = 1,
	  .summary = "the KV cache of the current session: pages, tokens held",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_kv },
	{ .name = "layers", .usage = "info layers", .arity = 1,
	  .summary = "the layers: their sites and weights", .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_info_layers },
	{ .name = "memory", .usage = "info memory", .arity = 1,
	  .summary = "memory: weights (Text), KV cache (Data), activations (Stack), checkpoints",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_memory },
	{ .name = "model", .usage = "info model", .arity = 1,
	  .summary = "the loaded model: file, architecture, sizes, tokenizer",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_model },
	{ .name = "models", .usage = "info models", .arity = 1,
	  .summary = "the models loaded with --name: layers resident, streamed, in host memory",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_models },
	{ .name = "remote", .usage = "info remote", .arity = 1,
	  .summary = "the remote target: address, token, and where each request's time went",
	  .exec = cmd_info_remote,
	  .help = "The phases of a request: serialize and send (client), queue, execute and\n"
		  "result serialize (server), receive (the rest: the way back and its read).\n"
		  "Last request and mean over all; --json gives them as numbers.  Also whether\n"
		  "tensors come through shared memory (a server on this host, DJINN_NO_SHM\n"
		  "unset) or the socket." },
	{ .name = "record", .usage = "info record", .arity = 1,
	  .summary = "the recorded site patterns, and the positions the last run kept",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_record },
	{ .name = "ringbuf", .usage = "info ringbuf", .arity = 1,
	  .summary = "the ring buffer: resident and streamed layers, slots, bytes per token",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_ringbuf },
	{ .name = "sched", .usage = "info sched", .arity = 1,
	  .summary = "the scheduler: each scheduled session's phase, steps, batches, swaps",
	  .exec = cmd_info_sched },
	{ .name = "sessions", .usage = "info sessions", .arity = 1,
	  .summary = "the sessions over the loaded model, and decode steps replayed as graphs",
	  .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_info_sessions },
	{ .name = "sites", .usage = "info sites", .arity = 1,
	  .summary = "every site, its width, and which are live at the cursor",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_sites },
	{ .name = "steers", .usage = "info steers", .arity = 1,
	  .summary = "persistent steers and how often each was applied",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_info_steers },
	{ .name = "text", .usage = "info text", .arity = 1,
	  .summary = "the whole text of the run: prompt and generated tokens",
	  .flags = DJN_CMD_NEEDS_RUN, .exec = cmd_info_text },
	{ .name = "watchpoints", .usage = "info watchpoints", .arity = 1,
	  .summary = "watchpoints only", .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_info_watchpoints },
	{ 0 }
};

static const struct djn_cmd delete_cmds[] = {
	{ .name = "breakpoints", .usage = "delete breakpoints [N...]", .arity = -1,
	  .summary = "delete breakpoints (all when no number is given)",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_delete },
	{ .name = "checkpoint", .usage = "delete checkpoint ID...", .arity = -2,
	  .summary = "free checkpoints", .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_delete_checkpoint },
	{ .name = "display", .usage = "delete display [N...]", .arity = -1,
	  .summary = "same as undisplay", .exec = cmd_delete_display },
	{ 0 }
};

static const struct djn_cmd save_cmds[] = {
	{ .name = "breakpoints", .usage = "save breakpoints FILE", .arity = 2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_save_breakpoints, .args = DJN_ARG_FILE,
	  .summary = "write the breakpoints as commands that `source FILE` makes again",
	  .help = "break, tbreak and watch lines, each followed by its watchpoint\n"
		  "condition, ignore count, disable and commands ... end, all naming it\n"
		  "$bpnum (the newest breakpoint), so the file needs no numbers.  The\n"
		  "current session's breakpoints; hit counts are not saved." },
	{ 0 }
};

static const struct djn_cmd sched_cmds[] = {
	{ .name = "add",
	  .usage = "sched add [--tenant NAME] [--class interactive|standard|batch] [--slo MS] "
		   "[NAME...]",
	  .arity = -1,
	  .summary = "schedule sessions with a started run (the current one if none named), "
		     "for a tenant",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_sched_add, .args = DJN_ARG_SESSION },
	{ .name = "remove", .usage = "sched remove [NAME...]", .arity = -1,
	  .summary = "take sessions out of the scheduler (they stay as they are)",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_sched_remove, .args = DJN_ARG_SESSION },
	{ .name = "step", .usage = "sched step [N]", .arity = -1, .max = 2,
	  .summary = "every runnable session N steps on, batched (a token each, or a prompt chunk)",
	  .flags = DJN_CMD_NEEDS_MODEL | DJN_CMD_REPEAT, .exec = cmd_sched_step },
	{ .name = "run", .usage = "sched run", .arity = 1,
	  .summary = "step until no session is runnable or one stops",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_sched_run },
	{ .name = "policy", .usage = "sched policy signal|lru|recompute|none", .arity = 2,
	  .summary = "what a session waiting on a tool does with its KV cache",
	  .exec = cmd_sched_policy },
	{ .name = "order", .usage = "sched order fcfs|rr|priority|slo", .arity = 2,
	  .summary = "which runnable sessions a step takes first (docs/tenants.md)",
	  .exec = cmd_sched_order },
	{ .name = "budget", .usage = "sched budget ROWS", .arity = 2,
	  .summary = "rows a step: decode tokens plus prefill chunks (default 512)",
	  .exec = cmd_sched_budget },
	{ 0 }
};

static const struct djn_cmd session_cmds[] = {
	{ .name = "new", .usage = "session new NAME [--model NAME]", .arity = -2, .max = 4,
	  .summary = "a new session over the loaded model (weights shared), made current",
	  .help = "--model: over that one of the models loaded with --name (\"info models\").",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_session_new },
	{ .name = "swapin", .usage = "session swapin NAME", .arity = 2,
	  .summary = "bring session NAME's swapped-out KV cache back to the device",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_session_swapin, .args = DJN_ARG_SESSION },
	{ .name = "swapout", .usage = "session swapout NAME", .arity = 2,
	  .summary = "move session NAME's KV cache to host memory, freeing the device pages",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_session_swapout, .args = DJN_ARG_SESSION,
	  .help = "The run stays where it is (cursor, activations, breakpoints); running it,\n"
		  "or a checkpoint of it, brings the pages back first, so it continues\n"
		  "token-identically.  Prints the bytes moved and the copy bandwidth." },
	{ 0 }
};

static const struct djn_cmd target_cmds[] = {
	{ .name = "remote", .usage = "target remote HOST:PORT|unix:PATH [--token-file F] "
	  "[--resume TOKEN]", .arity = -2, .max = 6, .exec = cmd_target_remote,
	  .summary = "debug on a djinn server (djinn serve): every command runs there",
	  .help = "After it, each line goes to the server, which runs it in this client's own\n"
		  "shell over its loaded models and sends the output back; print --save\n"
		  "writes here and steer's FILE.npy is read here.  detach, source, info\n"
		  "remote and target stay local.  --resume TOKEN takes back the sessions of\n"
		  "an earlier connection (the token `target remote` printed).  See\n"
		  "docs/protocol.md." },
	{ 0 }
};

static const struct djn_cmd steer_cmds[] = {
	{ .name = "clear", .usage = "steer clear [N]", .arity = -1, .max = 2,
	  .summary = "remove persistent steer N (all when no number is given)",
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_steer_clear },
	{ 0 }
};

const struct djn_cmd djn_cmd_table[] = {
	/* model */
	{ .group = "Model", .name = "load", .usage =
	  "load PATH [--device auto|cpu|cuda[:N]] [--dtype f32|f16|bf16] [--tokenizer FILE] "
	  "[--vram-budget SIZE] [--ring-slots K|sync] [--kv-limit SIZE] [--kv-dtype f32|f16] "
	  "[--name NAME]",
	  .arity = -2, .max = 18, .exec = cmd_load, .args = DJN_ARG_FILE,
	  .summary = "load a model (llama2.c .bin, .gguf, or a Hugging Face directory)",
	  .help = "Replaces the loaded model and its sessions; refused while a run is paused\n"
		  "(kill it first).  A load that fails keeps the old model.  --dtype converts\n"
		  "the weight matrices (quantized ones are dequantized first); without it\n"
		  "djinn computes in the stored type.  --vram-budget (18G, 512M, bytes) bounds\n"
		  "the device memory of the weights plus one session's KV cache and\n"
		  "activations: layers that do not fit stream from pinned host memory through\n"
		  "K slots (--ring-slots; default 2..4, or sync for no overlap).  See\n"
		  "\"info ringbuf\".  --kv-limit bounds the KV pages of all sessions: past it\n"
		  "(or when the device is full) the least recently used paused session is\n"
		  "swapped out to the host, and comes back when it runs.  --kv-dtype f16 keeps\n"
		  "the KV cache in halves (k and v rounded to nearest even as they are stored):\n"
		  "half the bytes of the default f32, so twice the contexts under a limit.\n"
		  "--name NAME keeps the models loaded before (those loaded with --name) and\n"
		  "adds this one beside them, with a session of the same name: with\n"
		  "--vram-budget all of them share one VRAM pool (the budget is the pool's),\n"
		  "each layer resident or in pinned host memory, the least recently used of\n"
		  "the other models evicted when one needs room.  See \"info models\"." },
	{ .name = "unload", .usage = "unload [NAME]", .arity = -1, .max = 2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_unload,
	  .summary = "drop the model (or model NAME) and its sessions" },
	{ .name = "use", .usage = "use NAME", .arity = 2, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_use, .summary = "make model NAME current (its session, made if none)" },
	{ .name = "tokenize", .usage = "tokenize TEXT [--bos|--no-bos]", .arity = -2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_tokenize,
	  .summary = "the tokens TEXT encodes to: position, id, piece and text of each",
	  .help = "Encoded as run encodes a prompt: with BOS where the tokenizer wants one\n"
		  "(--bos, --no-bos to choose), so the positions are the run's.  Words are\n"
		  "joined with one space; quote the text to keep its spaces exactly." },
	{ .name = "detokenize", .usage = "detokenize ID...", .arity = -2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_detokenize,
	  .summary = "the text of token ids (1 403 407, or [1, 403, 407])" },

	/* running */
	{ .group = "Running", .name = "run", .alias = "r",
	  .usage = "run [PROMPT] [-n N] [-t T] [--seed S] [--top-p P]", .arity = -1,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_run,
	  .summary = "start generating for PROMPT and run until a stop",
	  .help = "Generated text prints as it streams.  -n: tokens to generate (default 256;\n"
		  "0: until EOS or the context is full); -t: temperature (default 0, greedy);\n"
		  "--seed: sampling seed; --top-p: nucleus sampling (default off).  Words\n"
		  "that are not options are joined into the prompt; quote it to keep spaces\n"
		  "exactly.  A paused run is restarted (after a question, when confirm is on\n"
		  "and the shell is interactive)." },
	{ .name = "start", .usage = "start [PROMPT] [-n N] [-t T] [--seed S] [--top-p P]",
	  .arity = -1, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_start,
	  .summary = "begin a run and pause before its first site" },
	{ .name = "continue", .alias = "c", .usage = "continue [N]", .arity = -1, .max = 2,
	  .flags = DJN_CMD_NEEDS_PAUSED | DJN_CMD_REPEAT, .exec = cmd_continue,
	  .summary = "run until the next breakpoint, watchpoint, Ctrl-C or the end",
	  .help = "With N, as in gdb: ignore the breakpoint the run is stopped at N-1 more\n"
		  "times (sets its ignore count), then continue." },
	{ .name = "step", .alias = "s", .usage = "step [N]", .arity = -1, .max = 2,
	  .flags = DJN_CMD_NEEDS_PAUSED | DJN_CMD_REPEAT, .exec = cmd_step,
	  .summary = "run to the next site (N times)",
	  .help = "Each of the N steps pauses and resumes, as gdb's step N does; a breakpoint\n"
		  "or watchpoint on the way stops early." },
	{ .name = "next", .alias = "n", .usage = "next [N]", .arity = -1, .max = 2,
	  .flags = DJN_CMD_NEEDS_PAUSED | DJN_CMD_REPEAT, .exec = cmd_next,
	  .summary = "run to the end of the next layer (its resid_post), or to logits",
	  .help = "Each of the N moves pauses and resumes; breakpoints on the way stop early." },
	{ .name = "finish", .usage = "finish", .arity = 1, .flags = DJN_CMD_NEEDS_PAUSED,
	  .exec = cmd_finish, .summary = "run to the end of this token (its logits)",
	  .help = "At logits already, the token is done: finish runs the next one." },
	{ .name = "until", .alias = "u", .usage = "until POS", .arity = 2,
	  .flags = DJN_CMD_NEEDS_PAUSED, .exec = cmd_until,
	  .summary = "run until the token at position POS is about to start" },
	{ .name = "advance", .usage = "advance SITE", .arity = 2, .flags = DJN_CMD_NEEDS_PAUSED,
	  .exec = cmd_advance, .args = DJN_ARG_SITE,
	  .summary = "run to the next time SITE executes (a temporary breakpoint)" },
	{ .name = "kill", .usage = "kill", .arity = 1, .flags = DJN_CMD_NEEDS_RUN,
	  .exec = cmd_kill, .summary = "end the run (breakpoints and steers stay)" },

	/* breakpoints */
	{ .group = "Breakpoints", .name = "break", .alias = "b", .usage = "break SITE [if COND]",
	  .arity = -2, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_break, .args = DJN_ARG_SITE,
	  .summary = "stop when SITE executes (and COND holds)",
	  .help = "SITE: a name (L3.resid_post, embed, logits), a pattern (L*.resid_post,\n"
		  "L2-4.q, L3.*, *), or `token N` (before the token at position N starts).\n"
		  "COND reads the token in flight at the site: norm max min mean std absmax\n"
		  "argmax nan inf, and the cursor: pos layer token; compare with > >= < <= ==\n"
		  "!= (either order: `3 < norm`; a lone = is an error) and combine with and,\n"
		  "or, not and parentheses: `norm > 10 and pos >= 3`.  `token == \" the\"` takes\n"
		  "a token's text as stops print it (one token of the model's tokenizer)." },
	{ .name = "tbreak", .usage = "tbreak SITE [if COND]", .arity = -2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_tbreak, .args = DJN_ARG_SITE,
	  .summary = "a breakpoint deleted when it first stops" },
	{ .name = "watch", .usage = "watch SITE COND", .arity = -3, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_watch, .args = DJN_ARG_SITE,
	  .summary = "stop when COND holds at SITE (nan, inf, norm > X, absmax > X ...)" },
	{ .name = "condition", .usage = "condition N [COND]", .arity = -2,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_condition,
	  .summary = "set breakpoint N's condition (none: stop unconditionally)",
	  .help = "COND as in `break ... if COND`.  On a watchpoint COND is a condition on\n"
		  "top of the watch expression, as in gdb: it stops where both hold, and\n"
		  "`condition N` alone removes COND, never the watch expression." },
	{ .name = "ignore", .usage = "ignore N COUNT", .arity = 3, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_ignore, .summary = "pass breakpoint N the next COUNT times it is reached" },
	{ .name = "commands", .usage = "commands [N...]", .arity = -1,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_commands,
	  .summary = "commands to run when breakpoint N stops, one per line, then `end`",
	  .help = "Without N: the last breakpoint set.  A first line `silent` hides the stop\n"
		  "message.  A command that resumes (continue, step ...) ends the list, as in\n"
		  "gdb; the next stop runs its own list.  An empty list removes them." },
	{ .name = "delete", .alias = "d", .usage = "delete [N...]", .arity = -1,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_delete, .sub = delete_cmds,
	  .summary = "delete breakpoints (all when no number is given)" },
	{ .name = "save", .usage = "save breakpoints FILE", .arity = -1, .exec = cmd_save,
	  .sub = save_cmds, .summary = "save the breakpoints to a file (see save breakpoints)" },
	{ .name = "disable", .usage = "disable [N...]", .arity = -1, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_disable, .summary = "disable breakpoints (all when no number is given)" },
	{ .name = "enable", .usage = "enable [N...]", .arity = -1, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_enable, .summary = "enable breakpoints (all when no number is given)" },

	/* looking */
	{ .group = "Inspecting", .name = "print", .alias = "p",
	  .usage = "print [SITE|$N|EXPR] [SLICE] [--top K] [--save FILE.npy]", .arity = -1,
	  .max = 7, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_print, .args = DJN_ARG_SITE,
	  .summary = "shape, statistics and values of the tensor at SITE",
	  .help = "Without SITE: the site at the cursor.  SLICE picks rows (the tokens of the\n"
		  "chunk) and columns: [0], [-1, 10:20], [:, 0:8].  At logits, --top K lists\n"
		  "the K likeliest next tokens (softmax on the host).  --save writes what is\n"
		  "shown as an NPY v1.0 f32 file.  Each print is kept as $1, $2 ... (value\n"
		  "history); `print $N` shows one again.  EXPR is arithmetic on the history,\n"
		  "one operator at a time: $A + $B, $A - $B, $A * $B (elementwise), $A * X,\n"
		  "$A / X, cos($A, $B), dot($A, $B) (per row) and norm($A) (L2 of each row);\n"
		  "shapes must match, and the result is the next $N.\n"
		  "L{i}.attn_pattern[H] (or [H, ROWS]): the attention weights of head H in\n"
		  "layer i, computed when asked from L{i}.q and the KV cache (K of kv head\n"
		  "H / (n_head / n_kv_head)): a row per token of the chunk, softmax(q.k /\n"
		  "sqrt(head_dim)) over positions 0..pos, zeros after; columns are positions.\n"
		  "Needs L{i}.q live, and K of the chunk computed (at L{i}.k or later);\n"
		  "display takes it too.\n"
		  "rec::SITE[POS]: what `record SITE` kept of the last run, a row per\n"
		  "position (not per row of the chunk), after the run or at any stop." },
	{ .name = "inspect", .usage = "inspect [SITE|$N] [SLICE] [--top K] [--save FILE.npy]",
	  .arity = -1, .max = 7, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_print,
	  .args = DJN_ARG_SITE, .summary = "same as print" },
	{ .name = "display", .usage = "display [SITE [SLICE] [--top K]]", .arity = -1, .max = 5,
	  .exec = cmd_display, .args = DJN_ARG_SITE,
	  .summary = "print SITE at every stop (no argument: show the displays now)" },
	{ .name = "undisplay", .usage = "undisplay [N...]", .arity = -1, .exec = cmd_undisplay,
	  .summary = "stop displaying N (all when no number is given)" },
	{ .name = "record", .usage = "record [SITE-PATTERN...|off]", .arity = -1,
	  .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_record, .args = DJN_ARG_SITE,
	  .summary = "keep sites' rows at every position of the next runs (run_with_cache)",
	  .help = "Each run from now on copies the rows of every site a pattern matches\n"
		  "(L*.resid_post, L3.*, logits) to the host as the site runs, after its\n"
		  "steers: what a breakpoint there reads.  A new run forgets the last one's\n"
		  "rows.  After the run (or at any stop) print rec::SITE reads them with a\n"
		  "row per position: print rec::L3.resid_post[4], [2:6, 0:8], --save F.npy.\n"
		  "final_norm and logits hold each chunk's last position only.  Recording\n"
		  "makes the run visit those sites one by one (as a breakpoint would) and\n"
		  "costs nothing when off.  record alone (or info record) lists what is\n"
		  "recorded; record off stops and frees it." },
	{ .name = "lens", .usage = "lens [SITE] [ROWS] [--top K]", .arity = -1, .max = 5,
	  .flags = DJN_CMD_NEEDS_RUN, .exec = cmd_lens, .args = DJN_ARG_SITE,
	  .summary = "the logit lens: the next tokens a residual site predicts",
	  .help = "SITE: embed, L{i}.resid_mid or L{i}.resid_post, live at the cursor (default:\n"
		  "the cursor's site).  Each row (a token of the chunk; ROWS picks some: [-1],\n"
		  "[2:5]) goes through the model's final norm and unembedding, with the ops\n"
		  "the final_norm and logits sites apply to the last layer's last row, and\n"
		  "the K likeliest next tokens are listed (default 5).  At the last layer's\n"
		  "resid_post the last row is the model's own logits.  Steers are not\n"
		  "applied to the head.  The logits are kept as $N: `print $N[0] --top 20`." },
	{ .name = "patch",
	  .usage = "patch \"CLEAN\" \"CORRUPT\" --tokens A B [--site KIND] [--save FILE.csv]",
	  .arity = -2, .max = 10, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_patch,
	  .summary = "activation patching: the effect of each layer's and position's clean row",
	  .help = "CLEAN and CORRUPT are prompts of the same token length (encoded as run\n"
		  "encodes them).  The clean prompt runs once, keeping L{l}.KIND (default\n"
		  "resid_post; any per-layer kind) of every layer; then for each layer l and\n"
		  "position p the corrupted prompt runs with that one row set to the clean\n"
		  "row.  The metric is logit[A] - logit[B] at the last position (A, B: token\n"
		  "ids, pieces as tokenize shows them, or texts of one token).  Each cell is\n"
		  "(patched - corrupted) / (clean - corrupted): 0 changes nothing, 1 restores\n"
		  "the clean metric (patched - corrupted when clean and corrupted agree).\n"
		  "The table (rows layers, columns positions) is kept as $N, layers x\n"
		  "positions; --save writes it as CSV for bench/plot_patch.sh.  Runs in a\n"
		  "session of its own: the current run, breakpoints and steers are not\n"
		  "touched." },
	{ .name = "backtrace", .alias = "bt", .usage = "backtrace", .arity = 1,
	  .flags = DJN_CMD_NEEDS_RUN, .exec = cmd_backtrace,
	  .summary = "where the run is: site, layer, token position and text so far" },
	{ .name = "where", .usage = "where", .arity = 1, .flags = DJN_CMD_NEEDS_RUN,
	  .exec = cmd_backtrace, .summary = "same as backtrace" },
	{ .name = "frame", .alias = "f", .usage = "frame [N]", .arity = -1, .max = 2,
	  .exec = cmd_frame, .summary = "(gdb's) none here: print names any live site",
	  .help = "The forward pass is a loop over sites, not a call stack: bt's lines are\n"
		  "nested scopes of one place (site, layer, position, run), with no locals\n"
		  "of their own to select.  Name what a frame would select: print L2.q (any\n"
		  "live site; info sites), print rec::SITE[POS] (an earlier position, kept\n"
		  "by record), restore N (an earlier state).  docs/sites.md says more." },
	{ .name = "up", .usage = "up [N]", .arity = -1, .max = 2, .exec = cmd_frame,
	  .summary = "(gdb's) none here: see frame" },
	{ .name = "down", .usage = "down [N]", .arity = -1, .max = 2, .exec = cmd_frame,
	  .summary = "(gdb's) none here: see frame" },
	{ .name = "info", .alias = "i", .usage = "info WHAT", .arity = -1, .exec = cmd_info,
	  .sub = info_cmds, .summary = "describe the program being debugged" },

	/* steering */
	{ .group = "Steering", .name = "steer",
	  .usage = "steer SITE add|scale|set|zero ARGS [--pos P] [--persist] | steer clear [N]",
	  .arity = -2, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_steer, .sub = steer_cmds,
	  .args = DJN_ARG_STEER, .summary = "change the activation at SITE",
	  .help = "  steer SITE add VEC [* SCALE]   x += SCALE * VEC, on every row\n"
		  "  steer SITE scale X             x *= X\n"
		  "  steer SITE set VEC             every row = VEC\n"
		  "  steer SITE zero [IDX...]       x[IDX] = 0 (all when no index is given)\n"
		  "VEC: FILE.npy (f32 or f64, shape (n,) or (1, n)), $N (a printed value of\n"
		  "one row), or emb(\"word\") (the embedding row of a word that is one token).\n"
		  "Without --persist the change applies once, to the paused tensor (SITE must\n"
		  "be live); with --persist every time a site matching SITE runs from now on.\n"
		  "--pos P changes only the rows at token positions P: N, or A:B for A..B-1\n"
		  "(as in slices), A: or :B; the other rows stay as they are, bit for bit." },

	/* state */
	{ .group = "Checkpoints", .name = "checkpoint", .usage = "checkpoint", .arity = 1,
	  .flags = DJN_CMD_NEEDS_RUN, .exec = cmd_checkpoint,
	  .summary = "snapshot the run (cursor, KV cache, RNG, tokens, activations)" },
	{ .name = "restore", .usage = "restore ID", .arity = 2, .flags = DJN_CMD_NEEDS_MODEL,
	  .exec = cmd_restore, .summary = "go back to checkpoint ID (as often as you like)" },

	/* sessions */
	{ .group = "Sessions", .name = "session", .usage = "session NAME | session new NAME",
	  .arity = 2, .flags = DJN_CMD_NEEDS_MODEL, .exec = cmd_session, .sub = session_cmds,
	  .args = DJN_ARG_SESSION, .summary = "switch to session NAME" },

	/* many sessions at once */
	{ .group = "Scheduling", .name = "sched", .usage = "sched add|remove|step|run|policy|order|budget",
	  .arity = -1, .exec = cmd_sched, .sub = sched_cmds,
	  .summary = "step many sessions together, batched; alone: info sched",
	  .help = "Every runnable scheduled session moves one step a `sched step`: one token\n"
		  "of decode, or a chunk of its prompt within the token budget.  Sessions\n"
		  "that nothing can stop run in one batched forward pass (each weight read\n"
		  "once); a session with a breakpoint, watchpoint or steer steps alone, on\n"
		  "the per-site path.  A session that stops leaves the batch paused and\n"
		  "becomes current: inspect it, continue it, then `resume` puts it back." },
	{ .name = "io_wait", .usage = "io_wait [NAME...]", .arity = -1, .exec = cmd_io_wait,
	  .flags = DJN_CMD_NEEDS_MODEL, .args = DJN_ARG_SESSION,
	  .summary = "the session waits on a tool: no steps; its KV cache as the policy says" },
	{ .name = "resume", .usage = "resume [NAME...]", .arity = -1, .exec = cmd_resume,
	  .flags = DJN_CMD_NEEDS_MODEL, .args = DJN_ARG_SESSION,
	  .summary = "a waiting or stopped session is runnable again (KV prefetched)" },

	/* remote */
	{ .group = "Remote", .name = "target", .usage = "target remote HOST:PORT|unix:PATH ...",
	  .arity = -2, .exec = cmd_target_remote, .sub = target_cmds,
	  .summary = "connect to a djinn server; then every command runs there" },
	{ .name = "detach", .usage = "detach", .arity = 1, .exec = cmd_detach,
	  .summary = "leave the remote target; its sessions stay paused on the server" },

	/* settings and scripting */
	{ .group = "Settings and scripting", .name = "set", .usage = "set SETTING VALUE",
	  .arity = -2, .exec = cmd_set, .sub = set_cmds, .summary = "change a setting" },
	{ .name = "show", .usage = "show [SETTING]", .arity = -1, .exec = cmd_show,
	  .sub = show_cmds, .summary = "show settings" },
	{ .name = "source", .usage = "source FILE", .arity = 2, .exec = cmd_source,
	  .args = DJN_ARG_FILE,
	  .summary = "run a command file (a .lua file runs in the Lua engine)",
	  .help = "Lines starting with # are comments.  A failing command is reported and\n"
		  "the file goes on (the failure still counts for -batch's exit status)." },
	{ .name = "echo", .usage = "echo TEXT", .arity = -1, .flags = DJN_CMD_RAW, .exec = cmd_echo,
	  .summary = "print TEXT (C escapes: \\n, \\t, \\\\, \\\")" },
	{ .name = "lua", .usage = "lua [CODE]", .arity = -1, .flags = DJN_CMD_RAW, .exec = cmd_lua,
	  .summary = "run Lua CODE; alone, read a block of lines up to `end`",
	  .help = "The `djinn` module is bound to the shell's model and session\n"
		  "(djinn.current())." },
	{ .name = "help", .alias = "h", .usage = "help [COMMAND]", .arity = -1, .max = 3,
	  .exec = cmd_help, .args = DJN_ARG_CMD, .summary = "list commands, or describe one" },
	{ .name = "quit", .alias = "q", .usage = "quit", .arity = 1, .exec = cmd_quit,
	  .summary = "leave djinn (Ctrl-D does too)" },
	{ 0 }
};

/* gdb's other abbreviations of the commands djinn shares with it (its
 * add_com_alias calls), besides each command's one .alias: like those they
 * win over prefixes, so `dis` is disable, as in gdb, not ambiguous. */
static const struct {
	const char *alias, *name;
} gdb_aliases[] = {
	{ "br", "break" },    { "bre", "break" },     { "brea", "break" },
	{ "dis", "disable" }, { "disa", "disable" },  { "en", "enable" },
	{ "fg", "continue" }, { "fin", "finish" },    { "inf", "info" },
};

const struct djn_cmd *djn_cmd_find(const struct djn_cmd *table, const char *word,
				   const char *what, char *err, size_t n)
{
	const struct djn_cmd *found = NULL;
	size_t len = strlen(word), used;
	int n_match = 0;

	for (const struct djn_cmd *c = table; c->name; c++)
		if (c->alias && !strcmp(c->alias, word))
			return c;
	for (const struct djn_cmd *c = table; c->name; c++)
		if (!strcmp(c->name, word))
			return c;
	for (size_t i = 0; table == djn_cmd_table && i < sizeof(gdb_aliases) / sizeof(*gdb_aliases);
	     i++) {
		if (strcmp(gdb_aliases[i].alias, word))
			continue;
		for (const struct djn_cmd *c = table; c->name; c++)
			if (!strcmp(c->name, gdb_aliases[i].name))
				return c;
	}
	if (len) {
		for (const struct djn_cmd *c = table; c->name; c++) {
			if (!(c->flags & DJN_CMD_HIDDEN) && !strncmp(c->name, word, len)) {
				found = c;
				n_match++;
			}
		}
	}
	if (n_match == 1)
		return found;
	if (n_match == 0) {
		if (*what)
			snprintf(err, n, "Undefined %scommand: \"%s\".  Try \"help %.*s\".", what,
				 word, (int)strlen(what) - 1, what);
		else
			snprintf(err, n, "Undefined command: \"%s\".  Try \"help\".", word);
		return NULL;
	}
	used = (size_t)snprintf(err, n, "ambiguous %scommand \"%s\": could be ", what, word);
	for (const struct djn_cmd *c = table; c->name && used < n; c++) {
		if (!(c->flags & DJN_CMD_HIDDEN) && !strncmp(c->name, word, len))
			used += (size_t)snprintf(err + used, n - used, "%s%s", c->name,
						 --n_match ? ", " : "");
	}
	return NULL;
}

/* ------------------------------------------------------------ dispatch */

static bool arity_ok(const struct djn_cmd *c, int argc)
{
	if (c->arity >= 0)
		return argc == c->arity;
	return argc >= -c->arity && (c->max <= 0 || argc <= c->max);
}

static enum djn_cmd_ret check_flags(struct djn_shell *sh, const struct djn_cmd *c)
{
	enum djn_run_state st;

	if ((c->flags & (DJN_CMD_NEEDS_MODEL | DJN_CMD_NEEDS_RUN | DJN_CMD_NEEDS_PAUSED)) && !sh->m)
		return sh_fail(sh, "No model loaded.  Use \"load PATH\".");
	if (!(c->flags & (DJN_CMD_NEEDS_RUN | DJN_CMD_NEEDS_PAUSED)))
		return DJN_CMD_OK;
	st = djn_session_state(sh_s(sh));
	if (st == DJN_RUN_IDLE)
		return sh_fail(sh, "The program is not being run.");
	if ((c->flags & DJN_CMD_NEEDS_PAUSED) && st == DJN_RUN_DONE)
		return sh_fail(sh, "The run has finished.  Use \"run\" to start another.");
	return DJN_CMD_OK;
}

static void result_begin(struct djn_shell *sh, const char *name)
{
	sh->errmsg[0] = '\0';
	sh->text_len = 0;
	sh->gen_len = 0;
	if (sh->json) {
		sh->res = cJSON_CreateObject();
		cJSON_AddStringToObject(sh->res, "cmd", name);
	}
}

static void result_end(struct djn_shell *sh, enum djn_cmd_ret ret)
{
	bool failed = ret == DJN_CMD_FAIL;

	if (failed)
		sh->n_failed++;
	/* the format at the command's start decides (set output switches it) */
	if (!sh->res) {
		if (failed) {
			if (sh->midline) {
				fputc('\n', sh->out);
				sh->midline = false;
			}
			fflush(sh->out);
			fprintf(sh->err, "%s\n", sh->errmsg[0] ? sh->errmsg : "command failed");
			fflush(sh->err);
		}
		fflush(sh->out);
		return;
	}
	cJSON_AddBoolToObject(sh->res, "ok", !failed);
	if (failed)
		cJSON_AddStringToObject(sh->res, "error", sh->errmsg[0] ? sh->errmsg : "command failed");
	if (sh->gen_len)
		cJSON_AddStringToObject(sh->res, "generated", sh->gen);
	if (sh->text_len)
		cJSON_AddStringToObject(sh->res, "output", sh->text);
	sh_json_emit(sh, sh->res);
	cJSON_Delete(sh->res);
	sh->res = NULL;
}

/* Save and restore the per-command output state around a nested command
 * (a breakpoint's command list, `source`). */
struct saved {
	cJSON *res;
	char *text, *gen;
	size_t text_len, text_cap, gen_len, gen_cap;
	const char *line;
	int *off, arg0;
	char errmsg[sizeof(((struct djn_shell *)0)->errmsg)];
};

static void save(struct djn_shell *sh, struct saved *s)
{
	s->res = sh->res;
	s->text = sh->text;
	s->text_len = sh->text_len;
	s->text_cap = sh->text_cap;
	s->gen = sh->gen;
	s->gen_len = sh->gen_len;
	s->gen_cap = sh->gen_cap;
	s->line = sh->line;
	s->off = sh->off;
	s->arg0 = sh->arg0;
	memcpy(s->errmsg, sh->errmsg, sizeof(s->errmsg));
	sh->res = NULL;
	sh->text = sh->gen = NULL;
	sh->text_len = sh->text_cap = sh->gen_len = sh->gen_cap = 0;
}

static void restore(struct djn_shell *sh, struct saved *s)
{
	free(sh->text);
	free(sh->gen);
	sh->res = s->res;
	sh->text = s->text;
	sh->text_len = s->text_len;
	sh->text_cap = s->text_cap;
	sh->gen = s->gen;
	sh->gen_len = s->gen_len;
	sh->gen_cap = s->gen_cap;
	sh->line = s->line;
	sh->off = s->off;
	sh->arg0 = s->arg0;
	memcpy(sh->errmsg, s->errmsg, sizeof(s->errmsg));
}

static char *trim(char *p)
{
	char *e;

	while (isspace((unsigned char)*p))
		p++;
	e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return p;
}

/* ------------------------------------------------------------- blocks */

static void block_reset(struct sh_block *b)
{
	for (int i = 0; i < b->n_lines; i++)
		free(b->lines[i]);
	free(b->lines);
	free(b->ids);
	memset(b, 0, sizeof(*b));
}

/* Lua keywords that open a block closed by `end` (`if`, `do`, `function`;
 * while/for open theirs with `do`), so `lua` ... `end` can hold Lua code
 * with its own `end`s.  Strings and comments are skipped roughly: enough for
 * telling where our block ends. */
static int lua_depth_delta(const char *p)
{
	int d = 0;

	while (*p) {
		if (p[0] == '-' && p[1] == '-')
			break;
		if (*p == '"' || *p == '\'') {
			char q = *p++;
			while (*p && *p != q) {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p)
				p++;
			continue;
		}
		if (isalpha((unsigned char)*p) || *p == '_') {
			const char *w = p;
			while (isalnum((unsigned char)*p) || *p == '_')
				p++;
			size_t n = (size_t)(p - w);
			if ((n == 2 && !strncmp(w, "if", 2)) || (n == 2 && !strncmp(w, "do", 2)) ||
			    (n == 8 && !strncmp(w, "function", 8)) || (n == 6 && !strncmp(w, "repeat", 6)))
				d++;
			else if ((n == 3 && !strncmp(w, "end", 3)) || (n == 5 && !strncmp(w, "until", 5)))
				d--;
			continue;
		}
		p++;
	}
	return d;
}

static enum djn_cmd_ret block_finish(struct djn_shell *sh);

static enum djn_cmd_ret block_feed(struct djn_shell *sh, const char *raw)
{
	struct sh_block *b = &sh->block;
	char *copy = djn_xstrdup(raw), *t = trim(copy);

	if (!strcmp(t, "end") && (b->kind != SH_BLOCK_LUA || b->lua_depth <= 0)) {
		free(copy);
		return block_finish(sh);
	}
	if (b->kind == SH_BLOCK_LUA)
		b->lua_depth += lua_depth_delta(t);
	b->lines = djn_xrealloc(b->lines, sizeof(char *) * (size_t)(b->n_lines + 1));
	b->lines[b->n_lines++] = djn_xstrdup(b->kind == SH_BLOCK_LUA ? raw : t);
	free(copy);
	return DJN_CMD_OK;
}

static enum djn_cmd_ret block_finish(struct djn_shell *sh)
{
	struct sh_block b = sh->block;
	enum djn_cmd_ret ret = DJN_CMD_OK;

	memset(&sh->block, 0, sizeof(sh->block));
	if (b.kind == SH_BLOCK_COMMANDS) {
		struct sh_session *ss = sh_cur(sh);
		result_begin(sh, "commands");
		for (int i = 0; ss && i < b.n_ids; i++) {
			struct sh_bp *bp = sh_bp_find(ss, b.ids[i]);
			struct djn_bp_info info;
			bool exists = false;
			for (int k = 0; djn_bp_get(ss->s, k, &info); k++)
				exists |= info.id == b.ids[i];
			if (!exists || !bp) {
				ret = sh_fail(sh, "No breakpoint number %d.", b.ids[i]);
				continue;
			}
			for (int k = 0; k < bp->n_cmds; k++)
				free(bp->cmds[k]);
			free(bp->cmds);
			bp->cmds = djn_xcalloc((size_t)b.n_lines + 1, sizeof(char *));
			for (int k = 0; k < b.n_lines; k++)
				bp->cmds[k] = djn_xstrdup(b.lines[k]);
			bp->n_cmds = b.n_lines;
		}
		result_end(sh, ret);
	} else if (b.kind == SH_BLOCK_LUA) {
		size_t len = 1;
		for (int i = 0; i < b.n_lines; i++)
			len += strlen(b.lines[i]) + 1;
		char *code = djn_xmalloc(len), *p = code;
		for (int i = 0; i < b.n_lines; i++)
			p += sprintf(p, "%s\n", b.lines[i]);
		*p = '\0';
		result_begin(sh, "lua");
		ret = sh_lua_run(sh, code, "=lua");
		result_end(sh, ret);
		free(code);
	}
	block_reset(&b);
	return ret;
}

void djn_shell_finish_input(struct djn_shell *sh)
{
	if (sh->block.kind == SH_BLOCK_NONE)
		return;
	const char *what = sh->block.kind == SH_BLOCK_LUA ? "lua" : "commands";
	block_reset(&sh->block);
	result_begin(sh, what);
	result_end(sh, sh_fail(sh, "'%s' block is not closed (missing \"end\")", what));
}

/* Begin a block; the lines that follow go to it until `end`. */
void sh_block_begin(struct djn_shell *sh, enum sh_block_kind kind, const int *ids, int n)
{
	block_reset(&sh->block);
	sh->block.kind = kind;
	if (n) {
		sh->block.ids = djn_xmalloc(sizeof(int) * (size_t)n);
		memcpy(sh->block.ids, ids, sizeof(int) * (size_t)n);
		sh->block.n_ids = n;
	}
}

/* ---------------------------------------------------------- the loop */

/* Run the commands of the breakpoint that stopped the run.  A command that
 * resumes ends the list; the stop it reaches queues its own list, so a list
 * with `continue` loops without recursing. */
static void run_pending(struct djn_shell *sh)
{
	if (sh->in_stop_cmds)
		return;
	sh->in_stop_cmds = true;
	while (sh->n_pending && !sh->quit) {
		char **list = sh->pending;
		int n = sh->n_pending;
		sh->pending = NULL;
		sh->n_pending = 0;
		for (int i = 0; i < n && !sh->quit; i++) {
			if (i == 0 && !strcmp(list[i], "silent"))
				continue;
			sh->resumed = false;
			djn_shell_exec(sh, list[i]);
			if (sh->resumed || djn_shell_sigint)
				break;
		}
		for (int i = 0; i < n; i++)
			free(list[i]);
		free(list);
		if (djn_shell_sigint) {
			for (int i = 0; i < sh->n_pending; i++)
				free(sh->pending[i]);
			free(sh->pending);
			sh->pending = NULL;
			sh->n_pending = 0;
		}
	}
	sh->in_stop_cmds = false;
}

static enum djn_cmd_ret dispatch(struct djn_shell *sh, int argc, char **argv, int *off)
{
	const struct djn_cmd *c;
	enum djn_cmd_ret ret;
	int base = 0;
	char msg[512];

	c = djn_cmd_find(djn_cmd_table, argv[0], "", msg, sizeof(msg));
	if (!c) {
		result_begin(sh, argv[0]);
		ret = sh_fail(sh, "%s", msg);
		result_end(sh, ret);
		return ret;
	}
	if (c->sub && argc >= 2) {
		char what[64];
		const struct djn_cmd *s;
		snprintf(what, sizeof(what), "%s ", c->name);
		s = djn_cmd_find(c->sub, argv[1], what, msg, sizeof(msg));
		if (s) {
			c = s;
			base = 1;
		} else if (c->exec == cmd_info || c->exec == cmd_set || c->exec == cmd_show) {
			/* the prefix itself takes no such word */
			result_begin(sh, c->name);
			ret = sh_fail(sh, "%s", msg);
			result_end(sh, ret);
			return ret;
		} else if (strstr(msg, "ambiguous")) {
			result_begin(sh, c->name);
			ret = sh_fail(sh, "%s", msg);
			result_end(sh, ret);
			return ret;
		}
	}
	if (base) {
		char full[64];
		snprintf(full, sizeof(full), "%s %s", argv[0], c->name);
		result_begin(sh, full);
	} else {
		result_begin(sh, c->name);
	}
	sh->off = off;
	sh->arg0 = base;
	free(argv[base]);
	argv[base] = djn_xstrdup(c->name);
	if (!arity_ok(c, argc - base))
		ret = sh_fail(sh, "usage: %s", c->usage);
	else if ((ret = check_flags(sh, c)) == DJN_CMD_OK)
		ret = c->exec(sh, argc - base, argv + base);
	result_end(sh, ret);
	return ret;
}

/* Words of a line; a RAW command (echo, lua) gets the rest of the line as
 * one word, as written, quotes and all. */
static int split(const char *t, char ***argv, int **off, char *msg, size_t n)
{
	size_t w = strcspn(t, " \t");
	char *word = djn_xmalloc(w + 1);
	const struct djn_cmd *c;

	memcpy(word, t, w);
	word[w] = '\0';
	c = djn_cmd_find(djn_cmd_table, word, "", msg, n);
	if (!c || !(c->flags & DJN_CMD_RAW)) {
		free(word);
		return djn_shell_split(t, argv, off, msg, n);
	}
	const char *rest = t + w + strspn(t + w, " \t");
	int argc = *rest ? 2 : 1;
	*argv = djn_xcalloc(3, sizeof(char *));
	*off = djn_xcalloc(3, sizeof(int));
	(*argv)[0] = word;
	if (*rest) {
		(*argv)[1] = djn_xstrdup(rest);
		(*off)[1] = (int)(rest - t);
	}
	return argc;
}

enum djn_cmd_ret djn_shell_exec(struct djn_shell *sh, const char *line)
{
	char **argv = NULL, msg[256];
	int *off = NULL, argc;
	enum djn_cmd_ret ret;
	struct saved saved = { 0 };
	bool nested = sh->depth > 0;
	char *copy, *t;

	if (sh->remote && sh_remote_exec(sh, line, &ret))
		return ret;
	if (sh->block.kind != SH_BLOCK_NONE)
		return block_feed(sh, line);
	copy = djn_xstrdup(line);
	t = trim(copy);
	if (!*t || *t == '#') {
		free(copy);
		return DJN_CMD_OK;
	}
	if (nested)
		save(sh, &saved);
	else if (!sh->in_stop_cmds)
		djn_shell_sigint = 0; /* a new command from the user */
	sh->depth++;
	argc = split(t, &argv, &off, msg, sizeof(msg));
	sh->line = t;
	if (argc < 0) {
		result_begin(sh, "");
		ret = sh_fail(sh, "%s", msg);
		result_end(sh, ret);
	} else {
		ret = dispatch(sh, argc, argv, off);
	}
	djn_shell_split_free(argc, argv, off);
	sh->depth--;
	if (nested)
		restore(sh, &saved);
	free(copy);
	run_pending(sh);
	return ret;
}

enum djn_cmd_ret djn_shell_run_file(struct djn_shell *sh, const char *path)
{
	enum djn_cmd_ret ret;
	char msg[sizeof(sh->errmsg)];

	djn_shell_sigint = 0;
	ret = djn_shell_source(sh, path);
	if (ret == DJN_CMD_FAIL) {
		/* only a file that cannot be read (or a Lua error) gets here */
		memcpy(msg, sh->errmsg, sizeof(msg));
		result_begin(sh, "source");
		memcpy(sh->errmsg, msg, sizeof(msg));
		result_end(sh, ret);
	}
	djn_shell_finish_input(sh);
	return ret;
}
