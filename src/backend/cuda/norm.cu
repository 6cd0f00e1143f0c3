/* norm.cu - RMSNorm and LayerNorm on the GPU: one block per row, warp-shuffle
 * reductions.  Sums follow the CPU reference's types (f32 for RMSNorm, as
 * llama2.c; f64 for LayerNorm) and its final roundings. */
#include "backend/cuda/cuda.cuh"

/* The output of a norm: floats, or halves for an f16 GEMM after it
 * (rmsnorm_f16: the same value, rounded to nearest even). */
__device__ __forceinline__ void norm_st(float *p, float v)
{
	*p = v;
}

__device__ __forceinline__ void norm_st(__half *p, float v)
{
	*p = __float2half_rn(v);
}

__device__ __forceinline__ void norm_st4(float *p, float4 v)
{
	*(float4 *)p = v;
}

__device__ __forceinline__ void norm_st4(__half *p, float4 v)
{
	__half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
	uint2 u;

	u.x = *(const unsigned *)&a;
	u.y = *(const unsigned *)&b;
	*(uint2 *)p = u;
}

template <typename OT>
__global__ void __launch_bounds__(1024, 1)
rmsnorm_kernel(OT *out, const float *x, struct vec_ref g, int dim, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	OT *o = out + (size_t)blockIdx.x * dim;
	float ss = 0.0f;

	pdl_trigger();
	pdl_wait();
	for (int j = threadIdx.x; j < dim; j += blockDim.x)
		ss += xr[j] * xr[j];
	ss = block_sum(ss, sh);
	ss /= dim;
	ss += eps;
	ss = 1.0f / sqrtf(ss);
	for (int j = threadIdx.x; j < dim; j += blockDim.x)
		norm_st(o + j, __fmul_rn(vec_at(g, j), __fmul_rn(ss, xr[j])));
}

/* The same for rows of dim % 4 == 0 at 16-byte aligned addresses, in one
 * round of memory traffic: each thread owns up to RMS4_MAX float4s of the row,
 * loads its gains before the wait (they are weights: no kernel before writes
 * them) and its part of the row once, and stores float4s.  A decode step
 * runs two of these a layer, so their latency, not bandwidth, is what counts. */
#define RMS4_MAX 4

__device__ __forceinline__ float4 gain4(const struct vec_ref &g, int j)
{
	if (g.dtype == DJN_DTYPE_F32)
		return ((const float4 *)g.p)[j];
	return make_float4(vec_at(g, 4 * j), vec_at(g, 4 * j + 1), vec_at(g, 4 * j + 2),
			   vec_at(g, 4 * j + 3));
}

template <typename OT>
__global__ void __launch_bounds__(1024, 1)
rmsnorm4_kernel(OT *out, const float *x, struct vec_ref g, int dim, float eps)
{
	__shared__ float sh[32];
	const int n4 = dim / 4;
	const float4 *xr = (const float4 *)(x + (size_t)blockIdx.x * dim);
	OT *o = out + (size_t)blockIdx.x * dim;
	float4 gv[RMS4_MAX], xv[RMS4_MAX];
	float ss = 0.0f;

	pdl_trigger();
#pragma unroll
	for (int u = 0; u < RMS4_MAX; u++) {
		int j = threadIdx.x + u * blockDim.x;
		if (j < n4)
			gv[u] = gain4(g, j);
	}
	pdl_wait();
#pragma unroll
	for (int u = 0; u < RMS4_MAX; u++) {
		int j = threadIdx.x + u * blockDim.x;
		if (j < n4)
			xv[u] = xr[j];
	}
#pragma unroll
	for (int u = 0; u < RMS4_MAX; u++) {
		if (threadIdx.x + u * blockDim.x < n4) {
			ss = fmaf(xv[u].x, xv[u].x, ss);
			ss = fmaf(xv[u].y, xv[u].y, ss);
			ss = fmaf(xv[u].z, xv[u].z, ss);
			ss = fmaf(xv[u].w, xv[u].w, ss);
		}
	}
	ss = block_sum(ss, sh);
	ss /= dim;
	ss += eps;
	ss = 1.0f / sqrtf(ss);
#pragma unroll
	for (int u = 0; u < RMS4_MAX; u++) {
		int j = threadIdx.x + u * blockDim.x;
		if (j < n4)
			norm_st4(o + 4 * j, make_float4(__fmul_rn(gv[u].x, __fmul_rn(ss, xv[u].x)),
							__fmul_rn(gv[u].y, __fmul_rn(ss, xv[u].y)),
							__fmul_rn(gv[u].z, __fmul_rn(ss, xv[u].z)),
							__fmul_rn(gv[u].w, __fmul_rn(ss, xv[u].w))));
	}
}

__global__ void __launch_bounds__(1024, 1)
layernorm_kernel(float *out, const float *x, struct vec_ref g, struct vec_ref b, bool has_b,
		 int dim, float eps)
{
	__shared__ double sh[32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *o = out + (size_t)blockIdx.x * dim;
	double mean = 0, var = 0;

	for (int j = threadIdx.x; j < dim; j += blockDim.x)
		mean += xr[j];
	mean = block_sum_d(mean, sh) / dim;
	__syncthreads(); /* sh is reused */
	for (int j = threadIdx.x; j < dim; j += blockDim.x) {
		double d = xr[j] - mean;
		var += d * d;
	}
	var = block_sum_d(var, sh) / dim;
	float inv = (float)(1.0 / sqrt(var + eps));
	for (int j = threadIdx.x; j < dim; j += blockDim.x) {
		float v = __fmul_rn(__fmul_rn((float)(xr[j] - mean), inv), vec_at(g, j));
		o[j] = __fadd_rn(v, has_b ? vec_at(b, j) : 0.0f);
	}
}

static enum djn_status check_gain(struct djn_backend *be, const char *op,
				  const struct djn_weight *w, int dim)
{
	enum djn_status st = cuda_check_weight(be, op, w);

	if (st != DJN_OK)
		return st;
	if (w->cols < dim)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "%s: weight '%s' has %lld columns, the rows have %d", op,
				   w->name ? w->name : "?", (long long)w->cols, dim);
	return DJN_OK;
}

/* Either kernel, as the row's shape and alignment allow; out_align is the
 * alignment a float4 of the output needs (16 for floats, 8 for halves).  The
 * f32 and f16 outputs take the same kernel for the same x, so their values
 * are the same before the rounding. */
template <typename OT>
static enum djn_status rmsnorm_launch(struct djn_backend *be, const char *op, OT *out,
				      const float *x, const struct djn_weight *w, int n, int dim,
				      float eps)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	const uintptr_t out_align = 4 * sizeof(OT) - 1;
	enum djn_status st;

	if (n <= 0 || dim <= 0)
		return DJN_OK;
	if ((st = check_gain(be, op_name_, w, dim)) != DJN_OK)
		return st;
	const int n4 = dim / 4;
	/* the float4 kernel where x, the gains and out allow it: for an out
	 * at a 16-byte boundary, floats and halves take the same kernel (the
	 * batch's buffers are), so the halves are the floats rounded */
	if (dim % 4 == 0 && n4 <= RMS4_MAX * 1024 && ((uintptr_t)x & 15) == 0 &&
	    ((uintptr_t)out & out_align) == 0 &&
	    (w->dtype != DJN_DTYPE_F32 || ((uintptr_t)w->dev & 15) == 0)) {
		unsigned threads = n4 >= 1024 ? 1024 : (unsigned)(n4 + 31) / 32 * 32;
		CK(be, cuda_launch(c, rmsnorm4_kernel<OT>, dim3((unsigned)n), dim3(threads), 0, out,
				   x, vec_of(w), dim, eps));
	} else {
		CK(be, cuda_launch(c, rmsnorm_kernel<OT>, dim3((unsigned)n), dim3(row_threads(dim)),
				   0, out, x, vec_of(w), dim, eps));
	}
	CK_LAUNCH(be);
	return DJN_OK;
}

extern "C" enum djn_status cuda_rmsnorm(struct djn_backend *be, float *out, const float *x,
					const struct djn_weight *w, int n, int dim, float eps)
{
	CUDA_OP(be, "rmsnorm");
	return rmsnorm_launch<float>(be, op_name_, out, x, w, n, dim, eps);
}

extern "C" enum djn_status cuda_rmsnorm_f16(struct djn_backend *be, uint16_t *out,
					    const float *x, const struct djn_weight *w, int n,
					    int dim, float eps)
{
	CUDA_OP(be, "rmsnorm_f16");
	return rmsnorm_launch<__half>(be, op_name_, (__half *)out, x, w, n, dim, eps);
}

extern "C" enum djn_status cuda_layernorm(struct djn_backend *be, float *out, const float *x,
					  const struct djn_weight *w, const struct djn_weight *b,
					  int n, int dim, float eps)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct vec_ref bv = { NULL, DJN_DTYPE_F32, 0 };
	enum djn_status st;

	CUDA_OP(be, "layernorm");
	if (n <= 0 || dim <= 0)
		return DJN_OK;
	if ((st = check_gain(be, op_name_, w, dim)) != DJN_OK)
		return st;
	if (b) {
		if ((st = check_gain(be, op_name_, b, dim)) != DJN_OK)
			return st;
		bv = vec_of(b);
	}
	layernorm_kernel<<<(unsigned)n, row_threads(dim), 0, c->compute>>>(out, x, vec_of(w), bv,
									     b != NULL, dim, eps);
	CK_LAUNCH(be);
	return DJN_OK;
}
