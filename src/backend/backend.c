/* backend.c - choosing a backend from a device spec ("auto", "cpu", "cuda:N"). */
#include <stdlib.h>
#include <string.h>

#include "djinn/backend.h"

struct djn_backend *djn_backend_new(const char *spec, int n_threads, struct djn_err *err)
{
	if (!spec || !strcmp(spec, "auto")) {
		if (djn_cuda_device_count() > 0)
			return djn_backend_cuda_new(0, err);
		return djn_backend_cpu_new(n_threads, err);
	}
	if (!strcmp(spec, "cpu"))
		return djn_backend_cpu_new(n_threads, err);
	if (!strncmp(spec, "cuda", 4) && (spec[4] == '\0' || spec[4] == ':')) {
		char *end = NULL;
		long dev = 0;
		if (spec[4] == ':') {
			dev = strtol(spec + 5, &end, 10);
			if (end == spec + 5 || *end || dev < 0 || dev > 255) {
				djn_err_set(err, DJN_ERR_INVALID,
					    "device '%s': expected cuda:N with N a device number", spec);
				return NULL;
			}
		}
		int n = djn_cuda_device_count();
		if (n == 0) {
			if (!DJN_HAVE_CUDA)
				return djn_backend_cuda_new((int)dev, err);
			djn_err_set(err, DJN_ERR_DEVICE,
				    "device '%s': no CUDA GPU is present (use --device cpu or auto)", spec);
			return NULL;
		}
		if (dev >= n) {
			djn_err_set(err, DJN_ERR_DEVICE, "device '%s': only %d CUDA device%s present",
				    spec, n, n == 1 ? " is" : "s are");
			return NULL;
		}
		return djn_backend_cuda_new((int)dev, err);
	}
	djn_err_set(err, DJN_ERR_INVALID, "device '%s': expected auto, cpu, cuda or cuda:N", spec);
	return NULL;
}

void djn_backend_trim(struct djn_backend *be)
{
	for (int i = 0; i < be->n_data_kept; i++)
		be->i->dealloc(be, be->data_kept[i]);
	be->n_data_kept = 0;
}

void djn_backend_free(struct djn_backend *be)
{
	if (!be)
		return;
	djn_backend_trim(be);
	free(be->data_kept);
	be->data_kept = NULL;
	be->cap_data_kept = 0;
	if (be->release_hook)
		be->release_hook(be);
	be->i->free(be);
}
