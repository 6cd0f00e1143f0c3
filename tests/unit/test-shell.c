/* test-shell.c - the shell's parts that need no model: the command table
 * (walked as git's t0012 does), lookup, the word splitter, slices, .npy. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shell/shell_impl.h"

/* ------------------------------------------------------------ helpers */

struct capture {
	char *out, *err;
	size_t n_out, n_err;
	FILE *fo, *fe;
	struct djn_shell *sh;
};

static void cap_open(struct capture *c)
{
	memset(c, 0, sizeof(*c));
	c->fo = open_memstream(&c->out, &c->n_out);
	c->fe = open_memstream(&c->err, &c->n_err);
	c->sh = djn_shell_new(c->fo, c->fe);
	c->sh->batch = true;
}

static void cap_close(struct capture *c)
{
	djn_shell_free(c->sh);
	fclose(c->fo);
	fclose(c->fe);
	free(c->out);
	free(c->err);
}

/* Run one line; return its error text (stderr, newline dropped). */
static const char *run_err(struct capture *c, const char *line)
{
	static char buf[2048];

	fflush(c->fe);
	size_t before = c->n_err;
	djn_shell_exec(c->sh, line);
	fflush(c->fe);
	snprintf(buf, sizeof(buf), "%.*s", (int)(c->n_err - before), c->err + before);
	size_t n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return buf;
}

static void walk(const struct djn_cmd *t, const char *prefix,
		 void (*fn)(const struct djn_cmd *c, const char *full, void *ud), void *ud)
{
	for (const struct djn_cmd *c = t; c->name; c++) {
		char full[128];
		snprintf(full, sizeof(full), "%s%s", prefix, c->name);
		fn(c, full, ud);
		if (c->sub) {
			char p[160];
			snprintf(p, sizeof(p), "%s ", full);
			walk(c->sub, p, fn, ud);
		}
	}
}

/* ----------------------------------------------------- the table (t0012) */

static void check_entry(const struct djn_cmd *c, const char *full, void *ud)
{
	(void)ud;
	cr_expect(c->usage && *c->usage, "%s has no usage", full);
	cr_expect(c->summary && *c->summary, "%s has no summary", full);
	cr_expect(c->exec, "%s has no handler", full);
	cr_expect(c->arity != 0, "%s has arity 0", full);
	cr_expect(!strncmp(c->usage, full, strlen(full)),
		  "usage of %s does not start with its name: '%s'", full, c->usage);
	cr_expect(c->summary[0] < 'A' || c->summary[0] > 'Z',
		  "summary of %s starts with a capital (house style)", full);
	cr_expect(c->summary[strlen(c->summary) - 1] != '.',
		  "summary of %s ends with a full stop (house style)", full);
	cr_expect(c->max == 0 || (c->arity < 0 && c->max >= -c->arity), "%s: bad max", full);
}

Test(shell, every_command_has_usage_and_summary)
{
	walk(djn_cmd_table, "", check_entry, NULL);
}

Test(shell, names_and_aliases_are_unique)
{
	for (const struct djn_cmd *a = djn_cmd_table; a->name; a++) {
		for (const struct djn_cmd *b = a + 1; b->name; b++) {
			cr_expect_str_neq(a->name, b->name);
			if (a->alias && b->alias)
				cr_expect_str_neq(a->alias, b->alias);
			if (a->alias)
				cr_expect_str_neq(a->alias, b->name);
			if (b->alias)
				cr_expect_str_neq(b->alias, a->name);
		}
	}
}

struct arity_ctx {
	struct capture *c;
	int checked;
};

/* Wrong arity prints `usage: USAGE` and nothing else, before any other
 * check (no model is loaded here, so a flag check would say so instead). */
static void check_arity(const struct djn_cmd *c, const char *full, void *ud)
{
	struct arity_ctx *ctx = ud;
	char line[256], want[256];
	int words = 0; /* how many words in total to give */

	if (c->flags & DJN_CMD_RAW)
		return;
	if (c->arity > 0)
		words = c->arity + 1;                   /* one too many */
	else if (c->max > 0)
		words = c->max + 1;                     /* past the most */
	else if (-c->arity >= 2)
		words = -c->arity - 1;                  /* one too few */
	else
		return;                                 /* anything goes */
	/* a subcommand's arity counts from its own name: `info kv` is 1 */
	int prefix_words = 0;
	for (const char *p = full; *p; p++)
		prefix_words += *p == ' ';
	if (words < 1)
		return;
	snprintf(line, sizeof(line), "%s", full);
	for (int i = 1; i < words; i++)
		strcat(line, " zz");
	(void)prefix_words;
	snprintf(want, sizeof(want), "usage: %s", c->usage);
	long failed = ctx->c->sh->n_failed;
	cr_expect_str_eq(run_err(ctx->c, line), want, "'%s'", line);
	cr_expect_eq(ctx->c->sh->n_failed, failed + 1, "'%s' did not count as a failure", line);
	ctx->checked++;
}

Test(shell, wrong_arity_prints_usage)
{
	struct capture c;
	struct arity_ctx ctx = { &c, 0 };

	cap_open(&c);
	walk(djn_cmd_table, "", check_arity, &ctx);
	cr_expect_gt(ctx.checked, 30, "only %d commands checked", ctx.checked);
	cap_close(&c);
}

Test(shell, flags_are_checked_before_the_handler)
{
	struct capture c;

	cap_open(&c);
	cr_expect_str_eq(run_err(&c, "continue"), "No model loaded.  Use \"load PATH\".");
	cr_expect_str_eq(run_err(&c, "print L0.q"), "No model loaded.  Use \"load PATH\".");
	cr_expect_str_eq(run_err(&c, "restore 1"), "No model loaded.  Use \"load PATH\".");
	cr_expect_eq(c.sh->n_failed, 3);
	cr_expect_str_eq(run_err(&c, "echo hi\\n"), "");
	cr_expect_eq(c.sh->n_failed, 3);
	cap_close(&c);
}

/* ------------------------------------------------------------- lookup */

static const char *find(const char *w)
{
	static char err[256];
	const struct djn_cmd *c = djn_cmd_find(djn_cmd_table, w, "", err, sizeof(err));

	return c ? c->name : err;
}

Test(shell, gdb_aliases_win)
{
	cr_expect_str_eq(find("b"), "break");
	cr_expect_str_eq(find("c"), "continue");
	cr_expect_str_eq(find("s"), "step");
	cr_expect_str_eq(find("n"), "next");
	cr_expect_str_eq(find("p"), "print");
	cr_expect_str_eq(find("bt"), "backtrace");
	cr_expect_str_eq(find("i"), "info");
	cr_expect_str_eq(find("r"), "run");
	cr_expect_str_eq(find("q"), "quit");
}

Test(shell, info_b_is_info_breakpoints)
{
	char err[256];
	const struct djn_cmd *info = djn_cmd_find(djn_cmd_table, "i", "", err, sizeof(err));

	cr_assert(info && info->sub);
	const struct djn_cmd *b = djn_cmd_find(info->sub, "b", "info ", err, sizeof(err));
	cr_assert(b);
	cr_expect_str_eq(b->name, "breakpoints");
}

Test(shell, unique_prefixes_and_exact_names)
{
	cr_expect_str_eq(find("cont"), "continue");
	cr_expect_str_eq(find("checkp"), "checkpoint");
	cr_expect_str_eq(find("wat"), "watch");
	cr_expect_str_eq(find("set"), "set");
	cr_expect_str_eq(find("sess"), "session");
	cr_expect_str_eq(find("backtrace"), "backtrace");
}

/* gdb's aliases win over prefixes: `dis` is disable there, not ambiguous. */
Test(shell, gdb_aliases)
{
	cr_expect_str_eq(find("dis"), "disable");
	cr_expect_str_eq(find("disa"), "disable");
	cr_expect_str_eq(find("en"), "enable");
	cr_expect_str_eq(find("br"), "break");
	cr_expect_str_eq(find("fin"), "finish");
	cr_expect_str_eq(find("fg"), "continue");
	cr_expect_str_eq(find("inf"), "info");
}

Test(shell, ambiguous_and_unknown)
{
	cr_expect_str_eq(find("st"), "ambiguous command \"st\": could be start, step, steer");
	cr_expect_str_eq(find("di"), "ambiguous command \"di\": could be disable, display");
	cr_expect_str_eq(find("foo"), "Undefined command: \"foo\".  Try \"help\".");
	cr_expect_str_eq(find(""), "Undefined command: \"\".  Try \"help\".");
}

Test(shell, unknown_subcommand)
{
	struct capture c;

	cap_open(&c);
	cr_expect_str_eq(run_err(&c, "info frobs"), "Undefined info command: \"frobs\".  Try \"help info\".");
	cr_expect_str_eq(run_err(&c, "show frobs"), "Undefined show command: \"frobs\".  Try \"help show\".");
	cr_expect_str_eq(run_err(&c, "foo bar"), "Undefined command: \"foo\".  Try \"help\".");
	cap_close(&c);
}

/* ------------------------------------------------------------- words */

Test(shell, split_words)
{
	char **argv, err[128];
	int *off;
	const char *line = "print  L2.q [0, 0:8] \"a b\" 'c d' emb(\"x y\") x\\y";
	int n = djn_shell_split(line, &argv, &off, err, sizeof(err));

	cr_assert_eq(n, 7);
	cr_expect_str_eq(argv[0], "print");
	cr_expect_str_eq(argv[1], "L2.q");
	cr_expect_str_eq(argv[2], "[0, 0:8]");
	cr_expect_str_eq(argv[3], "a b");
	cr_expect_str_eq(argv[4], "c d");
	cr_expect_str_eq(argv[5], "emb(\"x y\")");
	cr_expect_str_eq(argv[6], "x\\y");
	cr_expect_eq(off[2], 12);
	djn_shell_split_free(n, argv, off);
}

Test(shell, split_errors)
{
	char **argv, err[128];
	int *off;

	cr_expect_eq(djn_shell_split("run \"Once upon", &argv, &off, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "unterminated quote at column 5");
	cr_expect_eq(djn_shell_split("x emb(\"a)", &argv, &off, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "unterminated quote at column 7");
	cr_expect_eq(djn_shell_split("   ", &argv, &off, err, sizeof(err)), 0);
	djn_shell_split_free(0, argv, off);
}

/* ------------------------------------------------------------- slices */

static void slice_ok(const char *text, int rows, int cols, int r0, int r1, int c0, int c1)
{
	struct djn_slice sl;
	char err[256];
	int a, b, c, d;

	cr_assert(djn_slice_parse(text, &sl, err, sizeof(err)), "%s: %s", text, err);
	cr_assert(djn_slice_resolve(&sl, text, rows, cols, &a, &b, &c, &d, err, sizeof(err)),
		  "%s: %s", text, err);
	cr_expect(a == r0 && b == r1 && c == c0 && d == c1, "%s -> [%d:%d, %d:%d]", text, a, b, c,
		  d);
}

Test(shell, slices)
{
	slice_ok("[0]", 5, 64, 0, 1, 0, 64);
	slice_ok("[0, 0:8]", 1, 64, 0, 1, 0, 8);
	slice_ok("[-1, 10:20]", 5, 64, 4, 5, 10, 20);
	slice_ok("[:, :4]", 3, 64, 0, 3, 0, 4);
	slice_ok("[2:]", 5, 64, 2, 5, 0, 64);
	slice_ok("[ 1 : 3 , -4: ]", 5, 64, 1, 3, 60, 64);
	slice_ok("[0, -1]", 1, 512, 0, 1, 511, 512);
	slice_ok("[:-1]", 5, 8, 0, 4, 0, 8);
}

static void slice_bad(const char *text, const char *want)
{
	struct djn_slice sl;
	char err[256];

	cr_expect(!djn_slice_parse(text, &sl, err, sizeof(err)), "%s parsed", text);
	cr_expect_str_eq(err, want);
}

Test(shell, slice_grammar_errors)
{
	slice_bad("0, 1", "bad slice '0, 1': expected '[' at column 1");
	slice_bad("[", "bad slice '[': expected an index or a range at column 2");
	slice_bad("[0, 0:8", "bad slice '[0, 0:8': expected ']' at column 8");
	slice_bad("[0 0]", "bad slice '[0 0]': expected ',' or ']' at column 4");
	slice_bad("[0, 1:2:3]", "bad slice '[0, 1:2:3]': steps are not supported at column 8");
	slice_bad("[0, 0, 0]",
		  "bad slice '[0, 0, 0]': too many indices (a site's tensor has rows and columns) at column 7");
	slice_bad("[x]", "bad slice '[x]': expected an index or a range at column 2");
	slice_bad("[0]x", "bad slice '[0]x': unexpected text after ']' at column 4");
	slice_bad("[99999999999]", "bad slice '[99999999999]': index too large at column 2");
}

static void resolve_bad(const char *text, int rows, int cols, const char *want)
{
	struct djn_slice sl;
	char err[256];
	int a, b, c, d;

	cr_assert(djn_slice_parse(text, &sl, err, sizeof(err)), "%s: %s", text, err);
	cr_expect(!djn_slice_resolve(&sl, text, rows, cols, &a, &b, &c, &d, err, sizeof(err)),
		  "%s resolved", text);
	cr_expect_str_eq(err, want);
}

Test(shell, slice_range_errors)
{
	resolve_bad("[3]", 1, 64, "slice [3]: row 3 out of range (1 row)");
	resolve_bad("[-6]", 5, 64, "slice [-6]: row -6 out of range (5 rows)");
	resolve_bad("[0, 60:80]", 1, 64,
		    "slice [0, 60:80]: column range 60:80 is out of range (64 columns)");
	resolve_bad("[0, 5:5]", 1, 64, "slice [0, 5:5]: column range 5:5 is empty (64 columns)");
	resolve_bad("[0, 64]", 1, 64, "slice [0, 64]: column 64 out of range (64 columns)");
}

/* ---------------------------------------------------------------- npy */

/* Build a .npy in memory: version, header dict, data bytes. */
static size_t npy(unsigned char *buf, int version, const char *dict, const void *data,
		  size_t n)
{
	size_t pre = version == 1 ? 10 : 12, hl = strlen(dict), pad = (64 - (pre + hl + 1) % 64) % 64;
	size_t total_h = hl + pad + 1, o = 0;

	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (unsigned char)version;
	buf[7] = 0;
	if (version == 1) {
		buf[8] = (unsigned char)total_h;
		buf[9] = (unsigned char)(total_h >> 8);
	} else {
		buf[8] = (unsigned char)total_h;
		buf[9] = (unsigned char)(total_h >> 8);
		buf[10] = buf[11] = 0;
	}
	o = pre;
	memcpy(buf + o, dict, hl);
	o += hl;
	memset(buf + o, ' ', pad);
	o += pad;
	buf[o++] = '\n';
	memcpy(buf + o, data, n);
	return o + n;
}

static const char *npy_err(const unsigned char *buf, size_t n)
{
	static struct djn_err err;
	float *v = NULL;
	int nv;

	memset(&err, 0, sizeof(err));
	cr_expect_neq(djn_npy_parse(buf, n, "v.npy", &v, &nv, &err), DJN_OK);
	cr_expect_null(v);
	return err.msg;
}

Test(npy, good_files)
{
	unsigned char buf[4096];
	float f[8] = { 1, -2, 3.5f, 0, 1e-3f, -7, 8, 9 }, *v;
	double d[8] = { 1, -2, 3.5, 0, 1e-3, -7, 8, 9 };
	struct djn_err err = { 0 };
	int n;
	size_t len;

	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }", f, sizeof(f));
	cr_assert_eq(djn_npy_parse(buf, len, "a.npy", &v, &n, &err), DJN_OK, "%s", err.msg);
	cr_expect_eq(n, 8);
	cr_expect_arr_eq(v, f, sizeof(f));
	free(v);

	len = npy(buf, 2, "{\"shape\": (1, 8), \"descr\": \"<f8\", \"fortran_order\": False}", d,
		  sizeof(d));
	cr_assert_eq(djn_npy_parse(buf, len, "b.npy", &v, &n, &err), DJN_OK, "%s", err.msg);
	cr_expect_eq(n, 8);
	for (int i = 0; i < 8; i++)
		cr_expect_eq(v[i], (float)d[i]);
	free(v);

	len = npy(buf, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,)}", f, sizeof(f));
	cr_assert_eq(djn_npy_parse(buf, len, "c.npy", &v, &n, &err), DJN_OK, "%s", err.msg);
	free(v);
}

Test(npy, save_then_load)
{
	float f[6] = { 1, 2, 3, 4, 5, 6 }, *v;
	struct djn_err err = { 0 };
	char path[] = "/tmp/test-shell-npy-XXXXXX";
	int fd = mkstemp(path), n;

	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(djn_npy_save(path, f, 1, 6, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(djn_npy_load(path, &v, &n, &err), DJN_OK, "%s", err.msg);
	cr_expect_eq(n, 6);
	cr_expect_arr_eq(v, f, sizeof(f));
	free(v);
	/* two rows are not a vector, but the writer wrote them faithfully */
	cr_assert_eq(djn_npy_save(path, f, 2, 3, &err), DJN_OK);
	cr_expect_neq(djn_npy_load(path, &v, &n, &err), DJN_OK);
	cr_expect(strstr(err.msg, ": shape (2, 3) is not a vector (want (n,) or (1, n))"), "%s",
		  err.msg);
	unlink(path);
}

Test(npy, malformed_files)
{
	unsigned char buf[4096];
	float f[8] = { 0 };
	size_t len;
	const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }";

	len = npy(buf, 1, good, f, sizeof(f));
	buf[5] = 'X';
	cr_expect_str_eq(npy_err(buf, len), "v.npy: not a .npy file (bad magic)");
	cr_expect_str_eq(npy_err(buf, 4), "v.npy: not a .npy file (4 bytes)");

	len = npy(buf, 1, good, f, sizeof(f));
	buf[6] = 4;
	cr_expect_str_eq(npy_err(buf, len), "v.npy: unsupported .npy version 4.0");

	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,) ", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (expected ',' or '}')");
	len = npy(buf, 1, "['descr']", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (expected '{')");
	len = npy(buf, 1, "{'descr': '<f4', 'shape': (8,)}", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (missing 'fortran_order')");
	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), 'x': 1}", f,
		  sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (unexpected key 'x')");
	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (8,)}", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (fortran_order is not True or False)");
	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (a,)}", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: bad header (shape is not a tuple of sizes)");

	len = npy(buf, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (8,), }", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: dtype '<i4' is not supported (want '<f4' or '<f8')");
	len = npy(buf, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (16,), }", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: dtype '<f2' is not supported (want '<f4' or '<f8')");

	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (8,), }", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: fortran_order True is not supported");

	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: shape (2, 4) is not a vector (want (n,) or (1, n))");
	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len), "v.npy: shape () is not a vector (want (n,) or (1, n))");
	len = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }", f, 0);
	cr_expect_str_eq(npy_err(buf, len), "v.npy: shape (0,) is empty");

	len = npy(buf, 1, good, f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len - 5),
			 "v.npy: truncated data (32 bytes for shape (8,), 27 present)");
	cr_expect_str_eq(npy_err(buf, 40), "v.npy: truncated header (118 bytes announced, 30 present)");
	len = npy(buf, 1, good, f, sizeof(f));
	cr_expect_str_eq(npy_err(buf, len + 3), "v.npy: 3 bytes after the data of shape (8,)");
}

/* ---------------------------------------------------------------- json */

Test(shell, json_is_one_object_per_command)
{
	struct capture c;
	const char *lines[] = { "help", "show", "foo", "echo hi\\n", "info", "help break",
				"st", "print L0.q", "set precision 3", "show precision" };
	int n = (int)(sizeof(lines) / sizeof(lines[0])), objs = 0, fails = 0;

	cap_open(&c);
	c.sh->json = true;
	for (int i = 0; i < n; i++)
		djn_shell_exec(c.sh, lines[i]);
	fflush(c.fo);
	fflush(c.fe);
	cr_expect_eq(c.n_err, 0, "json mode wrote to stderr: %s", c.err);
	for (char *line = strtok(c.out, "\n"); line; line = strtok(NULL, "\n")) {
		cJSON *o = cJSON_Parse(line);
		cr_assert(o && cJSON_IsObject(o), "not a JSON object: %s", line);
		cr_expect(cJSON_IsString(cJSON_GetObjectItem(o, "cmd")), "%s", line);
		cJSON *ok = cJSON_GetObjectItem(o, "ok");
		cr_assert(cJSON_IsBool(ok), "%s", line);
		if (cJSON_IsFalse(ok)) {
			fails++;
			cr_expect(cJSON_IsString(cJSON_GetObjectItem(o, "error")), "%s", line);
		}
		objs++;
		cJSON_Delete(o);
	}
	cr_expect_eq(objs, n);
	cr_expect_eq(fails, 3); /* foo, st, print without a model */
	cap_close(&c);
}
