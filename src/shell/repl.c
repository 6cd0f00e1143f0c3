/* repl.c - `djinn [options] [MODEL]`: argument parsing, batch mode, and the
 * interactive loop (readline with history and completion, Ctrl-C, Ctrl-D). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "djinn/progress.h"
#include "djinn/shell.h"
#include "shell/shell_impl.h"

#define PROMPT "(djinn) "
#define HISTORY_MAX 1000

static const char usage[] =
	"usage: djinn [options] [MODEL]\n"
	"       djinn generate MODEL [options]     (see djinn generate --help)\n"
	"\n"
	"  -batch            run the -ex / -x commands, then exit (status 1 if any failed)\n"
	"  -ex CMD           run CMD (repeatable; in order with -x)\n"
	"  -x FILE           run the commands in FILE\n"
	"  -q                no banner\n"
	"  --json            answer every command with one JSON object per line\n"
	"  --device DEV      auto (default), cpu, cuda or cuda:N\n"
	"  -z, --tokenizer F the tokenizer of MODEL (llama2.c tokenizer.bin)\n"
	"  --help, --version\n"
	"\n"
	"MODEL is loaded first (as `load MODEL`).  Type \"help\" at the prompt for the commands.\n";

/* ------------------------------------------------------------ signals */

/* Set while the interactive loop runs: Ctrl-C never kills the shell then;
 * at the prompt it clears the line, in a command it stops what runs. */
static volatile sig_atomic_t at_prompt;

/* Async-signal-safe: set flags, ask the engine to stop at its next site. */
static void on_sigint(int sig)
{
	struct djn_session *s = djn_shell_running;

	djn_shell_sigint = 1;
	if (s) {
		djn_session_interrupt(s);
		return;
	}
	if (!at_prompt) {
		/* nothing to interrupt and no prompt: behave as if not caught */
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

static void install_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: select() returns on Ctrl-C */
	sigaction(SIGINT, &sa, NULL);
}

/* --------------------------------------------------------- completion */

static struct djn_shell *g_sh;
static char **cands;
static int n_cands;

static void cands_clear(void)
{
	for (int i = 0; i < n_cands; i++)
		free(cands[i]);
	free(cands);
	cands = NULL;
	n_cands = 0;
}

static void cand(const char *s)
{
	cands = djn_xrealloc(cands, sizeof(char *) * (size_t)(n_cands + 1));
	cands[n_cands++] = djn_xstrdup(s);
}

static void cands_table(const struct djn_cmd *t)
{
	for (const struct djn_cmd *c = t; c->name; c++)
		if (!(c->flags & DJN_CMD_HIDDEN))
			cand(c->name);
}

static void cands_sites(void)
{
	char name[40];

	if (!g_sh->m)
		return;
	for (int i = 0; i < djn_site_count(&g_sh->m->cfg); i++) {
		djn_site_name(&g_sh->m->cfg, i, name, sizeof(name));
		cand(name);
	}
	for (int k = DJN_SITE_ATTN_NORM; k <= DJN_SITE_RESID_POST; k++) {
		snprintf(name, sizeof(name), "L*.%s", djn_site_kind_name((enum djn_site_kind)k));
		cand(name);
	}
}

static char *gen_cands(const char *text, int state)
{
	static int i;
	size_t len = strlen(text);

	if (!state)
		i = 0;
	while (i < n_cands) {
		const char *c = cands[i++];
		if (!strncmp(c, text, len))
			return strdup(c);
	}
	return NULL;
}

static const struct djn_cmd *find_quiet(const struct djn_cmd *t, const char *w)
{
	char msg[256];

	return djn_cmd_find(t, w, "", msg, sizeof(msg));
}

static char **complete(const char *text, int start, int end)
{
	char *head = strndup(rl_line_buffer, (size_t)start), **words = NULL, msg[64];
	int *off = NULL, nw = djn_shell_split(head, &words, &off, msg, sizeof(msg));
	const struct djn_cmd *c = NULL;
	int arg = nw; /* index of the word being completed */
	enum djn_cmd_arg kind = DJN_ARG_NONE;
	char **m = NULL;

	rl_attempted_completion_over = 1;
	cands_clear();
	if (nw < 0)
		goto out;
	if (nw == 0) {
		cands_table(djn_cmd_table);
		goto match;
	}
	if (!(c = find_quiet(djn_cmd_table, words[0])))
		goto match;
	if (c->sub && nw >= 2) {
		const struct djn_cmd *s = find_quiet(c->sub, words[1]);
		if (s) {
			c = s;
			arg = nw - 1;
		}
	} else if (c->sub && nw == 1 && c->args != DJN_ARG_STEER) {
		cands_table(c->sub);
		if (c->args == DJN_ARG_SESSION)
			for (int i = 0; i < g_sh->n_sess; i++)
				cand(g_sh->sess[i].name);
		goto match;
	}
	kind = c->args;
	if (c->exec == cmd_set && arg == 1) {
		if (!strcmp(c->name, "output")) {
			cand("text");
			cand("json");
		} else if (!strcmp(c->name, "confirm")) {
			cand("on");
			cand("off");
		}
		goto match;
	}
	switch (kind) {
	case DJN_ARG_FILE:
		if (arg == 1 || (arg >= 2 && !strcmp(words[nw - 1], "--tokenizer"))) {
			rl_attempted_completion_over = 0;
			m = rl_completion_matches(text, rl_filename_completion_function);
			goto out;
		}
		if (!strcmp(words[0], "load") && arg >= 2 && !strcmp(words[nw - 1], "--device")) {
			cand("auto");
			cand("cpu");
			cand("cuda");
		}
		break;
	case DJN_ARG_SITE:
		if (arg == 1) {
			cands_sites();
			if (c->exec == cmd_break || c->exec == cmd_tbreak)
				cand("token");
		}
		break;
	case DJN_ARG_CMD:
		if (arg == 1)
			cands_table(djn_cmd_table);
		break;
	case DJN_ARG_SESSION:
		break;
	case DJN_ARG_STEER:
		if (arg == 1) {
			cands_sites();
			cand("clear");
		} else if (arg == 2) {
			cand("add");
			cand("scale");
			cand("set");
			cand("zero");
		} else {
			cand("--persist");
		}
		break;
	default:
		break;
	}
match:
	if (n_cands)
		m = rl_completion_matches(text, gen_cands);
out:
	(void)end;
	djn_shell_split_free(nw < 0 ? 0 : nw, words, off);
	free(head);
	return m;
}

/* ------------------------------------------------------------ queries */

bool sh_query(struct djn_shell *sh, const char *fmt, ...)
{
	char ans[64];
	va_list ap;

	if (!sh->confirm || !sh->interactive || sh->batch || sh->json || sh->depth > 1 ||
	    sh->in_stop_cmds)
		return true;
	for (;;) {
		size_t n = 0;
		ssize_t r;
		char c;
		va_start(ap, fmt);
		vfprintf(sh->out, fmt, ap);
		va_end(ap);
		fputs("(y or n) ", sh->out);
		fflush(sh->out);
		/* read(2), not stdio: what is typed after the answer stays for readline */
		while ((r = read(STDIN_FILENO, &c, 1)) == 1 && c != '\n')
			if (n + 1 < sizeof(ans))
				ans[n++] = c;
		ans[n] = '\0';
		if (r < 0) { /* Ctrl-C: no */
			djn_shell_sigint = 0;
			fputs("\n", sh->out);
			return false;
		}
		if (r == 0 && !n) { /* gdb's answer to EOF */
			fputs("EOF [answered Y; input not from terminal]\n", sh->out);
			return true;
		}
		char *a = ans + strspn(ans, " \t");
		if (*a == 'y' || *a == 'Y')
			return true;
		if (*a == 'n' || *a == 'N')
			return false;
		fputs("Please answer y or n.\n", sh->out);
	}
}

/* ------------------------------------------------------- interactive */

static char *history_path;
static char *last_repeat;
static bool done;

static bool repeatable(const char *line)
{
	char **w = NULL, msg[64];
	int *off = NULL, n = djn_shell_split(line, &w, &off, msg, sizeof(msg));
	const struct djn_cmd *c = n > 0 ? find_quiet(djn_cmd_table, w[0]) : NULL;
	bool r = c && (c->flags & DJN_CMD_REPEAT);

	djn_shell_split_free(n < 0 ? 0 : n, w, off);
	return r;
}

static void on_line(char *line)
{
	bool in_block = g_sh->block.kind != SH_BLOCK_NONE;
	const char *run = line;

	if (!line) { /* Ctrl-D: quit, asking first as quit does */
		fputs("quit\n", stdout);
		if (g_sh->block.kind == SH_BLOCK_NONE)
			djn_shell_exec(g_sh, "quit");
		if (g_sh->block.kind == SH_BLOCK_NONE && !g_sh->quit)
			return;
		done = true;
		rl_callback_handler_remove();
		return;
	}
	if (!in_block && !line[strspn(line, " \t")]) {
		run = last_repeat; /* an empty line repeats step / next / continue */
	} else {
		HIST_ENTRY *h = history_length ? history_get(history_base + history_length - 1) : NULL;
		size_t n = strlen(line);
		while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0'; /* completion leaves a space; history needn't */
		if (*line && (!h || strcmp(h->line, line)))
			add_history(line);
		if (!in_block) {
			free(last_repeat);
			last_repeat = repeatable(line) ? djn_xstrdup(line) : NULL;
		}
	}
	djn_shell_sigint = 0;
	if (run)
		djn_shell_exec(g_sh, run);
	djn_shell_sigint = 0;
	free(line);
	if (g_sh->quit) {
		done = true;
		rl_callback_handler_remove();
		return;
	}
	rl_set_prompt(g_sh->block.kind != SH_BLOCK_NONE ? ">" : PROMPT);
}

static void interactive_loop(struct djn_shell *sh)
{
	const char *home = getenv("HOME");

	if (home && *home) {
		size_t n = strlen(home) + 32;
		history_path = djn_xmalloc(n);
		snprintf(history_path, n, "%s/.djinn_history", home);
		read_history(history_path);
	}
	stifle_history(HISTORY_MAX);
	rl_readline_name = "djinn";
	rl_catch_signals = 0;
	rl_attempted_completion_function = complete;
	rl_basic_word_break_characters = " \t\n";
	rl_callback_handler_install(PROMPT, on_line);
	at_prompt = 1;
	while (!done) {
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(STDIN_FILENO, &fds);
		if (select(STDIN_FILENO + 1, &fds, NULL, NULL, NULL) < 0) {
			if (errno != EINTR)
				break;
			if (djn_shell_sigint) {
				/* Ctrl-C at the prompt: drop the line (and any block) */
				djn_shell_sigint = 0;
				sh_block_begin(sh, SH_BLOCK_NONE, NULL, 0);
				rl_free_line_state();
				rl_callback_sigcleanup();
				fputs("\n", stdout);
				rl_replace_line("", 0);
				rl_set_prompt(PROMPT);
				rl_on_new_line();
				rl_redisplay();
			}
			continue;
		}
		rl_callback_read_char();
	}
	at_prompt = 0;
	if (!done)
		rl_callback_handler_remove();
	if (history_path) {
		write_history(history_path);
		history_truncate_file(history_path, HISTORY_MAX);
	}
	free(history_path);
	free(last_repeat);
	cands_clear();
}

/* Commands from a pipe or file on stdin: no prompt, no line editing. */
static void stdin_loop(struct djn_shell *sh)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	for (;;) {
		errno = 0;
		n = getline(&line, &cap, stdin);
		if (n < 0) {
			if (errno == EINTR) {
				clearerr(stdin);
				continue;
			}
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		djn_shell_exec(sh, line);
		if (sh->quit)
			break;
	}
	free(line);
}

/* ---------------------------------------------------------------- main */

struct action {
	bool file;
	const char *text;
};

/* `load "PATH"` with the path quoted for the word splitter. */
static char *load_line(const char *path, const char *tok)
{
	size_t n = 32 + 2 * strlen(path) + (tok ? 2 * strlen(tok) + 16 : 0);
	char *line = djn_xmalloc(n), *o = line;

	o += sprintf(o, "load \"");
	for (const char *p = path; *p; p++) {
		if (*p == '"' || *p == '\\')
			*o++ = '\\';
		*o++ = *p;
	}
	*o++ = '"';
	if (tok) {
		o += sprintf(o, " --tokenizer \"");
		for (const char *p = tok; *p; p++) {
			if (*p == '"' || *p == '\\')
				*o++ = '\\';
			*o++ = *p;
		}
		*o++ = '"';
	}
	*o = '\0';
	return line;
}

int djn_shell_main(int argc, char **argv)
{
	struct action *acts = djn_xcalloc((size_t)argc + 1, sizeof(*acts));
	const char *model = NULL, *tok = NULL, *device = "auto";
	bool batch = false, quiet = false, json = false;
	int n_acts = 0, rc;
	struct djn_shell *sh;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (!strcmp(a, "-batch") || !strcmp(a, "--batch")) {
			batch = true;
		} else if (!strcmp(a, "-q") || !strcmp(a, "-quiet") || !strcmp(a, "--quiet") ||
			   !strcmp(a, "-silent")) {
			quiet = true;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			free(acts);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("djinn 0.1\n");
			free(acts);
			return 0;
		} else if (!strcmp(a, "--help-commands-md")) {
			djn_shell_commands_md(stdout);
			free(acts);
			return 0;
		} else if (!strcmp(a, "-ex") || !strcmp(a, "--ex") || !strcmp(a, "-eval-command") ||
			   !strcmp(a, "-x") || !strcmp(a, "--command") || !strcmp(a, "--device") ||
			   !strcmp(a, "-z") || !strcmp(a, "--tokenizer")) {
			if (!has) {
				fprintf(stderr, "djinn: option '%s' needs a value\n%s", a, usage);
				free(acts);
				return 2;
			}
			const char *v = argv[++i];
			if (!strcmp(a, "--device"))
				device = v;
			else if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer"))
				tok = v;
			else
				acts[n_acts++] = (struct action){ !strcmp(a, "-x") || !strcmp(a, "--command"),
								  v };
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "djinn: unknown option '%s'\n%s", a, usage);
			free(acts);
			return 2;
		} else if (!model) {
			model = a;
		} else {
			fprintf(stderr, "djinn: one model at a time ('%s' and '%s')\n%s", model, a, usage);
			free(acts);
			return 2;
		}
	}

	sh = djn_shell_new(stdout, stderr);
	g_sh = sh;
	sh->batch = batch;
	sh->json = json;
	sh->interactive = !batch && isatty(STDIN_FILENO);
	/* long loads show a progress line, except to scripts, CI and tools */
	djn_progress_enable(sh->interactive && !json && isatty(STDERR_FILENO));
	free(sh->device);
	sh->device = djn_xstrdup(device);
	install_sigint();
	if (sh->interactive && !quiet)
		printf("Djinn 0.1, a debugger for transformer inference.\n"
		       "Type \"help\" for a list of commands.\n");
	if (model) {
		char *line = load_line(model, tok);
		djn_shell_exec(sh, line);
		free(line);
	}
	for (int i = 0; i < n_acts && !sh->quit; i++) {
		if (acts[i].file) {
			djn_shell_run_file(sh, acts[i].text);
		} else {
			djn_shell_exec(sh, acts[i].text);
		}
	}
	if (!batch && !sh->quit) {
		if (sh->interactive)
			interactive_loop(sh);
		else
			stdin_loop(sh);
	}
	djn_shell_finish_input(sh);
	rc = (batch || !sh->interactive) && sh->n_failed ? 1 : 0;
	djn_shell_free(sh);
	g_sh = NULL;
	free(acts);
	return rc;
}
