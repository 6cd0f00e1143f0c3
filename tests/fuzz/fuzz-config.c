/* fuzz-config.c - libFuzzer target: any byte string, parsed as a Hugging Face config.json, must fail cleanly or give a valid config. */
#include <stddef.h>
#include <stdint.h>

#include "model/hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_config c;
	struct djn_err err = { 0 };
	enum djn_status st;

	st = djn_hf_parse_config((const char *)data, size, "config.json", &c, &err);
	if (st) {
		if (st != err.code || !err.msg[0])
			__builtin_trap(); /* a failure must say why */
		return 0;
	}
	/* what the loader relies on after a successful parse */
	if (c.dim <= 0 || c.n_head <= 0 || c.n_kv_head <= 0 || c.head_dim <= 0 ||
	    c.n_head % c.n_kv_head || c.hidden_dim <= 0 || c.n_layer <= 0 ||
	    c.vocab_size <= 0 || c.seq_len <= 0)
		__builtin_trap();
	return 0;
}
