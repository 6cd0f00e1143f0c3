/* elementwise.cu - embedding gather, activations, add, axpby and row softmax
 * on the GPU.  The arithmetic is the CPU reference's (src/backend/cpu/ops.c)
 * operation for operation; __fmul_rn/__fadd_rn keep nvcc from contracting a
 * multiply and an add into one FMA where the reference rounds twice. */
#include "backend/cuda/cuda.cuh"

/* --- embed ----------------------------------------------------------------- */

/* One block column per output row (grid.x), a few blocks across its columns
 * (grid.y).  A bad id cannot be reported synchronously without a round trip,
 * so the row becomes NaN and the mapped flags carry the id to the next
 * synchronizing call (cuda_sync_compute), which fails with DJN_ERR_RANGE. */
__global__ void __launch_bounds__(256, 4)
embed_kernel(float *__restrict__ out, const uint8_t *__restrict__ table, int dtype,
	     size_t row_bytes, long long rows, int cols, const int32_t *__restrict__ ids,
	     struct cuda_flags *flags)
{
	const int i = blockIdx.x;
	const int32_t id = ids[i];
	float *o = out + (size_t)i * cols;
	int c = blockIdx.y * blockDim.x + threadIdx.x;
	const int stride = gridDim.y * blockDim.x;

	if (id < 0 || id >= rows) {
		for (; c < cols; c += stride)
			o[c] = __int_as_float(0x7fc00000);
		if (blockIdx.y == 0 && threadIdx.x == 0) {
			volatile struct cuda_flags *f = flags;
			f->id = id;
			f->n_rows = rows;
			__threadfence_system();
			f->bad_id = 1;
		}
		return;
	}
	for (; c < cols; c += stride)
		o[c] = weight_at(table, dtype, row_bytes, id, c);
}

extern "C" enum djn_status cuda_embed(struct djn_backend *be, float *out,
				      const struct djn_weight *table, const int32_t *ids, int n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "embed");
	if (n <= 0)
		return DJN_OK;
	if ((st = cuda_check_weight(be, op_name_, table)) != DJN_OK)
		return st;
	if (table->cols > INT32_MAX)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED, "embed: %lld columns is too many",
				   (long long)table->cols);
	dim3 grid((unsigned)n, cuda_blocks((size_t)table->cols, 256, 16));
	embed_kernel<<<grid, 256, 0, c->compute>>>(
		out, (const uint8_t *)table->dev, table->dtype,
		djn_dtype_row_bytes(table->dtype, table->cols), (long long)table->rows,
		(int)table->cols, ids, c->flags_dev);
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- elementwise maps ------------------------------------------------------ */

struct swiglu_f {
	__device__ float operator()(float g, float u) const
	{
		float v = __fmul_rn(g, 1.0f / (1.0f + expf(-g)));
		return __fmul_rn(v, u);
	}
};

struct gelu_f {
	__device__ float operator()(float v, float) const
	{
		float cube = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v);
		float t = tanhf(__fmul_rn(0.7978845608028654f, __fadd_rn(v, cube)));
		return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, t));
	}
};

struct add_f {
	__device__ float operator()(float a, float b) const
	{
		return a + b;
	}
};

struct axpby_f {
	float scale, alpha;
	bool has_x;
	__device__ float operator()(float y, float x) const
	{
		return __fadd_rn(__fmul_rn(y, scale), has_x ? __fmul_rn(alpha, x) : 0.0f);
	}
};

/* out[i] = f(a[i], b[i]); b may be NULL (f gets 0).  out may alias a or b:
 * each element is read before it is written, by the same thread.  With every
 * pointer 16-byte aligned the body moves float4s, the tail single floats. */
template <class F>
__global__ void __launch_bounds__(256, 4)
map2_kernel(float *out, const float *a, const float *b, size_t n, bool vec, F f)
{
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t done = 0;

	if (vec) {
		const size_t n4 = n / 4;
		for (size_t k = i; k < n4; k += stride) {
			float4 x = ((const float4 *)a)[k];
			float4 y = b ? ((const float4 *)b)[k] : make_float4(0.f, 0.f, 0.f, 0.f);
			float4 r = make_float4(f(x.x, y.x), f(x.y, y.y), f(x.z, y.z), f(x.w, y.w));
			((float4 *)out)[k] = r;
		}
		done = n4 * 4;
	}
	for (size_t k = done + i; k < n; k += stride)
		out[k] = f(a[k], b ? b[k] : 0.0f);
}

static bool aligned16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

template <class F>
static enum djn_status map2(struct djn_backend *be, const char *op, float *out, const float *a,
			    const float *b, size_t n, F f)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	bool vec = aligned16(out) && aligned16(a) && (!b || aligned16(b));

	if (!n)
		return DJN_OK;
	map2_kernel<F><<<cuda_blocks(vec ? n / 4 + 1 : n, 256, (unsigned)c->n_sm * 8), 256, 0,
			 c->compute>>>(out, a, b, n, vec, f);
	CK_LAUNCH(be);
	return DJN_OK;
}

extern "C" enum djn_status cuda_swiglu(struct djn_backend *be, float *out, const float *gate,
				       const float *up, size_t n)
{
	CUDA_OP(be, "swiglu");
	return map2(be, op_name_, out, gate, up, n, swiglu_f());
}

/* swiglu into halves, the input of the f16 GEMM after it: the same f32 value
 * as swiglu_f's, rounded once; four elements a thread a step where gate and
 * up are 16-byte aligned and out 8-byte aligned. */
__global__ void __launch_bounds__(256, 4)
swiglu_h_kernel(__half *out, const float *__restrict__ gate, const float *__restrict__ up,
		size_t n, bool vec)
{
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, done = 0;
	const swiglu_f f;

	if (vec) {
		const size_t n4 = n / 4;
		for (size_t k = i; k < n4; k += stride) {
			const float4 g = ((const float4 *)gate)[k], u = ((const float4 *)up)[k];
			__half2 a = __floats2half2_rn(f(g.x, u.x), f(g.y, u.y));
			__half2 b = __floats2half2_rn(f(g.z, u.z), f(g.w, u.w));
			((__half2 *)out)[2 * k] = a;
			((__half2 *)out)[2 * k + 1] = b;
		}
		done = n4 * 4;
	}
	for (size_t k = done + i; k < n; k += stride)
		out[k] = __float2half_rn(f(gate[k], up[k]));
}

extern "C" enum djn_status cuda_swiglu_f16(struct djn_backend *be, uint16_t *out,
					   const float *gate, const float *up, size_t n)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "swiglu_f16");
	if (!n)
		return DJN_OK;
	const bool vec = aligned16(gate) && aligned16(up) && ((uintptr_t)out & 7) == 0;
	swiglu_h_kernel<<<cuda_blocks(vec ? n / 4 + 1 : n, 256, (unsigned)c->n_sm * 8), 256, 0,
			  c->compute>>>((__half *)out, gate, up, n, vec);
	CK_LAUNCH(be);
	return DJN_OK;
}

extern "C" enum djn_status cuda_gelu(struct djn_backend *be, float *out, const float *x, size_t n)
{
	CUDA_OP(be, "gelu");
	return map2(be, op_name_, out, x, (const float *)NULL, n, gelu_f());
}

extern "C" enum djn_status cuda_add(struct djn_backend *be, float *out, const float *a,
				    const float *b, size_t n)
{
	CUDA_OP(be, "add");
	return map2(be, op_name_, out, a, b, n, add_f());
}

extern "C" enum djn_status cuda_axpby(struct djn_backend *be, float *y, float scale,
				      const float *x, float alpha, size_t n)
{
	axpby_f f = { scale, alpha, x != NULL };

	CUDA_OP(be, "axpby");
	return map2(be, op_name_, y, y, x, n, f);
}

/* --- softmax --------------------------------------------------------------- */

/* One block per row: max, exp and sum, divide (run.c's softmax). */
__global__ void __launch_bounds__(1024, 1) softmax_kernel(float *x, int dim)
{
	__shared__ float sh[32];
	float *r = x + (size_t)blockIdx.x * dim;
	float m = -INFINITY, s = 0.0f;

	for (int j = threadIdx.x; j < dim; j += blockDim.x)
		m = fmaxf(m, r[j]);
	m = block_max(m, sh);
	__syncthreads();
	for (int j = threadIdx.x; j < dim; j += blockDim.x) {
		float e = expf(r[j] - m);
		r[j] = e;
		s += e;
	}
	s = block_sum(s, sh);
	for (int j = threadIdx.x; j < dim; j += blockDim.x)
		r[j] = r[j] / s;
}

extern "C" enum djn_status cuda_softmax(struct djn_backend *be, float *x, int n, int dim)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "softmax");
	if (n <= 0 || dim <= 0)
		return DJN_OK;
	softmax_kernel<<<(unsigned)n, row_threads(dim), 0, c->compute>>>(x, dim);
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- paged copies: a checkpoint of the KV cache in one launch --------------- */

/* Grid (blocks per page, page): a block streams its share of one page, four
 * 16-byte loads in flight a thread before their stores; no division by the
 * page size and one page-pointer load a block. */
__global__ void __launch_bounds__(256, 4)
copy_pages_kernel(uint4 *contig, uint4 *const *pages, size_t per_page, bool to_pages)
{
	const size_t p = blockIdx.y, stride = (size_t)gridDim.x * blockDim.x;
	uint4 *flat = contig + p * per_page, *page = pages[p];
	uint4 *dst = to_pages ? page : flat;
	const uint4 *src = to_pages ? flat : page;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	for (; i + 3 * stride < per_page; i += 4 * stride) {
		uint4 a = __ldcs(src + i), b = __ldcs(src + i + stride);
		uint4 c = __ldcs(src + i + 2 * stride), d = __ldcs(src + i + 3 * stride);
		__stcs(dst + i, a);
		__stcs(dst + i + stride, b);
		__stcs(dst + i + 2 * stride, c);
		__stcs(dst + i + 3 * stride, d);
	}
	for (; i < per_page; i += stride)
		__stcs(dst + i, __ldcs(src + i));
}

extern "C" enum djn_status cuda_copy_pages(struct djn_backend *be, void *contig,
					   void *const *pages, int n_pages, size_t page_bytes,
					   bool to_pages)
{
	struct cuda_ctx *c = cuda_ctx(be);
	size_t per_page = page_bytes / 16;

	CUDA_OP(be, "copy_pages");
	if (n_pages <= 0 || per_page == 0)
		return DJN_OK;
	if (page_bytes % 16 || ((uintptr_t)contig & 15))
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "copy_pages: %zu-byte pages or an unaligned buffer", page_bytes);
	/* about 16 blocks an SM over all the pages, and no more than a page needs;
	 * a grid's y is at most 65535 pages */
	for (int p0 = 0; p0 < n_pages; p0 += 65535) {
		unsigned np = (unsigned)(n_pages - p0 < 65535 ? n_pages - p0 : 65535);
		unsigned per = cuda_blocks((size_t)c->n_sm * 16, np, 1u << 16);
		unsigned most = cuda_blocks(per_page, 256 * 4, 1u << 16);
		dim3 grid(per < most ? per : most, np);
		copy_pages_kernel<<<grid, 256, 0, c->compute>>>(
			(uint4 *)contig + (size_t)p0 * per_page, (uint4 *const *)pages + p0, per_page,
			to_pages);
		CK_LAUNCH(be);
	}
	return DJN_OK;
}
