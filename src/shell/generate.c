/* generate.c - `djinn generate`: load, encode, generate, print; the
 * non-interactive path that the golden tests drive. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "djinn/djinn.h"
#include "djinn/progress.h"
#include "djinn/shell.h"
#include "shell/shell_impl.h"

static const char usage[] =
	"usage: djinn generate MODEL [-z|--tokenizer FILE] [-p PROMPT] [-n N] [-t TEMP]\n"
	"                      [--top-p P] [--seed S] [--chat] [--device auto|cpu|cuda[:N]]\n"
	"                      [--dtype f32|f16|bf16] [--threads N] [--logits-out FILE.npy]\n"
	"                      [--vram-budget SIZE] [--ring-slots K|sync]\n";

/* Print a piece as llama2.c's safe_printf does: lone unprintable bytes
 * (raw byte tokens of partial characters) are dropped. */
static void print_piece(const char *p, size_t n)
{
	if (n == 0)
		return;
	if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0])))
		return;
	fwrite(p, 1, n, stdout);
}

/* DJINN_TIMING=1: one JSON line on stderr with prefill and decode times,
 * for the benchmark scripts (the first token's time is time to first token). */
struct timing {
	bool on;
	double t0, t_first, t_last;
	int n;
	float *logits; /* --logits-out: one row per generated token */
	int cap, vocab;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_token(struct djn_session *s, int32_t id, void *ud)
{
	struct timing *tm = ud;

	if (tm->logits && tm->n < tm->cap) /* the logits the token was chosen from */
		djn_session_read(s, djn_site_count(&djn_session_model(s)->cfg) - 1,
				 tm->logits + (size_t)tm->n * tm->vocab, (size_t)tm->vocab);
	if (tm->on)
		tm->t_last = now_ms();
	if (tm->n++ == 0)
		tm->t_first = tm->t_last;
	int n_total;
	const int32_t *t = djn_session_tokens(s, &n_total, NULL);
	size_t n;
	const char *p = djn_tok_decode(djn_session_model(s)->tok, t[n_total - 2], id, &n);

	print_piece(p, n);
	fflush(stdout);
}

char *djn_chat_format(const struct djn_model *m, const char *msg)
{
	const char *t = m->chat_template;
	size_t n = strlen(msg) + 256;
	char *out;

	if (!t)
		return NULL;
	out = djn_xmalloc(n);
	if (strstr(t, "<|im_start|>")) {
		/* ChatML; SmolLM2's template adds this system turn by default */
		const char *sys = strstr(t, "You are a helpful AI assistant named SmolLM")
					  ? "<|im_start|>system\nYou are a helpful AI assistant named "
					    "SmolLM, trained by Hugging Face<|im_end|>\n"
					  : "";
		snprintf(out, n + strlen(sys), "%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
			 sys, msg);
		return out;
	}
	if (strstr(t, "[INST]")) {
		snprintf(out, n, "[INST] %s [/INST]", msg);
		return out;
	}
	free(out);
	return NULL;
}

/* The ring's part of the DJINN_TIMING line (after the run: it measures the
 * copy bandwidth), or "". */
static const char *ring_json(struct djn_model *m)
{
	static char buf[512];
	struct djn_ring *r = djn_ring_of(m);
	const struct djn_ring_plan *p;
	struct djn_ring_stats st;
	double gbps = 0;

	if (!r)
		return "";
	p = djn_ring_plan(r);
	(void)djn_ring_measure(r, &gbps, NULL);
	djn_ring_stats(r, &st);
	snprintf(buf, sizeof(buf),
		 ",\"vram_budget\":%zu,\"working_set\":%zu,\"resident_bytes\":%zu,"
		 "\"n_layer\":%d,\"n_streamed\":%d,\"n_slots\":%d,\"sync\":%s,\"slot_bytes\":%zu,"
		 "\"stream_bytes_per_token\":%zu,\"pinned\":%s,\"h2d_gbps\":%.3f,"
		 "\"pcie_bound_ms\":%.3f",
		 p->budget, p->working_set, p->resident_bytes, m->cfg.n_layer, p->n_streamed,
		 p->n_slots, p->sync ? "true" : "false", p->slot_bytes, p->stream_bytes,
		 st.pinned ? "true" : "false", gbps,
		 gbps > 0 ? (double)p->stream_bytes / (gbps * 1e9) * 1e3 : 0.0);
	return buf;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return *s && !*end && !errno && *out >= lo && *out <= hi;
}

int djn_generate_main(int argc, char **argv)
{
	const char *model_path = NULL, *tok_path = NULL, *prompt = "", *device = "auto";
	struct djn_gen_opts g = { .n_new = 256, .temperature = 1.0f, .top_p = 0.9f,
				  .seed = 0, .stop_at_eos = true };
	long threads = 0, v;
	bool chat = false;
	const char *logits_out = NULL;
	float *tm_logits = NULL;
	enum djn_dtype dtype = DJN_DTYPE_COUNT; /* as stored */
	struct djn_err err = { 0 };
	struct djn_model *m = NULL;
	struct djn_backend *be = NULL;
	struct djn_session *s = NULL;
	char *chat_prompt = NULL;
	struct djn_ring_opts ring = { 0 };
	struct djn_session_opts sopts = { 0 };
	bool want_ring = false, n_given = false;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = strcmp(a, "--chat") && a[0] == '-';
		if (takes && !val) {
			fprintf(stderr, "djinn generate: option '%s' needs a value\n%s", a, usage);
			return 2;
		}
		if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer"))
			tok_path = val;
		else if (!strcmp(a, "-p") || !strcmp(a, "-i") || !strcmp(a, "--prompt"))
			prompt = val;
		else if (!strcmp(a, "-n") && parse_long(val, 0, 1 << 24, &v))
			g.n_new = (int)v, n_given = true;
		else if (!strcmp(a, "-t") || !strcmp(a, "--temp")) {
			char *end;
			g.temperature = strtof(val, &end);
			if (*end || end == val || g.temperature < 0) {
				fprintf(stderr, "djinn generate: bad temperature '%s'\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--top-p")) {
			char *end;
			g.top_p = strtof(val, &end);
			if (*end || end == val || g.top_p < 0 || g.top_p > 1) {
				fprintf(stderr, "djinn generate: bad top-p '%s' (0..1)\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
			char *end;
			errno = 0;
			g.seed = strtoull(val, &end, 10);
			if (*end || end == val || errno) {
				fprintf(stderr, "djinn generate: bad seed '%s'\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--logits-out")) {
			logits_out = val;
		} else if (!strcmp(a, "--vram-budget")) {
			if (!djn_size_parse(val, &ring.vram_budget) || !ring.vram_budget) {
				fprintf(stderr, "djinn generate: bad vram budget '%s' (18G, 512M, bytes)\n",
					val);
				return 2;
			}
			want_ring = true;
		} else if (!strcmp(a, "--ring-slots")) {
			if (!strcmp(val, "sync")) {
				ring.sync = true;
			} else if (parse_long(val, 1, DJN_RING_MAX_SLOTS, &v)) {
				ring.n_slots = (int)v;
			} else {
				fprintf(stderr, "djinn generate: bad ring slots '%s' (1..%d or sync)\n",
					val, DJN_RING_MAX_SLOTS);
				return 2;
			}
			want_ring = true;
		} else if (!strcmp(a, "--device")) {
			device = val;
		} else if (!strcmp(a, "--dtype")) {
			if (!djn_dtype_parse(val, &dtype)) {
				fprintf(stderr, "djinn generate: bad dtype '%s' (f32, f16 or bf16)\n", val);
				return 2;
			}
		}
		else if (!strcmp(a, "--threads") && parse_long(val, 1, 256, &threads))
			;
		else if (!strcmp(a, "--chat")) {
			chat = true;
			continue;
		} else if (a[0] != '-' && !model_path) {
			model_path = a;
			continue;
		} else {
			fprintf(stderr, "djinn generate: bad argument '%s'%s%s%s\n%s", a,
				val && takes ? " '" : "", val && takes ? val : "",
				val && takes ? "'" : "", usage);
			return 2;
		}
		i++;
	}
	if (!model_path) {
		fprintf(stderr, "%s", usage);
		return 2;
	}
	djn_progress_enable(isatty(STDERR_FILENO) && !getenv("DJINN_TIMING"));
	if (!(m = djn_model_load(model_path, tok_path, &err)))
		goto out;
	if (dtype != DJN_DTYPE_COUNT && djn_model_cast(m, dtype, &err))
		goto out;
	if (!m->tok) {
		djn_err_set(&err, DJN_ERR_INVALID, "%s: no tokenizer (give one with -z FILE)",
			    model_path);
		goto out;
	}
	if (chat) {
		if (!(chat_prompt = djn_chat_format(m, prompt))) {
			djn_err_set(&err, DJN_ERR_UNSUPPORTED, "%s: no chat template djinn understands",
				    model_path);
			goto out;
		}
	}
	if (n_given && g.n_new > 0) { /* as run and start in the shell say it */
		const char *text = chat ? chat_prompt : prompt;
		int32_t *ids;
		int n;
		if (djn_tok_encode(m->tok, text, strlen(text), djn_tok_add_bos(m->tok), false, &ids,
				   &n, &err))
			goto out;
		free(ids);
		if (n < m->cfg.seq_len && g.n_new > m->cfg.seq_len - n)
			fprintf(stderr, "warning: -n %d is past the context: %d tokens, %d of them the "
					"prompt; the run stops after %d\n", g.n_new, m->cfg.seq_len, n,
				m->cfg.seq_len - n);
	}
	if (want_ring) {
		/* the budget counts the KV cache of the context this run needs,
		 * not the model's whole context */
		const char *text = chat ? chat_prompt : prompt;
		int32_t *ids;
		int n;
		if (djn_ring_configure(m, &ring, &err))
			goto out;
		if (djn_tok_encode(m->tok, text, strlen(text), djn_tok_add_bos(m->tok), false, &ids,
				   &n, &err))
			goto out;
		free(ids);
		if (g.n_new > 0 && n + g.n_new + 1 < m->cfg.seq_len)
			sopts.max_ctx = n + g.n_new + 1;
	}
	if (!(be = djn_backend_new(device, (int)threads, &err)))
		goto out;
	if (!(s = djn_session_new(m, be, &sopts, &err)))
		goto out;

	if (!chat && *prompt) {
		/* echo the prompt as its tokens decode, as llama2.c's run.c does */
		int32_t *ids;
		int n;
		if (djn_tok_encode(m->tok, prompt, strlen(prompt), djn_tok_add_bos(m->tok), false,
				   &ids, &n, &err))
			goto out;
		for (int i = 0; i < n; i++) {
			size_t len;
			if (i == 0 && ids[0] == djn_tok_bos(m->tok))
				continue;
			const char *p = djn_tok_decode(m->tok, i ? ids[i - 1] : -1, ids[i], &len);
			print_piece(p, len);
		}
		free(ids);
	}
	struct timing tm = { .on = getenv("DJINN_TIMING") != NULL };
	if (logits_out) {
		tm.vocab = m->cfg.vocab_size;
		tm.cap = g.n_new > 0 ? g.n_new : 1;
		tm.logits = tm_logits = djn_xcalloc((size_t)tm.cap * tm.vocab, sizeof(float));
	}
	if (tm.on) {
		be->i->sync(be);
		tm.t0 = now_ms();
	}
	if (djn_generate(s, chat ? chat_prompt : prompt, &g, on_token, &tm)) {
		err = (struct djn_err){ 0 };
		djn_err_set(&err, DJN_ERR_INVALID, "%s", djn_session_errmsg(s));
		printf("\n");
		goto out;
	}
	printf("\n");
	if (logits_out && djn_npy_save(logits_out, tm.logits, tm.n < tm.cap ? tm.n : tm.cap,
				       tm.vocab, &err))
		goto out;
	if (tm.on) {
		int n_prompt;
		djn_session_tokens(s, NULL, &n_prompt);
		fprintf(stderr,
			"{\"device\":\"%s\",\"n_prompt\":%d,\"n_new\":%d,\"prefill_ms\":%.3f,"
			"\"decode_ms_per_token\":%.4f%s}\n",
			be->i->name, n_prompt, tm.n, tm.t_first - tm.t0,
			tm.n > 1 ? (tm.t_last - tm.t_first) / (tm.n - 1) : 0.0, ring_json(m));
	}
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "djinn: %s\n", err.msg);
	free(chat_prompt);
	free(tm_logits);
	djn_session_free(s);
	djn_model_unref(m);
	djn_backend_free(be);
	return rc;
}
