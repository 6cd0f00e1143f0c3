/* tokenizer.c - the tokenizer object, SentencePiece-style encode/decode, and the llama2.c tokenizer.bin loader. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer_impl.h"

/* --- piece -> id hash ----------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, folded: pieces are short */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static uint32_t table_size(size_t n)
{
	uint32_t size = 16;

	while (size < 2 * n) /* load factor <= 1/2 keeps probes short */
		size <<= 1;
	return size;
}

int djn_tok_find(const struct djn_tokenizer *tok, const char *piece, size_t len)
{
	if (!tok || (!piece && len))
		return -1;
	if (!piece)
		piece = ""; /* memcmp wants a pointer even for 0 bytes */
	for (uint32_t i = hash_bytes(piece, len) & tok->map.mask;; i = (i + 1) & tok->map.mask) {
		int32_t slot = tok->map.slots[i];

		if (!slot)
			return -1;
		if (tok->len[slot - 1] == len && !memcmp(djn_tok_str(tok, slot - 1), piece, len))
			return slot - 1;
	}
}

/* The first of duplicate pieces keeps the name: llama.cpp keeps the last and
 * llama2.c's bsearch either, but no real vocabulary has duplicates, and
 * first-wins makes djn_tok_find stable. */
static void map_build(struct djn_tokenizer *tok)
{
	uint32_t size = table_size((size_t)tok->n_vocab);

	tok->map.slots = djn_xcalloc(size, sizeof(*tok->map.slots));
	tok->map.mask = size - 1;
	for (int id = 0; id < tok->n_vocab; id++) {
		uint32_t i = hash_bytes(djn_tok_str(tok, id), tok->len[id]) & tok->map.mask;

		for (;; i = (i + 1) & tok->map.mask) {
			int32_t slot = tok->map.slots[i];

			if (!slot) {
				tok->map.slots[i] = id + 1;
				break;
			}
			if (tok->len[slot - 1] == tok->len[id] &&
			    !memcmp(djn_tok_str(tok, slot - 1), djn_tok_str(tok, id), tok->len[id]))
				break;
		}
	}
}

/* --- the common object ------------------------------------------------------ */

int djn_tok_byte_piece(const char *s, size_t len)
{
	int v = 0;

	if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
		return -1;
	for (int i = 3; i < 5; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			v = v * 16 + (c - '0');
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (c - 'A' + 10);
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (c - 'a' + 10);
		else
			return -1;
	}
	return v;
}

struct djn_tokenizer *djn_tok_alloc(enum djn_tok_kind kind, const char *what, int n_vocab,
				    const char *const *pieces, const uint32_t *lens,
				    const int32_t *types, int bos_id, int eos_id,
				    struct djn_err *err)
{
	struct djn_tokenizer *tok;
	size_t total = 0;

	if (n_vocab <= 0 || n_vocab > DJN_TOK_MAX_VOCAB) {
		djn_err_set(err, DJN_ERR_INVALID, "%s: vocabulary size %d, must be in 1..%d",
			    what, n_vocab, DJN_TOK_MAX_VOCAB);
		return NULL;
	}
	if (!pieces || !lens) {
		djn_err_set(err, DJN_ERR_INVALID, "%s: no pieces given", what);
		return NULL;
	}
	for (int i = 0; i < n_vocab; i++) {
		if (!pieces[i] && lens[i]) {
			djn_err_set(err, DJN_ERR_INVALID, "%s: token %d has no piece", what, i);
			return NULL;
		}
		if (lens[i] > DJN_TOK_MAX_PIECE) {
			djn_err_set(err, DJN_ERR_INVALID, "%s: token %d is %u bytes long, limit %u",
				    what, i, lens[i], DJN_TOK_MAX_PIECE);
			return NULL;
		}
		/* 0 is GGUF's "undefined"; treated as normal */
		if (types && (types[i] < 0 || types[i] > DJN_TOKT_BYTE)) {
			djn_err_set(err, DJN_ERR_INVALID, "%s: token %d has type %d, must be in 0..%d",
				    what, i, (int)types[i], DJN_TOKT_BYTE);
			return NULL;
		}
		total += lens[i] + 1;
	}
	if (bos_id < -1 || bos_id >= n_vocab || eos_id < -1 || eos_id >= n_vocab) {
		djn_err_set(err, DJN_ERR_INVALID,
			    "%s: bos %d / eos %d out of range for %d tokens (-1 for none)",
			    what, bos_id, eos_id, n_vocab);
		return NULL;
	}

	tok = djn_xcalloc(1, sizeof(*tok));
	tok->kind = kind;
	tok->n_vocab = n_vocab;
	tok->bos = bos_id;
	tok->eos = eos_id;
	tok->unk = -1;
	tok->text = djn_xmalloc(total);
	tok->dtext = djn_xmalloc(total);
	tok->off = djn_xmalloc(sizeof(*tok->off) * (size_t)n_vocab);
	tok->len = djn_xmalloc(sizeof(*tok->len) * (size_t)n_vocab);
	tok->dlen = djn_xcalloc((size_t)n_vocab, sizeof(*tok->dlen));
	tok->types = djn_xmalloc(sizeof(*tok->types) * (size_t)n_vocab);
	total = 0;
	for (int i = 0; i < n_vocab; i++) {
		tok->off[i] = total;
		tok->len[i] = lens[i];
		if (lens[i])
			memcpy(tok->text + total, pieces[i], lens[i]);
		tok->text[total + lens[i]] = '\0';
		tok->dtext[total] = '\0';
		total += lens[i] + 1;
		if (lens[i] > tok->max_len)
			tok->max_len = lens[i];
		if (types && types[i])
			tok->types[i] = types[i];
		else if (!types && djn_tok_byte_piece(pieces[i], lens[i]) >= 0)
			tok->types[i] = DJN_TOKT_BYTE;
		else
			tok->types[i] = DJN_TOKT_NORMAL;
		if (tok->types[i] == DJN_TOKT_UNKNOWN && tok->unk < 0)
			tok->unk = i;
	}
	map_build(tok);
	for (int b = 0; b < 256; b++)
		tok->byte_id[b] = -1;
	return tok;
}

void djn_tok_free(struct djn_tokenizer *tok)
{
	if (!tok)
		return;
	free(tok->text);
	free(tok->dtext);
	free(tok->off);
	free(tok->len);
	free(tok->dlen);
	free(tok->types);
	free(tok->scores);
	free(tok->map.slots);
	free(tok->pairs.slots);
	free(tok->specials);
	free(tok);
}

enum djn_tok_kind djn_tok_kind(const struct djn_tokenizer *tok)
{
	return tok->kind;
}

int djn_tok_n_vocab(const struct djn_tokenizer *tok)
{
	return tok->n_vocab;
}

int djn_tok_bos(const struct djn_tokenizer *tok)
{
	return tok->bos;
}

int djn_tok_eos(const struct djn_tokenizer *tok)
{
	return tok->eos;
}

bool djn_tok_add_bos(const struct djn_tokenizer *tok)
{
	return tok->add_bos;
}

void djn_tok_set_add_bos(struct djn_tokenizer *tok, bool add_bos)
{
	tok->add_bos = add_bos;
}

const char *djn_tok_piece(const struct djn_tokenizer *tok, int id, size_t *len)
{
	if (!tok || id < 0 || id >= tok->n_vocab) {
		*len = 0;
		return "";
	}
	*len = tok->len[id];
	return djn_tok_str(tok, id);
}

const char *djn_tok_decode(const struct djn_tokenizer *tok, int prev, int id, size_t *len)
{
	const char *s;

	if (!tok || id < 0 || id >= tok->n_vocab) {
		*len = 0;
		return "";
	}
	s = tok->dtext + tok->off[id];
	*len = tok->dlen[id];
	/* SentencePiece's decoder drops the dummy-prefix space of the first word
	 * (llama2.c PR #89); a <0x20> byte token is a real space and stays. */
	if (tok->kind == DJN_TOK_SPM && prev >= 0 && prev == tok->bos &&
	    tok->types[id] != DJN_TOKT_BYTE && *len && s[0] == ' ') {
		s++;
		(*len)--;
	}
	return s;
}

/* --- merging by priority ------------------------------------------------------ */

/* A candidate merge of symbols left and right, valid while both still hold
 * the ids they had when it was pushed and are still neighbours. */
struct merge_cand {
	double prio;
	int32_t left, right;
	int32_t id_l, id_r;
	int32_t merged;
};

static bool cand_before(const struct merge_cand *a, const struct merge_cand *b)
{
	if (a->prio != b->prio)
		return a->prio > b->prio;
	return a->left < b->left;
}

static void heap_push(struct djn_tok_merger *m, size_t *n, const struct merge_cand *c)
{
	struct merge_cand *h;
	size_t i;

	if (*n == m->heap_cap) {
		m->heap_cap = m->heap_cap ? 2 * m->heap_cap : 64;
		m->heap = djn_xrealloc(m->heap, m->heap_cap * sizeof(*h));
	}
	h = m->heap;
	for (i = (*n)++; i > 0 && cand_before(c, &h[(i - 1) / 2]); i = (i - 1) / 2)
		h[i] = h[(i - 1) / 2];
	h[i] = *c;
}

static struct merge_cand heap_pop(struct djn_tok_merger *m, size_t *n)
{
	struct merge_cand *h = m->heap, top = h[0], last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && cand_before(&h[c + 1], &h[c]))
			c++;
		if (!cand_before(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

static void try_pair(const struct djn_tokenizer *tok, struct djn_tok_merger *m, size_t *n_heap,
		     const int32_t *ids, int left, int right, djn_tok_pair_fn pair, void *ctx)
{
	struct merge_cand c = { .left = left, .right = right, .id_l = ids[left], .id_r = ids[right] };

	if (pair(tok, ctx, c.id_l, c.id_r, &c.merged, &c.prio))
		heap_push(m, n_heap, &c);
}

/* A heap instead of llama2.c's rescan of every pair per merge: the same
 * result (best priority, leftmost on ties) in O(n log n), so a long prompt
 * or one long pre-token does not go quadratic. */
int djn_tok_merge(const struct djn_tokenizer *tok, struct djn_tok_merger *m, int32_t *ids,
		  int n, djn_tok_pair_fn pair, void *ctx)
{
	size_t n_heap = 0;
	int out = 0;

	if (n < 2)
		return n;
	if ((size_t)n > m->cap) {
		m->cap = (size_t)n;
		m->prev = djn_xrealloc(m->prev, m->cap * sizeof(*m->prev));
		m->next = djn_xrealloc(m->next, m->cap * sizeof(*m->next));
	}
	for (int i = 0; i < n; i++) {
		m->prev[i] = i - 1;
		m->next[i] = i + 1 < n ? i + 1 : -1;
	}
	for (int i = 0; i + 1 < n; i++)
		try_pair(tok, m, &n_heap, ids, i, i + 1, pair, ctx);
	while (n_heap) {
		struct merge_cand c = heap_pop(m, &n_heap);
		int32_t r;

		/* ids[] of a merged-away symbol is set to -1, so stale candidates fail here */
		if (ids[c.left] != c.id_l || ids[c.right] != c.id_r || m->next[c.left] != c.right)
			continue;
		ids[c.left] = c.merged;
		ids[c.right] = -1;
		r = m->next[c.left] = m->next[c.right];
		if (r >= 0)
			m->prev[r] = c.left;
		if (m->prev[c.left] >= 0)
			try_pair(tok, m, &n_heap, ids, m->prev[c.left], c.left, pair, ctx);
		if (r >= 0)
			try_pair(tok, m, &n_heap, ids, c.left, r, pair, ctx);
	}
	for (int i = 0; i >= 0; i = m->next[i])
		ids[out++] = ids[i];
	return out;
}

void djn_tok_merger_release(struct djn_tok_merger *m)
{
	free(m->prev);
	free(m->next);
	free(m->heap);
	memset(m, 0, sizeof(*m));
}

/* --- SentencePiece-style -------------------------------------------------- */

static const char u2581[3] = { (char)0xe2, (char)0x96, (char)0x81 };

/* What each piece prints as: run.c's decode() without the after-BOS rule,
 * which depends on the previous token and stays in djn_tok_decode. */
static void spm_build_decoded(struct djn_tokenizer *tok)
{
	for (int id = 0; id < tok->n_vocab; id++) {
		const char *s = djn_tok_str(tok, id);
		char *d = tok->dtext + tok->off[id];
		uint32_t n = tok->len[id], k = 0;
		int b;

		switch (tok->types[id]) {
		case DJN_TOKT_CONTROL:
			break;
		case DJN_TOKT_BYTE:
			b = djn_tok_byte_piece(s, n);
			if (b >= 0) {
				d[k++] = (char)b;
				break;
			}
			/* a BYTE-typed piece that is not <0xXX>: print it as written */
			/* fall through */
		default:
			for (uint32_t i = 0; i < n;) {
				if (tok->space_is_u2581 && i + 3 <= n && !memcmp(s + i, u2581, 3)) {
					d[k++] = ' ';
					i += 3;
				} else {
					d[k++] = s[i++];
				}
			}
		}
		tok->dlen[id] = k;
	}
}

struct djn_tokenizer *djn_tok_new_spm(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const float *scores,
				      const int32_t *types, int bos_id, int eos_id,
				      bool space_is_u2581, struct djn_err *err)
{
	struct djn_tokenizer *tok = djn_tok_alloc(DJN_TOK_SPM, "spm vocabulary", n_vocab, pieces,
						  lens, types, bos_id, eos_id, err);

	if (!tok)
		return NULL;
	tok->space_is_u2581 = space_is_u2581;
	tok->add_bos = true;
	tok->scores = djn_xcalloc((size_t)n_vocab, sizeof(*tok->scores));
	if (scores)
		memcpy(tok->scores, scores, sizeof(*scores) * (size_t)n_vocab);
	for (int b = 0; b < 256; b++) {
		char name[8];

		snprintf(name, sizeof(name), "<0x%02X>", b);
		tok->byte_id[b] = djn_tok_find(tok, name, 6);
	}
	spm_build_decoded(tok);
	return tok;
}

struct spm_ctx {
	char *buf; /* 2 * max_len bytes: two pieces side by side */
};

static bool spm_pair(const struct djn_tokenizer *tok, void *ctx, int32_t a, int32_t b,
		     int32_t *merged, double *prio)
{
	struct spm_ctx *c = ctx;
	uint32_t la = tok->len[a], lb = tok->len[b];
	int id;

	memcpy(c->buf, djn_tok_str(tok, a), la);
	memcpy(c->buf + la, djn_tok_str(tok, b), lb);
	id = djn_tok_find(tok, c->buf, la + lb);
	/* run.c starts its best score at -1e10: pieces at or below it (and NaN) never merge */
	if (id < 0 || !(tok->scores[id] > -1e10f))
		return false;
	*merged = id;
	*prio = tok->scores[id];
	return true;
}

/* Where byte `at` of the escaped text (prefix added, spaces maybe U+2581)
 * came from in the caller's text, for messages; the prefix maps to 0. */
static size_t src_offset(const struct djn_tokenizer *tok, const char *text, size_t at)
{
	size_t pos = tok->space_is_u2581 ? 3 : 1, k = 0;

	for (; pos <= at; k++)
		pos += text[k] == ' ' && tok->space_is_u2581 ? 3 : 1;
	return k ? k - 1 : 0;
}

/* run.c's encode(): a dummy-prefix space, then one symbol per UTF-8 code
 * point (bytes of a piece-less code point fall back to <0xXX>), then merges.
 * Unlike run.c, BOS is not a merge candidate: no vocabulary has a piece that
 * starts with BOS's text, and SentencePiece never merges control tokens. */
static enum djn_status spm_encode(const struct djn_tokenizer *tok, const char *text, size_t len,
				  int32_t *ids, int *n_ids, struct djn_err *err)
{
	struct djn_tok_merger m = { 0 };
	struct spm_ctx ctx;
	enum djn_status st = DJN_OK;
	size_t n_esc = 0, i = 0;
	char *esc;
	int n = 0;

	if (!len) {
		*n_ids = 0;
		return DJN_OK;
	}
	/* The text as SentencePiece sees it: " " + text, with ' ' spelled U+2581
	 * when the vocabulary does (as llama.cpp escapes it). */
	esc = djn_xmalloc(3 * (len + 1));
	for (size_t k = 0; k <= len; k++) {
		char c = k ? text[k - 1] : ' ';

		if (c == ' ' && tok->space_is_u2581) {
			memcpy(esc + n_esc, u2581, 3);
			n_esc += 3;
		} else {
			esc[n_esc++] = c;
		}
	}
	while (i < n_esc) {
		/* run.c's grouping: a byte and the continuation bytes after it, at
		 * most 4, whether or not they form valid UTF-8 */
		size_t cp = 1;
		int id;

		if (i == 0) /* the dummy prefix is a symbol of its own, whatever follows */
			cp = tok->space_is_u2581 ? 3 : 1;
		else
			while (i + cp < n_esc && cp < 4 && ((uint8_t)esc[i + cp] & 0xc0) == 0x80)
				cp++;
		id = djn_tok_find(tok, esc + i, cp);
		if (id >= 0) {
			ids[n++] = id;
		} else {
			for (size_t k = 0; k < cp; k++) {
				int32_t b = tok->byte_id[(uint8_t)esc[i + k]];

				if (b < 0)
					b = tok->unk;
				if (b < 0) {
					st = djn_err_set(err, DJN_ERR_INVALID,
							 "cannot encode byte 0x%02x at offset %zu: "
							 "no <0x%02X> piece and no unknown token",
							 (uint8_t)esc[i + k], src_offset(tok, text, i + k),
							 (uint8_t)esc[i + k]);
					goto out_free_esc;
				}
				ids[n++] = b;
			}
		}
		i += cp;
	}
	ctx.buf = djn_xmalloc(2 * (size_t)tok->max_len + 1);
	n = djn_tok_merge(tok, &m, ids, n, spm_pair, &ctx);
	free(ctx.buf);
	djn_tok_merger_release(&m);
	*n_ids = n;
out_free_esc:
	free(esc);
	return st;
}

enum djn_status djn_tok_encode(const struct djn_tokenizer *tok, const char *text,
			       size_t len, bool bos, bool eos, int32_t **ids,
			       int *n_ids, struct djn_err *err)
{
	enum djn_status st;
	int32_t *out;
	size_t cap;
	int n = 0, n_body = 0;

	*ids = NULL;
	*n_ids = 0;
	if (!tok)
		return djn_err_set(err, DJN_ERR_INVALID, "encode: no tokenizer");
	if (!text && len)
		return djn_err_set(err, DJN_ERR_INVALID, "encode: no text");
	/* A byte yields at most one token, but an SPM space spelled U+2581 may
	 * fall back to three byte tokens; plus dummy prefix, BOS and EOS. */
	if (len > (size_t)(INT32_MAX / 4))
		return djn_err_set(err, DJN_ERR_RANGE, "encode: text of %zu bytes is too long", len);
	cap = 3 * (len + 1) + 2;
	out = djn_xmalloc(cap * sizeof(*out));
	if (bos && tok->bos >= 0)
		out[n++] = tok->bos;
	if (tok->kind == DJN_TOK_SPM)
		st = spm_encode(tok, text, len, out + n, &n_body, err);
	else
		st = djn_tok_bpe_encode(tok, text, len, out + n, &n_body, err);
	if (st) {
		free(out);
		return st;
	}
	n += n_body;
	if (eos && tok->eos >= 0)
		out[n++] = tok->eos;
	*ids = out;
	*n_ids = n;
	return DJN_OK;
}

/* --- llama2.c tokenizer.bin ----------------------------------------------- */

enum djn_status djn_tok_read_file(const char *path, uint8_t **buf, size_t *size,
				  struct djn_err *err)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16, n = 0;
	uint8_t *b;

	if (!f)
		return djn_err_set(err, DJN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
	b = djn_xmalloc(cap);
	for (;;) {
		size_t got = fread(b + n, 1, cap - n, f);

		n += got;
		if (n < cap)
			break;
		if (cap >= DJN_TOK_MAX_FILE) {
			fclose(f);
			free(b);
			return djn_err_set(err, DJN_ERR_FORMAT, "%s: larger than %u MiB, not a tokenizer",
					   path, DJN_TOK_MAX_FILE >> 20);
		}
		cap *= 2;
		b = djn_xrealloc(b, cap);
	}
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		free(b);
		return djn_err_set(err, DJN_ERR_IO, "%s: read failed (%s)", path, strerror(e));
	}
	fclose(f);
	b[n] = '\0';
	*buf = b;
	*size = n;
	return DJN_OK;
}

static int32_t rd_i32(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, sizeof(v)); /* llama2.c writes host order: little-endian */
	return v;
}

/* What a file that fails as a tokenizer.bin in its first bytes is instead:
 * text, a llama2.c checkpoint (seven small positive int32), or unknown. */
static const char *what_it_is(const uint8_t *buf, size_t size)
{
	size_t n = size < 512 ? size : 512, bad = 0;
	int32_t h[7];

	if (size >= 4 && !memcmp(buf, "GGUF", 4))
		return ": it is a GGUF model";
	if (size >= sizeof(h) + 4) {
		bool model = true;
		memcpy(h, buf, sizeof(h));
		for (int i = 0; i < 7; i++)
			model = model && (h[i] > 0 || (i == 5 && h[i] < 0)) && h[i] < (1 << 24) &&
				h[i] > -(1 << 24);
		if (model && h[1] > 1 && h[2] < 1024)
			return ": it looks like a llama2.c model";
	}
	for (size_t i = 0; i < n; i++)
		bad += buf[i] == 0 || (buf[i] < 0x20 && !isspace(buf[i]));
	if (n && !bad)
		return ": it is a text file";
	return "";
}

/* The first bytes are not a tokenizer's: say that first, then why. */
static void not_a_tokenizer(const char *path, const uint8_t *buf, size_t size,
			    struct djn_err *err)
{
	char why[DJN_ERRMSG_MAX];
	size_t n = strlen(path);

	snprintf(why, sizeof(why), "%s",
		 !strncmp(err->msg, path, n) && !strncmp(err->msg + n, ": ", 2) ? err->msg + n + 2
										: err->msg);
	djn_err_set(err, DJN_ERR_FORMAT, "%s: this is not a llama2.c tokenizer%s; %s", path,
		    what_it_is(buf, size), why);
}

struct djn_tokenizer *djn_tok_load_llama2c(const char *path, int n_vocab,
					   struct djn_err *err)
{
	struct djn_tokenizer *tok = NULL;
	const char **pieces = NULL;
	uint32_t *lens = NULL;
	float *scores = NULL;
	int cap = 0;
	int32_t max_len;
	uint8_t *buf = NULL;
	size_t size = 0, pos = 4;

	if (n_vocab <= 0 || n_vocab > DJN_TOK_MAX_VOCAB) {
		djn_err_set(err, DJN_ERR_INVALID, "%s: vocabulary size %d, must be in 1..%d",
			    path, n_vocab, DJN_TOK_MAX_VOCAB);
		return NULL;
	}
	if (djn_tok_read_file(path, &buf, &size, err))
		return NULL;
	if (size < 4) {
		djn_err_set(err, DJN_ERR_FORMAT,
			    "%s: file is %zu bytes, too short for max_token_length", path, size);
		not_a_tokenizer(path, buf, size, err);
		goto out_free_buf;
	}
	max_len = rd_i32(buf);
	if (max_len <= 0 || (uint32_t)max_len > DJN_TOK_MAX_PIECE) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: max_token_length is %d, must be in 1..%u",
			    path, (int)max_len, DJN_TOK_MAX_PIECE);
		not_a_tokenizer(path, buf, size, err);
		goto out_free_buf;
	}
	/* n_vocab comes from the model header; grow with the records actually
	 * read rather than trust it with a large allocation up front */
	for (int i = 0; i < n_vocab; i++) {
		int32_t len;

		if (i == cap) {
			cap = cap ? 2 * cap : 1024;
			pieces = djn_xrealloc(pieces, sizeof(*pieces) * (size_t)cap);
			lens = djn_xrealloc(lens, sizeof(*lens) * (size_t)cap);
			scores = djn_xrealloc(scores, sizeof(*scores) * (size_t)cap);
		}

		if (size - pos < 8) {
			djn_err_set(err, DJN_ERR_FORMAT,
				    "%s: record %d at byte %zu: file ends after %zu bytes "
				    "(tokenizer for a smaller vocabulary than %d?)",
				    path, i, pos, size, n_vocab);
			goto out_free_arrays;
		}
		memcpy(&scores[i], buf + pos, sizeof(float));
		len = rd_i32(buf + pos + 4);
		/* run.c sizes its merge buffer from max_token_length, so a longer
		 * piece is a broken file, not just an odd one */
		if (len < 0 || len > max_len) {
			djn_err_set(err, DJN_ERR_FORMAT,
				    "%s: record %d at byte %zu: length %d, must be in 0..%d "
				    "(max_token_length)", path, i, pos, (int)len, (int)max_len);
			if (i < 4) /* not a vocabulary's end: no tokenizer */
				not_a_tokenizer(path, buf, size, err);
			goto out_free_arrays;
		}
		if (size - pos - 8 < (size_t)len) {
			djn_err_set(err, DJN_ERR_FORMAT,
				    "%s: record %d at byte %zu: piece of %d bytes runs past the "
				    "end of the file (%zu bytes)", path, i, pos, (int)len, size);
			if (i < 4) /* not a vocabulary's end: no tokenizer */
				not_a_tokenizer(path, buf, size, err);
			goto out_free_arrays;
		}
		pieces[i] = (const char *)buf + pos + 8;
		lens[i] = (uint32_t)len;
		pos += 8 + (size_t)len;
	}
	/* Extra records mean a tokenizer made for another model: say so rather
	 * than decode with the wrong vocabulary. */
	if (pos != size) {
		djn_err_set(err, DJN_ERR_FORMAT,
			    "%s: %zu bytes left after %d records at byte %zu "
			    "(tokenizer for a larger vocabulary?)", path, size - pos, n_vocab, pos);
		goto out_free_arrays;
	}
	/* types NULL: <0xXX> pieces become BYTE and the rest NORMAL, so BOS's
	 * "\n<s>\n" prints as itself, exactly as run.c would */
	tok = djn_tok_new_spm(n_vocab, pieces, lens, scores, NULL, n_vocab > 1 ? 1 : -1,
			      n_vocab > 2 ? 2 : -1, false, err);
	if (!tok)
		djn_err_prefix(err, "%s", path);
out_free_arrays:
	free(pieces);
	free(lens);
	free(scores);
out_free_buf:
	free(buf);
	return tok;
}
