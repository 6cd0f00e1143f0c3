/* backend_cuda.h - the CUDA backend's constructor, with a stub when built
 * without CUDA (the only place DJN_HAVE_CUDA is tested outside src/backend/cuda). */
#ifndef DJINN_BACKEND_CUDA_H
#define DJINN_BACKEND_CUDA_H

#include <stdbool.h>

#include "djinn/status.h"

struct djn_backend;

#if DJN_HAVE_CUDA
/* Number of usable CUDA devices; 0 when there is no GPU or no driver. */
int djn_cuda_device_count(void);
/* Backend on device `dev`; NULL with *err set ("no CUDA device", OOM, ...). */
struct djn_backend *djn_backend_cuda_new(int dev, struct djn_err *err);
#else
static inline int djn_cuda_device_count(void)
{
	return 0;
}

static inline struct djn_backend *djn_backend_cuda_new(int dev, struct djn_err *err)
{
	(void)dev;
	djn_err_set(err, DJN_ERR_UNSUPPORTED,
		    "cuda: this djinn was built without CUDA (make CUDA=0)");
	return NULL;
}
#endif

#endif
