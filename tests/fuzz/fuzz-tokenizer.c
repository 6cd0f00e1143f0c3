/* fuzz-tokenizer.c - libFuzzer target: tokenizer files (tokenizer.bin, tokenizer.json) and text through both tokenizer kinds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "djinn/tokenizer.h"

/* Input layout: byte 0 picks the mode, the rest is its payload.
 *   0: a llama2.c tokenizer.bin; bytes 1-2 give n_vocab (1..1024)
 *   1: text for an in-process SentencePiece vocabulary shaped like tok512
 *   2: text for a byte-level BPE vocabulary, gpt2 pre-tokenizer
 *   3: the same, smollm pre-tokenizer
 *   4: a tokenizer.json */

static char tmp_path[64];

static void remove_tmp(void)
{
	if (tmp_path[0])
		unlink(tmp_path);
}

static const char *write_tmp(const uint8_t *data, size_t size)
{
	FILE *f;

	if (!tmp_path[0]) {
		int fd;

		strcpy(tmp_path, "/tmp/fuzz-tokenizer-XXXXXX");
		fd = mkstemp(tmp_path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(remove_tmp);
	}
	f = fopen(tmp_path, "wb");
	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	return tmp_path;
}

/* Encode, decode every id, and when `round_trip` demand the text back from
 * the tokens between BOS and EOS. */
static void exercise(const struct djn_tokenizer *tok, const char *text, size_t len,
		     bool round_trip)
{
	struct djn_err err;
	int32_t *ids;
	size_t at = 0;
	bool same = true;
	int n, first, last;

	if (djn_tok_encode(tok, text, len, true, true, &ids, &n, &err))
		return;
	first = djn_tok_bos(tok) >= 0;
	last = n - (djn_tok_eos(tok) >= 0);
	for (int i = 0; i < n; i++) {
		size_t l;
		const char *s;

		if (ids[i] < 0 || ids[i] >= djn_tok_n_vocab(tok))
			abort();
		s = djn_tok_decode(tok, i ? ids[i - 1] : -1, ids[i], &l);
		if (i >= first && i < last) {
			if (at + l > len || memcmp(text + at, s, l))
				same = false;
			at += l;
		}
		djn_tok_piece(tok, ids[i], &l);
	}
	if (round_trip && (!same || at != len))
		abort();
	free(ids);
}

/* tok512's shape: <unk> <s> </s>, the 256 byte pieces, then single
 * characters and merged pieces with descending scores. */
static struct djn_tokenizer *spm_vocab(void)
{
	static const char *const extra[] = {
		" ", "e", "t", "a", "o", "h", "n", "s", "l", "d", "i", "r", "u", "y", ".", ",", "\n",
		"O", "T", "L", "é", "日", "本", " t", "he", " a", "th", " the", "nd", " s", "er",
		" T", " The", "ce", "On", "Once", " Once", " up", "on", " upon", " time", "ti", "me",
		"  ", "   ", " é", "日本", "\xe2\x96\x81",
	};
	enum { N_EXTRA = sizeof(extra) / sizeof(extra[0]), N = 3 + 256 + N_EXTRA };
	static char bytes[256][8];
	const char *pieces[N];
	uint32_t lens[N];
	float scores[N];
	struct djn_err err;

	pieces[0] = "<unk>";
	pieces[1] = "\n<s>\n";
	pieces[2] = "\n</s>\n";
	for (int b = 0; b < 256; b++) {
		snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
		pieces[3 + b] = bytes[b];
	}
	for (int i = 0; i < N_EXTRA; i++)
		pieces[3 + 256 + i] = extra[i];
	for (int i = 0; i < N; i++) {
		lens[i] = (uint32_t)strlen(pieces[i]);
		scores[i] = i < 3 + 256 ? 0.0f : (float)-(i % 17); /* ties on purpose */
	}
	return djn_tok_new_spm(N, pieces, lens, scores, NULL, 1, 2, false, &err);
}

/* GPT-2 byte symbols (id = byte), some words, specials. */
static struct djn_tokenizer *bpe_vocab(const char *pre)
{
	/* Ġ is a space, Ċ a newline */
	static const char *const words[] = { "\xc4\xa0t", "he", "\xc4\xa0the", "in",
					     "\xc4\xa0\x61", "12", "\xc4\xa0\xc4\xa0", "'s",
					     "\xc4\x8a\xc4\x8a" };
	static const char *const merges[] = { "\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n",
					      "\xc4\xa0 a", "1 2", "\xc4\xa0 \xc4\xa0", "' s",
					      "\xc4\x8a \xc4\x8a", "x y" };
	enum { N_WORDS = sizeof(words) / sizeof(words[0]), N = 256 + N_WORDS + 3 };
	static char sym[256][4];
	const char *pieces[N];
	uint32_t lens[N];
	int32_t types[N];
	struct djn_err err;

	for (int b = 0, n = 0; b < 256; b++) {
		uint32_t cp = b;

		if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)))
			cp = 256 + (uint32_t)n++;
		if (cp < 0x80) {
			sym[b][0] = (char)cp;
		} else {
			sym[b][0] = (char)(0xc0 | cp >> 6);
			sym[b][1] = (char)(0x80 | (cp & 0x3f));
		}
		pieces[b] = sym[b];
	}
	for (int i = 0; i < N_WORDS; i++)
		pieces[256 + i] = words[i];
	pieces[N - 3] = "<|endoftext|>";
	pieces[N - 2] = "<|im_start|>";
	pieces[N - 1] = "<tool>";
	for (int i = 0; i < N; i++) {
		lens[i] = (uint32_t)strlen(pieces[i]);
		types[i] = DJN_TOKT_NORMAL;
	}
	types[N - 3] = types[N - 2] = DJN_TOKT_CONTROL;
	types[N - 1] = DJN_TOKT_USER_DEFINED;
	return djn_tok_new_bpe(N, pieces, lens, types, sizeof(merges) / sizeof(merges[0]), merges,
			       NULL, -1, N - 3, pre, &err);
}

static bool has_control(const char *s, size_t len)
{
	return memmem(s, len, "<|endoftext|>", 13) || memmem(s, len, "<|im_start|>", 12);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct djn_tokenizer *spm, *gpt2, *smollm;
	static const char sample[] = "Once upon a time, 日本 é 🙂 \xff 123!";
	struct djn_tokenizer *tok;
	struct djn_err err;
	const char *text;
	size_t len;

	if (!spm) {
		spm = spm_vocab();
		gpt2 = bpe_vocab("gpt2");
		smollm = bpe_vocab("smollm");
		if (!spm || !gpt2 || !smollm)
			abort();
	}
	if (size < 1)
		return 0;
	text = (const char *)data + 1;
	len = size - 1;
	switch (data[0] % 5) {
	case 0:
		if (size < 3)
			return 0;
		tok = djn_tok_load_llama2c(write_tmp(data + 3, size - 3),
					   1 + (data[1] | data[2] << 8) % 1024, &err);
		if (tok) {
			exercise(tok, sample, sizeof(sample) - 1, false);
			exercise(tok, "", 0, false);
			djn_tok_free(tok);
		}
		break;
	case 1:
		exercise(spm, text, len, true);
		break;
	case 2:
		exercise(gpt2, text, len, !has_control(text, len));
		break;
	case 3:
		exercise(smollm, text, len, !has_control(text, len));
		break;
	case 4:
		tok = djn_tok_load_hf_json(write_tmp(data + 1, size - 1), &err);
		if (tok) {
			exercise(tok, sample, sizeof(sample) - 1, false);
			djn_tok_free(tok);
		}
		break;
	}
	return 0;
}
