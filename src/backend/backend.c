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

void djn_backend_trim_pages(struct djn_backend *be, struct djn_kept_pages *k)
{
	for (int i = 0; i < k->n; i++)
		be->i->dealloc(be, k->p[i]);
	be->n_data_kept -= k->n;
	k->n = 0;
}

void djn_backend_trim(struct djn_backend *be)
{
	for (int i = 0; i < DJN_PAGE_SIZES; i++)
		djn_backend_trim_pages(be, &be->data_kept[i]);
	for (int i = 0; i < be->n_kept; i++)
		be->i->dealloc(be, be->kept[i].p);
	be->n_kept = 0;
}

void *djn_backend_take(struct djn_backend *be, size_t bytes, size_t max_bytes, size_t *got)
{
	int best = -1;

	for (int i = 0; i < be->n_kept; i++)
		if (be->kept[i].bytes >= bytes && be->kept[i].bytes <= max_bytes &&
		    (best < 0 || be->kept[i].bytes < be->kept[best].bytes))
			best = i;
	if (best < 0) {
		*got = bytes;
		return be->i->alloc(be, bytes);
	}
	void *p = be->kept[best].p;
	*got = be->kept[best].bytes;
	be->n_kept--;
	memmove(&be->kept[best], &be->kept[best + 1],
		(size_t)(be->n_kept - best) * sizeof(be->kept[0]));
	return p;
}

void djn_backend_keep(struct djn_backend *be, void *p, size_t bytes)
{
	if (!p)
		return;
	if (be->poisoned) {
		be->i->dealloc(be, p);
		return;
	}
	if (be->n_kept == DJN_KEPT_MAX) {
		be->i->dealloc(be, be->kept[0].p);
		be->n_kept--;
		memmove(&be->kept[0], &be->kept[1], (size_t)be->n_kept * sizeof(be->kept[0]));
	}
	be->kept[be->n_kept].p = p;
	be->kept[be->n_kept].bytes = bytes;
	be->n_kept++;
}

size_t djn_backend_kept_bytes(const struct djn_backend *be)
{
	size_t n = 0;

	for (int i = 0; i < DJN_PAGE_SIZES; i++)
		n += (size_t)be->data_kept[i].n * be->data_kept[i].page;
	for (int i = 0; i < be->n_kept; i++)
		n += be->kept[i].bytes;
	return n;
}

void djn_backend_free(struct djn_backend *be)
{
	if (!be)
		return;
	djn_backend_trim(be);
	for (int i = 0; i < DJN_PAGE_SIZES; i++) {
		free(be->data_kept[i].p);
		be->data_kept[i] = (struct djn_kept_pages){ 0 };
	}
	if (be->release_hook)
		be->release_hook(be);
	be->i->free(be);
}
