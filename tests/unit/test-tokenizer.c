/* test-tokenizer.c - tokenizers: llama2.c's tok512.bin against run.c's ids, byte-level BPE on tiny vocabularies, bad files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "djinn/tokenizer.h"
#include "model/tokenizer_impl.h"

#define N_VOCAB 512

/* models/ when scripts/models.sh has run, else the shared copy beside the repository */
static const char *model_file(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "models/%s", name);
	if (access(path, R_OK))
		snprintf(path, sizeof(path), "../shared/models/%s", name);
	if (access(path, R_OK))
		cr_skip_test("%s not found (run scripts/models.sh)", name);
	return path;
}

static struct djn_tokenizer *load_tok512(void)
{
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok = djn_tok_load_llama2c(model_file("tok512.bin"), N_VOCAB, &err);

	cr_assert_not_null(tok, "load failed: %s", err.msg);
	return tok;
}

static void assert_ids(const struct djn_tokenizer *tok, const char *text, size_t len, bool bos,
		       bool eos, const int32_t *want, int n_want)
{
	struct djn_err err = { 0 };
	int32_t *ids;
	int n;

	cr_assert_eq(djn_tok_encode(tok, text, len, bos, eos, &ids, &n, &err), DJN_OK, "%s", err.msg);
	cr_assert_eq(n, n_want, "'%.*s': %d ids, want %d", (int)len, text, n, n_want);
	for (int i = 0; i < n; i++)
		cr_assert_eq(ids[i], want[i], "'%.*s': id %d is %d, want %d", (int)len, text, i,
			     ids[i], want[i]);
	free(ids);
}

/* Concatenate decode(prev, id) over ids[from..]; returns a malloc'd buffer. */
static char *decode_all(const struct djn_tokenizer *tok, const int32_t *ids, int n, int from,
			size_t *len)
{
	char *out = malloc(16 * (size_t)n + 1);
	size_t k = 0;

	cr_assert_not_null(out);
	for (int i = from; i < n; i++) {
		size_t l;
		const char *s = djn_tok_decode(tok, i ? ids[i - 1] : -1, ids[i], &l);

		memcpy(out + k, s, l);
		k += l;
	}
	out[k] = '\0';
	*len = k;
	return out;
}

/* encode with BOS, decode after it: SentencePiece drops the dummy prefix again */
static void assert_round_trip(const struct djn_tokenizer *tok, const char *text, size_t len)
{
	struct djn_err err = { 0 };
	int32_t *ids;
	size_t dlen;
	char *back;
	int n;

	cr_assert_eq(djn_tok_encode(tok, text, len, true, false, &ids, &n, &err), DJN_OK, "%s",
		     err.msg);
	back = decode_all(tok, ids, n, djn_tok_bos(tok) >= 0 ? 1 : 0, &dlen);
	cr_assert(dlen == len && !memcmp(back, text, len), "round trip of '%.*s' gave '%s'",
		  (int)len, text, back);
	free(back);
	free(ids);
}

static char *write_temp(const void *data, size_t size)
{
	char *path = strdup("/tmp/djn-test-tok-XXXXXX");
	int fd;

	cr_assert_not_null(path);
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, data, size), (ssize_t)size);
	close(fd);
	return path;
}

static uint8_t *read_tok512(size_t *size)
{
	FILE *f = fopen(model_file("tok512.bin"), "rb");
	uint8_t *b = malloc(1 << 16);

	cr_assert_not_null(f);
	*size = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

/* Load a file made by the test and expect failure with `code` and a message
 * that names the file and contains `what`. */
static void assert_load_fails(const void *data, size_t size, int n_vocab, enum djn_status code,
			      const char *what)
{
	struct djn_err err = { 0 };
	char *path = write_temp(data, size);
	struct djn_tokenizer *tok = djn_tok_load_llama2c(path, n_vocab, &err);

	cr_assert_null(tok);
	cr_assert_eq(err.code, code, "code %d, want %d (%s)", err.code, code, err.msg);
	cr_assert_not_null(strstr(err.msg, path), "message does not name the file: %s", err.msg);
	cr_assert_not_null(strstr(err.msg, what), "message lacks '%s': %s", what, err.msg);
	unlink(path);
	free(path);
}

static void put_i32(uint8_t *p, int32_t v)
{
	memcpy(p, &v, 4);
}

/* --- llama2.c tokenizer.bin ---------------------------------------------------------- */

Test(tokenizer, llama2c_loads_tok512)
{
	struct djn_tokenizer *tok = load_tok512();
	size_t len;
	const char *p;

	cr_assert_eq(djn_tok_kind(tok), DJN_TOK_SPM);
	cr_assert_eq(djn_tok_n_vocab(tok), N_VOCAB);
	cr_assert_eq(djn_tok_bos(tok), 1);
	cr_assert_eq(djn_tok_eos(tok), 2);
	cr_assert(djn_tok_add_bos(tok));
	p = djn_tok_piece(tok, 403, &len);
	cr_assert(len == 5 && !memcmp(p, " Once", 5));
	p = djn_tok_piece(tok, 1, &len);
	cr_assert(len == 5 && !memcmp(p, "\n<s>\n", 5));
	cr_assert_eq(djn_tok_find(tok, " Once", 5), 403);
	cr_assert_eq(djn_tok_find(tok, "<0x41>", 6), 0x41 + 3);
	cr_assert_eq(djn_tok_find(tok, "no such piece", 13), -1);
	djn_tok_set_add_bos(tok, false);
	cr_assert_not(djn_tok_add_bos(tok));
	djn_tok_free(tok);
}

/* Ids as run.c's encode() gives them (checked against a literal Python
 * re-implementation of run.c): BOS, then " Once" " upon" " a" " time" -
 * the dummy prefix space merges into the first word. */
Test(tokenizer, llama2c_encode_matches_run_c)
{
	struct djn_tokenizer *tok = load_tok512();
	static const int32_t once[] = { 1, 403, 407, 261, 378 };
	static const int32_t once_eos[] = { 1, 403, 407, 261, 378, 2 };
	static const int32_t lily[] = { 317 };
	static const int32_t bos_only[] = { 1 };
	/* é is a piece of its own; the prefix " " (410) does not merge with it */
	static const int32_t e_acute[] = { 1, 410, 485 };

	assert_ids(tok, "Once upon a time", 16, true, false, once, 5);
	assert_ids(tok, "Once upon a time", 16, true, true, once_eos, 6);
	assert_ids(tok, "Lily", 4, false, false, lily, 1);
	assert_ids(tok, "", 0, true, false, bos_only, 1);
	assert_ids(tok, NULL, 0, false, false, NULL, 0);
	assert_ids(tok, "\xc3\xa9", 2, true, false, e_acute, 3);
	djn_tok_free(tok);
}

/* Code points without a piece fall back to <0xXX> tokens, id byte + 3 in tok512. */
Test(tokenizer, llama2c_byte_fallback)
{
	struct djn_tokenizer *tok = load_tok512();
	static const int32_t nihongo[] = { 1, 410, 0xe6 + 3, 0x97 + 3, 0xa5 + 3, 0xe6 + 3, 0x9c + 3,
					   0xac + 3, 0xe8 + 3, 0xaa + 3, 0x9e + 3 };
	static const int32_t emoji[] = { 1, 410, 0xf0 + 3, 0x9f + 3, 0x99 + 3, 0x82 + 3 };
	/* invalid UTF-8: run.c's grouping, then bytes */
	static const int32_t junk[] = { 1, 410, 0xff + 3, 0xfe + 3, 0x80 + 3 };

	assert_ids(tok, "日本語", strlen("日本語"), true, false, nihongo, 11);
	assert_ids(tok, "🙂", strlen("🙂"), true, false, emoji, 6);
	assert_ids(tok, "\xff\xfe\x80", 3, true, false, junk, 5);
	djn_tok_free(tok);
}

Test(tokenizer, llama2c_decode_like_run_c)
{
	struct djn_tokenizer *tok = load_tok512();
	size_t len;
	const char *s;

	s = djn_tok_decode(tok, 1, 403, &len); /* after BOS the leading space goes */
	cr_assert(len == 4 && !memcmp(s, "Once", 4));
	s = djn_tok_decode(tok, 403, 407, &len);
	cr_assert(len == 5 && !memcmp(s, " upon", 5));
	s = djn_tok_decode(tok, 1, 0x41 + 3, &len); /* <0x41> */
	cr_assert(len == 1 && s[0] == 'A');
	s = djn_tok_decode(tok, 1, 0x20 + 3, &len); /* a byte space is a real space */
	cr_assert(len == 1 && s[0] == ' ');
	s = djn_tok_decode(tok, 5, 0x0a + 3, &len);
	cr_assert(len == 1 && s[0] == '\n');
	s = djn_tok_decode(tok, 0, 2, &len); /* run.c prints EOS's piece as is */
	cr_assert(len == 6 && !memcmp(s, "\n</s>\n", 6));
	s = djn_tok_decode(tok, 0, N_VOCAB, &len);
	cr_assert_eq(len, 0);
	s = djn_tok_decode(tok, 0, -1, &len);
	cr_assert_eq(len, 0);
	(void)s;
	djn_tok_free(tok);
}

Test(tokenizer, llama2c_round_trips)
{
	static const char *const texts[] = {
		"Once upon a time", "Hello, world!", "  two leading spaces", "tabs\tand\nnewlines\n",
		"café, naïve, é", "日本語のテキスト", "emoji 🙂👍🏽 mixed", "\xff\xfe\x80 bad utf-8 \xc3",
		"x",
	};
	struct djn_tokenizer *tok = load_tok512();

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		assert_round_trip(tok, texts[i], strlen(texts[i]));
	djn_tok_free(tok);
}

/* The golden story run.c generates: encoding it and decoding token by token
 * (as the generator prints) gives the same bytes. */
Test(tokenizer, llama2c_golden_text_round_trips)
{
	struct djn_tokenizer *tok = load_tok512();
	FILE *f = fopen(model_file("stories260K.greedy.txt"), "rb");
	char text[4096];
	size_t len;

	cr_assert_not_null(f);
	len = fread(text, 1, sizeof(text), f);
	fclose(f);
	cr_assert_gt(len, 500);
	assert_round_trip(tok, text, len);
	djn_tok_free(tok);
}

/* The GGUF spelling of the same vocabulary (U+2581 for space, <s> and </s>
 * as CONTROL) must encode to the same ids and decode to the same text. */
Test(tokenizer, spm_u2581_matches_llama2c)
{
	static const char *const texts[] = { "Once upon a time", " lead", "a  b", "日本 🙂", "" };
	struct djn_tokenizer *a = load_tok512(), *b;
	const char *pieces[N_VOCAB];
	uint32_t lens[N_VOCAB];
	float scores[N_VOCAB];
	int32_t types[N_VOCAB];
	char *store[N_VOCAB];
	struct djn_err err = { 0 };
	size_t la, lb;

	for (int i = 0; i < N_VOCAB; i++) {
		size_t n;
		const char *p = djn_tok_piece(a, i, &n);
		char *q = malloc(3 * n + 8);
		uint32_t k = 0;

		for (size_t j = 0; j < n; j++) {
			if (p[j] == ' ') {
				memcpy(q + k, "\xe2\x96\x81", 3);
				k += 3;
			} else {
				q[k++] = p[j];
			}
		}
		types[i] = i >= 3 && i < 259 ? DJN_TOKT_BYTE : DJN_TOKT_NORMAL;
		if (i == 1 || i == 2) {
			k = (uint32_t)sprintf(q, i == 1 ? "<s>" : "</s>");
			types[i] = DJN_TOKT_CONTROL;
		}
		if (i == 0)
			types[i] = DJN_TOKT_UNKNOWN;
		store[i] = q;
		pieces[i] = q;
		lens[i] = k;
	}
	/* scores are not exposed; recover them from the file: record i's score */
	{
		size_t size, pos = 4;
		uint8_t *buf = read_tok512(&size);

		for (int i = 0; i < N_VOCAB; i++) {
			int32_t l;

			memcpy(&scores[i], buf + pos, 4);
			memcpy(&l, buf + pos + 4, 4);
			pos += 8 + (size_t)l;
		}
		free(buf);
	}
	b = djn_tok_new_spm(N_VOCAB, pieces, lens, scores, types, 1, 2, true, &err);
	cr_assert_not_null(b, "%s", err.msg);
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		int32_t *ia, *ib;
		int na, nb;

		cr_assert_eq(djn_tok_encode(a, texts[t], strlen(texts[t]), true, true, &ia, &na, &err), 0);
		cr_assert_eq(djn_tok_encode(b, texts[t], strlen(texts[t]), true, true, &ib, &nb, &err), 0);
		cr_assert_eq(na, nb, "'%s'", texts[t]);
		cr_assert(!memcmp(ia, ib, sizeof(*ia) * (size_t)na), "'%s'", texts[t]);
		free(ia);
		free(ib);
		assert_round_trip(b, texts[t], strlen(texts[t]));
	}
	cr_assert(!memcmp(djn_tok_decode(b, 1, 403, &lb), "Once", 4) && lb == 4);
	djn_tok_decode(b, 0, 2, &lb); /* CONTROL prints nothing */
	cr_assert_eq(lb, 0);
	djn_tok_decode(a, 0, 2, &la);
	cr_assert_eq(la, 6);
	for (int i = 0; i < N_VOCAB; i++)
		free(store[i]);
	djn_tok_free(a);
	djn_tok_free(b);
}

/* --- llama2.c tokenizer.bin: bad files -------------------------------------------------- */

Test(tokenizer, llama2c_truncated)
{
	size_t size;
	uint8_t *b = read_tok512(&size);

	cr_assert_eq(size, 6227);
	/* cut in the middle of the records: the message names a record and a byte */
	assert_load_fails(b, 3000, N_VOCAB, DJN_ERR_FORMAT, "record ");
	assert_load_fails(b, 3000, N_VOCAB, DJN_ERR_FORMAT, " at byte ");
	assert_load_fails(b, 2, N_VOCAB, DJN_ERR_FORMAT, "too short");
	assert_load_fails(b, 0, N_VOCAB, DJN_ERR_FORMAT, "too short");
	/* a whole file for a model with a larger vocabulary */
	assert_load_fails(b, size, N_VOCAB + 1, DJN_ERR_FORMAT, "record 512 at byte 6227");
	/* and for a smaller one: bytes left over */
	assert_load_fails(b, size, N_VOCAB - 1, DJN_ERR_FORMAT, "bytes left after 511 records");
	free(b);
}

Test(tokenizer, llama2c_bad_lengths)
{
	size_t size;
	uint8_t *b = read_tok512(&size);
	/* record 0 ("<unk>") has its length at byte 4 + 4 */
	uint8_t *c = malloc(size);

	/* a piece that runs past the end of the file */
	memcpy(c, b, size);
	put_i32(c, 1 << 15);
	put_i32(c + 8, 1 << 14);
	assert_load_fails(c, size, N_VOCAB, DJN_ERR_FORMAT, "record 0 at byte 4: piece of 16384 bytes runs past");
	/* longer than max_token_length */
	memcpy(c, b, size);
	put_i32(c + 8, 8);
	assert_load_fails(c, size, N_VOCAB, DJN_ERR_FORMAT, "record 0 at byte 4: length 8");
	/* negative */
	put_i32(c + 8, -1);
	assert_load_fails(c, size, N_VOCAB, DJN_ERR_FORMAT, "length -1");
	/* max_token_length */
	memcpy(c, b, size);
	put_i32(c, 0);
	assert_load_fails(c, size, N_VOCAB, DJN_ERR_FORMAT, "max_token_length is 0");
	put_i32(c, -7);
	assert_load_fails(c, size, N_VOCAB, DJN_ERR_FORMAT, "max_token_length is -7");
	free(c);
	free(b);
}

Test(tokenizer, llama2c_bad_arguments)
{
	struct djn_err err = { 0 };

	cr_assert_null(djn_tok_load_llama2c(model_file("tok512.bin"), 0, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_not_null(strstr(err.msg, "vocabulary size 0"), "%s", err.msg);
	cr_assert_null(djn_tok_load_llama2c(model_file("tok512.bin"), -5, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_load_llama2c("/nonexistent/tok.bin", N_VOCAB, &err));
	cr_assert_eq(err.code, DJN_ERR_IO);
	cr_assert_not_null(strstr(err.msg, "/nonexistent/tok.bin: cannot open"), "%s", err.msg);
	cr_assert_null(djn_tok_load_llama2c("/tmp", N_VOCAB, &err));
	cr_assert_eq(err.code, DJN_ERR_IO, "%s", err.msg);
	cr_assert_null(djn_tok_load_llama2c("/tmp", N_VOCAB, NULL)); /* NULL err is allowed */
}

Test(tokenizer, spm_bad_arguments)
{
	const char *pieces[] = { "a", NULL, "c" };
	const uint32_t lens[] = { 1, 1, 1 };
	const int32_t bad_types[] = { 1, 1, 9 };
	struct djn_err err = { 0 };

	cr_assert_null(djn_tok_new_spm(0, pieces, lens, NULL, NULL, -1, -1, false, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_new_spm(-1, pieces, lens, NULL, NULL, -1, -1, false, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_new_spm(3, pieces, lens, NULL, NULL, -1, -1, false, &err));
	cr_assert_not_null(strstr(err.msg, "token 1 has no piece"), "%s", err.msg);
	pieces[1] = "b";
	cr_assert_null(djn_tok_new_spm(3, pieces, lens, NULL, NULL, 3, -1, false, &err));
	cr_assert_not_null(strstr(err.msg, "bos 3"), "%s", err.msg);
	cr_assert_null(djn_tok_new_spm(3, pieces, lens, NULL, NULL, -1, -2, false, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_new_spm(3, pieces, lens, NULL, bad_types, -1, -1, false, &err));
	cr_assert_not_null(strstr(err.msg, "token 2 has type 9"), "%s", err.msg);
	cr_assert_null(djn_tok_new_spm(3, NULL, lens, NULL, NULL, -1, -1, false, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
}

/* A vocabulary with no byte pieces and no unknown token cannot encode an
 * unknown character: an error, not a crash or a silent drop. */
Test(tokenizer, spm_unencodable_byte)
{
	const char *pieces[] = { " ", "a", "b", " a" };
	const uint32_t lens[] = { 1, 1, 1, 2 };
	const float scores[] = { 0, 0, 0, 1 };
	static const int32_t ab[] = { 3, 2 };
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok = djn_tok_new_spm(4, pieces, lens, scores, NULL, -1, -1, false, &err);
	int32_t *ids = (int32_t *)&err;
	int n = 7;

	cr_assert_not_null(tok, "%s", err.msg);
	assert_ids(tok, "ab", 2, true, true, ab, 2); /* no BOS/EOS ids: none added */
	cr_assert_eq(djn_tok_encode(tok, "az", 2, false, false, &ids, &n, &err), DJN_ERR_INVALID);
	cr_assert_null(ids);
	cr_assert_eq(n, 0);
	cr_assert_not_null(strstr(err.msg, "byte 0x7a at offset 1"), "%s", err.msg);
	djn_tok_free(tok);
}

/* Merges pick the highest score, the leftmost pair on ties, as run.c does. */
Test(tokenizer, spm_merge_order)
{
	const char *pieces[] = { " ", "a", "b", "c", "ab", "bc", " a", "aa" };
	const uint32_t lens[] = { 1, 1, 1, 1, 2, 2, 2, 2 };
	float scores[] = { 0, 0, 0, 0, -1, -2, -10, -3 };
	/* " " "ab" "c": "ab" beats "bc" and " a", and " ab" is no piece */
	static const int32_t ab_c[] = { 0, 4, 3 };
	/* "bc" first when it scores higher; then " a" is the only pair left */
	static const int32_t a_bc[] = { 6, 5 };
	/* " aaa": two "aa" tie, the leftmost wins; merging the right one would
	 * have left " a" to merge */
	static const int32_t tie[] = { 0, 7, 1 };
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok = djn_tok_new_spm(8, pieces, lens, scores, NULL, -1, -1, false, &err);

	cr_assert_not_null(tok, "%s", err.msg);
	assert_ids(tok, "abc", 3, false, false, ab_c, 3);
	assert_ids(tok, "aaa", 3, false, false, tie, 3);
	djn_tok_free(tok);
	scores[5] = 0.5f;
	tok = djn_tok_new_spm(8, pieces, lens, scores, NULL, -1, -1, false, &err);
	assert_ids(tok, "abc", 3, false, false, a_bc, 2);
	djn_tok_free(tok);
}

/* --- GPT-2 byte-level BPE ---------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode, written out independently of bpe.c */
static uint32_t gpt2_cp(int b)
{
	int n = 0;

	if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return (uint32_t)b;
	for (int i = 0; i < b; i++) {
		if (!((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae && i <= 0xff)))
			n++;
	}
	return 256u + (uint32_t)n;
}

/* Byte-level spelling of raw text ("Ġworld" for " world"). */
static char *spell(const char *s, char *out)
{
	char *o = out;

	for (; *s; s++) {
		uint32_t cp = gpt2_cp((uint8_t)*s);

		if (cp < 0x80) {
			*o++ = (char)cp;
		} else {
			*o++ = (char)(0xc0 | cp >> 6);
			*o++ = (char)(0x80 | (cp & 0x3f));
		}
	}
	*o = '\0';
	return out;
}

/* A tiny vocabulary: the 256 byte symbols (id = byte), then words; merges
 * in rank order.  Extra specials at the end. */
static const char *const words[] = { "He", "ll", "Hell", "Hello", " w", "or", " wor", "ld",
				     " world", "bc", "ab", "12", "'s" };
#define N_WORDS (sizeof(words) / sizeof(words[0]))
static const char *const merges_raw[][2] = {
	{ "H", "e" }, { "l", "l" }, { "He", "ll" }, { "Hell", "o" }, { " ", "w" }, { "o", "r" },
	{ " w", "or" }, { "l", "d" }, { " wor", "ld" }, { "b", "c" }, { "a", "b" }, { "1", "2" },
	{ "'", "s" }, { "x", "q" } /* "xq" is not a piece: skipped */,
};
#define N_MERGES (sizeof(merges_raw) / sizeof(merges_raw[0]))
enum { ID_HELLO = 256 + 3, ID_WORLD = 256 + 8, ID_BC = 256 + 9, ID_AB = 256 + 10, ID_12 = 256 + 11,
       ID_S = 256 + 12, ID_IM_START = 256 + N_WORDS, ID_END = ID_IM_START + 1, ID_END_BANG, ID_USER,
       N_TINY };

static struct djn_tokenizer *tiny_bpe(const char *pre)
{
	static char store[N_TINY][64], mstore[N_MERGES][64];
	const char *pieces[N_TINY], *merges[N_MERGES];
	uint32_t lens[N_TINY], mlens[N_MERGES];
	int32_t types[N_TINY];
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok;

	for (int i = 0; i < N_TINY; i++) {
		char raw[2] = { (char)i, 0 };

		types[i] = DJN_TOKT_NORMAL;
		if (i < 256)
			spell(i ? raw : "", store[i]);
		else if (i < ID_IM_START)
			spell(words[i - 256], store[i]);
		if (i == 0) /* spell() stops at NUL: byte 0 is U+0100 */
			strcpy(store[0], "\xc4\x80");
		pieces[i] = store[i];
	}
	strcpy(store[ID_IM_START], "<|im_start|>");
	strcpy(store[ID_END], "<|end|>");
	strcpy(store[ID_END_BANG], "<|end|>!");
	strcpy(store[ID_USER], "<user>");
	types[ID_IM_START] = types[ID_END] = DJN_TOKT_CONTROL;
	types[ID_END_BANG] = types[ID_USER] = DJN_TOKT_USER_DEFINED;
	for (int i = 0; i < N_TINY; i++)
		lens[i] = (uint32_t)strlen(store[i]);
	for (size_t m = 0; m < N_MERGES; m++) {
		char a[64], b[64];

		snprintf(mstore[m], sizeof(mstore[m]), "%s %s", spell(merges_raw[m][0], a),
			 spell(merges_raw[m][1], b));
		merges[m] = mstore[m];
		mlens[m] = (uint32_t)strlen(mstore[m]);
	}
	tok = djn_tok_new_bpe(N_TINY, pieces, lens, types, (int)N_MERGES, merges,
			      (pre && !strcmp(pre, "smollm")) ? NULL : mlens, -1, ID_END, pre, &err);
	cr_assert_not_null(tok, "%s", err.msg);
	return tok;
}

Test(tokenizer, bpe_encodes_tiny_vocabulary)
{
	struct djn_tokenizer *tok = tiny_bpe(NULL);
	static const int32_t hello_world[] = { ID_HELLO, ID_WORLD };
	static const int32_t hello_eos[] = { ID_HELLO, ID_WORLD, ID_END };
	/* "b c" ranks before "a b": abc -> a bc */
	static const int32_t abc[] = { 'a', ID_BC };
	/* "lll": "l l" merges the leftmost pair first */
	static const int32_t lll[] = { 256 + 1, 'l' };
	/* gpt2 keeps " 123" one pre-token: " " "12" "3" */
	static const int32_t num[] = { ' ', ID_12, '3' };
	/* "world" has no leading space: "or" and "ld" but no " wor" */
	static const int32_t poss[] = { 'w', 256 + 5, 256 + 7, ID_S };

	cr_assert_eq(djn_tok_kind(tok), DJN_TOK_BPE);
	cr_assert_not(djn_tok_add_bos(tok));
	cr_assert_eq(djn_tok_bos(tok), -1);
	assert_ids(tok, "Hello world", 11, true, false, hello_world, 2);
	assert_ids(tok, "Hello world", 11, false, true, hello_eos, 3);
	assert_ids(tok, "abc", 3, false, false, abc, 2);
	assert_ids(tok, "lll", 3, false, false, lll, 2);
	assert_ids(tok, " 123", 4, false, false, num, 3);
	assert_ids(tok, "world's", 7, false, false, poss, 4);
	djn_tok_free(tok);
}

Test(tokenizer, bpe_smollm_splits_digits)
{
	struct djn_tokenizer *tok = tiny_bpe("smollm");
	static const int32_t num[] = { ' ', '1', '2', '3' };

	assert_ids(tok, " 123", 4, false, false, num, 4);
	djn_tok_free(tok);
}

Test(tokenizer, bpe_special_tokens_match_literally)
{
	struct djn_tokenizer *tok = tiny_bpe(NULL);
	static const int32_t chat[] = { ID_IM_START, 'u', 's', 'e', 'r', '\n', ID_HELLO };
	/* the longest special wins: "<|end|>!" over "<|end|>" */
	static const int32_t ends[] = { ID_END_BANG, ID_END, ID_USER, ID_END };
	/* a special cut out of a word splits it: "He" <user> "ll" "o" */
	static const int32_t split[] = { 256 + 0, ID_USER, 256 + 1, 'o' };

	assert_ids(tok, "<|im_start|>user\nHello", 22, false, false, chat, 7);
	assert_ids(tok, "<|end|>!<|end|><user><|end|>", 28, false, false, ends, 4);
	assert_ids(tok, "He<user>llo", 11, false, false, split, 4);
	djn_tok_free(tok);
}

Test(tokenizer, bpe_decodes_bytes_and_specials)
{
	struct djn_tokenizer *tok = tiny_bpe(NULL);
	size_t len;
	const char *s;

	s = djn_tok_decode(tok, -1, ID_WORLD, &len);
	cr_assert(len == 6 && !memcmp(s, " world", 6));
	s = djn_tok_decode(tok, -1, '\n', &len);
	cr_assert(len == 1 && s[0] == '\n');
	s = djn_tok_decode(tok, -1, 0, &len);
	cr_assert(len == 1 && s[0] == '\0');
	s = djn_tok_decode(tok, -1, 0xff, &len);
	cr_assert(len == 1 && (uint8_t)s[0] == 0xff);
	djn_tok_decode(tok, -1, ID_IM_START, &len); /* CONTROL: nothing */
	cr_assert_eq(len, 0);
	s = djn_tok_decode(tok, -1, ID_USER, &len); /* USER_DEFINED: its text */
	cr_assert(len == 6 && !memcmp(s, "<user>", 6));
	s = djn_tok_piece(tok, ID_WORLD, &len);
	cr_assert(len == 7 && !memcmp(s, "\xc4\xa0world", 7));
	djn_tok_free(tok);
}

Test(tokenizer, bpe_round_trips)
{
	static const char *const texts[] = {
		"Hello world", "  spaced  out  ", "café naïve é", "日本語", "🙂👍🏽", "a\tb\r\nc",
		"\xff\xfe\x80 bad utf-8 \xc3", "123 4567 89", "He said: \"it's 3.14!\"",
	};
	struct djn_tokenizer *tok = tiny_bpe("smollm");

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		assert_round_trip(tok, texts[i], strlen(texts[i]));
	{
		char all[256];

		for (int b = 0; b < 256; b++)
			all[b] = (char)b;
		assert_round_trip(tok, all, sizeof(all));
	}
	djn_tok_free(tok);
}

struct pieces {
	char s[16][32];
	int n;
};

static enum djn_status collect(void *ctx, const char *s, size_t len)
{
	struct pieces *p = ctx;

	cr_assert_lt(p->n, 16);
	cr_assert_lt(len, 32);
	memcpy(p->s[p->n], s, len);
	p->s[p->n++][len] = '\0';
	return DJN_OK;
}

static void assert_split(enum djn_tok_pre pre, const char *text, const char *const *want, int n)
{
	struct pieces p = { .n = 0 };

	cr_assert_eq(djn_tok_bpe_pretokenize(pre, text, strlen(text), collect, &p), DJN_OK);
	cr_assert_eq(p.n, n, "'%s': %d pieces, want %d", text, p.n, n);
	for (int i = 0; i < n; i++)
		cr_assert_str_eq(p.s[i], want[i], "'%s': piece %d", text, i);
}

/* Splits as Python's `regex` gives them for GPT-2's pattern. */
Test(tokenizer, bpe_pretokenizer_splits)
{
	static const char *const hello[] = { "Hello", " world", "'s", " 123", "!" };
	static const char *const hello_smol[] = { "Hello", " world", "'s", " ", "1", "2", "3", "!" };
	static const char *const spaces[] = { "a", " ", " b", "\n", "\n", "c", "   " };
	static const char *const mixed[] = { " x", "2", " 3", ".", "14", " ¡", "olé", "!",
					     " 日本語", "🙂", " " };
	static const char *const caps[] = { "I", "'", "M", " you", "'ll" };
	/* \p{N} beyond ASCII, a combining mark breaking a word, NBSP as \s */
	static const char *const uni[] = { " ½²", " e", "\xcc\x81", "t", "\xc2\xa0", "Ωμέγα", " ٣" };

	assert_split(DJN_TOK_PRE_GPT2, "Hello world's 123!", hello, 5);
	assert_split(DJN_TOK_PRE_SMOLLM, "Hello world's 123!", hello_smol, 8);
	assert_split(DJN_TOK_PRE_GPT2, "a  b\n\nc   ", spaces, 7);
	assert_split(DJN_TOK_PRE_GPT2, " x2 3.14 ¡olé! 日本語🙂 ", mixed, 11);
	assert_split(DJN_TOK_PRE_GPT2, "I'M you'll", caps, 5);
	assert_split(DJN_TOK_PRE_GPT2, " ½² e\xcc\x81t\xc2\xa0Ωμέγα ٣", uni, 7);
}

Test(tokenizer, bpe_bad_arguments)
{
	const char *pieces[] = { "a", "b", "ab" };
	const uint32_t lens[] = { 1, 1, 2 };
	const char *bad_merge[] = { "ab" };
	const char *unknown_merge[] = { "a z", "a b" };
	static const int32_t ab[] = { 2 };
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok;
	int32_t *ids;
	int n;

	cr_assert_null(djn_tok_new_bpe(0, pieces, lens, NULL, 0, NULL, NULL, -1, -1, NULL, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_new_bpe(3, pieces, lens, NULL, 1, bad_merge, NULL, -1, -1, NULL, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_not_null(strstr(err.msg, "merge 0 'ab'"), "%s", err.msg);
	cr_assert_null(djn_tok_new_bpe(3, pieces, lens, NULL, 0, NULL, NULL, -1, -1, "llama3", &err));
	cr_assert_eq(err.code, DJN_ERR_UNSUPPORTED);
	cr_assert_not_null(strstr(err.msg, "'llama3'"), "%s", err.msg);
	cr_assert_null(djn_tok_new_bpe(3, pieces, lens, NULL, -1, NULL, NULL, -1, -1, NULL, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	cr_assert_null(djn_tok_new_bpe(3, pieces, lens, NULL, 0, NULL, NULL, 5, -1, NULL, &err));
	cr_assert_eq(err.code, DJN_ERR_INVALID);
	/* a merge naming an unknown piece is skipped; the rest still apply */
	tok = djn_tok_new_bpe(3, pieces, lens, NULL, 2, unknown_merge, NULL, -1, -1, "gpt2", &err);
	cr_assert_not_null(tok, "%s", err.msg);
	assert_ids(tok, "ab", 2, false, false, ab, 1);
	/* a byte with no piece and no unknown token */
	cr_assert_eq(djn_tok_encode(tok, "abc", 3, false, false, &ids, &n, &err), DJN_ERR_INVALID);
	cr_assert_null(ids);
	cr_assert_not_null(strstr(err.msg, "byte 0x63 at offset 2"), "%s", err.msg);
	djn_tok_free(tok);
	djn_tok_free(NULL);
}

/* A few KB of text encode well under a millisecond each (generous bound:
 * sanitizer builds are slower). */
Test(tokenizer, encode_is_fast)
{
	struct djn_tokenizer *spm = load_tok512(), *bpe = tiny_bpe("smollm");
	static const char unit[] = "Once upon a time, there was a little girl named Lily. 123! ";
	char text[4096 + sizeof(unit)];
	struct djn_err err = { 0 };
	struct timespec a, b;
	size_t len = 0;
	double ms;

	while (len + sizeof(unit) - 1 < 4096) {
		memcpy(text + len, unit, sizeof(unit) - 1);
		len += sizeof(unit) - 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int r = 0; r < 10; r++) {
		int32_t *ids;
		int n;

		cr_assert_eq(djn_tok_encode(spm, text, len, true, false, &ids, &n, &err), 0);
		free(ids);
		cr_assert_eq(djn_tok_encode(bpe, text, len, false, false, &ids, &n, &err), 0);
		free(ids);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = ((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6) / 20;
	cr_assert_lt(ms, 20.0, "%.3f ms per 4 KB encode", ms);
	djn_tok_free(spm);
	djn_tok_free(bpe);
}

/* --- tokenizer.json ----------------------------------------------------------------------- */

static char *write_json(const char *pre_tokenizer, const char *model_type)
{
	size_t cap = 1 << 16, n = 0;
	char *j = malloc(cap), *path;

	cr_assert_not_null(j);
	n += (size_t)snprintf(j + n, cap - n,
			      "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":%d,\"content\":"
			      "\"<|endoftext|>\",\"special\":true},{\"id\":%d,\"content\":\"<me>\","
			      "\"special\":false}],\"normalizer\":null,\"pre_tokenizer\":%s,"
			      "\"model\":{\"type\":\"%s\",\"vocab\":{",
			      256 + (int)N_WORDS, 256 + (int)N_WORDS + 1, pre_tokenizer, model_type);
	for (int i = 0; i < 256 + (int)N_WORDS; i++) {
		char sp[64], esc[128], raw[2] = { (char)i, 0 };
		size_t k = 0;

		if (i < 256)
			spell(i ? raw : "", sp);
		else
			spell(words[i - 256], sp);
		if (i == 0)
			strcpy(sp, "\xc4\x80");
		for (char *c = sp; *c; c++) { /* the only specials in byte-level text */
			if (*c == '"' || *c == '\\')
				esc[k++] = '\\';
			esc[k++] = *c;
		}
		esc[k] = '\0';
		n += (size_t)snprintf(j + n, cap - n, "%s\"%s\":%d", i ? "," : "", esc, i);
	}
	n += (size_t)snprintf(j + n, cap - n, "},\"merges\":[");
	for (size_t m = 0; m < N_MERGES; m++) {
		char a[64], b[64];

		spell(merges_raw[m][0], a);
		spell(merges_raw[m][1], b);
		/* both spellings of a merge, alternately */
		if (m % 2)
			n += (size_t)snprintf(j + n, cap - n, "%s[\"%s\",\"%s\"]", m ? "," : "", a, b);
		else
			n += (size_t)snprintf(j + n, cap - n, "%s\"%s %s\"", m ? "," : "", a, b);
	}
	n += (size_t)snprintf(j + n, cap - n, "]}}");
	cr_assert_lt(n, cap);
	path = write_temp(j, n);
	free(j);
	return path;
}

static const char digits_bytelevel[] =
	"{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
	"{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}";

Test(tokenizer, hf_json_loads_bpe)
{
	char *path = write_json(digits_bytelevel, "BPE");
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok = djn_tok_load_hf_json(path, &err);
	static const int32_t ids[] = { ID_HELLO, ID_WORLD, 256 + (int)N_WORDS + 1, ' ', '1', '2',
				       256 + (int)N_WORDS };
	size_t len;

	cr_assert_not_null(tok, "%s", err.msg);
	cr_assert_eq(djn_tok_kind(tok), DJN_TOK_BPE);
	cr_assert_eq(djn_tok_n_vocab(tok), 256 + (int)N_WORDS + 2);
	cr_assert_eq(djn_tok_eos(tok), 256 + (int)N_WORDS);
	cr_assert_not(djn_tok_add_bos(tok));
	/* digits split (smollm), added tokens matched literally */
	assert_ids(tok, "Hello world<me> 12<|endoftext|>", 31, false, false, ids, 7);
	djn_tok_decode(tok, -1, 256 + (int)N_WORDS, &len);
	cr_assert_eq(len, 0);
	cr_assert(!memcmp(djn_tok_decode(tok, -1, 256 + (int)N_WORDS + 1, &len), "<me>", 4));
	djn_tok_free(tok);
	unlink(path);
	free(path);
}

Test(tokenizer, hf_json_plain_bytelevel_is_gpt2)
{
	char *path = write_json("{\"type\":\"ByteLevel\",\"add_prefix_space\":false}", "BPE");
	struct djn_err err = { 0 };
	struct djn_tokenizer *tok = djn_tok_load_hf_json(path, &err);
	static const int32_t num[] = { ' ', ID_12, '3' };

	cr_assert_not_null(tok, "%s", err.msg);
	assert_ids(tok, " 123", 4, false, false, num, 3);
	djn_tok_free(tok);
	unlink(path);
	free(path);
}

static void assert_json_fails(const char *path, enum djn_status code, const char *what)
{
	struct djn_err err = { 0 };

	cr_assert_null(djn_tok_load_hf_json(path, &err));
	cr_assert_eq(err.code, code, "code %d, want %d: %s", err.code, code, err.msg);
	cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, what), "message lacks '%s': %s", what, err.msg);
}

Test(tokenizer, hf_json_bad_files)
{
	static const struct {
		const char *json, *what;
		enum djn_status code;
	} cases[] = {
		{ "{\"model\": {\"type\": \"BPE\", ", "not valid JSON", DJN_ERR_FORMAT },
		{ "[]", "no 'model' object", DJN_ERR_FORMAT },
		{ "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model type 'Unigram'", DJN_ERR_UNSUPPORTED },
		{ "{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{}}}",
		  "pre_tokenizer 'Metaspace'", DJN_ERR_UNSUPPORTED },
		{ "{\"pre_tokenizer\":null,\"model\":{\"vocab\":{\"a\":0}}}", "no pre_tokenizer",
		  DJN_ERR_UNSUPPORTED },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true},\"model\":{\"vocab\":{\"a\":0}}}",
		  "add_prefix_space", DJN_ERR_UNSUPPORTED },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{}}}", "vocab is empty",
		  DJN_ERR_FORMAT },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":-1}}}",
		  "model.vocab['a'] is not an id", DJN_ERR_FORMAT },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":0,\"b\":0}}}",
		  "id 0 is both 'a' and 'b'", DJN_ERR_FORMAT },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}",
		  "model.merges[0]", DJN_ERR_FORMAT },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":0,\"b\":9999}}}",
		  "id 9999 of 'b' is far beyond the 2 tokens listed", DJN_ERR_FORMAT },
		{ "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"added_tokens\":[{\"id\":0,\"content\":\"x\"}],"
		  "\"model\":{\"vocab\":{\"a\":0}}}", "id 0 is both 'a' and 'x'", DJN_ERR_FORMAT },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_temp(cases[i].json, strlen(cases[i].json));

		assert_json_fails(path, cases[i].code, cases[i].what);
		unlink(path);
		free(path);
	}
	assert_json_fails("/nonexistent/tokenizer.json", DJN_ERR_IO, "cannot open");
}
