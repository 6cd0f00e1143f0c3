/* fuzz-safetensors.c - libFuzzer target: any byte string, opened as a .safetensors file, must fail cleanly or give tensors inside the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/safetensors.h"

/* djn_st_open takes a path and maps it; a memfd gives it one without
 * touching the disk, and /proc/self/fd names it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct djn_err err = { 0 };
	struct djn_st_file *f;
	size_t done = 0;

	if (fd < 0) {
		fd = memfd_create("fuzz-safetensors", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0)
		return 0;
	while (done < size) {
		ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
		if (n <= 0)
			return 0;
		done += (size_t)n;
	}
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
