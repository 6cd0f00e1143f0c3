/* fuzz-safetensors.c - libFuzzer target: any byte string, opened as a .safetensors file, must fail cleanly or give tensors inside the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_err err = { 0 };
	struct djn_st_file *f;
	const char *path = fuzz_file("fuzz-safetensors", data, size);

	if (!path)
		return 0;
	f = djn_st_open(path, &err);
	if (!f) {
		if (!err.code || !err.msg[0])
			__builtin_trap(); /* a failure must say why */
		return 0;
	}
	/* touch both ends of every tensor so a bad offset shows up here */
	volatile uint8_t sink = 0;
	for (int i = 0; i < f->n_tensors; i++) {
		const struct djn_st_tensor *t = &f->tensors[i];
		if (djn_st_find(f, t->name) != t)
			__builtin_trap();
		if (t->n_bytes)
			sink ^= ((const uint8_t *)t->data)[0] ^
				((const uint8_t *)t->data)[t->n_bytes - 1];
	}
	(void)sink;
	djn_st_free(f);
	return 0;
}
