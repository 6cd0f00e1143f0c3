/* fuzz-gguf.c - libFuzzer target: any byte string, loaded as a GGUF model, must fail cleanly or load. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "djinn/model.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_err err = { 0 };
	struct djn_model *m;
	const char *path = fuzz_file("fuzz-gguf", data, size);

	if (!path)
		return 0;
	m = djn_model_load_gguf(path, &err);
	if (m) {
		/* touch every weight so a bad pointer shows up here, not later */
		volatile uint8_t sink = 0;
		for (int l = 0; l < m->cfg.n_layer; l++) {
			const struct djn_weight *w = &m->layers[l].w_down;
			size_t n = djn_weight_bytes(w);
			sink ^= ((const uint8_t *)w->host)[0] ^ ((const uint8_t *)w->host)[n - 1];
		}
		sink ^= ((const uint8_t *)m->output.host)[djn_weight_bytes(&m->output) - 1];
		(void)sink;
		djn_model_unref(m);
	}
	return 0;
}
