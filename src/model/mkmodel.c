/* mkmodel.c - `djinn mkmodel`: synthetic Hugging Face model directories with seeded random weights. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "djinn/mkmodel.h"
#include "djinn/model.h"

#define DEFAULT_SHARD_BYTES 5000000000ull /* save_pretrained's "5GB" is decimal */
#define CHUNK_ELEMS (1u << 20)             /* one pwrite: 2 MiB of f16 */
#define MAX_THREADS 16
#define INIT_STD 0.02f                     /* transformers' initializer_range */
/* Llama's input embeddings at 0.02 vanish in a residual stream that every
 * random layer adds O(1) to: the last hidden state no longer depends on the
 * token, and greedy decoding repeats one token, which would make "the same
 * greedy tokens as transformers" a weak test.  At 1.0 the token stays
 * visible through 32 layers and the greedy stream varies.  GPT-2's wte is
 * also its output head, where a large scale makes each token predict itself
 * (tried: 0.1 and 0.02 both repeat on gpt2-xl), so it keeps 0.02. */
#define EMBED_STD 1.0f

/* ------------------------------------------------------------------ shapes */

/* The published configurations.  Mistral is 7B-v0.1 except for the context:
 * max_position_embeddings is 4096 (the real file says 32768), which equals
 * the sliding window, so full attention is exact and djinn, which sizes its
 * context from this field, does not reserve a 32K-token KV cache. */
static const struct shape {
	const char *name;
	enum djn_arch arch;
	const char *hf_arch, *model_type;
	int dim, hidden_dim, n_layer, n_head, n_kv_head, vocab, max_pos;
	int sliding_window; /* 0: none */
} shapes[] = {
	{ "llama-2-7b", DJN_ARCH_LLAMA, "LlamaForCausalLM", "llama",
	  4096, 11008, 32, 32, 32, 32000, 4096, 0 },
	{ "llama-2-13b", DJN_ARCH_LLAMA, "LlamaForCausalLM", "llama",
	  5120, 13824, 40, 40, 40, 32000, 4096, 0 },
	{ "mistral-7b", DJN_ARCH_LLAMA, "MistralForCausalLM", "mistral",
	  4096, 14336, 32, 32, 8, 32000, 4096, 4096 },
	/* phi-2's dimensions on the llama architecture (phi's parallel block,
	 * partial rotary and GELU MLP are not djinn's): a SwiGLU MLP makes it
	 * 3.6B parameters where phi-2 has 2.8B; for multi-model experiments
	 * that need a third, smaller shape */
	{ "phi-2", DJN_ARCH_LLAMA, "LlamaForCausalLM", "llama",
	  2560, 10240, 32, 32, 32, 51200, 2048, 0 },
	{ "gpt2-xl", DJN_ARCH_GPT2, "GPT2LMHeadModel", "gpt2",
	  1600, 6400, 48, 25, 25, 50257, 1024, 0 },
	/* for tests: every feature of the big ones (GQA, shards) in a few MB */
	{ "tiny-llama", DJN_ARCH_LLAMA, "LlamaForCausalLM", "llama",
	  256, 688, 4, 8, 4, 512, 1024, 0 },
	{ "tiny-gpt2", DJN_ARCH_GPT2, "GPT2LMHeadModel", "gpt2",
	  128, 512, 2, 4, 4, 512, 256, 0 },
	/* for the GPU's batch-invariant mode: every GEMM in the skinny kernel's
	 * tiles (rows a multiple of 64, columns of 256) */
	{ "tiny-llama-256", DJN_ARCH_LLAMA, "LlamaForCausalLM", "llama",
	  256, 768, 2, 4, 2, 512, 256, 0 },
};

#define N_SHAPES (int)(sizeof(shapes) / sizeof(shapes[0]))

const char *djn_mkmodel_shape_name(int i)
{
	return i >= 0 && i < N_SHAPES ? shapes[i].name : NULL;
}

static const struct shape *find_shape(const char *name)
{
	for (int i = 0; name && i < N_SHAPES; i++)
		if (!strcmp(shapes[i].name, name))
			return &shapes[i];
	return NULL;
}

static bool plain_dtype(enum djn_dtype t)
{
	return t == DJN_DTYPE_F16 || t == DJN_DTYPE_BF16 || t == DJN_DTYPE_F32;
}

static const char *st_dtype(enum djn_dtype t)
{
	return t == DJN_DTYPE_F16 ? "F16" : t == DJN_DTYPE_BF16 ? "BF16" : "F32";
}

static const char *torch_dtype(enum djn_dtype t)
{
	return t == DJN_DTYPE_F16 ? "float16" : t == DJN_DTYPE_BF16 ? "bfloat16" : "float32";
}

/* ------------------------------------------------------------- text output */

struct sbuf {
	char *p;
	size_t n, cap;
};

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(b->p ? b->p + b->n : NULL, b->cap - b->n, fmt, ap);
		va_end(ap);
		DJN_ASSERT(k >= 0);
		if ((size_t)k < b->cap - b->n)
			break;
		b->cap = (b->cap + (size_t)k + 1) * 2;
		b->p = djn_xrealloc(b->p, b->cap);
	}
	b->n += (size_t)k;
}

/* ------------------------------------------------------------------- plan */

enum init { INIT_NORMAL, INIT_ONES, INIT_ZEROS };

struct tensor {
	char name[64];
	int rank;
	int64_t shape[2];
	int64_t n_elem;
	enum init init;
	float std;     /* INIT_NORMAL: INIT_STD or EMBED_STD */
	uint64_t key;  /* RNG stream: a function of (seed, name) */
	int shard;
	uint64_t rel;  /* offset in the shard's data section */
	uint64_t off;  /* offset in the shard file */
};

struct shard {
	char name[48];
	char *path;
	int fd;
	uint64_t data_bytes;
	struct sbuf header; /* 8-byte length, then the padded JSON */
};

struct plan {
	const struct shape *sh;
	enum djn_dtype dtype;
	size_t es;         /* bytes per element */
	uint64_t seed;
	struct tensor *t;
	int n_t, cap_t;
	struct shard *shards;
	int n_shards;
	uint64_t total;    /* weight bytes */
	uint16_t *lut[2];  /* f16/bf16 of each sum of uniforms, at INIT_STD and EMBED_STD */
};

#define LUT_SIZE 262141 /* 4 * 65535 + 1 sums */

static inline uint64_t mix64(uint64_t z)
{
	/* splitmix64's output function: a bijection that passes BigCrush on a
	 * Weyl sequence, so (key + i * gamma) is a counter-based generator */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static struct tensor *__attribute__((format(printf, 5, 6)))
add(struct plan *p, enum init init, int64_t d0, int64_t d1, const char *fmt, ...)
{
	struct tensor *t;
	va_list ap;

	if (p->n_t == p->cap_t) {
		p->cap_t = p->cap_t ? 2 * p->cap_t : 64;
		p->t = djn_xrealloc(p->t, sizeof(*p->t) * (size_t)p->cap_t);
	}
	t = &p->t[p->n_t++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->rank = d1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->n_elem = d1 ? d0 * d1 : d0;
	t->init = init;
	t->std = INIT_STD;
	t->key = mix64(p->seed ^ mix64(name_hash(t->name)));
	return t;
}

/* Tensors in the order transformers' state_dict lists them. */
static void add_llama(struct plan *p)
{
	const struct shape *s = p->sh;
	int64_t d = s->dim, h = s->hidden_dim, hd = s->dim / s->n_head;
	int64_t kv = hd * s->n_kv_head;

	add(p, INIT_NORMAL, s->vocab, d, "model.embed_tokens.weight")->std = EMBED_STD;
	for (int l = 0; l < s->n_layer; l++) {
		add(p, INIT_NORMAL, d, d, "model.layers.%d.self_attn.q_proj.weight", l);
		add(p, INIT_NORMAL, kv, d, "model.layers.%d.self_attn.k_proj.weight", l);
		add(p, INIT_NORMAL, kv, d, "model.layers.%d.self_attn.v_proj.weight", l);
		add(p, INIT_NORMAL, d, d, "model.layers.%d.self_attn.o_proj.weight", l);
		add(p, INIT_NORMAL, h, d, "model.layers.%d.mlp.gate_proj.weight", l);
		add(p, INIT_NORMAL, h, d, "model.layers.%d.mlp.up_proj.weight", l);
		add(p, INIT_NORMAL, d, h, "model.layers.%d.mlp.down_proj.weight", l);
		add(p, INIT_ONES, d, 0, "model.layers.%d.input_layernorm.weight", l);
		add(p, INIT_ONES, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
	}
	add(p, INIT_ONES, d, 0, "model.norm.weight");
	add(p, INIT_NORMAL, s->vocab, d, "lm_head.weight");
}

/* The Hub's GPT-2 files: no "transformer." prefix, Conv1D weights [in, out],
 * the head tied to wte. */
static void add_gpt2(struct plan *p)
{
	const struct shape *s = p->sh;
	int64_t d = s->dim, h = s->hidden_dim;

	add(p, INIT_NORMAL, s->vocab, d, "wte.weight");
	add(p, INIT_NORMAL, s->max_pos, d, "wpe.weight");
	for (int l = 0; l < s->n_layer; l++) {
		add(p, INIT_ONES, d, 0, "h.%d.ln_1.weight", l);
		add(p, INIT_ZEROS, d, 0, "h.%d.ln_1.bias", l);
		add(p, INIT_NORMAL, d, 3 * d, "h.%d.attn.c_attn.weight", l);
		add(p, INIT_ZEROS, 3 * d, 0, "h.%d.attn.c_attn.bias", l);
		add(p, INIT_NORMAL, d, d, "h.%d.attn.c_proj.weight", l);
		add(p, INIT_ZEROS, d, 0, "h.%d.attn.c_proj.bias", l);
		add(p, INIT_ONES, d, 0, "h.%d.ln_2.weight", l);
		add(p, INIT_ZEROS, d, 0, "h.%d.ln_2.bias", l);
		add(p, INIT_NORMAL, d, h, "h.%d.mlp.c_fc.weight", l);
		add(p, INIT_ZEROS, h, 0, "h.%d.mlp.c_fc.bias", l);
		add(p, INIT_NORMAL, h, d, "h.%d.mlp.c_proj.weight", l);
		add(p, INIT_ZEROS, d, 0, "h.%d.mlp.c_proj.bias", l);
	}
	add(p, INIT_ONES, d, 0, "ln_f.weight");
	add(p, INIT_ZEROS, d, 0, "ln_f.bias");
}

/* Safetensors header: tensors in order, contiguous (the format allows no
 * holes), the JSON padded with spaces to a multiple of 8 so that the data
 * and every tensor in it stay aligned for their element size. */
static void build_header(struct plan *p, int k, const char *provenance)
{
	struct shard *sh = &p->shards[k];
	struct sbuf *b = &sh->header;
	uint64_t len;

	sb_printf(b, "12345678{\"__metadata__\":{\"format\":\"pt\",\"djinn_mkmodel\":\"%s\"}",
		  provenance);
	for (int i = 0; i < p->n_t; i++) {
		const struct tensor *t = &p->t[i];
		uint64_t bytes = (uint64_t)t->n_elem * p->es;

		if (t->shard != k)
			continue;
		sb_printf(b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRId64, t->name,
			  st_dtype(p->dtype), t->shape[0]);
		if (t->rank == 2)
			sb_printf(b, ",%" PRId64, t->shape[1]);
		sb_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->rel, t->rel + bytes);
	}
	sb_printf(b, "}");
	while (b->n % 8)
		sb_printf(b, " ");
	len = b->n - 8;
	for (int i = 0; i < 8; i++)
		b->p[i] = (char)(len >> (8 * i) & 0xff);
	for (int i = 0; i < p->n_t; i++)
		if (p->t[i].shard == k)
			p->t[i].off = b->n + p->t[i].rel;
}

/* Shards as save_pretrained cuts them: a new one when the next tensor would
 * push the current one past the limit (a tensor larger than the limit gets a
 * shard of its own). */
static void plan_build(struct plan *p, const struct shape *s, enum djn_dtype dtype,
		       uint64_t seed, uint64_t shard_bytes, const char *dir)
{
	char provenance[96];
	uint64_t cur = 0;

	memset(p, 0, sizeof(*p));
	p->sh = s;
	p->dtype = dtype;
	p->es = djn_dtype_block_bytes(dtype);
	p->seed = seed;
	if (s->arch == DJN_ARCH_GPT2)
		add_gpt2(p);
	else
		add_llama(p);
	p->n_shards = 1;
	for (int i = 0; i < p->n_t; i++) {
		uint64_t bytes = (uint64_t)p->t[i].n_elem * p->es;

		if (cur && cur + bytes > shard_bytes) {
			p->n_shards++;
			cur = 0;
		}
		p->t[i].shard = p->n_shards - 1;
		p->t[i].rel = cur;
		cur += bytes;
		p->total += bytes;
	}
	p->shards = djn_xcalloc((size_t)p->n_shards, sizeof(*p->shards));
	snprintf(provenance, sizeof(provenance), "%s %s seed %" PRIu64, s->name,
		 djn_dtype_name(dtype), seed);
	for (int k = 0; k < p->n_shards; k++) {
		struct shard *sh = &p->shards[k];
		size_t n;

		if (p->n_shards == 1)
			snprintf(sh->name, sizeof(sh->name), "model.safetensors");
		else
			snprintf(sh->name, sizeof(sh->name), "model-%05d-of-%05d.safetensors", k + 1,
				 p->n_shards);
		n = strlen(dir) + strlen(sh->name) + 2;
		sh->path = djn_xmalloc(n);
		snprintf(sh->path, n, "%s/%s", dir, sh->name);
		sh->fd = -1;
		build_header(p, k, provenance);
	}
	for (int i = 0; i < p->n_t; i++)
		p->shards[p->t[i].shard].data_bytes += (uint64_t)p->t[i].n_elem * p->es;
}

static void plan_release(struct plan *p)
{
	for (int k = 0; k < p->n_shards; k++) {
		if (p->shards[k].fd >= 0)
			close(p->shards[k].fd);
		free(p->shards[k].path);
		free(p->shards[k].header.p);
	}
	free(p->shards);
	free(p->t);
	free(p->lut[0]);
	free(p->lut[1]);
}

uint64_t djn_mkmodel_weight_bytes(const char *shape, enum djn_dtype dtype)
{
	const struct shape *s = find_shape(shape);
	struct plan p;
	uint64_t total;

	if (!s || !plain_dtype(dtype))
		return 0;
	plan_build(&p, s, dtype, 0, DEFAULT_SHARD_BYTES, ".");
	total = p.total;
	plan_release(&p);
	return total;
}

/* ----------------------------------------------------------------- values */

/* normal(0, std) is approximated by a sum of four 16-bit uniforms of one
 * 64-bit hash (Irwin-Hall, scaled to unit variance): bounded at +-3.46
 * sigma, which random weights never miss, and with only LUT_SIZE possible
 * values, so f16 and bf16 come from a table instead of a conversion per
 * element (the conversion was most of the time). */
static float normal_value(int32_t sum, float std)
{
	return (float)(sum - 131070) * (std * 1.7320508f / 65536.0f); /* sqrt(3) / 2^16 */
}

static void build_luts(struct plan *p)
{
	static const float stds[2] = { INIT_STD, EMBED_STD };

	if (p->dtype == DJN_DTYPE_F32)
		return;
	for (int k = 0; k < 2; k++) {
		p->lut[k] = djn_xmalloc(sizeof(uint16_t) * LUT_SIZE);
		for (int32_t s = 0; s < LUT_SIZE; s++) {
			float v = normal_value(s, stds[k]);

			p->lut[k][s] = p->dtype == DJN_DTYPE_F16 ? djn_f32_to_f16(v) : djn_f32_to_bf16(v);
		}
	}
}

static inline int32_t uniform_sum(const struct tensor *t, int64_t i)
{
	uint64_t h = mix64(t->key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);

	return (int32_t)((h & 0xffff) + (h >> 16 & 0xffff) + (h >> 32 & 0xffff) + (h >> 48));
}

/* Elements [start, start+n) of t into buf. */
static void fill(const struct plan *p, const struct tensor *t, int64_t start, int64_t n,
		 void *buf)
{
	uint16_t *h16 = buf;
	float *f32 = buf;

	if (t->init == INIT_ZEROS) {
		memset(buf, 0, (size_t)n * p->es);
	} else if (t->init == INIT_ONES) {
		uint16_t one = p->dtype == DJN_DTYPE_F16 ? djn_f32_to_f16(1.0f) : djn_f32_to_bf16(1.0f);

		for (int64_t i = 0; i < n; i++) {
			if (p->dtype == DJN_DTYPE_F32)
				f32[i] = 1.0f;
			else
				h16[i] = one;
		}
	} else if (p->dtype == DJN_DTYPE_F32) {
		for (int64_t i = 0; i < n; i++)
			f32[i] = normal_value(uniform_sum(t, start + i), t->std);
	} else {
		const uint16_t *lut = p->lut[t->std == INIT_STD ? 0 : 1];

		for (int64_t i = 0; i < n; i++)
			h16[i] = lut[uniform_sum(t, start + i)];
	}
}

/* ---------------------------------------------------------------- writing */

struct chunk {
	int t;
	int64_t start, n;
};

struct job {
	const struct plan *p;
	struct chunk *chunks;
	size_t n_chunks;
	atomic_size_t next;
	atomic_uint_fast64_t done;  /* bytes written */
	atomic_bool failed;
	atomic_int running;
	pthread_mutex_t mu;         /* guards err */
	struct djn_err *err;
};

static enum djn_status pwrite_all(int fd, const void *buf, size_t n, uint64_t off,
				  const char *path, struct djn_err *err)
{
	const char *b = buf;

	while (n) {
		ssize_t k = pwrite(fd, b, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return djn_err_set(err, DJN_ERR_IO, "%s: cannot write %zu bytes at %" PRIu64 " (%s)",
					   path, n, off, k < 0 ? strerror(errno) : "wrote nothing");
		b += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return DJN_OK;
}

static void job_fail(struct job *j, enum djn_status code, const struct djn_err *e)
{
	pthread_mutex_lock(&j->mu);
	if (!atomic_load(&j->failed)) {
		djn_err_set(j->err, code, "%s", e->msg);
		atomic_store(&j->failed, true);
	}
	pthread_mutex_unlock(&j->mu);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	const struct plan *p = j->p;
	void *buf = malloc(CHUNK_ELEMS * p->es);
	struct djn_err e = { 0 };
	size_t i;

	if (!buf) {
		djn_err_set(&e, DJN_ERR_NOMEM, "cannot allocate a %zu-byte write buffer",
			    CHUNK_ELEMS * p->es);
		job_fail(j, DJN_ERR_NOMEM, &e);
	}
	while (buf && !atomic_load(&j->failed) && (i = atomic_fetch_add(&j->next, 1)) < j->n_chunks) {
		const struct chunk *c = &j->chunks[i];
		const struct tensor *t = &p->t[c->t];
		const struct shard *sh = &p->shards[t->shard];
		size_t bytes = (size_t)c->n * p->es;

		fill(p, t, c->start, c->n, buf);
		if (pwrite_all(sh->fd, buf, bytes, t->off + (uint64_t)c->start * p->es, sh->path, &e)) {
			job_fail(j, DJN_ERR_IO, &e);
			break;
		}
		atomic_fetch_add(&j->done, bytes);
	}
	free(buf);
	atomic_fetch_sub(&j->running, 1);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void show_progress(uint64_t done, uint64_t total)
{
	fprintf(stderr, "\rwriting %.1f/%.1f GB %3d%%", (double)done / 1e9, (double)total / 1e9,
		total ? (int)(100.0 * (double)done / (double)total) : 100);
}

static int pick_threads(int want, size_t n_chunks)
{
	long n = want > 0 ? want : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (want <= 0 && n > MAX_THREADS)
		n = MAX_THREADS;
	if ((size_t)n > n_chunks)
		n = (long)(n_chunks ? n_chunks : 1);
	return (int)n;
}

/* Open every shard, write its header, reserve its size, then fill the data
 * from n threads, each taking the next CHUNK_ELEMS of some tensor. */
static enum djn_status write_weights(struct plan *p, int n_threads, bool progress,
				     struct djn_err *err)
{
	struct job j = { .p = p, .err = err };
	pthread_t tid[64];
	enum djn_status st = DJN_OK;
	double t0 = now_s();
	int n_started = 0;

	for (int k = 0; k < p->n_shards; k++) {
		struct shard *sh = &p->shards[k];
		uint64_t size = sh->header.n + sh->data_bytes;

		sh->fd = open(sh->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (sh->fd < 0)
			return djn_err_set(err, DJN_ERR_IO, "%s: cannot create (%s)", sh->path,
					   strerror(errno));
		/* Reserve the blocks now: a full disk fails here, not after
		 * minutes of writing.  Filesystems without fallocate skip it. */
		if (fallocate(sh->fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP && errno != ENOSYS)
			return djn_err_set(err, DJN_ERR_IO, "%s: cannot reserve %" PRIu64 " bytes (%s)",
					   sh->path, size, strerror(errno));
		if ((st = pwrite_all(sh->fd, sh->header.p, sh->header.n, 0, sh->path, err)))
			return st;
	}
	build_luts(p);
	for (int i = 0; i < p->n_t; i++)
		j.n_chunks += (size_t)((p->t[i].n_elem + CHUNK_ELEMS - 1) / CHUNK_ELEMS);
	j.chunks = djn_xmalloc(sizeof(*j.chunks) * (j.n_chunks ? j.n_chunks : 1));
	j.n_chunks = 0;
	for (int i = 0; i < p->n_t; i++)
		for (int64_t s = 0; s < p->t[i].n_elem; s += CHUNK_ELEMS)
			j.chunks[j.n_chunks++] = (struct chunk){
				i, s, p->t[i].n_elem - s < CHUNK_ELEMS ? p->t[i].n_elem - s : CHUNK_ELEMS
			};
	atomic_init(&j.next, 0);
	atomic_init(&j.done, 0);
	atomic_init(&j.failed, false);
	n_threads = pick_threads(n_threads, j.n_chunks);
	if (n_threads > (int)(sizeof(tid) / sizeof(tid[0])))
		n_threads = (int)(sizeof(tid) / sizeof(tid[0]));
	atomic_init(&j.running, n_threads);
	pthread_mutex_init(&j.mu, NULL);
	for (; n_started < n_threads; n_started++) {
		if (pthread_create(&tid[n_started], NULL, worker, &j)) {
			atomic_fetch_sub(&j.running, n_threads - n_started);
			break;
		}
	}
	if (!n_started) {
		st = djn_err_set(err, DJN_ERR_NOMEM, "cannot start a writer thread");
		goto out_free_chunks;
	}
	while (progress && atomic_load(&j.running) > 0) {
		show_progress(atomic_load(&j.done), p->total);
		nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
	}
	for (int i = 0; i < n_started; i++)
		pthread_join(tid[i], NULL);
	if (atomic_load(&j.failed)) {
		st = err ? err->code : DJN_ERR_IO;
	} else {
		for (int k = 0; k < p->n_shards; k++) {
			int rc = close(p->shards[k].fd);

			p->shards[k].fd = -1;
			if (rc < 0 && !st)
				st = djn_err_set(err, DJN_ERR_IO, "%s: cannot write (%s)",
						 p->shards[k].path, strerror(errno));
		}
	}
	if (progress) {
		double dt = now_s() - t0;

		show_progress(atomic_load(&j.done), p->total);
		if (!st)
			fprintf(stderr, "\rwrote %.1f GB in %.1f s (%.2f GB/s)     \n",
				(double)p->total / 1e9, dt, dt > 0 ? (double)p->total / 1e9 / dt : 0);
		else
			fprintf(stderr, "\n");
	}
out_free_chunks:
	pthread_mutex_destroy(&j.mu);
	free(j.chunks);
	return st;
}

static enum djn_status write_text_file(const char *dir, const char *name, const struct sbuf *b,
				       struct djn_err *err)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *path = djn_xmalloc(n);
	enum djn_status st;
	int fd;

	snprintf(path, n, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		st = djn_err_set(err, DJN_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
		goto out_free_path;
	}
	st = pwrite_all(fd, b->p, b->n, 0, path, err);
	if (close(fd) < 0 && !st)
		st = djn_err_set(err, DJN_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
out_free_path:
	free(path);
	return st;
}

/* ------------------------------------------------------------- the JSONs */

/* config.json as save_pretrained writes it for these models: sorted keys,
 * two-space indent. */
static void config_json(struct sbuf *b, const struct shape *s, enum djn_dtype dtype)
{
	if (s->arch == DJN_ARCH_GPT2) {
		sb_printf(b,
			  "{\n"
			  "  \"activation_function\": \"gelu_new\",\n"
			  "  \"architectures\": [\n    \"%s\"\n  ],\n"
			  "  \"attn_pdrop\": 0.1,\n"
			  "  \"bos_token_id\": %d,\n"
			  "  \"embd_pdrop\": 0.1,\n"
			  "  \"eos_token_id\": %d,\n"
			  "  \"initializer_range\": 0.02,\n"
			  "  \"layer_norm_epsilon\": 1e-05,\n"
			  "  \"model_type\": \"%s\",\n"
			  "  \"n_ctx\": %d,\n"
			  "  \"n_embd\": %d,\n"
			  "  \"n_head\": %d,\n"
			  "  \"n_inner\": null,\n"
			  "  \"n_layer\": %d,\n"
			  "  \"n_positions\": %d,\n"
			  "  \"reorder_and_upcast_attn\": false,\n"
			  "  \"resid_pdrop\": 0.1,\n"
			  "  \"scale_attn_by_inverse_layer_idx\": false,\n"
			  "  \"scale_attn_weights\": true,\n"
			  "  \"tie_word_embeddings\": true,\n"
			  "  \"torch_dtype\": \"%s\",\n"
			  "  \"use_cache\": true,\n"
			  "  \"vocab_size\": %d\n"
			  "}\n",
			  s->hf_arch, s->vocab - 1, s->vocab - 1, s->model_type, s->max_pos, s->dim,
			  s->n_head, s->n_layer, s->max_pos, torch_dtype(dtype), s->vocab);
		return;
	}
	sb_printf(b,
		  "{\n"
		  "  \"architectures\": [\n    \"%s\"\n  ],\n"
		  "  \"attention_bias\": false,\n"
		  "  \"attention_dropout\": 0.0,\n"
		  "  \"bos_token_id\": 1,\n"
		  "  \"eos_token_id\": 2,\n"
		  "  \"hidden_act\": \"silu\",\n"
		  "  \"hidden_size\": %d,\n"
		  "  \"initializer_range\": 0.02,\n"
		  "  \"intermediate_size\": %d,\n"
		  "  \"max_position_embeddings\": %d,\n",
		  s->hf_arch, s->dim, s->hidden_dim, s->max_pos);
	if (!strcmp(s->model_type, "llama"))
		sb_printf(b, "  \"mlp_bias\": false,\n");
	sb_printf(b,
		  "  \"model_type\": \"%s\",\n"
		  "  \"num_attention_heads\": %d,\n"
		  "  \"num_hidden_layers\": %d,\n"
		  "  \"num_key_value_heads\": %d,\n",
		  s->model_type, s->n_head, s->n_layer, s->n_kv_head);
	if (!strcmp(s->model_type, "llama"))
		sb_printf(b, "  \"pretraining_tp\": 1,\n");
	sb_printf(b,
		  "  \"rms_norm_eps\": 1e-05,\n"
		  "  \"rope_scaling\": null,\n"
		  "  \"rope_theta\": 10000.0,\n");
	if (s->sliding_window)
		sb_printf(b, "  \"sliding_window\": %d,\n", s->sliding_window);
	sb_printf(b,
		  "  \"tie_word_embeddings\": false,\n"
		  "  \"torch_dtype\": \"%s\",\n"
		  "  \"use_cache\": true,\n"
		  "  \"vocab_size\": %d\n"
		  "}\n",
		  torch_dtype(dtype), s->vocab);
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the others for U+0100 upwards in byte order. */
static unsigned byte_char(int b)
{
	unsigned n = 0;

	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return (unsigned)b;
	for (int c = 0; c < b; c++)
		if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff)))
			n++;
	return 256 + n;
}

static void json_char(struct sbuf *b, unsigned cp)
{
	if (cp == '"' || cp == '\\')
		sb_printf(b, "\\%c", (char)cp);
	else if (cp < 0x80)
		sb_printf(b, "%c", (char)cp);
	else
		sb_printf(b, "%c%c", (char)(0xc0 | cp >> 6), (char)(0x80 | (cp & 0x3f)));
}

/* A byte-level BPE tokenizer with no merges: every byte of text is one token,
 * so an N-character ASCII prompt is N tokens in djinn and in transformers
 * alike.  Llama shapes: <unk> <s> </s> at 0..2, bytes at 3..258; GPT-2:
 * bytes at 0..255, <|endoftext|> last.  The other ids decode as " w<id>". */
static void tokenizer_json(struct sbuf *b, const struct shape *s)
{
	static const char *const llama_special[] = { "<unk>", "<s>", "</s>" };
	bool gpt2 = s->arch == DJN_ARCH_GPT2;
	int byte0 = gpt2 ? 0 : 3;

	sb_printf(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
		     "  \"added_tokens\": [");
	for (int i = 0; i < (gpt2 ? 1 : 3); i++)
		sb_printf(b,
			  "%s\n    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, "
			  "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}",
			  i ? "," : "", gpt2 ? s->vocab - 1 : i, gpt2 ? "<|endoftext|>" : llama_special[i]);
	sb_printf(b, "\n  ],\n  \"normalizer\": null,\n"
		     "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
		     "\"trim_offsets\": true, \"use_regex\": true},\n"
		     "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
		     "\"trim_offsets\": false, \"use_regex\": true},\n"
		     "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
		     "\"trim_offsets\": true, \"use_regex\": true},\n"
		     "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
		     "    \"unk_token\": null,\n    \"continuing_subword_prefix\": \"\",\n"
		     "    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
		     "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
		     "    \"vocab\": {");
	for (int id = 0; id < s->vocab; id++) {
		sb_printf(b, "%s\n      \"", id ? "," : "");
		if (gpt2 && id == s->vocab - 1)
			sb_printf(b, "<|endoftext|>");
		else if (!gpt2 && id < 3)
			sb_printf(b, "%s", llama_special[id]);
		else if (id >= byte0 && id < byte0 + 256)
			json_char(b, byte_char(id - byte0));
		else
			sb_printf(b, "\xc4\xa0w%d", id); /* U+0120, the byte-level space */
		sb_printf(b, "\": %d", id);
	}
	sb_printf(b, "\n    },\n    \"merges\": []\n  }\n}\n");
}

static void tokenizer_config_json(struct sbuf *b, const struct shape *s)
{
	bool gpt2 = s->arch == DJN_ARCH_GPT2;

	sb_printf(b,
		  "{\n"
		  "  \"add_bos_token\": false,\n"
		  "  \"add_eos_token\": false,\n"
		  "  \"bos_token\": \"%s\",\n"
		  "  \"clean_up_tokenization_spaces\": false,\n"
		  "  \"eos_token\": \"%s\",\n"
		  "  \"model_max_length\": %d,\n"
		  "  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n"
		  "  \"unk_token\": \"%s\"\n"
		  "}\n",
		  gpt2 ? "<|endoftext|>" : "<s>", gpt2 ? "<|endoftext|>" : "</s>", s->max_pos,
		  gpt2 ? "<|endoftext|>" : "<unk>");
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(const struct tensor *const *)a)->name, (*(const struct tensor *const *)b)->name);
}

static void index_json(struct sbuf *b, const struct plan *p)
{
	const struct tensor **by_name = djn_xmalloc(sizeof(*by_name) * (size_t)p->n_t);

	for (int i = 0; i < p->n_t; i++)
		by_name[i] = &p->t[i];
	qsort(by_name, (size_t)p->n_t, sizeof(*by_name), cmp_name);
	sb_printf(b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n"
		     "  \"weight_map\": {", p->total);
	for (int i = 0; i < p->n_t; i++)
		sb_printf(b, "%s\n    \"%s\": \"%s\"", i ? "," : "", by_name[i]->name,
			  p->shards[by_name[i]->shard].name);
	sb_printf(b, "\n  }\n}\n");
	free(by_name);
}

/* --------------------------------------------------------- the directory */

static const char *const our_files[] = {
	"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
	"model.safetensors.index.json", NULL
};

static bool is_ours(const char *name)
{
	for (int i = 0; our_files[i]; i++)
		if (!strcmp(name, our_files[i]))
			return true;
	return !fnmatch("model-*-of-*.safetensors", name, 0);
}

/* Make dir, or check it is empty; with force, remove what an earlier run (of
 * any shape) left, so no stale model.safetensors shadows a new index. */
static enum djn_status prepare_dir(const char *dir, bool force, struct djn_err *err)
{
	struct stat sb;
	struct dirent *e;
	bool empty = true;
	DIR *d;

	if (stat(dir, &sb) < 0) {
		if (errno != ENOENT)
			return djn_err_set(err, DJN_ERR_IO, "%s: %s", dir, strerror(errno));
		if (mkdir(dir, 0755) < 0)
			return djn_err_set(err, DJN_ERR_IO, "%s: cannot create directory (%s)", dir,
					   strerror(errno));
		return DJN_OK;
	}
	if (!S_ISDIR(sb.st_mode))
		return djn_err_set(err, DJN_ERR_IO, "%s: exists and is not a directory", dir);
	if (!(d = opendir(dir)))
		return djn_err_set(err, DJN_ERR_IO, "%s: cannot read directory (%s)", dir,
				   strerror(errno));
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		empty = false;
		if (force && is_ours(e->d_name) && unlinkat(dirfd(d), e->d_name, 0) < 0) {
			djn_err_set(err, DJN_ERR_IO, "%s/%s: cannot remove (%s)", dir, e->d_name,
				    strerror(errno));
			closedir(d);
			return DJN_ERR_IO;
		}
	}
	closedir(d);
	if (!empty && !force)
		return djn_err_set(err, DJN_ERR_STATE,
				   "%s: directory is not empty (--force writes into it)", dir);
	return DJN_OK;
}

static enum djn_status check_space(const char *dir, uint64_t need, struct djn_err *err)
{
	struct statvfs vfs;
	uint64_t avail;

	if (statvfs(dir, &vfs) < 0)
		return DJN_OK; /* not knowing is no reason to refuse */
	avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
	if (avail < need)
		return djn_err_set(err, DJN_ERR_IO, "%s: needs %.2f GB, %.2f GB free", dir,
				   (double)need / 1e9, (double)avail / 1e9);
	return DJN_OK;
}

static void remove_ours(const char *dir, const struct plan *p)
{
	char path[4096];

	for (int k = 0; k < p->n_shards; k++)
		unlink(p->shards[k].path);
	for (int i = 0; our_files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, our_files[i]);
		unlink(path);
	}
}

enum djn_status djn_mkmodel(const struct djn_mkmodel_opts *o, struct djn_err *err)
{
	const struct shape *s = find_shape(o->shape);
	struct sbuf b = { 0 };
	struct plan p;
	enum djn_status st;

	if (!s) {
		struct sbuf names = { 0 };

		for (int i = 0; i < N_SHAPES; i++)
			sb_printf(&names, "%s%s", i ? ", " : "", shapes[i].name);
		st = djn_err_set(err, DJN_ERR_INVALID, "unknown shape '%s' (expected %s)",
				 o->shape ? o->shape : "", names.p);
		free(names.p);
		return st;
	}
	if (!plain_dtype(o->dtype))
		return djn_err_set(err, DJN_ERR_INVALID, "dtype '%s' is not supported (f16, bf16 or f32)",
				   djn_dtype_name(o->dtype));
	if (!o->out_dir || !*o->out_dir)
		return djn_err_set(err, DJN_ERR_INVALID, "no output directory");
	if ((st = prepare_dir(o->out_dir, o->force, err)))
		return st;
	plan_build(&p, s, o->dtype, o->seed, o->shard_bytes ? o->shard_bytes : DEFAULT_SHARD_BYTES,
		   o->out_dir);
	if ((st = check_space(o->out_dir, p.total + (8u << 20), err)))
		goto out_release;
	/* weights first and config.json last: a directory is loadable only once
	 * everything in it is complete */
	if ((st = write_weights(&p, o->n_threads, o->progress, err)))
		goto out_remove;
	tokenizer_json(&b, s);
	if ((st = write_text_file(o->out_dir, "tokenizer.json", &b, err)))
		goto out_remove;
	b.n = 0;
	tokenizer_config_json(&b, s);
	if ((st = write_text_file(o->out_dir, "tokenizer_config.json", &b, err)))
		goto out_remove;
	if (p.n_shards > 1) {
		b.n = 0;
		index_json(&b, &p);
		if ((st = write_text_file(o->out_dir, "model.safetensors.index.json", &b, err)))
			goto out_remove;
	}
	b.n = 0;
	config_json(&b, s, o->dtype);
	if ((st = write_text_file(o->out_dir, "config.json", &b, err)))
		goto out_remove;
	goto out_release;
out_remove:
	remove_ours(o->out_dir, &p);
out_release:
	free(b.p);
	plan_release(&p);
	return st;
}

/* -------------------------------------------------------------------- CLI */

static void usage(FILE *f)
{
	fprintf(f, "usage: djinn mkmodel --shape SHAPE [--dtype f16|bf16|f32] [--seed N] [--force]\n"
		   "                     [--threads N] [--shard-size BYTES] OUT_DIR\n"
		   "shapes:");
	for (int i = 0; i < N_SHAPES; i++)
		fprintf(f, " %s", shapes[i].name);
	fprintf(f, "\nBYTES may end in K, M or G (powers of 1000, as save_pretrained's \"5GB\")\n");
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !*end && !errno && *out <= max;
}

static bool parse_size(const char *s, uint64_t *out)
{
	uint64_t mult = 1, v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	if (*end == 'K' || *end == 'k')
		mult = 1000;
	else if (*end == 'M')
		mult = 1000 * 1000;
	else if (*end == 'G')
		mult = 1000 * 1000 * 1000;
	if (mult > 1)
		end++;
	if (*end == 'B')
		end++;
	if (*end || !v || v > UINT64_MAX / mult)
		return false;
	*out = v * mult;
	return true;
}

int djn_mkmodel_main(int argc, char **argv)
{
	struct djn_mkmodel_opts o = { .dtype = DJN_DTYPE_F16, .progress = isatty(STDERR_FILENO) };
	struct djn_err err = { 0 };
	uint64_t v;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--force")) {
			o.force = true;
			continue;
		}
		if (a[0] != '-') {
			if (o.out_dir) {
				fprintf(stderr, "djinn mkmodel: more than one OUT_DIR ('%s', '%s')\n",
					o.out_dir, a);
				usage(stderr);
				return 2;
			}
			o.out_dir = a;
			continue;
		}
		if (!val) {
			fprintf(stderr, "djinn mkmodel: option '%s' needs a value\n", a);
			usage(stderr);
			return 2;
		}
		if (!strcmp(a, "--shape")) {
			o.shape = val;
		} else if (!strcmp(a, "--dtype")) {
			if (!djn_dtype_parse(val, &o.dtype) || !plain_dtype(o.dtype)) {
				fprintf(stderr, "djinn mkmodel: bad dtype '%s' (f16, bf16 or f32)\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--seed")) {
			if (!parse_u64(val, UINT64_MAX, &o.seed)) {
				fprintf(stderr, "djinn mkmodel: bad seed '%s'\n", val);
				return 2;
			}
		} else if (!strcmp(a, "--threads")) {
			if (!parse_u64(val, 64, &v) || !v) {
				fprintf(stderr, "djinn mkmodel: bad thread count '%s' (1..64)\n", val);
				return 2;
			}
			o.n_threads = (int)v;
		} else if (!strcmp(a, "--shard-size")) {
			if (!parse_size(val, &o.shard_bytes)) {
				fprintf(stderr, "djinn mkmodel: bad shard size '%s'\n", val);
				return 2;
			}
		} else {
			fprintf(stderr, "djinn mkmodel: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!o.shape || !o.out_dir) {
		fprintf(stderr, "djinn mkmodel: %s\n", !o.shape ? "--shape is required" : "no OUT_DIR");
		usage(stderr);
		return 2;
	}
	if (djn_mkmodel(&o, &err)) {
		fprintf(stderr, "djinn mkmodel: %s\n", err.msg);
		return err.code == DJN_ERR_INVALID ? 2 : 1;
	}
	return 0;
}
