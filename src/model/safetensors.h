/* safetensors.h - one .safetensors file, mapped and validated (internal to src/model).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus
 * an optional "__metadata__" object), then the data, which starts at byte
 * 8 + N; offsets are relative to it.
 *
 * djn_st_open checks the whole header before returning: every entry is an
 * object with a dtype we compute in (F32, F16, BF16), a shape of at most 4
 * non-negative dimensions, offsets inside the data whose length matches the
 * shape, no two tensors overlapping, no name twice.  After that every
 * tensor's bytes may be read without further checks.
 */
#ifndef DJINN_MODEL_SAFETENSORS_H
#define DJINN_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "djinn/status.h"
#include "djinn/tensor.h"

#define DJN_ST_MAX_RANK 4
#define DJN_ST_MAX_HEADER (100u << 20) /* as the reference implementation */

struct djn_mapping;

struct djn_st_tensor {
	char *name;
	enum djn_dtype dtype; /* F32, F16 or BF16 */
	int rank;             /* 0..DJN_ST_MAX_RANK; rank 0 is a scalar */
	int64_t shape[DJN_ST_MAX_RANK];
	int64_t n_elem;       /* product of shape */
	size_t offset;        /* from the start of the data section */
	size_t n_bytes;
	const void *data;     /* into the file's mapping; alignment not promised */
};

struct djn_st_file {
	struct djn_mapping *map;      /* NULL once taken with djn_st_take_map */
	char *path;
	struct djn_st_tensor *tensors; /* sorted by name */
	int n_tensors;
};

/* Map and validate path.  Returns NULL with *err set: DJN_ERR_IO when the
 * file cannot be read, DJN_ERR_FORMAT for a malformed header ("PATH: tensor
 * 'x' ends at byte 90, data has 64"), DJN_ERR_UNSUPPORTED for a dtype other
 * than F32/F16/BF16.  Free with djn_st_free. */
struct djn_st_file *djn_st_open(const char *path, struct djn_err *err);
/* The tensor named `name`, or NULL.  Borrowed from f. */
const struct djn_st_tensor *djn_st_find(const struct djn_st_file *f, const char *name);
/* Hand the mapping to the caller (e.g. to djn_model_own_map), who must keep
 * it open as long as any tensor's data is used and close it with
 * djn_mapping_close.  djn_st_free then leaves it alone. */
struct djn_mapping *djn_st_take_map(struct djn_st_file *f);
/* Frees f, its tensor table and (unless taken) its mapping.  NULL is fine. */
void djn_st_free(struct djn_st_file *f);

#endif
