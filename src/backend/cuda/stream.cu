/* stream.cu - the CUDA backend's copy stream, events, pinned host memory and
 * async copies: what the ring buffer and the KV swap run on.
 *
 * Two streams (cuda.cuh): ctx->compute runs every op, ctx->copy the weight
 * prefetches and KV swaps.  Only events order one against the other, so a
 * copy overlaps the kernels before it and the host never waits here except
 * in event_sync. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/cuda/cuda.cuh"

static cudaStream_t stream_of(struct djn_backend *be, int id)
{
	return id == DJN_STREAM_COPY ? cuda_ctx(be)->copy : cuda_ctx(be)->compute;
}

static cudaEvent_t ev_of(struct djn_event *ev)
{
	return (cudaEvent_t)(void *)ev;
}

/* "unlimited", "64 KiB", ... */
static void memlock_limit(char *buf, size_t n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		snprintf(buf, n, "unknown");
	else if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(buf, n, "unlimited");
	else
		snprintf(buf, n, "%llu KiB", (unsigned long long)rl.rlim_cur / 1024);
}

extern "C" void *cuda_host_alloc(struct djn_backend *be, size_t bytes, bool *pinned)
{
	static bool warned; /* once per process: the reason does not change */
	void *p = NULL;
	cudaError_t e;
	char lim[32];

	*pinned = false;
	if (cuda_enter(be, "host_alloc") != DJN_OK)
		return NULL;
	/* portable: pinned for every device, so a model can move between them */
	e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
	if (e == cudaSuccess) {
		*pinned = true;
		return p;
	}
	(void)cudaGetLastError(); /* an allocation failure is not sticky */
	memlock_limit(lim, sizeof(lim));
	djn_err_set(&be->err, DJN_ERR_NOMEM,
		    "cannot pin %zu bytes of host memory (%s; locked-memory limit %s): using "
		    "pageable memory, host-to-device copies are staged and slower",
		    bytes, cudaGetErrorString(e), lim);
	if (!warned) {
		fprintf(stderr, "warning: cuda: %s\n", be->err.msg);
		warned = true;
	}
	if (posix_memalign(&p, 4096, bytes ? bytes : 1) != 0) {
		djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot allocate %zu bytes of host memory",
			    bytes);
		return NULL;
	}
	return p;
}

extern "C" void cuda_host_free(struct djn_backend *be, void *p, bool pinned)
{
	if (!p)
		return;
	if (!pinned) {
		free(p);
		return;
	}
	cudaSetDevice(cuda_ctx(be)->dev);
	/* cudaFreeHost waits for the device, so a copy reading p has finished */
	if (cudaFreeHost(p) != cudaSuccess)
		(void)cudaGetLastError();
}

extern "C" enum djn_status cuda_host_register(struct djn_backend *be, void *p, size_t bytes)
{
	cudaError_t e;
	char lim[32];

	if (cuda_enter(be, "host_register") != DJN_OK)
		return be->err.code;
	e = cudaHostRegister(p, bytes, cudaHostRegisterPortable);
	if (e == cudaSuccess)
		return DJN_OK;
	(void)cudaGetLastError(); /* not sticky: the memory stays pageable */
	memlock_limit(lim, sizeof(lim));
	return djn_err_set(&be->err, DJN_ERR_NOMEM,
			   "cannot pin %zu bytes of host memory (%s; locked-memory limit %s)", bytes,
			   cudaGetErrorString(e), lim);
}

extern "C" void cuda_host_unregister(struct djn_backend *be, void *p)
{
	if (!p)
		return;
	cudaSetDevice(cuda_ctx(be)->dev);
	if (cudaHostUnregister(p) != cudaSuccess)
		(void)cudaGetLastError();
}

extern "C" struct djn_event *cuda_event_new(struct djn_backend *be)
{
	cudaEvent_t ev = NULL;
	cudaError_t e;

	if (cuda_enter(be, "event_new") != DJN_OK)
		return NULL;
	/* no timing: a timing event costs a little on every record */
	e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
	if (e != cudaSuccess) {
		cuda_fail(be, e, "event_new", "cudaEventCreateWithFlags", __FILE__, __LINE__);
		return NULL;
	}
	return (struct djn_event *)(void *)ev;
}

extern "C" void cuda_event_free(struct djn_backend *be, struct djn_event *ev)
{
	if (!ev || be->poisoned)
		return;
	cudaSetDevice(cuda_ctx(be)->dev);
	if (cudaEventDestroy(ev_of(ev)) != cudaSuccess)
		(void)cudaGetLastError();
}

extern "C" enum djn_status cuda_event_record(struct djn_backend *be, struct djn_event *ev,
					     int stream)
{
	CUDA_OP(be, "event_record");
	CK(be, cudaEventRecord(ev_of(ev), stream_of(be, stream)));
	return DJN_OK;
}

extern "C" enum djn_status cuda_event_wait(struct djn_backend *be, int stream,
					   struct djn_event *ev)
{
	CUDA_OP(be, "event_wait");
	CK(be, cudaStreamWaitEvent(stream_of(be, stream), ev_of(ev), 0));
	return DJN_OK;
}

extern "C" enum djn_status cuda_event_sync(struct djn_backend *be, struct djn_event *ev)
{
	CUDA_OP(be, "event_sync");
	CK(be, cudaEventSynchronize(ev_of(ev)));
	return DJN_OK;
}

extern "C" bool cuda_event_done(struct djn_backend *be, struct djn_event *ev)
{
	if (be->poisoned)
		return true;
	cudaSetDevice(cuda_ctx(be)->dev);
	cudaError_t e = cudaEventQuery(ev_of(ev));
	if (e == cudaErrorNotReady) {
		(void)cudaGetLastError(); /* not sticky, but clear it anyway */
		return false;
	}
	return true; /* done, or an error event_sync reports */
}

extern "C" enum djn_status cuda_copy_h2d_async(struct djn_backend *be, void *dst,
					       const void *src, size_t n, int stream)
{
	CUDA_OP(be, "copy_h2d_async");
	if (n)
		CK(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_of(be, stream)));
	return DJN_OK;
}

extern "C" enum djn_status cuda_copy_d2h_async(struct djn_backend *be, void *dst,
					       const void *src, size_t n, int stream)
{
	CUDA_OP(be, "copy_d2h_async");
	if (n)
		CK(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_of(be, stream)));
	return DJN_OK;
}
