/* norm.cu - RMSNorm and LayerNorm on the GPU: one block per row, warp-shuffle
 * reductions.  Sums follow the CPU reference's types (f32 for RMSNorm, as
 * llama2.c; f64 for LayerNorm) and its final roundings. */
#include "backend/cuda/cuda.cuh"

__global__ void __launch_bounds__(1024, 1)
rmsnorm_kernel(float *out, const float *x, struct vec_ref g, int dim, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *o = out + (size_t)blockIdx.x * dim;
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
		o[j] = __fmul_rn(vec_at(g, j), __fmul_rn(ss, xr[j]));
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

extern "C" enum djn_status cuda_rmsnorm(struct djn_backend *be, float *out, const float *x,
					const struct djn_weight *w, int n, int dim, float eps)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "rmsnorm");
	if (n <= 0 || dim <= 0)
		return DJN_OK;
	if ((st = check_gain(be, op_name_, w, dim)) != DJN_OK)
		return st;
	CK(be, cuda_launch(c, rmsnorm_kernel, dim3((unsigned)n), dim3(row_threads(dim)), 0, out, x,
			   vec_of(w), dim, eps));
	CK_LAUNCH(be);
	return DJN_OK;
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
