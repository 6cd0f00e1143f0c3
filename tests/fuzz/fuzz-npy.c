/* fuzz-npy.c - libFuzzer target for the .npy reader (src/shell/npy.c), which
 * reads the files `steer ... FILE.npy` is given: any byte string either
 * parses into n floats, every one of them readable, or fails with a message
 * and hands nothing out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "shell/shell_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_err err = { 0 };
	float *v = (float *)1;
	int n = -1;
	enum djn_status st = djn_npy_parse(data, size, "fuzz.npy", &v, &n, &err);

	if (st) {
		if (st != err.code || !err.msg[0] || v || n != 0)
			__builtin_trap(); /* a failure says why and hands nothing out */
		return 0;
	}
	if (n <= 0 || !v)
		__builtin_trap();
	volatile float sink = 0;
	for (int i = 0; i < n; i++)
		sink += v[i]; /* every float it said it gave is there */
	(void)sink;
	free(v);
	return 0;
}
