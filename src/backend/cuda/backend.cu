/* backend.cu - the CUDA backend: construction, memory, copies, error checks, the vtable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.cuh"

/* Errors after which the context is unusable: every later runtime call
 * returns them again, so the only safe thing is to refuse further work. */
static bool cuda_sticky(cudaError_t e)
{
	switch (e) {
	case cudaErrorIllegalAddress:
	case cudaErrorLaunchFailure:
	case cudaErrorHardwareStackError:
	case cudaErrorIllegalInstruction:
	case cudaErrorMisalignedAddress:
	case cudaErrorInvalidAddressSpace:
	case cudaErrorInvalidPc:
	case cudaErrorAssert:
	case cudaErrorLaunchTimeout:
	case cudaErrorECCUncorrectable:
	case cudaErrorContextIsDestroyed:
	case cudaErrorDevicesUnavailable:
	case cudaErrorUnknown:
		return true;
	default:
		return false;
	}
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* "cudaMemcpyAsync(dst, ...)" -> "cudaMemcpyAsync" */
static void call_name(char *buf, size_t n, const char *call)
{
	size_t len = strcspn(call, "(");

	if (len >= n)
		len = n - 1;
	memcpy(buf, call, len);
	buf[len] = '\0';
}

enum djn_status cuda_fail(struct djn_backend *be, cudaError_t e, const char *op,
			  const char *call, const char *file, int line)
{
	struct cuda_ctx *c = cuda_ctx(be);
	char fn[64];

	call_name(fn, sizeof(fn), call);
	(void)cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
	if (cuda_sticky(e) && !be->poisoned) {
		be->poisoned = true;
		snprintf(c->poison, sizeof(c->poison), "%s: %s, in %s", cudaGetErrorName(e),
			 cudaGetErrorString(e), op);
	}
	return djn_err_set(&be->err, DJN_ERR_DEVICE, "cuda: %s: %s (%s from %s at %s:%d)", op,
			   cudaGetErrorString(e), cudaGetErrorName(e), fn, base_name(file), line);
}

enum djn_status cublas_fail(struct djn_backend *be, cublasStatus_t s, const char *op,
			    const char *call, const char *file, int line)
{
	char fn[64];
	/* A kernel fault inside cuBLAS shows up as EXECUTION_FAILED; the runtime
	 * knows whether the context survived it. */
	cudaError_t e = cudaGetLastError();

	if (e != cudaSuccess && cuda_sticky(e))
		return cuda_fail(be, e, op, call, file, line);
	call_name(fn, sizeof(fn), call);
	return djn_err_set(&be->err, DJN_ERR_DEVICE, "cuda: %s: cublas: %s (%s at %s:%d)", op,
			   cublasGetStatusString(s), fn, base_name(file), line);
}

enum djn_status cuda_enter(struct djn_backend *be, const char *op)
{
	struct cuda_ctx *c = cuda_ctx(be);
	cudaError_t e;

	if (be->poisoned)
		return djn_err_set(&be->err, DJN_ERR_DEVICE,
				   "cuda: device is poisoned by an earlier error (%s)", c->poison);
	e = cudaSetDevice(c->dev);
	if (e != cudaSuccess)
		return cuda_fail(be, e, op, "cudaSetDevice", __FILE__, __LINE__);
	return DJN_OK;
}

/* 1288490188 -> "1.2 GiB"; 85899345920 -> "80 GiB" */
static void fmt_bytes(char *buf, size_t n, size_t b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%zu B", b);
	else if (fabs(v - round(v)) < 0.05)
		snprintf(buf, n, "%.0f %s", v, unit[u]);
	else
		snprintf(buf, n, "%.1f %s", v, unit[u]);
}

static enum djn_status oom(struct djn_backend *be, size_t bytes)
{
	char need[32], fr[32], tot[32];
	size_t free_b = 0, total_b = 0;

	(void)cudaGetLastError(); /* cudaErrorMemoryAllocation is not sticky */
	if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
		(void)cudaGetLastError();
		fmt_bytes(need, sizeof(need), bytes);
		return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot allocate %s", need);
	}
	fmt_bytes(need, sizeof(need), bytes);
	fmt_bytes(fr, sizeof(fr), free_b);
	fmt_bytes(tot, sizeof(tot), total_b);
	return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot allocate %s (%s free of %s)",
			   need, fr, tot);
}

/* Sizes are rounded up to 256 bytes: the GEMV kernels read whole aligned
 * 16-byte words around a row's ends, which must stay inside the allocation. */
static void *device_alloc(struct djn_backend *be, const char *op, size_t bytes)
{
	size_t sz = (bytes + 255) & ~(size_t)255;
	void *p = NULL;
	cudaError_t e;

	if (sz < bytes) { /* wrapped */
		oom(be, bytes);
		return NULL;
	}
	e = cudaMalloc(&p, sz ? sz : 256);
	if (e == cudaErrorMemoryAllocation && (be->n_data_kept || be->n_kept)) {
		/* the KV pages and buffers kept for reuse give way */
		(void)cudaGetLastError();
		djn_backend_trim(be);
		e = cudaMalloc(&p, sz ? sz : 256);
	}
	if (e == cudaErrorMemoryAllocation) {
		oom(be, bytes);
		return NULL;
	}
	if (e != cudaSuccess) {
		cuda_fail(be, e, op, "cudaMalloc", __FILE__, __LINE__);
		return NULL;
	}
	return p;
}

void *cuda_scratch(struct djn_backend *be, enum cuda_scratch_slot slot, size_t bytes)
{
	struct cuda_ctx *c = cuda_ctx(be);
	size_t cap;
	void *p;
	cudaError_t e;

	if (bytes <= c->scratch[slot].cap)
		return c->scratch[slot].p;
	/* grow by half again, so a sequence of growing calls reallocates rarely */
	cap = bytes + bytes / 2;
	if (cuda_state_moves(be, "scratch", "a scratch buffer") != DJN_OK)
		return NULL;
	if (c->scratch[slot].p) {
		/* kernels already queued may still read the old buffer */
		e = cudaStreamSynchronize(c->compute);
		if (e != cudaSuccess) {
			cuda_fail(be, e, "scratch", "cudaStreamSynchronize", __FILE__, __LINE__);
			return NULL;
		}
		cudaFree(c->scratch[slot].p);
		c->scratch[slot].p = NULL;
		c->scratch[slot].cap = 0;
	}
	p = device_alloc(be, "scratch", cap);
	if (!p) {
		/* the slack is a luxury: try again with exactly what is needed */
		p = device_alloc(be, "scratch", bytes);
		if (!p)
			return NULL;
		cap = bytes;
	}
	c->scratch[slot].p = p;
	c->scratch[slot].cap = cap;
	return p;
}

enum djn_status cuda_sync_compute(struct djn_backend *be, const char *op)
{
	struct cuda_ctx *c = cuda_ctx(be);
	volatile struct cuda_flags *f = c->flags;
	const char *const op_name_ = op;

	CK(be, cudaStreamSynchronize(c->compute));
	if (f->bad_id) {
		int id = f->id;
		long long rows = f->n_rows;
		f->bad_id = 0;
		return djn_err_set(&be->err, DJN_ERR_RANGE,
				   "embed: token id %d out of range 0..%lld (found on the device; "
				   "its rows were filled with NaN)",
				   id, rows - 1);
	}
	return DJN_OK;
}

enum djn_status cuda_check_weight(struct djn_backend *be, const char *op,
				  const struct djn_weight *w)
{
	const char *name = w && w->name ? w->name : "?";

	if (!w || (unsigned)w->dtype >= DJN_DTYPE_COUNT)
		return djn_err_set(&be->err, DJN_ERR_INVALID, "%s: weight '%s' has no valid dtype",
				   op, name);
	if (!w->dev)
		return djn_err_set(&be->err, DJN_ERR_STATE,
				   "%s: weight '%s' is not on the device (no dev copy)", op, name);
	if (w->rows < 1 || w->cols < 1 || w->cols % djn_dtype_block(w->dtype))
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "%s: weight '%s' is %lld x %lld, not whole %s blocks", op, name,
				   (long long)w->rows, (long long)w->cols, djn_dtype_name(w->dtype));
	return DJN_OK;
}

/* --- the vtable ------------------------------------------------------------ */

#define CUDA_BLAS_WORKSPACE ((size_t)32 << 20)

static void cuda_free(struct djn_backend *be)
{
	struct cuda_ctx *c;

	if (!be)
		return;
	c = cuda_ctx(be);
	if (c) {
		/* Best effort: a poisoned context fails these calls, and there is
		 * nothing better to do than let the process exit reclaim it. */
		cudaSetDevice(c->dev);
		if (!be->poisoned && c->compute)
			cudaStreamSynchronize(c->compute);
		if (!be->poisoned && c->copy) /* prefetches and swaps in flight */
			cudaStreamSynchronize(c->copy);
		for (int i = 0; i < CUDA_SCRATCH_COUNT; i++)
			if (c->scratch[i].p)
				cudaFree(c->scratch[i].p);
		if (c->rope_freq)
			cudaFree(c->rope_freq);
		free(c->rope_freq_host);
		if (c->step_pos)
			cudaFree(c->step_pos);
		if (c->host_res)
			cudaFreeHost(c->host_res);
		if (c->stat_slots)
			cudaFree(c->stat_slots);
		if (c->stat_slots_host)
			cudaFreeHost(c->stat_slots_host);
		if (c->many_host)
			cudaFreeHost(c->many_host);
		if (c->many_dev)
			cudaFree(c->many_dev);
		if (c->flags)
			cudaFreeHost(c->flags);
		if (c->blas)
			cublasDestroy(c->blas);
		if (c->blas_ws)
			cudaFree(c->blas_ws);
		if (c->copy)
			cudaStreamDestroy(c->copy);
		if (c->compute)
			cudaStreamDestroy(c->compute);
		(void)cudaGetLastError();
		free(c);
	}
	free(be);
}

static void cuda_describe(struct djn_backend *be, char *buf, size_t n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	size_t free_b = 0, total_b = 0;
	char fr[32], tot[32];

	if (be->poisoned) {
		snprintf(buf, n, "cuda:%d %s (poisoned: %s)", c->dev, c->name, c->poison);
		return;
	}
	cudaSetDevice(c->dev);
	if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
		(void)cudaGetLastError();
		snprintf(buf, n, "cuda:%d %s (sm_%d%d, %d SMs)", c->dev, c->name, c->cc_major,
			 c->cc_minor, c->n_sm);
		return;
	}
	fmt_bytes(fr, sizeof(fr), free_b);
	fmt_bytes(tot, sizeof(tot), total_b);
	snprintf(buf, n, "cuda:%d %s (sm_%d%d, %d SMs, %s, %s free)", c->dev, c->name, c->cc_major,
		 c->cc_minor, c->n_sm, tot, fr);
}

static enum djn_status cuda_mem_info(struct djn_backend *be, size_t *free_b, size_t *total_b)
{
	CUDA_OP(be, "mem_info");
	CK(be, cudaMemGetInfo(free_b, total_b));
	return DJN_OK;
}

static void *cuda_alloc(struct djn_backend *be, size_t bytes)
{
	if (cuda_enter(be, "alloc") != DJN_OK)
		return NULL;
	return device_alloc(be, "alloc", bytes);
}

static void cuda_dealloc(struct djn_backend *be, void *p)
{
	cudaError_t e;

	if (!p || be->poisoned)
		return;
	cudaSetDevice(cuda_ctx(be)->dev);
	/* cudaFree waits for the device, so queued work that reads p is done */
	e = cudaFree(p);
	if (e != cudaSuccess)
		cuda_fail(be, e, "dealloc", "cudaFree", __FILE__, __LINE__);
}

/* Host-to-device waits until the source has been read, so the caller may
 * reuse it (pinned sources would otherwise be read later, asynchronously). */
static enum djn_status cuda_copy_h2d(struct djn_backend *be, void *dst, const void *src, size_t n)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "copy_h2d");
	if (!n)
		return DJN_OK;
	CK(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->compute));
	CK(be, cudaStreamSynchronize(c->compute));
	return DJN_OK;
}

static enum djn_status cuda_copy_d2h(struct djn_backend *be, void *dst, const void *src, size_t n)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "copy_d2h");
	if (n)
		CK(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->compute));
	return cuda_sync_compute(be, op_name_);
}

static enum djn_status cuda_copy_d2d(struct djn_backend *be, void *dst, const void *src, size_t n)
{
	CUDA_OP(be, "copy_d2d");
	if (n)
		CK(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, cuda_ctx(be)->compute));
	return DJN_OK;
}

static enum djn_status cuda_memset0(struct djn_backend *be, void *dst, size_t n)
{
	CUDA_OP(be, "memset0");
	if (n)
		CK(be, cudaMemsetAsync(dst, 0, n, cuda_ctx(be)->compute));
	return DJN_OK;
}

static enum djn_status cuda_sync(struct djn_backend *be)
{
	CUDA_OP(be, "sync");
	return cuda_sync_compute(be, op_name_);
}

static const struct djn_backend_i cuda_i = {
	.name = "cuda",
	.free = cuda_free,
	.describe = cuda_describe,
	.mem_info = cuda_mem_info,
	.alloc = cuda_alloc,
	.dealloc = cuda_dealloc,
	.copy_h2d = cuda_copy_h2d,
	.copy_d2h = cuda_copy_d2h,
	.copy_d2d = cuda_copy_d2d,
	.memset0 = cuda_memset0,
	.copy_pages = cuda_copy_pages,
	.sync = cuda_sync,
	.embed = cuda_embed,
	.rmsnorm = cuda_rmsnorm,
	.layernorm = cuda_layernorm,
	.matmul = cuda_matmul,
	.matmul_group = cuda_matmul_group,
	.matmul_add = cuda_matmul_add,
	.rope = cuda_rope,
	.kv_store = cuda_kv_store,
	.attention = cuda_attention,
	.rope_rows = cuda_rope_rows,
	.kv_store_rows = cuda_kv_store_rows,
	.attention_rows = cuda_attention_rows,
	.argmax_rows = cuda_argmax_rows,
	.rope_store_rows = cuda_rope_store_rows,
	.rmsnorm_f16 = cuda_rmsnorm_f16,
	.swiglu_f16 = cuda_swiglu_f16,
	.matmul_f16 = cuda_matmul_f16,
	.swiglu = cuda_swiglu,
	.gelu = cuda_gelu,
	.add = cuda_add,
	.axpby = cuda_axpby,
	.softmax = cuda_softmax,
	.argmax = cuda_argmax,
	.stats = cuda_stats,
	.stats_defer = cuda_stats_defer,
	.stats_collect = cuda_stats_collect,
	.stats_defer_many = cuda_stats_defer_many,
	.host_alloc = cuda_host_alloc,
	.host_free = cuda_host_free,
	.host_register = cuda_host_register,
	.host_unregister = cuda_host_unregister,
	.event_new = cuda_event_new,
	.event_free = cuda_event_free,
	.event_record = cuda_event_record,
	.event_wait = cuda_event_wait,
	.event_sync = cuda_event_sync,
	.event_done = cuda_event_done,
	.copy_h2d_async = cuda_copy_h2d_async,
	.copy_d2h_async = cuda_copy_d2h_async,
	.graph_begin = cuda_graph_begin,
	.graph_end = cuda_graph_end,
	.graph_launch = cuda_graph_launch,
	.graph_free = cuda_graph_free,
};

extern "C" int djn_cuda_device_count(void)
{
	int n = 0;

	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return n;
}

/* Has this build code for the device?  (-gencode embeds one architecture.) */
__global__ void probe_kernel(void)
{
}

/* Constructor failures before the backend exists report into *err. */
#define NEW_CK(call)                                                          \
	do {                                                                  \
		cudaError_t e_ = (call);                                      \
		if (e_ != cudaSuccess) {                                      \
			djn_err_set(err, DJN_ERR_DEVICE, "cuda:%d: %s (%s from %s)", dev, \
				    cudaGetErrorString(e_), cudaGetErrorName(e_), #call); \
			(void)cudaGetLastError();                             \
			goto out_free;                                        \
		}                                                             \
	} while (0)

extern "C" struct djn_backend *djn_backend_cuda_new(int dev, struct djn_err *err)
{
	struct djn_backend *be;
	struct cuda_ctx *c;
	struct cudaDeviceProp prop;
	cublasStatus_t bs;
	int n = djn_cuda_device_count();

	if (n == 0) {
		djn_err_set(err, DJN_ERR_DEVICE, "cuda: no CUDA device (no GPU or no driver)");
		return NULL;
	}
	if (dev < 0 || dev >= n) {
		djn_err_set(err, DJN_ERR_DEVICE, "cuda: no device %d (%d present)", dev, n);
		return NULL;
	}
	be = (struct djn_backend *)djn_xcalloc(1, sizeof(*be));
	c = (struct cuda_ctx *)djn_xcalloc(1, sizeof(*c));
	be->i = &cuda_i;
	be->ctx = c;
	be->host_memory = false;
	c->dev = dev;

	NEW_CK(cudaSetDevice(dev));
	NEW_CK(cudaGetDeviceProperties(&prop, dev));
	snprintf(c->name, sizeof(c->name), "%s", prop.name);
	c->cc_major = prop.major;
	c->cc_minor = prop.minor;
	c->n_sm = prop.multiProcessorCount;
	c->smem_optin = prop.sharedMemPerBlockOptin;
	{
		/* DJINN_PDL=0: plain launches, for comparing the two */
		const char *pdl = getenv("DJINN_PDL");
		c->pdl = prop.major >= 9 && !(pdl && !strcmp(pdl, "0"));
	}
	/* DJN_SKINNY=1: the batch-invariant mode: matmul_f16, and matmul of an
	 * f16 weight, at 1 to 64 rows give each row the bits it has in a batch
	 * of one (skinny.cuh), where cuBLAS's order depends on the batch;
	 * attention_rows splits a row's keys by its own length alone
	 * (batch.cu); the scheduler runs a batch of one through the batch path
	 * too (sched.c) */
	c->skinny = cuda_env_on("DJN_SKINNY");
	be->invariant_rows = c->skinny ? 64 : 0; /* skinny.cuh's SKINNY_MAX_M */
	if (prop.major < 7) {
		djn_err_set(err, DJN_ERR_UNSUPPORTED,
			    "cuda:%d: %s is compute capability %d.%d; djinn needs 7.0 or newer", dev,
			    prop.name, prop.major, prop.minor);
		goto out_free;
	}
	{
		struct cudaFuncAttributes fa;
		cudaError_t e = cudaFuncGetAttributes(&fa, probe_kernel);
		if (e != cudaSuccess) {
			(void)cudaGetLastError();
			djn_err_set(err, DJN_ERR_UNSUPPORTED,
				    "cuda:%d: %s (sm_%d%d) has no code in this build (%s); rebuild "
				    "with make CUDA_ARCH=-gencode=arch=compute_%d%d,code=sm_%d%d",
				    dev, prop.name, prop.major, prop.minor, cudaGetErrorString(e),
				    prop.major, prop.minor, prop.major, prop.minor);
			goto out_free;
		}
	}
	NEW_CK(cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking));
	NEW_CK(cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
	NEW_CK(cudaMallocHost(&c->host_res, 4096));
	NEW_CK(cudaHostAlloc((void **)&c->flags, sizeof(*c->flags), cudaHostAllocMapped));
	memset(c->flags, 0, sizeof(*c->flags));
	NEW_CK(cudaHostGetDevicePointer((void **)&c->flags_dev, c->flags, 0));

	bs = cublasCreate(&c->blas);
	if (bs != CUBLAS_STATUS_SUCCESS) {
		c->blas = NULL;
		djn_err_set(err, DJN_ERR_DEVICE, "cuda:%d: cublasCreate: %s", dev,
			    cublasGetStatusString(bs));
		goto out_free;
	}
	/* f32 GEMMs must stay f32 (no TF32), to meet the CPU reference */
	bs = cublasSetStream(c->blas, c->compute);
	if (bs == CUBLAS_STATUS_SUCCESS)
		bs = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
	if (bs != CUBLAS_STATUS_SUCCESS) {
		djn_err_set(err, DJN_ERR_DEVICE, "cuda:%d: cublas setup: %s", dev,
			    cublasGetStatusString(bs));
		goto out_free;
	}
	/* A workspace of our own, set after the stream (cublasSetStream resets
	 * it): with cuBLAS's default pool a GEMM captured into a graph
	 * allocates its workspace inside the recording, and may pick another
	 * algorithm than it does op by op.  32 MiB is what NVIDIA advises for
	 * Hopper and more than other GPUs use. */
	NEW_CK(cudaMalloc(&c->blas_ws, CUDA_BLAS_WORKSPACE));
	bs = cublasSetWorkspace(c->blas, c->blas_ws, CUDA_BLAS_WORKSPACE);
	if (bs != CUBLAS_STATUS_SUCCESS) {
		djn_err_set(err, DJN_ERR_DEVICE, "cuda:%d: cublasSetWorkspace: %s", dev,
			    cublasGetStatusString(bs));
		goto out_free;
	}
	return be;

out_free:
	cuda_free(be);
	return NULL;
}
