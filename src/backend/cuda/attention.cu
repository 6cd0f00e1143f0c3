/* attention.cu - KV-cache writes and causal GQA attention over the paged KV
 * cache, on the GPU.
 *
 * Page p of the cache holds positions p*page_tokens .. +page_tokens-1 of every
 * layer, [layer][K=0/V=1][token in page][kv_dim] f32 or f16 (kv->dtype:
 * every kernel that touches the cache is a template on its element type,
 * reads widen to f32, stores round to nearest even), and kv->pages is a
 * device array of device page pointers: a position's row is found through
 * pages[pos / page_tokens], never by assuming pages are contiguous.
 *
 * Two kernels, both exact softmax (online, f32, expf) with score = q.k /
 * sqrtf(head_dim) as the CPU reference computes it:
 *   - split ("flash-decoding"): grid (split, head, row).  The keys of a row
 *     are cut into n_split chunks so that a single decode row still fills the
 *     GPU; each block of 4 warps walks its chunk, a warp 4 positions at a time
 *     (lane = head dim, warp-shuffle dot products), keeping a running max, sum
 *     and weighted V.  A second pass merges the chunks' partials.  An f16
 *     cache has its own split kernel (attn_split_h_kernel: lane = 4 dims, 8
 *     positions a step, every load issued raw before any is widened), with
 *     the same chunks and merge.
 *   - prefill (n_rows > 8): grid (16-row query tile, head).  Tiles of 32 keys
 *     are staged in shared memory once for the 16 query rows (K rows padded
 *     by 4 floats: conflict-free float4 reads); lane = key for q.k, lane =
 *     head dim for p.V, online softmax per row.
 */
#include "backend/cuda/cuda.cuh"

struct attn_params {
	int n_head, group, head_dim, kv_dim, page_tokens, layer, pos0, n_rows;
	float sd; /* sqrtf(head_dim): scores are divided by it, as on the CPU */
};

/* Row `t` of K (V: + page_tokens * kv_dim) for kv head offset koff. */
template <typename KT>
__device__ __forceinline__ const KT *kv_row(float *const *pages, const struct attn_params &p,
					    size_t koff, int t)
{
	const KT *page = (const KT *)pages[t / p.page_tokens];

	return page + koff + (size_t)(t % p.page_tokens) * p.kv_dim;
}

/* --- kv_store -------------------------------------------------------------- */

template <typename KT>
__global__ void __launch_bounds__(256, 4)
kv_store_kernel(float *const *pages, int page_tokens, int kv_dim, int layer, int pos0,
		const int *dpos, const float *__restrict__ k, const float *__restrict__ v)
{
	const int i = blockIdx.x, which = blockIdx.y, t = (dpos ? *dpos : pos0) + i;
	KT *dst = (KT *)pages[t / page_tokens] +
		  (((size_t)layer * 2 + which) * page_tokens + t % page_tokens) * kv_dim;
	const float *src = (which ? v : k) + (size_t)i * kv_dim;

	for (int d = threadIdx.x; d < kv_dim; d += blockDim.x)
		kv_st(dst + d, src[d]);
}

static enum djn_status check_kv(struct djn_backend *be, const char *op,
				const struct djn_kv_view *kv, int layer, int pos0, int n)
{
	if (!kv || !kv->pages || kv->page_tokens <= 0 || kv->kv_dim <= 0 || kv->n_pages < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID, "%s: no KV cache (pages not set)", op);
	if (layer < 0 || layer >= kv->n_layer)
		return djn_err_set(&be->err, DJN_ERR_RANGE, "%s: layer %d beyond the %d cached", op,
				   layer, kv->n_layer);
	if (pos0 < 0 || n < 0 || (int64_t)pos0 + n > (int64_t)kv->n_pages * kv->page_tokens)
		return djn_err_set(&be->err, DJN_ERR_RANGE,
				   "%s: positions %d..%d beyond the %lld cached", op, pos0,
				   pos0 + n - 1, (long long)kv->n_pages * kv->page_tokens);
	return DJN_OK;
}

extern "C" enum djn_status cuda_kv_store(struct djn_backend *be, const struct djn_kv_view *kv,
					 int layer, int pos0, int n, const float *k,
					 const float *v)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "kv_store");
	if ((st = check_kv(be, op_name_, kv, layer, pos0, n)) != DJN_OK)
		return st;
	if (n == 0)
		return DJN_OK;
	const int *dpos;
	if ((st = cuda_step_pos(be, op_name_, pos0, n, &dpos)) != DJN_OK)
		return st;
	unsigned threads = kv->kv_dim >= 256 ? 256 : (unsigned)(kv->kv_dim + 31) / 32 * 32;
	if (kv->dtype == DJN_DTYPE_F16)
		kv_store_kernel<__half><<<dim3((unsigned)n, 2), threads, 0, c->compute>>>(
			kv->pages, kv->page_tokens, kv->kv_dim, layer, pos0, dpos, k, v);
	else
		kv_store_kernel<float><<<dim3((unsigned)n, 2), threads, 0, c->compute>>>(
			kv->pages, kv->page_tokens, kv->kv_dim, layer, pos0, dpos, k, v);
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- split-KV (decode) ----------------------------------------------------- */

#define ATT_WARPS 4       /* warps per block */
#define ATT_G 4           /* positions a warp handles per step */
#define ATT_MAX_SPLIT 128 /* chunks per row, at most */
#define ATT_MIN_CHUNK 64  /* positions per chunk, at least */

/* Keys per chunk for rows ending at lmax (positions 0 .. lmax-1), with the
 * keys cut into at most nsz chunks.  nsz depends on the shape only, so the
 * same chunks come out whether the host or a recorded kernel works them out:
 * a replayed step sums in the same order as one run op by op. */
__host__ __device__ __forceinline__ int att_chunk(int lmax, int nsz)
{
	int c = (lmax + nsz - 1) / nsz;
	return c < ATT_MIN_CHUNK ? ATT_MIN_CHUNK : c;
}

template <typename KT, int VPL>
__global__ void __launch_bounds__(ATT_WARPS * 32, 4)
attn_split_kernel(float *__restrict__ out, float *__restrict__ part_acc,
		  float *__restrict__ part_ml, const float *__restrict__ q,
		  float *const *pages, struct attn_params p, const int *dpos, int nsz, int n_split)
{
	__shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
	__shared__ float sm_acc[ATT_WARPS][VPL * 32];
	const int s = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	pdl_trigger();
	pdl_wait();
	const int pos0 = dpos ? *dpos : p.pos0, lmax = pos0 + p.n_rows;
	const int chunk = att_chunk(lmax, nsz);
	const int hd = p.head_dim, L = pos0 + i + 1;
	const int t0 = s * chunk, t1 = min(t0 + chunk, L);

	if (t0 >= lmax) /* a recorded grid has room for longer rows: nothing to do */
		return;
	const size_t koff = (size_t)p.layer * 2 * p.page_tokens * p.kv_dim +
			    (size_t)(h / p.group) * hd;
	const size_t voff = (size_t)p.page_tokens * p.kv_dim; /* V rows follow K rows */
	const float *qr = q + ((size_t)i * p.n_head + h) * hd;
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
			const KT *kr = t < t1 ? kv_row<KT>(pages, p, koff, t) : NULL;
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
		/* tb < t1, so position tb is valid and mx finite (or NaN from NaN input) */
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
	const size_t idx = (size_t)i * p.n_head + h;
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float a = 0.0f;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			a += sm_acc[w][d] * e[w];
		if (n_split == 1)
			out[idx * hd + d] = a / Lsum;
		else
			part_acc[(idx * n_split + s) * hd + d] = a;
	}
	if (n_split > 1 && threadIdx.x == 0) {
		part_ml[(idx * n_split + s) * 2] = M;
		part_ml[(idx * n_split + s) * 2 + 1] = Lsum;
	}
}

/* --- split-KV (decode), f16 cache -------------------------------------------
 *
 * The split kernel above, for halves (DJN_ATTN_F16_OLD=1 keeps that one, to
 * compare).  There a lane loads one half a dim, ATT_G positions a step: half
 * the bytes in flight of f32, and each position's widening sat between its
 * loads and the next position's, so the warp waited for each position in
 * turn (its SASS shows it).  Here a lane takes 4 consecutive dims of each 128
 * (one 8-byte load of K and one of V a position), ATT_GH positions a warp
 * step, so a step has the bytes of f32's in flight: the step's page pointers
 * first, then every load, raw, then the math.  Positions past the chunk's end
 * re-read the chunk's last position (never a slot that was not written) and
 * weigh nothing (score -inf, weight 0).  Chunks, partials and the merge are
 * the f32 kernel's; the online softmax is the same, the dot products sum four
 * dims a lane before the warp's butterfly.  Needs head_dim and kv_dim
 * multiples of 4 (8-byte aligned loads). */
#define ATT_GH 8 /* positions a warp handles per step, f16 */

template <int NJ> /* 128-dim slices of a head: head_dim <= 128 * NJ */
__global__ void __launch_bounds__(ATT_WARPS * 32, 4)
attn_split_h_kernel(float *__restrict__ out, float *__restrict__ part_acc,
		    float *__restrict__ part_ml, const float *__restrict__ q,
		    float *const *pages, struct attn_params p, const int *dpos, int nsz,
		    int n_split)
{
	constexpr int G = ATT_GH;
	__shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
	__shared__ float4 sm_acc[ATT_WARPS][NJ * 32]; /* float d of a row at [d / 4].d % 4 */
	const int s = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	pdl_trigger();
	pdl_wait();
	const int pos0 = dpos ? *dpos : p.pos0, lmax = pos0 + p.n_rows;
	const int chunk = att_chunk(lmax, nsz);
	const int hd = p.head_dim, L = pos0 + i + 1, pt = p.page_tokens;
	const int t0 = s * chunk, t1 = min(t0 + chunk, L);

	if (t0 >= lmax) /* a recorded grid has room for longer rows: nothing to do */
		return;
	const size_t koff = (size_t)p.layer * 2 * pt * p.kv_dim + (size_t)(h / p.group) * hd +
			    4 * lane;
	const size_t voff = (size_t)pt * p.kv_dim; /* V rows follow K rows */
	const float *qr = q + ((size_t)i * p.n_head + h) * hd;
	float4 qv[NJ], acc[NJ];
	bool on[NJ];
	float m = -INFINITY, l = 0.0f;

#pragma unroll
	for (int j = 0; j < NJ; j++) {
		const int d = 128 * j + 4 * lane;
		on[j] = d < hd;
		qv[j] = on[j] ? make_float4(qr[d], qr[d + 1], qr[d + 2], qr[d + 3])
			      : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		acc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
	}
	for (int tb = t0 + warp * G; tb < t1; tb += ATT_WARPS * G) {
		const __half *row[G];
		int pg = tb / pt, tp = tb - pg * pt;
		/* position tb + u, or the chunk's last (t1 - 1) past it */
#pragma unroll
		for (int u = 0; u < G; u++) {
			row[u] = (const __half *)pages[pg] + koff + (size_t)tp * p.kv_dim;
			tp += tb + u + 1 < t1;
			if (tp == pt) {
				tp = 0;
				pg++;
			}
		}
		uint2 kr[G][NJ], vr[G][NJ];
#pragma unroll
		for (int u = 0; u < G; u++)
#pragma unroll
			for (int j = 0; j < NJ; j++) {
				kr[u][j] = on[j] ? kv_raw4h(row[u] + 128 * j) : make_uint2(0u, 0u);
				vr[u][j] = on[j] ? kv_raw4h(row[u] + voff + 128 * j)
						 : make_uint2(0u, 0u);
			}
		float sc[G];
#pragma unroll
		for (int u = 0; u < G; u++) {
			float dot = 0.0f;
#pragma unroll
			for (int j = 0; j < NJ; j++)
				dot = dot4(qv[j], kv_wide4h(kr[u][j]), dot);
			sc[u] = dot;
		}
#pragma unroll
		for (int o = 16; o > 0; o >>= 1)
#pragma unroll
			for (int u = 0; u < G; u++)
				sc[u] += __shfl_xor_sync(FULL_MASK, sc[u], o);
		float mx = -INFINITY;
#pragma unroll
		for (int u = 0; u < G; u++) {
			sc[u] = tb + u < t1 ? sc[u] / p.sd : -INFINITY;
			mx = fmaxf(mx, sc[u]);
		}
		/* tb < t1, so position tb is valid and mx finite (or NaN from NaN input) */
		const float mn = fmaxf(m, mx);
		const float alpha = m == -INFINITY ? 0.0f : expf(m - mn);
		float psum = 0.0f;
#pragma unroll
		for (int u = 0; u < G; u++) {
			sc[u] = tb + u < t1 ? expf(sc[u] - mn) : 0.0f;
			psum += sc[u];
		}
		l = l * alpha + psum;
#pragma unroll
		for (int j = 0; j < NJ; j++) {
			float4 a = acc[j];
			a.x *= alpha;
			a.y *= alpha;
			a.z *= alpha;
			a.w *= alpha;
#pragma unroll
			for (int u = 0; u < G; u++) {
				const float4 vf = kv_wide4h(vr[u][j]);
				a.x = fmaf(sc[u], vf.x, a.x);
				a.y = fmaf(sc[u], vf.y, a.y);
				a.z = fmaf(sc[u], vf.z, a.z);
				a.w = fmaf(sc[u], vf.w, a.w);
			}
			acc[j] = a;
		}
		m = mn;
	}

	/* merge the warps, as the f32 kernel */
	if (lane == 0) {
		sm_m[warp] = m;
		sm_l[warp] = l;
	}
#pragma unroll
	for (int j = 0; j < NJ; j++)
		sm_acc[warp][32 * j + lane] = acc[j];
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
	const size_t idx = (size_t)i * p.n_head + h;
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float a = 0.0f;
#pragma unroll
		for (int w = 0; w < ATT_WARPS; w++)
			a += ((const float *)sm_acc[w])[d] * e[w];
		if (n_split == 1)
			out[idx * hd + d] = a / Lsum;
		else
			part_acc[(idx * n_split + s) * hd + d] = a;
	}
	if (n_split > 1 && threadIdx.x == 0) {
		part_ml[(idx * n_split + s) * 2] = M;
		part_ml[(idx * n_split + s) * 2 + 1] = Lsum;
	}
}

/* Merges the chunks of one (row, head): grid (head, row).  The partials of
 * a (row, head) are n_split apart; the chunks that hold keys are those
 * before lmax.  (Merging in the split kernel instead, by the last of a row's
 * blocks to finish, measured no faster on an H200: its fences and atomics
 * cost what the launch saved.) */
__global__ void __launch_bounds__(128, 4)
attn_merge_kernel(float *__restrict__ out, const float *__restrict__ part_acc,
		  const float *__restrict__ part_ml, int pos0, int n_rows, const int *dpos,
		  int nsz, int n_split, int hd, int n_head)
{
	__shared__ float wgt[ATT_MAX_SPLIT];
	__shared__ float sh[32];
	const size_t idx = (size_t)blockIdx.y * n_head + blockIdx.x;
	const float *ml = part_ml + idx * n_split * 2;
	pdl_trigger();
	pdl_wait();
	const int lmax = (dpos ? *dpos : pos0) + n_rows, chunk = att_chunk(lmax, nsz);
	const int n_act = min((lmax + chunk - 1) / chunk, n_split);
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
			a += part_acc[(idx * n_split + s) * hd + d] * wgt[s];
		out[idx * hd + d] = a / Lsum;
	}
}

/* --- prefill (tiled) ------------------------------------------------------- */

#define PF_BQ 16   /* query rows per block */
#define PF_BK 32   /* keys per tile (one per lane) */
#define PF_WARPS 4 /* each warp owns PF_BQ / PF_WARPS rows */
#define PF_RPW (PF_BQ / PF_WARPS)

static size_t prefill_smem(int hd, int vpl)
{
	return sizeof(float) * ((size_t)PF_BK * (hd + 4) + (size_t)PF_BK * vpl * 32 +
				(size_t)PF_BQ * vpl * 32 + (size_t)PF_BQ * PF_BK);
}

template <typename KT, int VPL>
__global__ void __launch_bounds__(PF_WARPS * 32, 2)
attn_prefill_kernel(float *__restrict__ out, const float *__restrict__ q, float *const *pages,
		    struct attn_params p)
{
	constexpr int HDP = VPL * 32; /* V and Q rows, zero-padded */
	extern __shared__ float4 smem4[];
	__shared__ const KT *krow[PF_BK];
	const int hd = p.head_dim, KS = hd + 4; /* K row stride: conflict-free float4 */
	float *Ks = (float *)smem4;
	float *Vs = Ks + PF_BK * KS;
	float *Qs = Vs + PF_BK * HDP;
	float *Ps = Qs + PF_BQ * HDP;
	const int h = blockIdx.y, i0 = blockIdx.x * PF_BQ;
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int i_end = min(i0 + PF_BQ, p.n_rows);
	const int maxpos = p.pos0 + i_end - 1;
	const size_t koff = (size_t)p.layer * 2 * p.page_tokens * p.kv_dim +
			    (size_t)(h / p.group) * hd;
	const size_t voff = (size_t)p.page_tokens * p.kv_dim;
	float m[PF_RPW], l[PF_RPW], acc[PF_RPW][VPL];
	int rowpos[PF_RPW];

	for (int e = tid; e < PF_BQ * HDP; e += blockDim.x) {
		int r = e / HDP, d = e % HDP;
		Qs[e] = i0 + r < p.n_rows && d < hd ? q[((size_t)(i0 + r) * p.n_head + h) * hd + d]
						      : 0.0f;
	}
#pragma unroll
	for (int rr = 0; rr < PF_RPW; rr++) {
		int i = i0 + warp * PF_RPW + rr;
		rowpos[rr] = i < p.n_rows ? p.pos0 + i : -1; /* -1: a padding row */
		m[rr] = -INFINITY;
		l[rr] = 0.0f;
#pragma unroll
		for (int j = 0; j < VPL; j++)
			acc[rr][j] = 0.0f;
	}

	const int ntiles = maxpos / PF_BK + 1;
	for (int kt = 0; kt < ntiles; kt++) {
		const int tbase = kt * PF_BK;
		__syncthreads(); /* the last tile's readers are done */
		if (tid < PF_BK) {
			int t = tbase + tid;
			krow[tid] = t <= maxpos ? kv_row<KT>(pages, p, koff, t) : NULL;
		}
		__syncthreads();
		for (int e = tid; e < PF_BK * HDP; e += blockDim.x) {
			int jj = e / HDP, d = e % HDP;
			const KT *kr = krow[jj];
			bool ok = kr && d < hd;
			if (d < hd)
				Ks[jj * KS + d] = ok ? kv_ld(kr + d) : 0.0f;
			Vs[e] = ok ? kv_ld(kr + voff + d) : 0.0f;
		}
		__syncthreads();

		/* scores: lane = key */
		float sc[PF_RPW];
#pragma unroll
		for (int rr = 0; rr < PF_RPW; rr++)
			sc[rr] = 0.0f;
		const float *kr = Ks + lane * KS;
		const float *qw = Qs + warp * PF_RPW * HDP;
		for (int d = 0; d < hd; d += 4) {
			float4 kk = *(const float4 *)(kr + d);
#pragma unroll
			for (int rr = 0; rr < PF_RPW; rr++) {
				float4 qq = *(const float4 *)(qw + rr * HDP + d);
				float a = sc[rr];
				a = fmaf(qq.x, kk.x, a);
				a = fmaf(qq.y, kk.y, a);
				a = fmaf(qq.z, kk.z, a);
				a = fmaf(qq.w, kk.w, a);
				sc[rr] = a;
			}
		}
		const int t = tbase + lane;
		int nvalid[PF_RPW];
#pragma unroll
		for (int rr = 0; rr < PF_RPW; rr++) {
			const bool valid = t <= rowpos[rr];
			const float s = valid ? sc[rr] / p.sd : -INFINITY;
			const float mn = fmaxf(m[rr], warp_max(s));
			const float alpha = m[rr] == -INFINITY ? 0.0f : expf(m[rr] - mn);
			const float pr = valid ? expf(s - mn) : 0.0f;
			l[rr] = l[rr] * alpha + warp_sum(pr);
			Ps[(warp * PF_RPW + rr) * PF_BK + lane] = pr;
			m[rr] = mn;
#pragma unroll
			for (int j = 0; j < VPL; j++)
				acc[rr][j] *= alpha;
			nvalid[rr] = min(max(rowpos[rr] - tbase + 1, 0), PF_BK);
		}
		__syncwarp();

		/* p.V: lane = head dim; masked keys are skipped, not multiplied
		 * by 0, so an Inf in a V row a query cannot see stays invisible */
		const float *pw = Ps + warp * PF_RPW * PF_BK;
		for (int jj = 0; jj < PF_BK; jj++) {
			float vrow[VPL];
#pragma unroll
			for (int j = 0; j < VPL; j++)
				vrow[j] = Vs[jj * HDP + lane + 32 * j];
#pragma unroll
			for (int rr = 0; rr < PF_RPW; rr++) {
				if (jj < nvalid[rr]) {
					float pp = pw[rr * PF_BK + jj];
#pragma unroll
					for (int j = 0; j < VPL; j++)
						acc[rr][j] = fmaf(pp, vrow[j], acc[rr][j]);
				}
			}
		}
	}

#pragma unroll
	for (int rr = 0; rr < PF_RPW; rr++) {
		int i = i0 + warp * PF_RPW + rr;
		if (i >= p.n_rows)
			continue;
		float *o = out + ((size_t)i * p.n_head + h) * hd;
#pragma unroll
		for (int j = 0; j < VPL; j++) {
			int d = lane + 32 * j;
			if (d < hd)
				o[d] = acc[rr][j] / l[rr];
		}
	}
}

/* --- dispatch -------------------------------------------------------------- */

template <int VPL>
static cudaError_t launch_split(const struct cuda_ctx *c, dim3 grid, float *out, float *pa,
				float *pm, const float *q, const struct djn_kv_view *kv,
				const struct attn_params &p, const int *dpos, int nsz, int n_split)
{
	if (kv->dtype == DJN_DTYPE_F16)
		return cuda_launch(c, attn_split_kernel<__half, VPL>, grid, dim3(ATT_WARPS * 32),
				   0, out, pa, pm, q, kv->pages, p, dpos, nsz, n_split);
	return cuda_launch(c, attn_split_kernel<float, VPL>, grid, dim3(ATT_WARPS * 32), 0, out,
			   pa, pm, q, kv->pages, p, dpos, nsz, n_split);
}

template <typename KT, int VPL>
static cudaError_t launch_prefill_t(dim3 grid, size_t smem, cudaStream_t st, float *out,
				    const float *q, float *const *pages,
				    const struct attn_params &p)
{
	if (smem > 48 * 1024) {
		cudaError_t e = cudaFuncSetAttribute(attn_prefill_kernel<KT, VPL>,
						     cudaFuncAttributeMaxDynamicSharedMemorySize,
						     (int)smem);
		if (e != cudaSuccess)
			return e;
	}
	attn_prefill_kernel<KT, VPL><<<grid, PF_WARPS * 32, smem, st>>>(out, q, pages, p);
	return cudaSuccess;
}

template <int VPL>
static cudaError_t launch_prefill(dim3 grid, size_t smem, cudaStream_t st, float *out,
				  const float *q, const struct djn_kv_view *kv,
				  const struct attn_params &p)
{
	if (kv->dtype == DJN_DTYPE_F16)
		return launch_prefill_t<__half, VPL>(grid, smem, st, out, q, kv->pages, p);
	return launch_prefill_t<float, VPL>(grid, smem, st, out, q, kv->pages, p);
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

/* --- long prefill: attention as two batched GEMMs ---------------------------

 * For a long chunk, S = Q K^T and O = P V are matrix products: K and V of
 * the layer are gathered from their pages into contiguous buffers, cuBLAS
 * (f32, no TF32) computes every head's scores at once, one kernel applies
 * the causal mask and the softmax, and cuBLAS multiplies by V straight into
 * the output's layout.  The scores of a 512-token chunk are 32 MiB for 32
 * heads; past ATT_GEMM_MAX_SCRATCH the tiled kernel above takes over. */
#define ATT_GEMM_MIN_ROWS 64
#define ATT_GEMM_MAX_SCRATCH ((size_t)512 << 20)

template <typename KT>
__global__ void __launch_bounds__(256, 4)
kv_gather_kernel(float4 *__restrict__ kc, float4 *__restrict__ vc, float *const *pages,
		 int layer, int page_tokens, int kv_dim4, int len)
{
	size_t total = (size_t)len * kv_dim4;

	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int t = (int)(i / kv_dim4), e = (int)(i % kv_dim4);
		const KT *page = (const KT *)pages[t / page_tokens];
		size_t row = (((size_t)layer * 2 * page_tokens + t % page_tokens) * kv_dim4 + e) * 4;
		kc[i] = kv_ld4(page + row);
		vc[i] = kv_ld4(page + row + (size_t)page_tokens * kv_dim4 * 4);
	}
}

/* One block per (head, row): mask positions after pos0 + row, softmax the
 * rest in place (as the CPU: max, exp(x - max), sum, divide). */
__global__ void __launch_bounds__(256, 4)
causal_softmax_kernel(float *__restrict__ S, int n_rows, int len, int pos0)
{
	__shared__ float red[32];
	float *row = S + ((size_t)blockIdx.y * n_rows + blockIdx.x) * len;
	const int last = pos0 + (int)blockIdx.x; /* attends to 0 .. last */
	float mx = -INFINITY, sum = 0.0f;

	for (int t = threadIdx.x; t <= last; t += blockDim.x)
		mx = fmaxf(mx, row[t]);
	mx = block_max(mx, red);
	__syncthreads(); /* red is reused by block_sum */
	for (int t = threadIdx.x; t <= last; t += blockDim.x) {
		float e = expf(row[t] - mx);
		row[t] = e;
		sum += e;
	}
	sum = block_sum(sum, red);
	for (int t = threadIdx.x; t < len; t += blockDim.x)
		row[t] = t <= last ? row[t] / sum : 0.0f;
}

static enum djn_status attention_gemm(struct djn_backend *be, const char *op, float *out,
				      const float *q, const struct djn_kv_view *kv,
				      const struct djn_attn_shape *s, bool *done)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	const int len = s->pos0 + s->n_rows, hd = s->head_dim, group = s->n_head / s->n_kv_head;
	const size_t kvs = (size_t)len * kv->kv_dim, sc = (size_t)s->n_head * s->n_rows * len;
	const size_t bytes = sizeof(float) * (2 * kvs + sc);
	const float scale = 1.0f / sqrtf((float)hd), one = 1.0f, zero = 0.0f;

	*done = false;
	if (s->n_rows < ATT_GEMM_MIN_ROWS || bytes > ATT_GEMM_MAX_SCRATCH || kv->kv_dim % 4)
		return DJN_OK;
	float *kc = (float *)cuda_scratch(be, CUDA_SCRATCH_ATTN, bytes);
	if (!kc)
		return be->err.code;
	float *vc = kc + kvs, *S = vc + kvs;
	int kv_dim4 = kv->kv_dim / 4;
	unsigned gb = cuda_blocks((size_t)len * kv_dim4, 256, (unsigned)c->n_sm * 8);
	if (kv->dtype == DJN_DTYPE_F16)
		kv_gather_kernel<__half><<<gb, 256, 0, c->compute>>>(
			(float4 *)kc, (float4 *)vc, kv->pages, s->layer, kv->page_tokens, kv_dim4, len);
	else
		kv_gather_kernel<float><<<gb, 256, 0, c->compute>>>(
			(float4 *)kc, (float4 *)vc, kv->pages, s->layer, kv->page_tokens, kv_dim4, len);
	CK_LAUNCH(be);
	/* heads h = kvh * group + g share K and V: one batched call per g */
	for (int g = 0; g < group; g++)
		CKB(be, cublasSgemmStridedBatched(
				c->blas, CUBLAS_OP_T, CUBLAS_OP_N, len, s->n_rows, hd, &scale, kc,
				kv->kv_dim, hd, q + (size_t)g * hd, s->n_head * hd, (long long)group * hd,
				&zero, S + (size_t)g * s->n_rows * len, len,
				(long long)group * s->n_rows * len, s->n_kv_head));
	causal_softmax_kernel<<<dim3((unsigned)s->n_rows, (unsigned)s->n_head), 256, 0, c->compute>>>(
		S, s->n_rows, len, s->pos0);
	CK_LAUNCH(be);
	for (int g = 0; g < group; g++)
		CKB(be, cublasSgemmStridedBatched(
				c->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, s->n_rows, len, &one, vc,
				kv->kv_dim, hd, S + (size_t)g * s->n_rows * len, len,
				(long long)group * s->n_rows * len, &zero, out + (size_t)g * hd,
				s->n_head * hd, (long long)group * hd, s->n_kv_head));
	*done = true;
	return DJN_OK;
}

extern "C" enum djn_status cuda_attention(struct djn_backend *be, float *out, const float *q,
					  const struct djn_kv_view *kv,
					  const struct djn_attn_shape *s)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct attn_params p;
	enum djn_status st;

	CUDA_OP(be, "attention");
	if (s->n_head <= 0 || s->n_kv_head <= 0 || s->n_head % s->n_kv_head ||
	    s->head_dim <= 0 || s->n_rows < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention: %d heads, %d kv heads, head_dim %d, %d rows", s->n_head,
				   s->n_kv_head, s->head_dim, s->n_rows);
	if (s->head_dim > 256)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "attention: head_dim %d (cuda supports up to 256)", s->head_dim);
	if ((st = check_kv(be, op_name_, kv, s->layer, s->pos0, s->n_rows)) != DJN_OK)
		return st;
	if ((int64_t)s->n_kv_head * s->head_dim > kv->kv_dim)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "attention: %d kv heads of %d exceed the cache's kv_dim %d",
				   s->n_kv_head, s->head_dim, kv->kv_dim);
	if (s->n_rows == 0)
		return DJN_OK;
	if (s->n_rows > 65535)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "attention: %d rows in one call (cuda supports up to 65535)",
				   s->n_rows);

	p.n_head = s->n_head;
	p.group = s->n_head / s->n_kv_head;
	p.head_dim = s->head_dim;
	p.kv_dim = kv->kv_dim;
	p.page_tokens = kv->page_tokens;
	p.layer = s->layer;
	p.pos0 = s->pos0;
	p.n_rows = s->n_rows;
	p.sd = sqrtf((float)s->head_dim);
	const int vpl = (s->head_dim + 31) / 32;

	const int *dpos; /* recording: one row, its position read at replay */
	if ((st = cuda_step_pos(be, op_name_, s->pos0, s->n_rows, &dpos)) != DJN_OK)
		return st;
	bool done;
	if ((st = attention_gemm(be, op_name_, out, q, kv, s, &done)) != DJN_OK || done)
		return st;
	if (s->n_rows > 8 && s->head_dim % 4 == 0) {
		size_t smem = prefill_smem(s->head_dim, vpl);
		if (smem + sizeof(float *) * PF_BK <= c->smem_optin) {
			dim3 grid((unsigned)((s->n_rows + PF_BQ - 1) / PF_BQ), (unsigned)s->n_head);
#define PREFILL(V) CK(be, launch_prefill<V>(grid, smem, c->compute, out, q, kv, p))
			VPL_SWITCH(vpl, PREFILL);
#undef PREFILL
			CK_LAUNCH(be);
			return DJN_OK;
		}
	}

	/* Enough blocks to fill the GPU (nsz chunks a row, from the shape), but
	 * chunks of at least ATT_MIN_CHUNK keys: the grid has the chunks that
	 * hold keys, or all nsz when recorded (the length is known at replay). */
	const int lmax = s->pos0 + s->n_rows;
	const int base = s->n_head * s->n_rows;
	int nsz = (8 * c->n_sm + base - 1) / base;
	if (nsz > ATT_MAX_SPLIT)
		nsz = ATT_MAX_SPLIT;
	if (nsz < 1)
		nsz = 1;
	const int chunk = att_chunk(lmax, nsz);
	const int n_split = dpos ? nsz : (lmax + chunk - 1) / chunk;

	float *pa = NULL, *pm = NULL;
	if (nsz > 1) {
		/* sized for nsz even while one chunk does: the op-by-op steps
		 * before a recording make room for it, which cannot grow */
		size_t n_part = (size_t)base * nsz;
		pa = (float *)cuda_scratch(be, CUDA_SCRATCH_ATTN,
					   sizeof(float) * n_part * ((size_t)s->head_dim + 2));
		if (!pa)
			return be->err.code;
		pm = pa + (size_t)base * n_split * s->head_dim;
	}
	dim3 grid((unsigned)n_split, (unsigned)s->n_head, (unsigned)s->n_rows);
	if (kv->dtype == DJN_DTYPE_F16 && s->head_dim % 4 == 0 && kv->kv_dim % 4 == 0 &&
	    !cuda_env_on("DJN_ATTN_F16_OLD")) {
		if (s->head_dim <= 128)
			CK(be, cuda_launch(c, attn_split_h_kernel<1>, grid, dim3(ATT_WARPS * 32), 0,
					   out, pa, pm, q, kv->pages, p, dpos, nsz, n_split));
		else
			CK(be, cuda_launch(c, attn_split_h_kernel<2>, grid, dim3(ATT_WARPS * 32), 0,
					   out, pa, pm, q, kv->pages, p, dpos, nsz, n_split));
	} else {
#define SPLIT(V) CK(be, launch_split<V>(c, grid, out, pa, pm, q, kv, p, dpos, nsz, n_split))
		VPL_SWITCH(vpl, SPLIT);
#undef SPLIT
	}
	CK_LAUNCH(be);
	if (n_split > 1) {
		CK(be, cuda_launch(c, attn_merge_kernel, dim3((unsigned)s->n_head, (unsigned)s->n_rows),
				   dim3(128), 0, out, (const float *)pa, (const float *)pm, s->pos0,
				   s->n_rows, dpos, nsz, n_split, s->head_dim, s->n_head));
		CK_LAUNCH(be);
	}
	return DJN_OK;
}
