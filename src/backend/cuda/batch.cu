/* batch.cu - the rows of a batch of sessions on the GPU: RoPE, the KV store
 * and attention with each row at its own position in its own paged cache,
 * and argmax of every row with one wait.
 *
 * One launch an op, however many sessions: row i finds its cache through
 * tables[i] (a device page table) and its position in pos[i], both read by
 * the kernels from device memory, so the host never reads a position and a
 * recorded step replays with whatever the scheduler wrote there.  Grids are
 * sized from n_rows, n_head and max_len alone.  A row with pos < 0 is
 * padding: its blocks store nothing and write zeros where an output is due.
 *
 * Attention is attention.cu's split-KV kernel with a row's own length: its
 * keys are cut into at most nsz chunks of at least ATT_MIN_CHUNK, chunk
 * length from that row's pos, so a short row's blocks past its end return at
 * once and a long one uses all nsz; a row that fits one chunk is written by
 * the split kernel itself, the others merged by a second kernel.  Same online
 * softmax, score = q.k / sqrtf(head_dim), expf, f32 throughout.  Where
 * head_dim <= 128, a multiple of 4, and q 16-byte aligned, the split kernel
 * is the float4 one (attn_rows_v4_kernel): wide loads, more positions in
 * flight, and once the batch is large enough the query heads of one KV head
 * sharing one read of it; elsewhere (and with DJN_ATTN_ROWS_OLD=1, for
 * comparing) the scalar one.  On an H200 the float4 one reads KV at 2.4 to
 * 4.2 TB/s for 32..128 rows (bench/attn_rows_bench.c and
 * bench/results/h200-2026-12-04-attn-rows.json).  An f16 cache takes
 * attn_rows_v4h_kernel: the float4 kernel with every load of a step issued
 * raw (four halves) before any is widened, and twice the positions a step
 * (DJN_ATTN_F16_OLD=1 runs the float4 kernel itself on halves, to compare). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.cuh"

/* --- rope ------------------------------------------------------------------ */

/* One block per row, a thread per (head, pair), as rope.cu's rope_kernel. */
__global__ void __launch_bounds__(1024, 1)
rope_rows_kernel(float *x, const int32_t *__restrict__ pos, int n_head, int head_dim, int half,
		 const float *__restrict__ freq, bool interleaved)
{
	const int r = blockIdx.x;
	pdl_trigger();
	pdl_wait();
	const int p = pos[r];

	if (p < 0)
		return;
	for (int t = threadIdx.x; t < n_head * half; t += blockDim.x) {
		int h = t / half, i = t % half;
		float *v = x + ((size_t)r * n_head + h) * head_dim;
		int a = interleaved ? 2 * i : i;
		int b = interleaved ? 2 * i + 1 : i + half;
		float v0 = v[a], v1 = v[b], fcr, fci;
		rope_cs(p, freq[i], &fcr, &fci);
		v[a] = rope_rot(v0, v1, false, fcr, fci);
		v[b] = rope_rot(v0, v1, true, fcr, fci);
	}
}

static enum djn_status check_rows(struct djn_backend *be, const char *op,
				  const struct djn_kv_rows *kv)
{
	if (!kv || kv->n_rows < 0 || (kv->n_rows > 0 && (!kv->tables || !kv->pos)))
		return djn_err_set(&be->err, DJN_ERR_INVALID, "%s: no rows (tables or pos not set)",
				   op);
	if (kv->page_tokens <= 0 || kv->kv_dim <= 0 || kv->n_layer <= 0 || kv->max_len <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "%s: page_tokens %d, kv_dim %d, n_layer %d, max_len %d: all must "
				   "be positive",
				   op, kv->page_tokens, kv->kv_dim, kv->n_layer, kv->max_len);
	return DJN_OK;
}

extern "C" enum djn_status cuda_rope_rows(struct djn_backend *be, float *x,
					  const struct djn_kv_rows *kv, int n_head, int head_dim,
					  int rot_dim, float theta, enum djn_rope_style style)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;
	int half = rot_dim / 2;

	CUDA_OP(be, "rope_rows");
	if (!kv || kv->n_rows < 0 || (kv->n_rows > 0 && !kv->pos))
		return djn_err_set(&be->err, DJN_ERR_INVALID, "rope_rows: no rows (pos not set)");
	if (rot_dim > head_dim || rot_dim < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "rope_rows: rot_dim %d, head_dim %d: need 0 <= rot_dim <= head_dim",
				   rot_dim, head_dim);
	if (kv->n_rows == 0 || n_head <= 0 || half == 0)
		return DJN_OK;
	if ((st = cuda_rope_table(be, op_name_, theta, rot_dim)) != DJN_OK)
		return st;
	unsigned threads = (unsigned)(n_head * half);
	threads = threads >= 1024 ? 1024 : (threads + 31) / 32 * 32;
	CK(be, cuda_launch(c, rope_rows_kernel, dim3((unsigned)kv->n_rows), dim3(threads), 0, x,
			   kv->pos, n_head, head_dim, half, (const float *)c->rope_freq,
			   style == DJN_ROPE_INTERLEAVED));
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- kv_store -------------------------------------------------------------- */

/* grid (row, K = 0 / V = 1), as attention.cu's kv_store_kernel. */
template <typename KT>
__global__ void __launch_bounds__(256, 4)
kv_store_rows_kernel(float *const *const *tables, const int32_t *__restrict__ pos,
		     int page_tokens, int kv_dim, int layer, const float *__restrict__ k,
		     const float *__restrict__ v)
{
	const int i = blockIdx.x, which = blockIdx.y;
	pdl_trigger();
	pdl_wait();
	const int t = pos[i];

	if (t < 0)
		return;
	KT *dst = (KT *)tables[i][t / page_tokens] +
		  (((size_t)layer * 2 + which) * page_tokens + t % page_tokens) * kv_dim;
	const float *src = (which ? v : k) + (size_t)i * kv_dim;

	for (int d = threadIdx.x; d < kv_dim; d += blockDim.x)
		kv_st(dst + d, src[d]);
}

extern "C" enum djn_status cuda_kv_store_rows(struct djn_backend *be,
					      const struct djn_kv_rows *kv, int layer,
					      const float *k, const float *v)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "kv_store_rows");
	if ((st = check_rows(be, op_name_, kv)) != DJN_OK)
		return st;
	if (layer < 0 || layer >= kv->n_layer)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "kv_store_rows: layer %d beyond the %d "
				   "cached", layer, kv->n_layer);
	if (kv->n_rows == 0)
		return DJN_OK;
	if (kv->n_rows > 2147483647 / 2)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED, "kv_store_rows: %d rows",
				   kv->n_rows);
	unsigned threads = kv->kv_dim >= 256 ? 256 : (unsigned)(kv->kv_dim + 31) / 32 * 32;
	if (kv->dtype == DJN_DTYPE_F16)
		CK(be, cuda_launch(c, kv_store_rows_kernel<__half>, dim3((unsigned)kv->n_rows, 2),
				   dim3(threads), 0, kv->tables, kv->pos, kv->page_tokens,
				   kv->kv_dim, layer, k, v));
	else
		CK(be, cuda_launch(c, kv_store_rows_kernel<float>, dim3((unsigned)kv->n_rows, 2),
				   dim3(threads), 0, kv->tables, kv->pos, kv->page_tokens,
				   kv->kv_dim, layer, k, v));
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- rope and the KV store in one pass ------------------------------------- */

/* grid (row, slice): a row's work items are q's rope pairs, then k's, then
 * v's kv_dim elements, strided over the row's slices; a k pair is rotated,
 * written back and stored into the cache, a v element stored.  The same
 * rope_cs / rope_rot / kv_st as rope_rows_kernel and kv_store_rows_kernel,
 * so the same bits, from one launch instead of three. */
template <typename KT>
__global__ void __launch_bounds__(256, 4)
rope_store_rows_kernel(float *q, float *k, const float *__restrict__ v,
		       float *const *const *tables, const int32_t *__restrict__ pos, int n_head,
		       int n_kv_head, int head_dim, int page_tokens, int kv_dim, int layer,
		       const float *__restrict__ freq, bool interleaved)
{
	const int r = blockIdx.x, half = head_dim / 2;
	pdl_trigger();
	pdl_wait();
	const int p = pos[r];

	if (p < 0)
		return;
	const int nq = n_head * half, nk = n_kv_head * half, total = nq + nk + kv_dim;
	KT *kc = (KT *)tables[r][p / page_tokens] +
		 ((size_t)layer * 2 * page_tokens + p % page_tokens) * kv_dim;
	KT *vc = kc + (size_t)page_tokens * kv_dim; /* V rows follow K rows */
	float *qr = q + (size_t)r * n_head * head_dim;
	float *kr = k + (size_t)r * kv_dim;
	const float *vr = v + (size_t)r * kv_dim;

	for (int t = blockIdx.y * blockDim.x + threadIdx.x; t < total;
	     t += gridDim.y * blockDim.x) {
		if (t >= nq + nk) {
			const int d = t - nq - nk;
			kv_st(vc + d, vr[d]);
			continue;
		}
		const bool isk = t >= nq;
		const int u = isk ? t - nq : t, h = u / half, i = u % half;
		float *x = (isk ? kr : qr) + (size_t)h * head_dim;
		const int a = interleaved ? 2 * i : i;
		const int b = interleaved ? 2 * i + 1 : i + half;
		float v0 = x[a], v1 = x[b], fcr, fci;
		rope_cs(p, freq[i], &fcr, &fci);
		const float ra = rope_rot(v0, v1, false, fcr, fci);
		const float rb = rope_rot(v0, v1, true, fcr, fci);
		x[a] = ra;
		x[b] = rb;
		if (isk) {
			kv_st(kc + (size_t)h * head_dim + a, ra);
			kv_st(kc + (size_t)h * head_dim + b, rb);
		}
	}
}

extern "C" enum djn_status cuda_rope_store_rows(struct djn_backend *be, float *q, float *k,
						const float *v, const struct djn_kv_rows *kv,
						int layer, int n_head, int n_kv_head, int head_dim,
						float theta, enum djn_rope_style style)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "rope_store_rows");
	if ((st = check_rows(be, op_name_, kv)) != DJN_OK)
		return st;
	if (layer < 0 || layer >= kv->n_layer)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "rope_store_rows: layer %d beyond the "
				   "%d cached", layer, kv->n_layer);
	if (n_head <= 0 || n_kv_head <= 0 || head_dim <= 0 || head_dim % 2 ||
	    (int64_t)n_kv_head * head_dim != kv->kv_dim)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "rope_store_rows: %d heads, %d kv heads of %d (even) for the "
				   "cache's kv_dim %d",
				   n_head, n_kv_head, head_dim, kv->kv_dim);
	if ((int64_t)(n_head + n_kv_head) * (head_dim / 2) + kv->kv_dim > 1 << 30)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "rope_store_rows: %d heads of %d", n_head, head_dim);
	if (kv->n_rows == 0)
		return DJN_OK;
	if ((st = cuda_rope_table(be, op_name_, theta, head_dim)) != DJN_OK)
		return st;
	const size_t total = (size_t)(n_head + n_kv_head) * (head_dim / 2) + kv->kv_dim;
	const dim3 grid((unsigned)kv->n_rows, cuda_blocks(total, 256 * 2, 64));
	const bool il = style == DJN_ROPE_INTERLEAVED;
	const float *freq = c->rope_freq;
	if (kv->dtype == DJN_DTYPE_F16)
		CK(be, cuda_launch(c, rope_store_rows_kernel<__half>, grid, dim3(256), 0, q, k, v,
				   kv->tables, kv->pos, n_head, n_kv_head, head_dim,
				   kv->page_tokens, kv->kv_dim, layer, freq, il));
	else
		CK(be, cuda_launch(c, rope_store_rows_kernel<float>, grid, dim3(256), 0, q, k, v,
				   kv->tables, kv->pos, n_head, n_kv_head, head_dim,
				   kv->page_tokens, kv->kv_dim, layer, freq, il));
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- attention ------------------------------------------------------------- */

#define ATT_WARPS 4       /* warps per block */
#define ATT_G 4           /* positions a warp handles per step */
#define ATT_MAX_SPLIT 128 /* chunks per row, at most */
#define ATT_MIN_CHUNK 64  /* positions per chunk, at least */
#define ATT_LONG_CHUNK 256 /* a row of max_len is cut into chunks of about this */
#define ATT_GQ_MIN_BLOCKS 32 /* (row, KV head) blocks below which a block takes one head */
#define ATT_INV_SPLIT 32 /* chunks per row in the batch-invariant mode (64 positions at least) */

struct rows_params {
	float *const *const *tables;
	const int32_t *pos;
	int n_head, group, head_dim, kv_dim, page_tokens, layer;
	float sd; /* sqrtf(head_dim) */
};

/* Keys per chunk of a row of L positions cut into at most nsz chunks: the
 * host never knows L, the kernels work it out alike. */
__device__ __forceinline__ int rows_chunk(int L, int nsz)
{
	int c = (L + nsz - 1) / nsz;
	return c < ATT_MIN_CHUNK ? ATT_MIN_CHUNK : c;
}

/* grid (chunk, head, row); partials of (row, head) idx at idx * nsz + s. */
template <typename KT, int VPL>
__global__ void __launch_bounds__(ATT_WARPS * 32, 4)
attn_rows_split_kernel(float *__restrict__ out, float *__restrict__ part_acc,
		       float *__restrict__ part_ml, const float *__restrict__ q,
		       struct rows_params p, int nsz)
{
	__shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
	__shared__ float sm_acc[ATT_WARPS][VPL * 32];
	const int s = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int hd = p.head_dim;
	const size_t idx = (size_t)i * p.n_head + h;
	pdl_trigger();
	pdl_wait();
	const int pos = p.pos[i];

	if (pos < 0) { /* padding: zeros, once */
		if (s == 0)
			for (int d = threadIdx.x; d < hd; d += blockDim.x)
				out[idx * hd + d] = 0.0f;
		return;
	}
	const int L = pos + 1, chunk = rows_chunk(L, nsz);
	const int t0 = s * chunk, t1 = min(t0 + chunk, L);
	const int n_act = (L + chunk - 1) / chunk;

	if (t0 >= L) /* past this row's end */
		return;
	float *const *pages = p.tables[i];
	const size_t koff = (size_t)p.layer * 2 * p.page_tokens * p.kv_dim +
			    (size_t)(h / p.group) * hd;
	const size_t voff = (size_t)p.page_tokens * p.kv_dim; /* V rows follow K rows */
	const float *qr = q + idx * hd;
	float qv[VPL], acc[VPL], m = -INFINITY, l = 0.0f;

#pragma unroll
	for (int j = 0; j < VPL; j++) {
		int d = lane + 32 * j;
		qv[j] = d < hd ? qr[d] : 0.0f;
		acc[j] = 0.0f;
	}
	for (int tb = t0 + warp * ATT_G; tb < t1; tb += ATT_WARPS * ATT_G) {
		float kk[ATT_G][VPL], vv[ATT_G][VPL], sc[ATT_G];
		/* all loads of the step first, so they are in flight together */
#pragma unroll
		for (int u = 0; u < ATT_G; u++) {
			const int t = tb + u;
			const KT *kr = t < t1 ? (const KT *)pages[t / p.page_tokens] + koff +
							(size_t)(t % p.page_tokens) * p.kv_dim
					      : NULL;
#pragma unroll
			for (int j = 0; j < VPL; j++) {
				int d = lane + 32 * j;
				bool ok = kr && d < hd;
				kk[u][j] = ok ? kv_ld(kr + d) : 0.0f;
				vv[u][j] = ok ? kv_ld(kr + voff + d) : 0.0f;
			}
		}
#pragma unroll
		for (int u = 0; u < ATT_G; u++) {
			float dot = 0.0f;
#pragma unroll
			for (int j = 0; j < VPL; j++)
				dot = fmaf(qv[j], kk[u][j], dot);
			sc[u] = dot;
		}
#pragma unroll
		for (int o = 16; o > 0; o >>= 1)
#pragma unroll
			for (int u = 0; u < ATT_G; u++)
				sc[u] += __shfl_xor_sync(FULL_MASK, sc[u], o);
		float mx = -INFINITY;
#pragma unroll
		for (int u = 0; u < ATT_G; u++) {
			sc[u] = tb + u < t1 ? sc[u] / p.sd : -INFINITY;
			mx = fmaxf(mx, sc[u]);
		}
		const float mn = fmaxf(m, mx);
		const float alpha = m == -INFINITY ? 0.0f : expf(m - mn);
		float psum = 0.0f;
#pragma unroll
		for (int u = 0; u < ATT_G; u++) {
			sc[u] = tb + u < t1 ? expf(sc[u] - mn) : 0.0f;
			psum += sc[u];
		}
		l = l * alpha + psum;
#pragma unroll
		for (int j = 0; j < VPL; j++) {
			float a = acc[j] * alpha;
#pragma unroll
			for (int u = 0; u < ATT_G; u++)
				a = fmaf(sc[u], vv[u][j], a);
			acc[j] = a;
		}
		m = mn;
	}

	/* merge the warps */
	if (lane == 0) {
		sm_m[warp] = m;
		sm_l[warp] = l;
	}
#pragma unroll
	for (int j = 0; j < VPL; j++)
		sm_acc[warp][lane + 32 * j] = acc[j];
	__syncthreads();
	float M = -INFINITY, Lsum = 0.0f, e[ATT_WARPS];
#pragma unroll
	for (int w = 0; w < ATT_WARPS; w++)
		M = fmaxf(M, sm_m[w]);
#pragma unroll
	for (int w = 0; w < ATT_WARPS; w++) {
		e[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);
		Lsum += sm_l[w] * e[w];
	}
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float a = 0.0f;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			a += sm_acc[w][d] * e[w];
		if (n_act == 1)
			out[idx * hd + d] = a / Lsum;
		else
			part_acc[(idx * nsz + s) * hd + d] = a;
	}
	if (n_act > 1 && threadIdx.x == 0) {
		part_ml[(idx * nsz + s) * 2] = M;
		part_ml[(idx * nsz + s) * 2 + 1] = Lsum;
	}
}

/* Merges the chunks of one (row, head): grid (head, row).  Rows of one
 * chunk (and padding) were written by the split kernel. */
__global__ void __launch_bounds__(128, 4)
attn_rows_merge_kernel(float *__restrict__ out, const float *__restrict__ part_acc,
		       const float *__restrict__ part_ml, const int32_t *__restrict__ pos,
		       int nsz, int hd, int n_head)
{
	__shared__ float wgt[ATT_MAX_SPLIT];
	__shared__ float sh[32];
	const size_t idx = (size_t)blockIdx.y * n_head + blockIdx.x;
	const float *ml = part_ml + idx * nsz * 2;
	pdl_trigger();
	pdl_wait();
	const int pi = pos[blockIdx.y];

	if (pi < 0)
		return;
	const int L = pi + 1, chunk = rows_chunk(L, nsz);
	const int n_act = (L + chunk - 1) / chunk;
	if (n_act == 1)
		return;
	float M = -INFINITY, Lsum = 0.0f;

	for (int s = 0; s < n_act; s++)
		M = fmaxf(M, ml[2 * s]);
	for (int s = threadIdx.x; s < n_act; s += blockDim.x)
		wgt[s] = ml[2 * s] == -INFINITY ? 0.0f : expf(ml[2 * s] - M);
	__syncthreads();
	for (int s = threadIdx.x; s < n_act; s += blockDim.x)
		Lsum += ml[2 * s + 1] * wgt[s];
	Lsum = block_sum(Lsum, sh);
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float a = 0.0f;
		for (int s = 0; s < n_act; s++)
			a += part_acc[(idx * nsz + s) * hd + d] * wgt[s];
		out[idx * hd + d] = a / Lsum;
	}
}

template <int VPL>
static cudaError_t launch_rows_split(const struct cuda_ctx *c, dim3 grid, float *out, float *pa,
				     float *pm, const float *q, const struct rows_params &p,
				     int nsz, bool f16)
{
	if (f16)
		return cuda_launch(c, attn_rows_split_kernel<__half, VPL>, grid,
				   dim3(ATT_WARPS * 32), 0, out, pa, pm, q, p, nsz);
	return cuda_launch(c, attn_rows_split_kernel<float, VPL>, grid, dim3(ATT_WARPS * 32), 0,
			   out, pa, pm, q, p, nsz);
}

/* --- attention, float4 path -------------------------------------------------
 *
 * For head_dim <= 128, a multiple of 4 (kv_dim too, q 16-byte aligned): lane
 * = 4 dims, one float4 of K and one of V per position, G positions a warp
 * step with all 2G loads issued before the math (pages are backend
 * allocations, 16-byte aligned).  A block takes GQ query heads of one KV head
 * (GQ the largest of 8, 4, 2, 1 that divides the group; 1 while the batch has
 * fewer than ATT_GQ_MIN_BLOCKS (row, KV head) pairs), so GQA heads share one
 * read of K and V.  The GQ * G dot products of a step
 * are summed across the warp in one transposed butterfly (N - 1 + 5 - log2 N
 * shuffles, then N to hand each lane every score) rather than 5 apiece.  A
 * warp keeps 32 page pointers of its row in its lanes (one load per 32
 * pages) and walks positions by increment, no division per position. */

/* v[0..N-1] summed over the warp, transposed: afterwards lane l holds in v[0]
 * the sum of value rsum_src-inverse(l); value u is read from lane
 * rsum_src<N>(u).  N a power of 2, at most 32. */
template <int N, int O>
__device__ __forceinline__ void rsum_step(float *v, int lane)
{
	if constexpr (O > 0) {
		if constexpr (N > 1) {
			constexpr int H = N / 2;
			const bool up = lane & O;
#pragma unroll
			for (int k = 0; k < H; k++) {
				float send = up ? v[k] : v[k + H];
				float keep = up ? v[k + H] : v[k];
				v[k] = keep + __shfl_xor_sync(FULL_MASK, send, O);
			}
			rsum_step<H, O / 2>(v, lane);
		} else {
			v[0] += __shfl_xor_sync(FULL_MASK, v[0], O);
			rsum_step<1, O / 2>(v, lane);
		}
	}
}

template <int N>
__host__ __device__ constexpr int rsum_src(int u)
{
	int s = 0;
	for (int o = 16, h = N / 2; h >= 1; o >>= 1, h >>= 1)
		if (u & h)
			s |= o;
	return s;
}

/* grid (chunk, head group of GQ, row); partials as attn_rows_split_kernel's. */
template <typename KT, int GQ, int G>
__global__ void __launch_bounds__(ATT_WARPS * 32, 4)
attn_rows_v4_kernel(float *__restrict__ out, float *__restrict__ part_acc,
		    float *__restrict__ part_ml, const float *__restrict__ q,
		    struct rows_params p, int nsz)
{
	constexpr int N = GQ * G;
	__shared__ float sm_m[ATT_WARPS][GQ], sm_l[ATT_WARPS][GQ];
	__shared__ float4 sm_acc[ATT_WARPS][GQ][32];
	const int s = blockIdx.x, h0 = blockIdx.y * GQ, i = blockIdx.z;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int hd = p.head_dim, pt = p.page_tokens;
	const size_t idx0 = (size_t)i * p.n_head + h0;
	pdl_trigger();
	pdl_wait();
	const int pos = p.pos[i];

	if (pos < 0) { /* padding: zeros, once */
		if (s == 0)
			for (int d = threadIdx.x; d < GQ * hd; d += blockDim.x)
				out[idx0 * hd + d] = 0.0f;
		return;
	}
	const int L = pos + 1, chunk = rows_chunk(L, nsz);
	const int t0 = s * chunk, t1 = min(t0 + chunk, L);
	const int n_act = (L + chunk - 1) / chunk;

	if (t0 >= L) /* past this row's end */
		return;
	float *const *pages = p.tables[i];
	const bool on = 4 * lane < hd;
	const size_t koff = (size_t)p.layer * 2 * pt * p.kv_dim + (size_t)(h0 / p.group) * hd +
			    4 * lane;
	const size_t voff = (size_t)pt * p.kv_dim; /* V rows follow K rows */
	const int last_pg = (L - 1) / pt;
	float4 qv[GQ], acc[GQ];
	float m[GQ], l[GQ];

#pragma unroll
	for (int hh = 0; hh < GQ; hh++) {
		qv[hh] = on ? *(const float4 *)(q + (idx0 + hh) * hd + 4 * lane)
			    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		acc[hh] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		m[hh] = -INFINITY;
		l[hh] = 0.0f;
	}
	int wbase = -1; /* lane j holds page wbase + j */
	const float *wptr = NULL;
	for (int tb = t0 + warp * G; tb < t1; tb += ATT_WARPS * G) {
		int pg = tb / pt, tp = tb - pg * pt;
		if (wbase < 0 || pg + G > wbase + 32) { /* warp-uniform */
			wbase = pg;
			wptr = wbase + lane <= last_pg ? pages[wbase + lane] : NULL;
		}
		float4 kk[G], vv[G];
		/* all loads of the step first, so they are in flight together */
#pragma unroll
		for (int u = 0; u < G; u++) {
			const KT *pp = (const KT *)__shfl_sync(
				FULL_MASK, (unsigned long long)wptr, (pg - wbase) & 31);
			if (tb + u < t1 && on) {
				const KT *kr = pp + koff + (size_t)tp * p.kv_dim;
				kk[u] = kv_ld4(kr);
				vv[u] = kv_ld4(kr + voff);
			} else {
				kk[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
				vv[u] = kk[u];
			}
			if (++tp == pt) {
				tp = 0;
				pg++;
			}
		}
		float d[N];
#pragma unroll
		for (int hh = 0; hh < GQ; hh++)
#pragma unroll
			for (int u = 0; u < G; u++)
				d[hh * G + u] = dot4(qv[hh], kk[u], 0.0f);
		rsum_step<N, 16>(d, lane);
		const float mine = d[0];
#pragma unroll
		for (int hh = 0; hh < GQ; hh++) {
			float sc[G], mx = -INFINITY;
#pragma unroll
			for (int u = 0; u < G; u++) {
				float v = __shfl_sync(FULL_MASK, mine, rsum_src<N>(hh * G + u));
				sc[u] = tb + u < t1 ? v / p.sd : -INFINITY;
				mx = fmaxf(mx, sc[u]);
			}
			const float mn = fmaxf(m[hh], mx);
			const float alpha = m[hh] == -INFINITY ? 0.0f : expf(m[hh] - mn);
			float psum = 0.0f;
#pragma unroll
			for (int u = 0; u < G; u++) {
				sc[u] = tb + u < t1 ? expf(sc[u] - mn) : 0.0f;
				psum += sc[u];
			}
			l[hh] = l[hh] * alpha + psum;
			float4 a = acc[hh];
			a.x *= alpha;
			a.y *= alpha;
			a.z *= alpha;
			a.w *= alpha;
#pragma unroll
			for (int u = 0; u < G; u++) {
				a.x = fmaf(sc[u], vv[u].x, a.x);
				a.y = fmaf(sc[u], vv[u].y, a.y);
				a.z = fmaf(sc[u], vv[u].z, a.z);
				a.w = fmaf(sc[u], vv[u].w, a.w);
			}
			acc[hh] = a;
			m[hh] = mn;
		}
	}

	/* merge the warps */
#pragma unroll
	for (int hh = 0; hh < GQ; hh++) {
		if (lane == 0) {
			sm_m[warp][hh] = m[hh];
			sm_l[warp][hh] = l[hh];
		}
		sm_acc[warp][hh][lane] = acc[hh];
	}
	__syncthreads();
	for (int x = threadIdx.x; x < GQ * hd; x += blockDim.x) {
		const int hh = x / hd, dd = x - hh * hd;
		float M = -INFINITY, Lsum = 0.0f, a = 0.0f;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			M = fmaxf(M, sm_m[w][hh]);
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++) {
			float e = sm_m[w][hh] == -INFINITY ? 0.0f : expf(sm_m[w][hh] - M);
			Lsum += sm_l[w][hh] * e;
			a += ((const float *)sm_acc[w][hh])[dd] * e;
		}
		const size_t idx = idx0 + hh;
		if (n_act == 1) {
			out[idx * hd + dd] = a / Lsum;
		} else {
			part_acc[(idx * nsz + s) * hd + dd] = a;
			if (dd == 0) {
				part_ml[(idx * nsz + s) * 2] = M;
				part_ml[(idx * nsz + s) * 2 + 1] = Lsum;
			}
		}
	}
}

/* The float4 kernel for an f16 cache (DJN_ATTN_F16_OLD=1 keeps the float4
 * kernel itself on halves, to compare).  Converting each position's halves
 * as they came made the warp wait for each position's loads in turn (its
 * SASS shows it), and half the bytes a load kept half the bytes in flight.
 * Here every load of a step is issued raw (four halves, 8 bytes, a lane),
 * with G twice the f32 kernel's where registers allow (the same bytes in
 * flight), and widened only at use; positions past the chunk's end re-read
 * its last position (never a slot that was not written) and weigh nothing
 * (score -inf, weight 0).  Same grid, partials, merge and online softmax. */
template <int GQ, int G>
__global__ void __launch_bounds__(ATT_WARPS * 32, 4)
attn_rows_v4h_kernel(float *__restrict__ out, float *__restrict__ part_acc,
		    float *__restrict__ part_ml, const float *__restrict__ q,
		    struct rows_params p, int nsz)
{
	constexpr int N = GQ * G;
	__shared__ float sm_m[ATT_WARPS][GQ], sm_l[ATT_WARPS][GQ];
	__shared__ float4 sm_acc[ATT_WARPS][GQ][32];
	const int s = blockIdx.x, h0 = blockIdx.y * GQ, i = blockIdx.z;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int hd = p.head_dim, pt = p.page_tokens;
	const size_t idx0 = (size_t)i * p.n_head + h0;
	pdl_trigger();
	pdl_wait();
	const int pos = p.pos[i];

	if (pos < 0) { /* padding: zeros, once */
		if (s == 0)
			for (int d = threadIdx.x; d < GQ * hd; d += blockDim.x)
				out[idx0 * hd + d] = 0.0f;
		return;
	}
	const int L = pos + 1, chunk = rows_chunk(L, nsz);
	const int t0 = s * chunk, t1 = min(t0 + chunk, L);
	const int n_act = (L + chunk - 1) / chunk;

	if (t0 >= L) /* past this row's end */
		return;
	float *const *pages = p.tables[i];
	const bool on = 4 * lane < hd;
	const size_t koff = (size_t)p.layer * 2 * pt * p.kv_dim + (size_t)(h0 / p.group) * hd +
			    4 * lane;
	const size_t voff = (size_t)pt * p.kv_dim; /* V rows follow K rows */
	const int last_pg = (L - 1) / pt;
	float4 qv[GQ], acc[GQ];
	float m[GQ], l[GQ];

#pragma unroll
	for (int hh = 0; hh < GQ; hh++) {
		qv[hh] = on ? *(const float4 *)(q + (idx0 + hh) * hd + 4 * lane)
			    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		acc[hh] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		m[hh] = -INFINITY;
		l[hh] = 0.0f;
	}
	int wbase = -1; /* lane j holds page wbase + j */
	const float *wptr = NULL;
	for (int tb = t0 + warp * G; tb < t1; tb += ATT_WARPS * G) {
		int pg = tb / pt, tp = tb - pg * pt;
		if (wbase < 0 || pg + G > wbase + 32) { /* warp-uniform */
			wbase = pg;
			wptr = wbase + lane <= last_pg ? pages[wbase + lane] : NULL;
		}
		uint2 kr[G], vr[G]; /* as stored: widened at use */
		/* every load of the step first, so they are in flight together:
		 * position tb + u, or the chunk's last (t1 - 1) past it */
#pragma unroll
		for (int u = 0; u < G; u++) {
			const __half *pp = (const __half *)__shfl_sync(
				FULL_MASK, (unsigned long long)wptr, (pg - wbase) & 31);
			const __half *kp = pp + koff + (size_t)tp * p.kv_dim;
			kr[u] = on ? kv_raw4h(kp) : make_uint2(0u, 0u);
			vr[u] = on ? kv_raw4h(kp + voff) : make_uint2(0u, 0u);
			tp += tb + u + 1 < t1;
			if (tp == pt) {
				tp = 0;
				pg++;
			}
		}
		float d[N];
#pragma unroll
		for (int u = 0; u < G; u++) {
			const float4 kf = kv_wide4h(kr[u]);
#pragma unroll
			for (int hh = 0; hh < GQ; hh++)
				d[hh * G + u] = dot4(qv[hh], kf, 0.0f);
		}
		rsum_step<N, 16>(d, lane);
		const float mine = d[0];
#pragma unroll
		for (int hh = 0; hh < GQ; hh++) {
			float sc[G], mx = -INFINITY;
#pragma unroll
			for (int u = 0; u < G; u++) {
				float v = __shfl_sync(FULL_MASK, mine, rsum_src<N>(hh * G + u));
				sc[u] = tb + u < t1 ? v / p.sd : -INFINITY;
				mx = fmaxf(mx, sc[u]);
			}
			const float mn = fmaxf(m[hh], mx);
			const float alpha = m[hh] == -INFINITY ? 0.0f : expf(m[hh] - mn);
			float psum = 0.0f;
#pragma unroll
			for (int u = 0; u < G; u++) {
				sc[u] = tb + u < t1 ? expf(sc[u] - mn) : 0.0f;
				psum += sc[u];
			}
			l[hh] = l[hh] * alpha + psum;
			float4 a = acc[hh];
			a.x *= alpha;
			a.y *= alpha;
			a.z *= alpha;
			a.w *= alpha;
#pragma unroll
			for (int u = 0; u < G; u++) {
				const float4 vf = kv_wide4h(vr[u]);
				a.x = fmaf(sc[u], vf.x, a.x);
				a.y = fmaf(sc[u], vf.y, a.y);
				a.z = fmaf(sc[u], vf.z, a.z);
				a.w = fmaf(sc[u], vf.w, a.w);
			}
			acc[hh] = a;
			m[hh] = mn;
		}
	}

	/* merge the warps */
#pragma unroll
	for (int hh = 0; hh < GQ; hh++) {
		if (lane == 0) {
			sm_m[warp][hh] = m[hh];
			sm_l[warp][hh] = l[hh];
		}
		sm_acc[warp][hh][lane] = acc[hh];
	}
	__syncthreads();
	for (int x = threadIdx.x; x < GQ * hd; x += blockDim.x) {
		const int hh = x / hd, dd = x - hh * hd;
		float M = -INFINITY, Lsum = 0.0f, a = 0.0f;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			M = fmaxf(M, sm_m[w][hh]);
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++) {
			float e = sm_m[w][hh] == -INFINITY ? 0.0f : expf(sm_m[w][hh] - M);
			Lsum += sm_l[w][hh] * e;
			a += ((const float *)sm_acc[w][hh])[dd] * e;
		}
		const size_t idx = idx0 + hh;
		if (n_act == 1) {
			out[idx * hd + dd] = a / Lsum;
		} else {
			part_acc[(idx * nsz + s) * hd + dd] = a;
			if (dd == 0) {
				part_ml[(idx * nsz + s) * 2] = M;
				part_ml[(idx * nsz + s) * 2 + 1] = Lsum;
			}
		}
	}
}

template <int GQ, int G>
static cudaError_t launch_rows_v4(const struct cuda_ctx *c, dim3 grid, float *out, float *pa,
				  float *pm, const float *q, const struct rows_params &p, int nsz,
				  bool f16)
{
	if (f16)
		return cuda_launch(c, attn_rows_v4_kernel<__half, GQ, G>, grid,
				   dim3(ATT_WARPS * 32), 0, out, pa, pm, q, p, nsz);
	return cuda_launch(c, attn_rows_v4_kernel<float, GQ, G>, grid, dim3(ATT_WARPS * 32), 0,
			   out, pa, pm, q, p, nsz);
}

/* Chunks a row may be cut into: enough (row, head, chunk) blocks to fill the
 * GPU, long rows in chunks of about ATT_LONG_CHUNK so that one long session
 * does not make the whole batch wait, and never more than a row of max_len
 * can use.  From the shape alone, so a recording is valid at any pos. */
static int rows_nsz(const struct cuda_ctx *c, int n_rows, int n_head, int max_len)
{
	const long long base = (long long)n_head * n_rows;
	long long fill = (8LL * c->n_sm + base - 1) / base;
	long long lng = ((long long)max_len + ATT_LONG_CHUNK - 1) / ATT_LONG_CHUNK;
	long long most = ((long long)max_len + ATT_MIN_CHUNK - 1) / ATT_MIN_CHUNK;
	long long n = fill > lng ? fill : lng;

	if (n > most)
		n = most;
	if (n > ATT_MAX_SPLIT)
		n = ATT_MAX_SPLIT;
	return n < 1 ? 1 : (int)n;
}

#define VPL_SWITCH(vpl, CALL)                                                 \
	switch (vpl) {                                                        \
	case 1: CALL(1); break;                                               \
	case 2: CALL(2); break;                                               \
	case 3: CALL(3); break;                                               \
	case 4: CALL(4); break;                                               \
	case 5: CALL(5); break;                                               \
	case 6: CALL(6); break;                                               \
	case 7: CALL(7); break;                                               \
	default: CALL(8); break;                                              \
	}

extern "C" enum djn_status cuda_attention_rows(struct djn_backend *be, float *out,
					       const float *q, const struct djn_kv_rows *kv,
					       int n_head, int n_kv_head, int head_dim, int layer)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct rows_params p;
	enum djn_status st;

	CUDA_OP(be, "attention_rows");
	if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head || head_dim <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention_rows: %d heads, %d kv heads, head_dim %d", n_head,
				   n_kv_head, head_dim);
	if (head_dim > 256)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "attention_rows: head_dim %d (cuda supports up to 256)", head_dim);
	if ((st = check_rows(be, op_name_, kv)) != DJN_OK)
		return st;
	if (layer < 0 || layer >= kv->n_layer)
		return djn_err_set(&be->err, DJN_ERR_RANGE,
				   "attention_rows: layer %d beyond the %d cached", layer,
				   kv->n_layer);
	if ((int64_t)n_kv_head * head_dim > kv->kv_dim)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention_rows: %d kv heads of %d exceed the cache's kv_dim %d",
				   n_kv_head, head_dim, kv->kv_dim);
	if (kv->n_rows == 0)
		return DJN_OK;
	if (kv->n_rows > 65535 || n_head > 65535)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "attention_rows: %d rows of %d heads (cuda supports up to 65535 "
				   "of each)",
				   kv->n_rows, n_head);

	p.tables = kv->tables;
	p.pos = kv->pos;
	p.n_head = n_head;
	p.group = n_head / n_kv_head;
	p.head_dim = head_dim;
	p.kv_dim = kv->kv_dim;
	p.page_tokens = kv->page_tokens;
	p.layer = layer;
	p.sd = sqrtf((float)head_dim);
	const int vpl = (head_dim + 31) / 32;
	/* the float4 path, heads of one KV head GQ to a block; else the scalar
	 * kernel, a block a head (DJN_ATTN_ROWS_OLD=1 picks it always, to
	 * compare: bench/attn_rows_bench.c) */
	int gq = p.group % 8 == 0 ? 8 : p.group % 4 == 0 ? 4 : p.group % 2 == 0 ? 2 : 1;
	/* few rows: a block a query head, for the blocks (K/V re-reads then hit
	 * L2); GQ to a block was slower at 1 row of 32/8 (12.7 us against 10.0) */
	if ((long long)kv->n_rows * (n_head / gq) < ATT_GQ_MIN_BLOCKS && !c->skinny)
		gq = 1;
	const char *old_env = getenv("DJN_ATTN_ROWS_OLD");
	const bool v4 = head_dim <= 128 && head_dim % 4 == 0 && kv->kv_dim % 4 == 0 &&
			((uintptr_t)q & 15) == 0 && !(old_env && old_env[0] == '1');
	const bool f16 = kv->dtype == DJN_DTYPE_F16;
	/* halves: attn_rows_v4h_kernel, but the float4 kernel itself with
	 * DJN_ATTN_F16_OLD=1 (to compare); GQ 8 takes GQ 4 there, as GQ 8 with
	 * twice the positions would spill */
	const bool v4h = v4 && f16 && !cuda_env_on("DJN_ATTN_F16_OLD");
	if (v4h && gq == 8)
		gq = 4;
	const int hpb = v4 ? gq : 1; /* query heads a block */
	/* batch-invariant (DJN_SKINNY=1): the heads a block and the number of
	 * chunks fixed, so a row's chunks, and so its sums' order, come from
	 * its own length alone, not from the batch's rows or longest row */
	const int nsz = c->skinny ? ATT_INV_SPLIT : rows_nsz(c, kv->n_rows, n_head / hpb,
							     kv->max_len);

	float *pa = NULL, *pm = NULL;
	if (nsz > 1) {
		/* grows only op by op: while recording, a scratch that must grow
		 * fails the recording (cuda_scratch) */
		size_t n_part = (size_t)kv->n_rows * n_head * nsz;
		pa = (float *)cuda_scratch(be, CUDA_SCRATCH_ATTN,
					   sizeof(float) * n_part * ((size_t)head_dim + 2));
		if (!pa)
			return be->err.code;
		pm = pa + n_part * head_dim;
	}
	dim3 grid((unsigned)nsz, (unsigned)(n_head / hpb), (unsigned)kv->n_rows);
	if (v4h) {
#define V4H(GQ_, G_) CK(be, cuda_launch(c, attn_rows_v4h_kernel<GQ_, G_>, grid,                 \
					dim3(ATT_WARPS * 32), 0, out, pa, pm, q, p, nsz))
		switch (gq) { /* twice the f32 kernel's positions a step */
		case 4: V4H(4, 8); break;
		case 2: V4H(2, 16); break;
		default: V4H(1, 16); break;
		}
#undef V4H
	} else if (v4) {
		switch (gq) {
		case 8: CK(be, (launch_rows_v4<8, 2>(c, grid, out, pa, pm, q, p, nsz, f16))); break;
		case 4: CK(be, (launch_rows_v4<4, 4>(c, grid, out, pa, pm, q, p, nsz, f16))); break;
		case 2: CK(be, (launch_rows_v4<2, 8>(c, grid, out, pa, pm, q, p, nsz, f16))); break;
		default: CK(be, (launch_rows_v4<1, 8>(c, grid, out, pa, pm, q, p, nsz, f16))); break;
		}
	} else {
#define SPLIT(V) CK(be, launch_rows_split<V>(c, grid, out, pa, pm, q, p, nsz, f16))
		VPL_SWITCH(vpl, SPLIT);
#undef SPLIT
	}
	CK_LAUNCH(be);
	if (nsz > 1) {
		CK(be, cuda_launch(c, attn_rows_merge_kernel, dim3((unsigned)n_head,
								   (unsigned)kv->n_rows),
				   dim3(128), 0, out, (const float *)pa, (const float *)pm, kv->pos,
				   nsz, head_dim, n_head));
		CK_LAUNCH(be);
	}
	return DJN_OK;
}

/* --- argmax ---------------------------------------------------------------- */

#define AM_THREADS 256

struct rmax {
	float v;
	int i; /* -1: no candidate (only NaN so far) */
};

/* The larger, the first of equals; a candidate beats none. */
__device__ __forceinline__ struct rmax rmax_pick(struct rmax a, struct rmax b)
{
	if (b.i >= 0 && (a.i < 0 || b.v > a.v || (b.v == a.v && b.i < a.i)))
		return b;
	return a;
}

/* One block per row; ties to the first index, NaN never the maximum, a row
 * of only NaN gives 0: as reduce.cu's argmax and the CPU's. */
__global__ void __launch_bounds__(AM_THREADS, 4)
argmax_rows_kernel(int *__restrict__ res, const float *__restrict__ x, int dim)
{
	__shared__ struct rmax sh[AM_THREADS / 32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	struct rmax best = { 0.0f, -1 };

	/* ascending per thread: a strict > keeps the first of equal values */
	for (int j = threadIdx.x; j < dim; j += blockDim.x) {
		float v = xr[j];
		if (!isnan(v) && (best.i < 0 || v > best.v)) {
			best.v = v;
			best.i = j;
		}
	}
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) {
		struct rmax other;
		other.v = __shfl_xor_sync(FULL_MASK, best.v, o);
		other.i = __shfl_xor_sync(FULL_MASK, best.i, o);
		best = rmax_pick(best, other);
	}
	if ((threadIdx.x & 31) == 0)
		sh[threadIdx.x >> 5] = best;
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int w = 1; w < AM_THREADS / 32; w++)
			best = rmax_pick(best, sh[w]);
		res[blockIdx.x] = best.i < 0 ? 0 : best.i;
	}
}

extern "C" enum djn_status cuda_argmax_rows(struct djn_backend *be, const float *x, int n,
					    int dim, int *out)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;
	int *dres;

	CUDA_OP(be, "argmax_rows");
	if (n < 0 || dim <= 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID, "argmax_rows: %d rows of %d", n, dim);
	if (c->capturing) {
		c->cap_failed = true;
		return djn_err_set(&be->err, DJN_ERR_STATE,
				   "argmax_rows: returns to the host, cannot be recorded");
	}
	if (n == 0)
		return DJN_OK;
	dres = (int *)cuda_scratch(be, CUDA_SCRATCH_RED, sizeof(int) * (size_t)n);
	if (!dres)
		return be->err.code;
	argmax_rows_kernel<<<(unsigned)n, AM_THREADS, 0, c->compute>>>(dres, x, dim);
	CK_LAUNCH(be);
	/* through the pinned result buffer when it holds them (a true async
	 * copy), else straight into out (pageable: staged by the driver) */
	const size_t bytes = sizeof(int) * (size_t)n;
	void *dst = bytes <= 4096 ? c->host_res : (void *)out;
	CK(be, cudaMemcpyAsync(dst, dres, bytes, cudaMemcpyDeviceToHost, c->compute));
	if ((st = cuda_sync_compute(be, op_name_)) != DJN_OK)
		return st;
	if (dst != (void *)out)
		memcpy(out, c->host_res, bytes);
	return DJN_OK;
}
