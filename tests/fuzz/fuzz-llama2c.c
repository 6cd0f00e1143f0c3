/* fuzz-llama2c.c - libFuzzer target: any byte string, loaded as a llama2.c
 * checkpoint (.bin, no tokenizer), must fail cleanly (with a message) or
 * load a model whose every weight lies inside the file. */
#include <stddef.h>
#include <stdint.h>

#include "djinn/model.h"
#include "fuzz_file.h"

static void touch(const struct djn_weight *w, volatile uint8_t *sink)
{
	size_t n = djn_weight_bytes(w);

	if (n)
		*sink ^= ((const uint8_t *)w->host)[0] ^ ((const uint8_t *)w->host)[n - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_err err = { 0 };
	struct djn_model *m;
	const char *path = fuzz_file("fuzz-llama2c", data, size);
	volatile uint8_t sink = 0;

	if (!path)
		return 0;
	m = djn_model_load_llama2c(path, NULL, &err);
	if (!m) {
		if (!err.code || !err.msg[0])
			__builtin_trap(); /* a failure must say why */
		return 0;
	}
	/* touch the ends of every weight so a bad pointer shows up here */
	touch(&m->tok_embd, &sink);
	touch(&m->output, &sink);
	touch(&m->final_norm, &sink);
	for (int l = 0; l < m->cfg.n_layer; l++) {
		const struct djn_layer *ly = &m->layers[l];
		touch(&ly->attn_norm, &sink);
		touch(&ly->wq, &sink);
		touch(&ly->wk, &sink);
		touch(&ly->wv, &sink);
		touch(&ly->wo, &sink);
		touch(&ly->mlp_norm, &sink);
		touch(&ly->w_gate, &sink);
		touch(&ly->w_down, &sink);
		touch(&ly->w_up, &sink);
	}
	djn_model_unref(m);
	return 0;
}
