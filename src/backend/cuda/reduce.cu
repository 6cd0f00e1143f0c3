/* reduce.cu - argmax and tensor statistics on the GPU.  Both are two-level
 * reductions (a grid of blocks, then one block over their partials) so that
 * only the final few bytes cross to the host; sums are f64 like the CPU's
 * djn_stats_f32, and ties go to the first index, NaN is never a maximum. */
#include <math.h>
#include <string.h>

#include "backend/cuda/cuda.cuh"

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

/* --- argmax ---------------------------------------------------------------- */

struct amax {
	float v;
	long long i; /* -1: no candidate (empty, or only NaN) */
};

__device__ __forceinline__ struct amax amax_pick(struct amax a, struct amax b)
{
	if (b.i >= 0 && (a.i < 0 || b.v > a.v || (b.v == a.v && b.i < a.i)))
		return b;
	return a;
}

/* Block-wide reduction in shared memory (RED_THREADS threads, power of two);
 * thread 0 ends up with the result. */
template <typename T, typename F>
__device__ __forceinline__ T block_reduce(T v, T *sh, F pick)
{
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] = pick(sh[threadIdx.x], sh[threadIdx.x + s]);
		__syncthreads();
	}
	return sh[0];
}

struct amax_pick_f {
	__device__ struct amax operator()(struct amax a, struct amax b) const
	{
		return amax_pick(a, b);
	}
};

__global__ void __launch_bounds__(RED_THREADS, 4)
argmax_partial_kernel(struct amax *part, const float *__restrict__ x, long long n)
{
	__shared__ struct amax sh[RED_THREADS];
	struct amax best = { 0.0f, -1 };

	/* ascending per thread: a strict > keeps the first of equal values */
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (long long)gridDim.x * blockDim.x) {
		float v = x[i];
		if (!isnan(v) && (best.i < 0 || v > best.v)) {
			best.v = v;
			best.i = i;
		}
	}
	best = block_reduce(best, sh, amax_pick_f());
	if (threadIdx.x == 0)
		part[blockIdx.x] = best;
}

__global__ void __launch_bounds__(RED_THREADS, 4)
argmax_final_kernel(int *result, const struct amax *part, int n_part)
{
	__shared__ struct amax sh[RED_THREADS];
	struct amax best = { 0.0f, -1 };

	for (int b = threadIdx.x; b < n_part; b += blockDim.x)
		best = amax_pick(best, part[b]);
	best = block_reduce(best, sh, amax_pick_f());
	if (threadIdx.x == 0)
		*result = best.i < 0 ? 0 : (int)best.i; /* all NaN: index 0, as the CPU */
}

extern "C" enum djn_status cuda_argmax(struct djn_backend *be, const float *x, int n, int *out)
{
	struct cuda_ctx *c = cuda_ctx(be);
	unsigned blocks = cuda_blocks(n > 0 ? (size_t)n : 1, RED_THREADS * 4, RED_MAX_BLOCKS);
	struct amax *part;
	int *dres;
	enum djn_status st;

	CUDA_OP(be, "argmax");
	if (n <= 0) {
		*out = 0;
		return DJN_OK;
	}
	part = (struct amax *)cuda_scratch(be, CUDA_SCRATCH_RED,
					   sizeof(struct amax) * (RED_MAX_BLOCKS + 1));
	if (!part)
		return be->err.code;
	dres = (int *)(part + RED_MAX_BLOCKS);
	argmax_partial_kernel<<<blocks, RED_THREADS, 0, c->compute>>>(part, x, n);
	CK_LAUNCH(be);
	argmax_final_kernel<<<1, RED_THREADS, 0, c->compute>>>(dres, part, (int)blocks);
	CK_LAUNCH(be);
	CK(be, cudaMemcpyAsync(c->host_res, dres, sizeof(int), cudaMemcpyDeviceToHost,
			       c->compute));
	if ((st = cuda_sync_compute(be, op_name_)) != DJN_OK)
		return st;
	memcpy(out, c->host_res, sizeof(int));
	return DJN_OK;
}

/* --- stats ----------------------------------------------------------------- */

struct spart {
	double sum, sq;
	long long k, n_nan, n_inf;
	long long amax; /* -1: no finite value */
	float mn, mx;
};

__device__ __forceinline__ struct spart spart_empty(void)
{
	struct spart s;

	s.sum = s.sq = 0.0;
	s.k = s.n_nan = s.n_inf = 0;
	s.amax = -1;
	s.mn = INFINITY;
	s.mx = -INFINITY;
	return s;
}

/* One element into a thread's partial: NaN and Inf are counted, not summed. */
__device__ __forceinline__ void spart_add(struct spart &s, float v, long long i)
{
	if (isnan(v)) {
		s.n_nan++;
		return;
	}
	if (isinf(v)) {
		s.n_inf++;
		return;
	}
	s.mn = fminf(s.mn, v);
	if (v > s.mx) {
		s.mx = v;
		s.amax = i;
	}
	s.sum += v;
	s.sq += (double)v * v;
	s.k++;
}

struct spart_pick_f {
	__device__ struct spart operator()(struct spart a, struct spart b) const
	{
		a.sum += b.sum;
		a.sq += b.sq;
		a.k += b.k;
		a.n_nan += b.n_nan;
		a.n_inf += b.n_inf;
		a.mn = fminf(a.mn, b.mn);
		if (b.amax >= 0 && (a.amax < 0 || b.mx > a.mx || (b.mx == a.mx && b.amax < a.amax))) {
			a.mx = b.mx;
			a.amax = b.amax;
		}
		return a;
	}
};

__global__ void __launch_bounds__(RED_THREADS, 4)
stats_partial_kernel(struct spart *part, const float *__restrict__ x, long long n)
{
	__shared__ struct spart sh[RED_THREADS];
	struct spart s = spart_empty();

	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (long long)gridDim.x * blockDim.x) {
		spart_add(s, x[i], i);
	}
	s = block_reduce(s, sh, spart_pick_f());
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(RED_THREADS, 4)
stats_final_kernel(struct spart *result, const struct spart *part, int n_part)
{
	__shared__ struct spart sh[RED_THREADS];
	struct spart s = spart_empty();
	spart_pick_f pick;

	for (int b = threadIdx.x; b < n_part; b += blockDim.x)
		s = pick(s, part[b]);
	s = block_reduce(s, sh, pick);
	if (threadIdx.x == 0)
		*result = s;
}

/* The CPU's djn_stats_f32 from the sums, to the same roundings. */
static void stats_finish(const struct spart *s, int64_t n, struct djn_stats *o)
{
	memset(o, 0, sizeof(*o));
	o->n = n;
	o->n_nan = s->n_nan;
	o->n_inf = s->n_inf;
	o->argmax = -1;
	if (s->k == 0) {
		o->min = o->max = NAN;
		o->mean = o->std = NAN;
		return;
	}
	o->min = s->mn;
	o->max = s->mx;
	o->argmax = s->amax;
	o->mean = s->sum / (double)s->k;
	double var = s->sq / (double)s->k - o->mean * o->mean;
	o->std = var > 0 ? sqrt(var) : 0;
	o->l2 = sqrt(s->sq);
	o->absmax = fabsf(o->min) > fabsf(o->max) ? fabsf(o->min) : fabsf(o->max);
}

extern "C" enum djn_status cuda_stats(struct djn_backend *be, const float *x, int64_t n,
				      struct djn_stats *out)
{
	struct cuda_ctx *c = cuda_ctx(be);
	unsigned blocks = cuda_blocks(n > 0 ? (size_t)n : 1, RED_THREADS * 4, RED_MAX_BLOCKS);
	struct spart *part, res;
	enum djn_status st;

	CUDA_OP(be, "stats");
	if (n <= 0) {
		memset(&res, 0, sizeof(res));
		stats_finish(&res, n < 0 ? 0 : n, out);
		return DJN_OK;
	}
	part = (struct spart *)cuda_scratch(be, CUDA_SCRATCH_RED,
					    sizeof(struct spart) * (RED_MAX_BLOCKS + 1));
	if (!part)
		return be->err.code;
	stats_partial_kernel<<<blocks, RED_THREADS, 0, c->compute>>>(part, x, (long long)n);
	CK_LAUNCH(be);
	stats_final_kernel<<<1, RED_THREADS, 0, c->compute>>>(part + RED_MAX_BLOCKS, part,
							       (int)blocks);
	CK_LAUNCH(be);
	CK(be, cudaMemcpyAsync(c->host_res, part + RED_MAX_BLOCKS, sizeof(res),
			       cudaMemcpyDeviceToHost, c->compute));
	if ((st = cuda_sync_compute(be, op_name_)) != DJN_OK)
		return st;
	memcpy(&res, c->host_res, sizeof(res));
	stats_finish(&res, n, out);
	return DJN_OK;
}

/* --- deferred stats: one slot per armed site, collected once a step ---------- */

/* Small tensors (a hidden-size row) in one block: one launch, no partials. */
#define STATS_ONE_BLOCK_MAX (1 << 16)

__global__ void __launch_bounds__(RED_THREADS, 4)
stats_one_kernel(struct spart *slot, const float *__restrict__ x, long long n)
{
	__shared__ struct spart sh[RED_THREADS];
	struct spart s = spart_empty();

	for (long long i = threadIdx.x; i < n; i += blockDim.x) {
		spart_add(s, x[i], i);
	}
	s = block_reduce(s, sh, spart_pick_f());
	if (threadIdx.x == 0)
		*slot = s;
}

static enum djn_status slots_ready(struct djn_backend *be)
{
	struct cuda_ctx *c = cuda_ctx(be);
	size_t bytes = sizeof(struct spart) * DJN_STATS_SLOTS;

	if (c->stat_slots)
		return DJN_OK;
	if (cudaMalloc(&c->stat_slots, bytes) != cudaSuccess) {
		c->stat_slots = NULL;
		return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot allocate %zu bytes of stats slots",
				   bytes);
	}
	if (cudaMallocHost(&c->stat_slots_host, bytes) != cudaSuccess) {
		cudaFree(c->stat_slots);
		c->stat_slots = c->stat_slots_host = NULL;
		return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot pin %zu bytes of stats slots",
				   bytes);
	}
	return DJN_OK;
}

extern "C" enum djn_status cuda_stats_defer(struct djn_backend *be, const float *x, int64_t n,
					    int slot)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct spart *slots;
	enum djn_status st;

	CUDA_OP(be, "stats_defer");
	if (slot < 0 || slot >= DJN_STATS_SLOTS || n <= 0)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "cuda: stats slot %d (n %lld) out of range",
				   slot, (long long)n);
	if ((st = slots_ready(be)) != DJN_OK)
		return st;
	slots = (struct spart *)c->stat_slots;
	if (n <= STATS_ONE_BLOCK_MAX) {
		stats_one_kernel<<<1, RED_THREADS, 0, c->compute>>>(slots + slot, x, (long long)n);
		CK_LAUNCH(be);
		return DJN_OK;
	}
	unsigned blocks = cuda_blocks((size_t)n, RED_THREADS * 4, RED_MAX_BLOCKS);
	struct spart *part = (struct spart *)cuda_scratch(be, CUDA_SCRATCH_RED,
							  sizeof(struct spart) * (RED_MAX_BLOCKS + 1));
	if (!part)
		return be->err.code;
	stats_partial_kernel<<<blocks, RED_THREADS, 0, c->compute>>>(part, x, (long long)n);
	CK_LAUNCH(be);
	stats_final_kernel<<<1, RED_THREADS, 0, c->compute>>>(slots + slot, part, (int)blocks);
	CK_LAUNCH(be);
	return DJN_OK;
}

extern "C" enum djn_status cuda_stats_collect(struct djn_backend *be, struct djn_stats *out,
					      int n_slots)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct spart *host;
	enum djn_status st;

	CUDA_OP(be, "stats_collect");
	if (n_slots < 0 || n_slots > DJN_STATS_SLOTS)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "cuda: %d stats slots asked", n_slots);
	if (n_slots == 0)
		return DJN_OK;
	if ((st = slots_ready(be)) != DJN_OK)
		return st;
	host = (struct spart *)c->stat_slots_host;
	CK(be, cudaMemcpyAsync(host, c->stat_slots, sizeof(struct spart) * (size_t)n_slots,
			       cudaMemcpyDeviceToHost, c->compute));
	if ((st = cuda_sync_compute(be, op_name_)) != DJN_OK)
		return st;
	/* n is only needed for the count field; the sums know what they saw */
	for (int i = 0; i < n_slots; i++)
		stats_finish(&host[i], host[i].k + host[i].n_nan + host[i].n_inf, &out[i]);
	return DJN_OK;
}

/* Many small tensors at once: block i reduces tensor i into slot slot0 + i. */
struct many_desc {
	const float *x;
	long long n;
};

__global__ void __launch_bounds__(RED_THREADS, 4)
stats_many_kernel(struct spart *slots, const struct many_desc *d)
{
	__shared__ struct spart sh[RED_THREADS];
	struct spart s = spart_empty();
	const float *x = d[blockIdx.x].x;
	long long n = d[blockIdx.x].n;

	for (long long i = threadIdx.x; i < n; i += blockDim.x) {
		spart_add(s, x[i], i);
	}
	s = block_reduce(s, sh, spart_pick_f());
	if (threadIdx.x == 0)
		slots[blockIdx.x] = s;
}

extern "C" enum djn_status cuda_stats_defer_many(struct djn_backend *be, const float *const *xs,
						 const int64_t *ns, int n, int slot0)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "stats_defer_many");
	if (n <= 0)
		return DJN_OK;
	if (slot0 < 0 || slot0 + n > DJN_STATS_SLOTS)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "cuda: stats slots %d..%d out of range",
				   slot0, slot0 + n - 1);
	if ((st = slots_ready(be)) != DJN_OK)
		return st;
	for (int i = 0; i < n; i++)
		if (ns[i] > STATS_ONE_BLOCK_MAX) /* large ones take the two-level path */
			return cuda_stats_defer_many_slow(be, xs, ns, n, slot0);
	/* descriptors: pinned staging, then a device copy, both allocated once */
	size_t bytes = sizeof(struct many_desc) * (size_t)n;
	if (!c->many_host) {
		size_t all = sizeof(struct many_desc) * DJN_STATS_SLOTS;
		if (cudaMallocHost(&c->many_host, all) != cudaSuccess) {
			c->many_host = NULL;
			return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot pin %zu bytes", all);
		}
		if (cudaMalloc(&c->many_dev, all) != cudaSuccess) {
			cudaFreeHost(c->many_host);
			c->many_host = c->many_dev = NULL;
			return djn_err_set(&be->err, DJN_ERR_NOMEM, "cuda: cannot allocate %zu bytes", all);
		}
	}
	/* no wait for the staging buffer: every batch is followed by a
	 * stats_collect, which synchronizes, before the next one is written */
	struct many_desc *d = (struct many_desc *)c->many_dev;
	struct many_desc *h = (struct many_desc *)c->many_host;
	for (int i = 0; i < n; i++)
		h[i] = (struct many_desc){ xs[i], (long long)ns[i] };
	CK(be, cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, c->compute));
	stats_many_kernel<<<n, RED_THREADS, 0, c->compute>>>((struct spart *)c->stat_slots + slot0, d);
	CK_LAUNCH(be);
	return DJN_OK;
}

extern "C" enum djn_status cuda_stats_defer_many_slow(struct djn_backend *be,
						      const float *const *xs, const int64_t *ns,
						      int n, int slot0)
{
	enum djn_status st = DJN_OK;

	for (int i = 0; i < n && st == DJN_OK; i++)
		st = cuda_stats_defer(be, xs[i], ns[i], slot0 + i);
	return st;
}
