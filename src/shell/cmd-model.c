/* cmd-model.c - loading and describing the model: load, unload, info model,
 * info layers, info sites, info memory, info kv, info ringbuf. */
#include <stdlib.h>
#include <string.h>

#include "djinn/lua.h"
#include "shell/shell_impl.h"

static void fmt_bytes(size_t b, char *buf, size_t n)
{
	if (b >= (size_t)1 << 30)
		snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
	else if (b >= (size_t)1 << 20)
		snprintf(buf, n, "%.2f MiB", (double)b / (1 << 20));
	else if (b >= 1024)
		snprintf(buf, n, "%.1f KiB", (double)b / 1024);
	else
		snprintf(buf, n, "%zu B", b);
}

static bool device_ok(const char *d)
{
	long v;

	if (!strcmp(d, "auto") || !strcmp(d, "cpu") || !strcmp(d, "cuda"))
		return true;
	return !strncmp(d, "cuda:", 5) && sh_parse_long(d + 5, 0, 255, &v);
}

/* The paused run that a load or unload would throw away, if any. */
static const char *paused_session(struct djn_shell *sh)
{
	for (int i = 0; i < sh->n_sess; i++)
		if (djn_session_state(sh->sess[i].s) == DJN_RUN_PAUSED)
			return sh->sess[i].name;
	return NULL;
}

static void drop_all(struct djn_shell *sh)
{
	if (sh->lua) /* scripts hold borrowed handles to what goes away */
		djn_lua_bind(sh->lua, NULL, NULL, NULL);
	for (int i = 0; i < sh->n_sess; i++)
		sh_session_release(&sh->sess[i]);
	free(sh->sess);
	sh->sess = NULL;
	sh->n_sess = sh->cur = 0;
	djn_model_unref(sh->m);
	sh->m = NULL;
	sh_models_free(sh);
}

static void install_backend(struct djn_shell *sh, struct djn_backend *be, const char *device)
{
	char *d = djn_xstrdup(device); /* device may be sh->device */

	djn_backend_free(sh->be);
	sh->be = be;
	free(sh->device);
	sh->device = d;
}

DJN_CMD_FN(cmd_load)
{
	const char *path = NULL, *device = sh->device, *tok = NULL, *dtype = NULL, *busy;
	const char *budget = NULL, *slots = NULL, *kv_limit = NULL, *name = NULL, *why;
	const char *kv_dtype = NULL;
	enum djn_dtype kvt = DJN_DTYPE_F32;
	size_t kv_bytes = 0;
	struct djn_ring_opts ring = { 0 };
	struct djn_err err = { 0 };
	struct djn_model *m;
	struct djn_backend *be = NULL;
	struct djn_session *s;
	enum djn_dtype want;
	char size[32], desc[160];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--device") || !strcmp(a, "--dtype") || !strcmp(a, "--tokenizer") ||
		    !strcmp(a, "-z") || !strcmp(a, "--vram-budget") || !strcmp(a, "--ring-slots") ||
		    !strcmp(a, "--kv-limit") || !strcmp(a, "--name") || !strcmp(a, "--kv-dtype")) {
			if (i + 1 >= argc)
				return sh_fail(sh, "load: option '%s' needs a value", a);
			if (!strcmp(a, "--device"))
				device = argv[++i];
			else if (!strcmp(a, "--dtype"))
				dtype = argv[++i];
			else if (!strcmp(a, "--vram-budget"))
				budget = argv[++i];
			else if (!strcmp(a, "--ring-slots"))
				slots = argv[++i];
			else if (!strcmp(a, "--kv-limit"))
				kv_limit = argv[++i];
			else if (!strcmp(a, "--name"))
				name = argv[++i];
			else if (!strcmp(a, "--kv-dtype"))
				kv_dtype = argv[++i];
			else
				tok = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			return sh_fail(sh, "load: unknown option '%s'", a);
		} else if (!path) {
			path = a;
		} else {
			return sh_fail(sh, "load: one model at a time ('%s' and '%s')", path, a);
		}
	}
	if (!path)
		return sh_fail(sh, "usage: %s", djn_cmd_table[0].usage);
	if (!device_ok(device))
		return sh_fail(sh, "load: bad device '%s' (auto, cpu, cuda or cuda:N)", device);
	if (dtype && (!djn_dtype_parse(dtype, &want) ||
		      (want != DJN_DTYPE_F32 && want != DJN_DTYPE_F16 && want != DJN_DTYPE_BF16)))
		return sh_fail(sh, "load: bad dtype '%s' (f32, f16 or bf16)", dtype);
	if (budget && (!djn_size_parse(budget, &ring.vram_budget) || !ring.vram_budget))
		return sh_fail(sh, "load: bad --vram-budget '%s' (a size: 18G, 512M, bytes)", budget);
	if (kv_dtype && (!djn_dtype_parse(kv_dtype, &kvt) ||
			 (kvt != DJN_DTYPE_F32 && kvt != DJN_DTYPE_F16)))
		return sh_fail(sh, "load: bad --kv-dtype '%s' (f32 or f16)", kv_dtype);
	if (kv_limit && (!djn_size_parse(kv_limit, &kv_bytes) || !kv_bytes))
		return sh_fail(sh, "load: bad --kv-limit '%s' (a size: 2G, 512M, bytes)", kv_limit);
	if (slots) {
		long k;
		if (!strcmp(slots, "sync"))
			ring.sync = true;
		else if (sh_parse_long(slots, 1, DJN_RING_MAX_SLOTS, &k))
			ring.n_slots = (int)k;
		else
			return sh_fail(sh, "load: bad --ring-slots '%s' (1..%d, or sync)", slots,
				       DJN_RING_MAX_SLOTS);
	}
	if (sh->host &&
	    (dtype || budget || slots || kv_limit || kv_dtype || strcmp(device, sh->device)))
		return sh_fail(sh, "load: the server fixed how '%s' is loaded (device %s); "
				   "drop --device, --dtype, --vram-budget, --ring-slots, --kv-limit "
				   "and --kv-dtype",
			       path, sh->device);
	if (!sh->host && !sh_files_ok(sh))
		return DJN_CMD_FAIL;
	if (name && (why = sh_model_name_check(sh, name)))
		return sh_fail(sh, "load: --name '%s': %s", name, why);
	if (name && sh->n_models && strcmp(device, sh->device))
		return sh_fail(sh, "load: --name: the models share device %s, not %s", sh->device,
			       device);
	if (name && slots)
		return sh_fail(sh, "load: --name: --ring-slots does not apply to a shared pool");
	if (!name && (busy = paused_session(sh)))
		return sh_fail(sh, "load: a run is paused in session '%s'; \"kill\" it first "
				   "(the loaded model stays until then)", busy);
	if (name && budget) /* the pool's, for every model in it */
		sh->pool_budget = ring.vram_budget;
	if (name && sh->pool_budget) {
		ring.vram_budget = sh->pool_budget;
		ring.shared = true;
	}

	if (!(m = sh->host ? sh->host->open_model(sh->host->ud, path, tok, &err)
			   : djn_model_load(path, tok, &err)))
		return sh_fail(sh, "%s", err.msg);
	if (dtype && m->layers[0].wq.dtype != want && djn_model_cast(m, want, &err)) {
		djn_model_unref(m);
		return sh_fail(sh, "load: %s", err.msg);
	}
	if (kv_dtype && djn_model_set_kv_dtype(m, kvt, &err)) {
		djn_model_unref(m);
		return sh_fail(sh, "load: %s", err.msg);
	}
	if ((budget || slots || ring.shared) && djn_ring_configure(m, &ring, &err)) {
		djn_model_unref(m);
		return sh_fail(sh, "load: %s", err.msg);
	}
	if (!sh->be || strcmp(device, sh->device)) {
		if (!(be = djn_backend_new(device, 0, &err))) {
			djn_model_unref(m);
			return sh_fail(sh, "load: %s", err.msg);
		}
	}
	if (kv_limit) /* KV pages of all sessions; paused ones swap out past it */
		(be ? be : sh->be)->data_limit = kv_bytes;
	if (!(s = djn_session_new(m, be ? be : sh->be, NULL, &err))) {
		djn_model_unref(m);
		djn_backend_free(be);
		return sh_fail(sh, "load: %s", err.msg);
	}
	if (name) {
		if (be) /* the first named model: nothing is on the old backend */
			install_backend(sh, be, device);
		sh_model_add(sh, name, m, s);
		goto loaded;
	}
	/* the new model is up: now let the old one go */
	drop_all(sh);
	if (be)
		install_backend(sh, be, device);
	sh->m = m;
	sh->sess = djn_xcalloc(1, sizeof(*sh->sess));
	sh->sess[0].name = djn_xstrdup("main");
	sh->sess[0].s = s;
	sh->n_sess = 1;
	sh->cur = 0;

loaded:
	fmt_bytes(djn_model_weight_bytes(m), size, sizeof(size));
	sh->be->i->describe(sh->be, desc, sizeof(desc));
	sh_printf(sh, "Loaded %s: %s, %d layers, dim %d, vocab %d, %s weights (%s) on %s\n",
		  m->name, m->cfg.arch == DJN_ARCH_GPT2 ? "gpt2" : "llama", m->cfg.n_layer,
		  m->cfg.dim, m->cfg.vocab_size, djn_dtype_name(m->layers[0].wq.dtype), size,
		  sh->be->i->name);
	if (ring.shared) {
		struct djn_residency r;
		djn_ring_residency(m, &r);
		fmt_bytes(r.pool_used, size, sizeof(size));
		fmt_bytes(r.pool_budget, desc, sizeof(desc));
		sh_printf(sh, "Shared pool: %d of %d layers of '%s' resident; %s of %s in use by %d "
			  "model%s (\"info models\")\n", r.n_resident, r.n_layer, name, size, desc,
			  r.pool_models, r.pool_models == 1 ? "" : "s");
	} else if (djn_ring_of(m)) {
		const struct djn_ring_plan *p = djn_ring_plan(djn_ring_of(m));
		fmt_bytes(p->stream_bytes, size, sizeof(size));
		sh_printf(sh, "%d of %d layers stream through %d slot%s (%s per token; "
			  "\"info ringbuf\")\n", p->n_streamed, m->cfg.n_layer, p->n_slots,
			  p->n_slots == 1 ? "" : "s", size);
	}
	if (m->tok_found)
		sh_printf(sh, "Tokenizer: %s (found beside the model)\n", m->tok_found);
	if (!m->tok)
		sh_printf(sh, "warning: no tokenizer; \"run\" needs one (load with --tokenizer FILE)\n");
	sh_json_str(sh, "model", m->name);
	sh_json_str(sh, "path", m->path);
	sh_json_str(sh, "device", sh->be->i->name);
	sh_json_num(sh, "n_layer", m->cfg.n_layer);
	sh_json_num(sh, "dim", m->cfg.dim);
	sh_json_num(sh, "vocab", m->cfg.vocab_size);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_unload)
{
	const char *busy;

	if (argc == 2)
		return sh_unload_named(sh, argv[1]);
	busy = paused_session(sh);

	if (busy)
		return sh_fail(sh, "unload: a run is paused in session '%s'; \"kill\" it first", busy);
	sh_printf(sh, "Unloaded %s.\n", sh->m->name);
	drop_all(sh);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_model)
{
	const struct djn_model *m = sh->m;
	const struct djn_config *c = &m->cfg;
	char size[32], desc[160];

	fmt_bytes(djn_model_weight_bytes(sh->m), size, sizeof(size));
	sh->be->i->describe(sh->be, desc, sizeof(desc));
	sh_printf(sh, "Model:      %s (%s, %s)\n", m->name, m->path, djn_format_name(m->format));
	sh_printf(sh, "Arch:       %s, %d layers, dim %d, hidden %d, heads %d (kv %d), head_dim %d\n",
		  c->arch == DJN_ARCH_GPT2 ? "gpt2" : "llama", c->n_layer, c->dim, c->hidden_dim,
		  c->n_head, c->n_kv_head, c->head_dim);
	sh_printf(sh, "Vocab:      %d, context %d\n", c->vocab_size, c->seq_len);
	sh_printf(sh, "Weights:    %s, %s (Text, shared by %d session%s)\n",
		  djn_dtype_name(m->layers[0].wq.dtype), size, sh->n_sess, sh->n_sess == 1 ? "" : "s");
	if (m->tok)
		sh_printf(sh, "Tokenizer:  %s, %d pieces, bos %d, eos %d\n",
			  djn_tok_kind(m->tok) == DJN_TOK_SPM ? "SentencePiece BPE" : "byte-level BPE",
			  djn_tok_n_vocab(m->tok), djn_tok_bos(m->tok), djn_tok_eos(m->tok));
	else
		sh_printf(sh, "Tokenizer:  none\n");
	sh_printf(sh, "Device:     %s\n", desc);
	sh_json_str(sh, "model", m->name);
	sh_json_str(sh, "path", m->path);
	sh_json_str(sh, "format", djn_format_name(m->format));
	sh_json_num(sh, "n_layer", c->n_layer);
	sh_json_num(sh, "dim", c->dim);
	sh_json_num(sh, "hidden_dim", c->hidden_dim);
	sh_json_num(sh, "n_head", c->n_head);
	sh_json_num(sh, "n_kv_head", c->n_kv_head);
	sh_json_num(sh, "vocab", c->vocab_size);
	sh_json_num(sh, "seq_len", c->seq_len);
	sh_json_str(sh, "dtype", djn_dtype_name(m->layers[0].wq.dtype));
	sh_json_num(sh, "weight_bytes", (double)djn_model_weight_bytes(sh->m));
	sh_json_str(sh, "device", desc);
	return DJN_CMD_OK;
}

static void weight_str(const struct djn_weight *w, const char *name, char *buf, size_t n)
{
	if (!djn_weight_present(w))
		buf[0] = '\0';
	else
		snprintf(buf, n, " %s[%lldx%lld]", name, (long long)w->rows, (long long)w->cols);
}

DJN_CMD_FN(cmd_info_layers)
{
	const struct djn_config *c = &sh->m->cfg;
	cJSON *arr = cJSON_CreateArray();

	for (int l = 0; l < c->n_layer; l++) {
		const struct djn_layer *L = &sh->m->layers[l];
		char q[48], k[48], v[48], o[48], g[48], u[48], d[48];
		int first = 1 + l * DJN_SITES_PER_LAYER;
		weight_str(&L->wq, "q", q, sizeof(q));
		weight_str(&L->wk, "k", k, sizeof(k));
		weight_str(&L->wv, "v", v, sizeof(v));
		weight_str(&L->wo, "o", o, sizeof(o));
		weight_str(&L->w_gate, "gate", g, sizeof(g));
		weight_str(&L->w_up, "up", u, sizeof(u));
		weight_str(&L->w_down, "down", d, sizeof(d));
		char range[24];
		snprintf(range, sizeof(range), "%d..%d", first, first + DJN_SITES_PER_LAYER - 1);
		sh_printf(sh, "L%-3d sites %-8s attn %s%s%s%s%s  mlp%s%s%s\n", l, range,
			  djn_dtype_name(L->wq.dtype), q, k, v, o, g, u, d);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "layer", l);
		cJSON_AddNumberToObject(e, "first_site", first);
		cJSON_AddStringToObject(e, "dtype", djn_dtype_name(L->wq.dtype));
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "layers", arr);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_sites)
{
	const struct djn_config *c = &sh->m->cfg;
	struct djn_session *s = sh_s(sh);
	bool running = djn_session_state(s) != DJN_RUN_IDLE;
	struct djn_cursor cur = djn_session_cursor(s);
	cJSON *arr = cJSON_CreateArray();
	char name[32];

	sh_printf(sh, "   Num  Site             Width%s\n", running ? "  Live" : "");
	for (int i = 0; i < djn_site_count(c); i++) {
		bool live = running && djn_session_site_live(s, i);
		djn_site_name(c, i, name, sizeof(name));
		sh_printf(sh, "%s %-4d %-16s %-6d%s\n", running && cur.site == i ? "=>" : "  ", i,
			  name, djn_site_width(c, i), running ? (live ? " yes" : " no") : "");
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "site", i);
		cJSON_AddStringToObject(e, "name", name);
		cJSON_AddNumberToObject(e, "width", djn_site_width(c, i));
		if (running)
			cJSON_AddBoolToObject(e, "live", live);
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "sites", arr);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_memory)
{
	struct djn_mem_info mi;
	size_t free_b = 0, total_b = 0;
	char a[32], b[32], c[32];
	cJSON *arr = cJSON_CreateArray();

	djn_session_mem(sh_s(sh), &mi);
	fmt_bytes(djn_model_weight_bytes(sh->m), a, sizeof(a));
	fmt_bytes(mi.text_bytes, b, sizeof(b));
	sh_printf(sh, "Text  (weights): %s, shared by %d session%s (%s copied to %s)\n", a,
		  sh->n_sess, sh->n_sess == 1 ? "" : "s", b, sh->be->i->name);
	sh_json_num(sh, "weight_bytes", (double)djn_model_weight_bytes(sh->m));
	sh_json_num(sh, "text_bytes", (double)mi.text_bytes);
	if (djn_ring_of(sh->m)) {
		const struct djn_ring_plan *p = djn_ring_plan(djn_ring_of(sh->m));
		fmt_bytes(p->host_bytes, a, sizeof(a));
		fmt_bytes(p->stream_bytes, b, sizeof(b));
		sh_printf(sh, "  ring: %d layer%s (%s) in host memory, streamed through %d slot%s, "
			  "%s per token (\"info ringbuf\")\n", p->n_streamed,
			  p->n_streamed == 1 ? "" : "s", a, p->n_slots, p->n_slots == 1 ? "" : "s", b);
		sh_json_num(sh, "ring_host_bytes", (double)p->host_bytes);
	}
	for (int i = 0; i < sh->n_sess; i++) {
		djn_session_mem(sh->sess[i].s, &mi);
		fmt_bytes(mi.data_page_bytes, a, sizeof(a));
		fmt_bytes(mi.data_bytes, b, sizeof(b));
		sh_printf(sh, "Session '%s':\n", sh->sess[i].name);
		sh_printf(sh, "  Data  (KV cache):     %zu page%s x %s = %s\n", mi.data_pages,
			  mi.data_pages == 1 ? "" : "s", a, b);
		fmt_bytes(mi.stack_bytes, a, sizeof(a));
		fmt_bytes(mi.stack_used, b, sizeof(b));
		sh_printf(sh, "  Stack (activations):  %s, %s in use\n", a, b);
		fmt_bytes(mi.ckpt_bytes, c, sizeof(c));
		sh_printf(sh, "  Checkpoints:          %s\n", c);
		if (mi.swap_bytes) {
			fmt_bytes(mi.swap_bytes, c, sizeof(c));
			sh_printf(sh, "  Swapped out:          %s of KV pages in host memory\n", c);
		}
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "session", sh->sess[i].name);
		cJSON_AddNumberToObject(e, "data_bytes", (double)mi.data_bytes);
		cJSON_AddNumberToObject(e, "data_pages", (double)mi.data_pages);
		cJSON_AddNumberToObject(e, "stack_bytes", (double)mi.stack_bytes);
		cJSON_AddNumberToObject(e, "stack_used", (double)mi.stack_used);
		cJSON_AddNumberToObject(e, "ckpt_bytes", (double)mi.ckpt_bytes);
		cJSON_AddNumberToObject(e, "swap_bytes", (double)mi.swap_bytes);
		cJSON_AddItemToArray(arr, e);
	}
	sh_json_add(sh, "sessions", arr);
	size_t kept = djn_backend_kept_bytes(sh->be);
	if (kept) {
		fmt_bytes(kept, a, sizeof(a));
		sh_printf(sh, "Kept for reuse: %s (%d KV page%s, %d buffer%s given back)\n", a,
			  sh->be->n_data_kept, sh->be->n_data_kept == 1 ? "" : "s", sh->be->n_kept,
			  sh->be->n_kept == 1 ? "" : "s");
	}
	sh_json_num(sh, "kept_bytes", (double)kept);
	if (!sh->be->i->mem_info(sh->be, &free_b, &total_b)) {
		fmt_bytes(free_b, a, sizeof(a));
		fmt_bytes(total_b, b, sizeof(b));
		sh_printf(sh, "Device %s: %s free of %s\n", sh->be->i->name, a, b);
		sh_json_num(sh, "device_free", (double)free_b);
		sh_json_num(sh, "device_total", (double)total_b);
	}
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_kv)
{
	struct djn_session *s = sh_s(sh);
	const struct djn_config *c = &sh->m->cfg;
	struct djn_mem_info mi;
	struct djn_cursor cur = djn_session_cursor(s);
	int held = djn_session_state(s) == DJN_RUN_IDLE ? 0 : cur.pos + cur.n_rows;
	char a[32], b[32];

	djn_session_mem(s, &mi);
	fmt_bytes(mi.data_page_bytes, a, sizeof(a));
	fmt_bytes(mi.data_bytes, b, sizeof(b));
	sh_printf(sh, "KV cache of session '%s': %zu page%s of %s (%s)\n", sh_cur(sh)->name,
		  mi.data_pages, mi.data_pages == 1 ? "" : "s", a, b);
	sh_printf(sh, "  %d layers x (K, V) x kv_dim %d per token, %s; %d of %d positions in use\n",
		  c->n_layer, c->n_kv_head * c->head_dim, djn_dtype_name(sh->m->kv_dtype), held,
		  c->seq_len);
	sh_json_str(sh, "dtype", djn_dtype_name(sh->m->kv_dtype));
	sh_json_num(sh, "pages", (double)mi.data_pages);
	sh_json_num(sh, "page_bytes", (double)mi.data_page_bytes);
	sh_json_num(sh, "positions", held);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_ringbuf)
{
	struct djn_ring *r = djn_ring_of(sh->m);
	const struct djn_ring_plan *p;
	struct djn_ring_stats st;
	char buf[2048];

	if (!r) {
		sh_printf(sh, "No ring buffer: every weight of %s is resident on %s (load with "
			  "--vram-budget SIZE to stream layers).\n", sh->m->name, sh->be->i->name);
		sh_json_bool(sh, "streaming", false);
		return DJN_CMD_OK;
	}
	p = djn_ring_plan(r);
	djn_ring_stats(r, &st);
	djn_ring_describe(p, &st, buf, sizeof(buf));
	sh_printf(sh, "%s", buf);
	sh_json_bool(sh, "streaming", true);
	sh_json_num(sh, "budget", (double)p->budget);
	sh_json_num(sh, "working_set", (double)p->working_set);
	sh_json_num(sh, "resident_bytes", (double)p->resident_bytes);
	sh_json_num(sh, "n_streamed", p->n_streamed);
	cJSON *arr = cJSON_CreateArray();
	for (int i = 0; i < p->n_streamed; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(p->streamed[i]));
	sh_json_add(sh, "streamed", arr);
	sh_json_num(sh, "n_slots", p->n_slots);
	sh_json_bool(sh, "sync", p->sync);
	sh_json_num(sh, "slot_bytes", (double)p->slot_bytes);
	sh_json_num(sh, "stream_bytes_per_token", (double)p->stream_bytes);
	sh_json_num(sh, "host_bytes", (double)p->host_bytes);
	sh_json_bool(sh, "pinned", st.pinned);
	sh_json_num(sh, "copies", (double)st.n_copies);
	sh_json_num(sh, "copies_out_of_order", (double)st.n_resync);
	sh_json_num(sh, "min_budget", (double)p->min_budget);
	if (p->note[0])
		sh_json_str(sh, "note", p->note);
	return DJN_CMD_OK;
}
