/* mapping.h - read-only memory maps of model files (internal to src/model). */
#ifndef DJINN_MODEL_MAPPING_H
#define DJINN_MODEL_MAPPING_H

#include <stddef.h>
#include <stdint.h>

#include "djinn/status.h"

struct djn_mapping {
	const uint8_t *addr;
	size_t size;
	char *path;
};

/* Map a whole file read-only.  An empty file maps to addr NULL, size 0.
 * Returns NULL with *err set ("PATH: cannot open: No such file"). */
struct djn_mapping *djn_mapping_open(const char *path, struct djn_err *err);
void djn_mapping_close(struct djn_mapping *m);

#endif
