/* gemv.cu - y = x W^T on the GPU for every weight dtype.
 *
 * Decode (n <= 8 rows) is memory-bound: the whole weight is read once per
 * call, so the kernels here are GEMVs built around the load of W.  With one
 * activation row and f32/f16/bf16 weights, a block of 256 threads takes four
 * output rows together (gemv_rows_kernel, below: the grouped and fused forms
 * of a decode step use it too).  Otherwise one warp owns one output row and
 * all n activation rows (W is read once, x comes from L1/L2); a block holds 8
 * warps = 8 output rows.  Accumulation is f32 in registers, then a warp
 * shuffle reduction.
 *   - f32/f16/bf16 with 16-byte aligned rows: each lane loads 16 bytes of W
 *     per step (8 halves, or 8 floats as two loads) and unrolls 4 steps
 *     (f32: 2), so 64 bytes per lane are in flight before the first FMA.
 *   - q8_0/q4_0/q4_1: blocks are 34/18/20 bytes, so a lane cannot own an
 *     aligned 16-byte piece of a block.  The warp instead copies 32 blocks of
 *     its row at a time with aligned, coalesced 16-byte loads into shared
 *     memory (prefetching the next 32 into registers while it computes), and
 *     each lane then decodes 4 consecutive weights per step, so its x reads
 *     are one coalesced float4.
 *   - anything else (odd columns, unaligned pointers): a plain warp-per-row
 *     loop over weight_at(), slow but exact.
 * Prefill (n > 8) goes to cuBLAS: f32 with cublasSgemm (no TF32); f16 with
 * cublasGemmEx on the weight as stored and x rounded to f16; bf16 likewise
 * with x split into a high and a low part (x = hi + lo to 2^-16 relative),
 * since x rounded to bf16 alone would cost 2e-3; quantized weights are dequantized to
 * f32 in row tiles and multiplied with cublasSgemm.  A group's f16/bf16
 * GEMMs (q, k, v; gate, up) share one rounding of x (matmul_group;
 * DJN_GEMM_SHARED_X=0 rounds it for each, to compare).
 */
#include "backend/cuda/cuda.cuh"
#include "backend/cuda/skinny.cuh"

#define GEMV_WARPS 8 /* output rows per block */
#define GEMV_MAX_N 8 /* largest n that takes the GEMV path */
#define QSB 32       /* quantized blocks per shared-memory stage */

/* --- plain dtypes: 8 elements a lane a step --------------------------------- */

struct raw8 {
	uint4 a, b; /* f32 uses both, f16/bf16 only a */
};

template <int DT>
__device__ __forceinline__ raw8 ld8(const uint8_t *row, int c)
{
	raw8 r;

	if (DT == DJN_DTYPE_F32) {
		const uint4 *p = (const uint4 *)(row + (size_t)c * 4);
		r.a = __ldcs(p);
		r.b = __ldcs(p + 1);
	} else {
		r.a = __ldcs((const uint4 *)(row + (size_t)c * 2));
		r.b = make_uint4(0, 0, 0, 0);
	}
	return r;
}

template <int DT>
__device__ __forceinline__ void cvt2(uint32_t u, float &lo, float &hi)
{
	if (DT == DJN_DTYPE_F16) {
		lo = f16_to_f32((uint16_t)(u & 0xffffu));
		hi = f16_to_f32((uint16_t)(u >> 16));
	} else {
		lo = __uint_as_float(u << 16);
		hi = __uint_as_float(u & 0xffff0000u);
	}
}

template <int DT>
__device__ __forceinline__ void cvt8(const raw8 &r, float w[8])
{
	if (DT == DJN_DTYPE_F32) {
		w[0] = __uint_as_float(r.a.x), w[1] = __uint_as_float(r.a.y);
		w[2] = __uint_as_float(r.a.z), w[3] = __uint_as_float(r.a.w);
		w[4] = __uint_as_float(r.b.x), w[5] = __uint_as_float(r.b.y);
		w[6] = __uint_as_float(r.b.z), w[7] = __uint_as_float(r.b.w);
	} else {
		cvt2<DT>(r.a.x, w[0], w[1]);
		cvt2<DT>(r.a.y, w[2], w[3]);
		cvt2<DT>(r.a.z, w[4], w[5]);
		cvt2<DT>(r.a.w, w[6], w[7]);
	}
}

/* Where a GEMV's rows go: y, and with z (matmul_add) z = res + y too, the
 * same single f32 add as the add op's. */
struct gemv_out {
	float *y;
	float *z;
	const float *res;
	struct vec_ref bias;
};

/* Ends a GEMV: reduce each accumulator over the warp; lane 0 stores it. */
template <int NR>
__device__ __forceinline__ void gemv_store(const struct gemv_out &o, float (&acc)[NR], int r,
					   int rows, int lane)
{
#pragma unroll
	for (int k = 0; k < NR; k++)
		acc[k] = warp_sum(acc[k]);
	if (lane == 0) {
		float b = o.bias.p ? vec_at(o.bias, r) : 0.0f;
#pragma unroll
		for (int k = 0; k < NR; k++) {
			const size_t i = (size_t)k * rows + r;
			const float v = o.bias.p ? acc[k] + b : acc[k];
			o.y[i] = v;
			if (o.z)
				o.z[i] = o.res[i] + v;
		}
	}
}

template <int DT, int NR>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 2)
gemv_plain_kernel(const struct gemv_out o, const float *__restrict__ x,
		  const uint8_t *__restrict__ W, int rows, int cols)
{
	constexpr int ES = DT == DJN_DTYPE_F32 ? 4 : 2;
	constexpr int U = DT == DJN_DTYPE_F32 ? (NR <= 2 ? 4 : 2) : (NR <= 2 ? 8 : 4); /* bytes in flight */
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = blockIdx.x * GEMV_WARPS + warp;

	pdl_trigger();
	if (r >= rows)
		return;
	const uint8_t *wrow = W + (size_t)r * cols * ES;
	float acc[NR];
#pragma unroll
	for (int k = 0; k < NR; k++)
		acc[k] = 0.0f;

	/* the first loads of W go out before the wait for x */
	raw8 raw[U];
	for (int c0 = lane * 8;; ) {
#pragma unroll
		for (int u = 0; u < U; u++) {
			int c = c0 + u * 256;
			raw[u] = c < cols ? ld8<DT>(wrow, c) : raw8{};
		}
		if (c0 == lane * 8)
			pdl_wait();
#pragma unroll
		for (int u = 0; u < U; u++) {
			int c = c0 + u * 256;
			if (c >= cols)
				break;
			float w[8];
			cvt8<DT>(raw[u], w);
#pragma unroll
			for (int k = 0; k < NR; k++) {
				const float4 *xp = (const float4 *)(x + (size_t)k * cols + c);
				float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
				float a = acc[k];
				a = fmaf(w[0], x0.x, a);
				a = fmaf(w[1], x0.y, a);
				a = fmaf(w[2], x0.z, a);
				a = fmaf(w[3], x0.w, a);
				a = fmaf(w[4], x1.x, a);
				a = fmaf(w[5], x1.y, a);
				a = fmaf(w[6], x1.z, a);
				a = fmaf(w[7], x1.w, a);
				acc[k] = a;
			}
		}
		c0 += 256 * U;
		if (c0 >= cols)
			break;
	}
	gemv_store<NR>(o, acc, r, rows, lane);
}

/* --- one activation row (decode): a block per GEMV_RB rows ------------------
 *
 * For n == 1 the rows are too short for a warp each to keep enough bytes in
 * flight (a 4096-column f16 row is 8 KB: two round trips per warp), so a
 * block of 256 threads takes GEMV_RB rows together: every thread strides the
 * columns 8 at a time, loading all GEMV_RB rows' 16 bytes before it uses any,
 * and a block reduction ends it.  bench/gemv_bench.cu measured this shape at
 * 90 to 104% of a device-to-device copy's bandwidth on an H100, against 76 to
 * 98% for a warp per row.  The rows come from up to three weights over the
 * same x (q, k, v: the rows of each in turn); with SWIGLU each row reads a
 * row of gate and one of up and writes silu(gate) * up. */
#define GEMV_RB 4

struct rows_args {
	const uint8_t *W[3];
	float *y[3];
	int rows[3]; /* unused segments have 0 rows */
	int cols;
	struct gemv_out o; /* o.z, o.res, o.bias: the single-weight case only */
	/* rope (segments q, k, v; rows[0] and rows[1] multiples of GEMV_RB):
	 * a block's rows in q and k are two rope pairs, slots 0/2 and 1/3, so
	 * the block rotates them itself; k and v rows also go into the cache
	 * page of the position (dpos, else pos) */
	const float *freq;
	float *const *pages;
	const int *dpos;
	int pos, head_dim, page_tokens, kv_dim, layer;
	bool interleaved;
	bool kv_f16; /* the cache holds halves (djn_kv_view.dtype) */
};

/* Row of pair slot j (0..3) of the block whose first row is r0, in a segment
 * rotated by rope: pairs r0/2 and r0/2 + 1, first elements in slots 0 and 1. */
__device__ __forceinline__ int rope_row(const struct rows_args &a, int r0, int j)
{
	const int half = a.head_dim / 2, p = r0 / 2 + (j & 1), h = p / half, i = p % half;

	return h * a.head_dim + (a.interleaved ? 2 * i + (j >> 1) : i + (j >> 1) * half);
}

template <int DT, bool SWIGLU, bool ROPE>
__global__ void __launch_bounds__(256, 4)
gemv_rows_kernel(const float *__restrict__ x, const struct rows_args a)
{
	constexpr int ES = DT == DJN_DTYPE_F32 ? 4 : 2;
	constexpr int NW = SWIGLU ? 2 : 1; /* weights a row reads */
	__shared__ float sh[GEMV_WARPS][GEMV_RB * NW];
	const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
	const uint8_t *wrow[GEMV_RB][NW];
	int seg[GEMV_RB], row[GEMV_RB];

	pdl_trigger();
#pragma unroll
	for (int j = 0; j < GEMV_RB; j++) {
		int r = blockIdx.x * GEMV_RB + j, g = 0;
		if (!SWIGLU && r >= a.rows[0]) {
			r -= a.rows[0];
			g = 1;
			if (r >= a.rows[1]) {
				r -= a.rows[1];
				g = 2;
			}
		}
		const bool ok = r < (g == 0 ? a.rows[0] : g == 1 ? a.rows[1] : a.rows[2]);
		if (ROPE && g < 2) /* the block lies in one segment: its rows from the pairs */
			r = rope_row(a, r - j, j);
		/* ternaries, not a.W[g]: a run-time index would put a in local memory */
		const uint8_t *w0 = g == 0 ? a.W[0] : g == 1 ? a.W[1] : a.W[2];
		seg[j] = ok ? g : -1;
		row[j] = r;
		wrow[j][0] = ok ? w0 + (size_t)r * a.cols * ES : NULL;
		if (SWIGLU)
			wrow[j][NW - 1] = ok ? a.W[1] + (size_t)r * a.cols * ES : NULL;
	}
	/* ROPE: what the epilogue of thread t < GEMV_RB needs, fetched now, while
	 * the weights stream (the position, the page table and the frequencies
	 * are not written by the kernel before) */
	float fcr = 1.0f, fci = 0.0f;
	size_t kv_at = 0; /* element of the cache page kv_page this thread stores */
	char *kv_page = NULL;
	if (ROPE && t < GEMV_RB) {
		int g = -1, r = 0;
#pragma unroll
		for (int j = 0; j < GEMV_RB; j++)
			if (j == t) {
				g = seg[j];
				r = row[j];
			}
		const int pos = a.dpos ? *a.dpos : a.pos;
		if (g == 0 || g == 1) {
			const int half = a.head_dim / 2, d = r % a.head_dim;
			rope_cs(pos, a.freq[a.interleaved ? d / 2 : d % half], &fcr, &fci);
		}
		if (g > 0) { /* k and v into the cache: [layer][K, V][token][kv_dim] */
			kv_page = (char *)a.pages[pos / a.page_tokens];
			kv_at = (((size_t)a.layer * 2 + (g - 1)) * a.page_tokens +
				 pos % a.page_tokens) * a.kv_dim + r;
		}
	}
	float acc[GEMV_RB][NW];
#pragma unroll
	for (int j = 0; j < GEMV_RB; j++)
#pragma unroll
		for (int k = 0; k < NW; k++)
			acc[j][k] = 0.0f;

	/* the first loads of W go out before the wait for x */
	raw8 raw[GEMV_RB][NW];
	for (int c = t * 8;; ) {
		const bool in = c < a.cols;
#pragma unroll
		for (int j = 0; j < GEMV_RB; j++)
#pragma unroll
			for (int k = 0; k < NW; k++)
				raw[j][k] = in && wrow[j][k] ? ld8<DT>(wrow[j][k], c) : raw8{};
		if (c == t * 8)
			pdl_wait();
		if (!in)
			break;
		const float4 *xp = (const float4 *)(x + c);
		const float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
		const float xv[8] = { x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w };
#pragma unroll
		for (int j = 0; j < GEMV_RB; j++)
#pragma unroll
			for (int k = 0; k < NW; k++) {
				float w[8];
				cvt8<DT>(raw[j][k], w);
				float s = acc[j][k];
#pragma unroll
				for (int i = 0; i < 8; i++)
					s = fmaf(w[i], xv[i], s);
				acc[j][k] = s;
			}
		c += 256 * 8;
	}
#pragma unroll
	for (int j = 0; j < GEMV_RB; j++)
#pragma unroll
		for (int k = 0; k < NW; k++) {
			float v = warp_sum(acc[j][k]);
			if (lane == 0)
				sh[warp][j * NW + k] = v;
		}
	__syncthreads();
	if (t >= GEMV_RB)
		return;
	float v[NW];
#pragma unroll
	for (int k = 0; k < NW; k++) {
		v[k] = 0.0f;
#pragma unroll
		for (int w = 0; w < GEMV_WARPS; w++)
			v[k] += sh[w][t * NW + k];
	}
	float pv = 0.0f; /* ROPE: the other element of this slot's pair */
	if (ROPE) {
#pragma unroll
		for (int w = 0; w < GEMV_WARPS; w++)
			pv += sh[w][t ^ 2];
	}
	/* thread t finishes row t of the block: pick its own entries */
	int g = -1, r = 0;
#pragma unroll
	for (int j = 0; j < GEMV_RB; j++)
		if (j == t) {
			g = seg[j];
			r = row[j];
		}
	if (g < 0)
		return;
	float *y = g == 0 ? a.y[0] : g == 1 ? a.y[1] : a.y[2];
	if (SWIGLU) {
		/* as the CPU's swiglu: val * (1 / (1 + exp(-val))) * up */
		float gt = __fmul_rn(v[0], 1.0f / (1.0f + expf(-v[0])));
		y[r] = __fmul_rn(gt, v[NW - 1]);
		return;
	}
	if (ROPE) {
		float out = v[0];
		if (g < 2) {
			const bool second = t >= 2;
			out = rope_rot(second ? pv : v[0], second ? v[0] : pv, second, fcr, fci);
		}
		y[r] = out;
		if (kv_page && a.kv_f16)
			kv_st((__half *)kv_page + kv_at, out);
		else if (kv_page)
			kv_st((float *)kv_page + kv_at, out);
		return;
	}
	float out = a.o.bias.p ? v[0] + vec_at(a.o.bias, r) : v[0];
	y[r] = out;
	if (a.o.z)
		a.o.z[r] = a.o.res[r] + out;
}

template <int DT>
static cudaError_t rows_launch(const struct cuda_ctx *c, const float *x,
			       const struct rows_args &a, bool swiglu)
{
	const long long total = swiglu ? a.rows[0] : (long long)a.rows[0] + a.rows[1] + a.rows[2];
	const dim3 grid((unsigned)((total + GEMV_RB - 1) / GEMV_RB)), t(GEMV_WARPS * 32);

	if (swiglu)
		return cuda_launch(c, gemv_rows_kernel<DT, true, false>, grid, t, 0, x, a);
	if (a.freq)
		return cuda_launch(c, gemv_rows_kernel<DT, false, true>, grid, t, 0, x, a);
	return cuda_launch(c, gemv_rows_kernel<DT, false, false>, grid, t, 0, x, a);
}

static cudaError_t rows_dispatch(const struct cuda_ctx *c, int dtype, const float *x,
				 const struct rows_args &a, bool swiglu)
{
	switch (dtype) {
	case DJN_DTYPE_F32: return rows_launch<DJN_DTYPE_F32>(c, x, a, swiglu);
	case DJN_DTYPE_F16: return rows_launch<DJN_DTYPE_F16>(c, x, a, swiglu);
	default: return rows_launch<DJN_DTYPE_BF16>(c, x, a, swiglu);
	}
}

/* --- quantized dtypes ------------------------------------------------------ */

template <int DT>
struct qblock {
	static constexpr int bytes = DT == DJN_DTYPE_Q8_0 ? 34 : DT == DJN_DTYPE_Q4_0 ? 18 : 20;
};

/* Four bytes at a 2-aligned shared-memory address, from two aligned words. */
__device__ __forceinline__ uint32_t lds_u32_a2(const uint8_t *p)
{
	const uint32_t *a = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
	return __funnelshift_r(a[0], a[1], (unsigned)((uintptr_t)p & 3) * 8);
}

/* Byte E of u (0..255) as a float minus `off`, through the 2^23 exponent
 * trick: one PRMT and one FADD (exact) instead of a quarter-rate I2F. */
template <int E>
__device__ __forceinline__ float byte_f(uint32_t u, float off)
{
	return __uint_as_float(__byte_perm(u, 0x4b, E | (5 << 4) | (5 << 8) | (4 << 12))) -
	       (8388608.0f + off);
}

/* Copies the bytes of stage s (QSB blocks) of a row into registers: the
 * aligned 16-byte words that cover them, `nv` of them, `off` bytes of lead-in.
 * The words may reach up to 15 bytes beyond the row on either side: never
 * across a page, and inside the allocation, which backend alloc rounds up. */
template <int BS, int LV>
__device__ __forceinline__ void stage_load(const uint8_t *wrow, int s, int nb, int lane,
					   uint4 (&buf)[LV], int &off, int &nv)
{
	const uint8_t *p = wrow + (size_t)s * QSB * BS;
	const int nblk = min(QSB, nb - s * QSB);
	const uintptr_t a = (uintptr_t)p & ~(uintptr_t)15;
	const uint4 *q = (const uint4 *)a;

	off = (int)((uintptr_t)p - a);
	nv = (off + nblk * BS + 15) >> 4;
#pragma unroll
	for (int v = 0; v < LV; v++) {
		int i = lane + 32 * v;
		buf[v] = i < nv ? __ldcs(q + i) : make_uint4(0, 0, 0, 0);
	}
}

template <int DT, int NR>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 2)
gemv_quant_kernel(const struct gemv_out o, const float *__restrict__ x,
		  const uint8_t *__restrict__ W, int rows, int cols)
{
	constexpr int BS = qblock<DT>::bytes;
	constexpr int NV = (QSB * BS + 15 + 15) / 16; /* words a stage can touch */
	constexpr int LV = (NV + 31) / 32;             /* of them, per lane */
	/* +1 word: lds_u32_a2 may read one word past the last block */
	__shared__ uint4 stage[GEMV_WARPS][LV * 32 + 1];
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = blockIdx.x * GEMV_WARPS + warp;

	pdl_trigger();
	if (r >= rows) /* whole warps leave: only __syncwarp below */
		return;
	const int nb = cols / DJN_QK, nstage = (nb + QSB - 1) / QSB;
	const uint8_t *wrow = W + (size_t)r * nb * BS;
	const uint8_t *sm = (const uint8_t *)stage[warp];
	const int sub = lane >> 3;       /* block within a 4-block chunk */
	const int j = (lane & 7) * 4;    /* first of this lane's 4 weights in it */
	float acc[NR];
	uint4 buf[LV];
	int off, nv;

#pragma unroll
	for (int k = 0; k < NR; k++)
		acc[k] = 0.0f;
	stage_load<BS, LV>(wrow, 0, nb, lane, buf, off, nv);
	pdl_wait(); /* W's first stage is on its way; x is the kernel before's */
	for (int s = 0; s < nstage; s++) {
#pragma unroll
		for (int v = 0; v < LV; v++)
			if (lane + 32 * v < nv)
				stage[warp][lane + 32 * v] = buf[v];
		__syncwarp();
		const uint8_t *base = sm + off;
		const int nblk = min(QSB, nb - s * QSB);
		if (s + 1 < nstage) /* in flight while this stage is decoded */
			stage_load<BS, LV>(wrow, s + 1, nb, lane, buf, off, nv);

#pragma unroll 2
		for (int ch = 0; ch < QSB / 4; ch++) {
			const int blk = ch * 4 + sub;
			if (blk >= nblk)
				break;
			const uint8_t *bp = base + blk * BS;
			const int col = (s * QSB + blk) * DJN_QK + j;
			float4 xv[NR];
#pragma unroll
			for (int k = 0; k < NR; k++)
				xv[k] = __ldg((const float4 *)(x + (size_t)k * cols + col));

			float w0, w1, w2, w3, d, m = 0.0f;
			if (DT == DJN_DTYPE_Q8_0) {
				d = f16_to_f32(*(const uint16_t *)bp);
				uint32_t q = lds_u32_a2(bp + 2 + j) ^ 0x80808080u;
				w0 = byte_f<0>(q, 128.0f);
				w1 = byte_f<1>(q, 128.0f);
				w2 = byte_f<2>(q, 128.0f);
				w3 = byte_f<3>(q, 128.0f);
			} else if (DT == DJN_DTYPE_Q4_0) {
				d = f16_to_f32(*(const uint16_t *)bp);
				uint32_t q = lds_u32_a2(bp + 2 + (j & 15));
				q = (q >> (j & 16 ? 4 : 0)) & 0x0f0f0f0fu;
				w0 = byte_f<0>(q, 8.0f);
				w1 = byte_f<1>(q, 8.0f);
				w2 = byte_f<2>(q, 8.0f);
				w3 = byte_f<3>(q, 8.0f);
			} else {
				uint32_t dm = *(const uint32_t *)bp;
				d = f16_to_f32((uint16_t)(dm & 0xffffu));
				m = f16_to_f32((uint16_t)(dm >> 16));
				uint32_t q = *(const uint32_t *)(bp + 4 + (j & 15));
				q = (q >> (j & 16 ? 4 : 0)) & 0x0f0f0f0fu;
				w0 = byte_f<0>(q, 0.0f);
				w1 = byte_f<1>(q, 0.0f);
				w2 = byte_f<2>(q, 0.0f);
				w3 = byte_f<3>(q, 0.0f);
			}
#pragma unroll
			for (int k = 0; k < NR; k++) {
				float t = w0 * xv[k].x;
				t = fmaf(w1, xv[k].y, t);
				t = fmaf(w2, xv[k].z, t);
				t = fmaf(w3, xv[k].w, t);
				acc[k] = fmaf(d, t, acc[k]);
				if (DT == DJN_DTYPE_Q4_1)
					acc[k] = fmaf(m, (xv[k].x + xv[k].y) + (xv[k].z + xv[k].w),
						      acc[k]);
			}
		}
		__syncwarp(); /* the stage buffer is rewritten next iteration */
	}
	gemv_store<NR>(o, acc, r, rows, lane);
}

/* --- any dtype, any alignment ---------------------------------------------- */

template <int NR>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 2)
gemv_generic_kernel(const struct gemv_out o, const float *__restrict__ x,
		    const uint8_t *__restrict__ W, int dtype, size_t row_bytes, int rows, int cols)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = blockIdx.x * GEMV_WARPS + warp;
	float acc[NR];

	pdl_trigger();
	pdl_wait();
	if (r >= rows)
		return;
#pragma unroll
	for (int k = 0; k < NR; k++)
		acc[k] = 0.0f;
	for (int c = lane; c < cols; c += 32) {
		float w = weight_at(W, dtype, row_bytes, r, c);
#pragma unroll
		for (int k = 0; k < NR; k++)
			acc[k] = fmaf(w, x[(size_t)k * cols + c], acc[k]);
	}
	gemv_store<NR>(o, acc, r, rows, lane);
}

/* --- launch ---------------------------------------------------------------- */

enum gemv_kind { GEMV_PLAIN, GEMV_QUANT, GEMV_GENERIC };

struct gemv_args {
	struct gemv_out o;
	const float *x;
	const uint8_t *W;
	int dtype, rows, cols;
	size_t row_bytes;
};

template <int DT, int NR>
static cudaError_t gemv_launch_dt(const struct cuda_ctx *c, const struct gemv_args &a, dim3 grid)
{
	const dim3 t(GEMV_WARPS * 32);

	if constexpr (DT == DJN_DTYPE_F32 || DT == DJN_DTYPE_F16 || DT == DJN_DTYPE_BF16)
		return cuda_launch(c, gemv_plain_kernel<DT, NR>, grid, t, 0, a.o, a.x, a.W, a.rows,
				   a.cols);
	else
		return cuda_launch(c, gemv_quant_kernel<DT, NR>, grid, t, 0, a.o, a.x, a.W, a.rows,
				   a.cols);
}

template <int NR>
static cudaError_t gemv_launch_n(const struct cuda_ctx *c, enum gemv_kind kind,
				 const struct gemv_args &a, dim3 grid)
{
	if (kind == GEMV_GENERIC)
		return cuda_launch(c, gemv_generic_kernel<NR>, grid, dim3(GEMV_WARPS * 32), 0, a.o,
				   a.x, a.W, a.dtype, a.row_bytes, a.rows, a.cols);
	switch (a.dtype) {
	case DJN_DTYPE_F32: return gemv_launch_dt<DJN_DTYPE_F32, NR>(c, a, grid);
	case DJN_DTYPE_F16: return gemv_launch_dt<DJN_DTYPE_F16, NR>(c, a, grid);
	case DJN_DTYPE_BF16: return gemv_launch_dt<DJN_DTYPE_BF16, NR>(c, a, grid);
	case DJN_DTYPE_Q8_0: return gemv_launch_dt<DJN_DTYPE_Q8_0, NR>(c, a, grid);
	case DJN_DTYPE_Q4_0: return gemv_launch_dt<DJN_DTYPE_Q4_0, NR>(c, a, grid);
	default: return gemv_launch_dt<DJN_DTYPE_Q4_1, NR>(c, a, grid);
	}
}

static bool is_aligned(const void *p, uintptr_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* Which GEMV the shape and the pointers allow. */
static enum gemv_kind gemv_pick(const struct gemv_args &a)
{
	bool x16 = is_aligned(a.x, 16) && a.cols % 4 == 0;

	switch (a.dtype) {
	case DJN_DTYPE_F32:
	case DJN_DTYPE_F16:
	case DJN_DTYPE_BF16:
		return x16 && a.cols % 8 == 0 && is_aligned(a.W, 16) ? GEMV_PLAIN : GEMV_GENERIC;
	case DJN_DTYPE_Q4_1:
		return x16 && is_aligned(a.W, 4) ? GEMV_QUANT : GEMV_GENERIC;
	default:
		return x16 && is_aligned(a.W, 2) ? GEMV_QUANT : GEMV_GENERIC;
	}
}

static enum djn_status gemv(struct djn_backend *be, const char *op, const struct gemv_args &a,
			    int n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	enum gemv_kind kind = gemv_pick(a);
	dim3 grid((unsigned)((a.rows + GEMV_WARPS - 1) / GEMV_WARPS));

	if (n == 1 && kind == GEMV_PLAIN) {
		struct rows_args ra = {};
		ra.W[0] = a.W;
		ra.y[0] = a.o.y;
		ra.rows[0] = a.rows;
		ra.cols = a.cols;
		ra.o = a.o;
		CK(be, rows_dispatch(c, a.dtype, a.x, ra, false));
		CK_LAUNCH(be);
		return DJN_OK;
	}

	switch (n) {
	case 1: CK(be, gemv_launch_n<1>(c, kind, a, grid)); break;
	case 2: CK(be, gemv_launch_n<2>(c, kind, a, grid)); break;
	case 3: CK(be, gemv_launch_n<3>(c, kind, a, grid)); break;
	case 4: CK(be, gemv_launch_n<4>(c, kind, a, grid)); break;
	case 5: CK(be, gemv_launch_n<5>(c, kind, a, grid)); break;
	case 6: CK(be, gemv_launch_n<6>(c, kind, a, grid)); break;
	case 7: CK(be, gemv_launch_n<7>(c, kind, a, grid)); break;
	case 8: CK(be, gemv_launch_n<8>(c, kind, a, grid)); break;
	default: DJN_ASSERT(!"gemv: n out of 1..8");
	}
	CK_LAUNCH(be);
	return DJN_OK;
}

/* --- prefill helpers ------------------------------------------------------- */

/* x = hi + lo in the weight's half type, hi rows first, then lo rows. */
template <typename T>
__device__ __forceinline__ T to_half_t(float v);
template <>
__device__ __forceinline__ __half to_half_t<__half>(float v)
{
	return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_half_t<__nv_bfloat16>(float v)
{
	return __float2bfloat16_rn(v);
}
template <typename T>
__device__ __forceinline__ float from_half_t(T v);
template <>
__device__ __forceinline__ float from_half_t<__half>(__half v)
{
	return __half2float(v);
}
template <>
__device__ __forceinline__ float from_half_t<__nv_bfloat16>(__nv_bfloat16 v)
{
	return __bfloat162float(v);
}

template <typename T>
__global__ void __launch_bounds__(256, 4) split_kernel(T *hi, T *lo, const float *x, size_t count)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = x[i];
		T h = to_half_t<T>(v);
		hi[i] = h;
		lo[i] = to_half_t<T>(v - from_half_t<T>(h));
	}
}

/* Rows r0 .. r0+nr-1 of a quantized weight into f32 rows; a thread a block. */
template <int DT>
__global__ void __launch_bounds__(256, 4)
dequant_kernel(float *__restrict__ out, const uint8_t *__restrict__ W, int r0, int nr, int cols)
{
	constexpr int BS = qblock<DT>::bytes;
	const int nb = cols / DJN_QK;
	const size_t total = (size_t)nr * nb;

	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
	     t += (size_t)gridDim.x * blockDim.x) {
		const size_t r = t / nb, b = t % nb;
		const uint8_t *bp = W + ((size_t)r0 + r) * nb * BS + b * BS;
		float4 *o = (float4 *)(out + r * cols + b * DJN_QK);
		float d = f16_to_f32(ld_u16(bp)), v[DJN_QK];

		if (DT == DJN_DTYPE_Q8_0) {
#pragma unroll
			for (int jj = 0; jj < DJN_QK; jj++)
				v[jj] = __fmul_rn(d, (float)(int8_t)bp[2 + jj]);
		} else if (DT == DJN_DTYPE_Q4_0) {
#pragma unroll
			for (int jj = 0; jj < DJN_QK / 2; jj++) {
				v[jj] = __fmul_rn(d, (float)((bp[2 + jj] & 0xf) - 8));
				v[jj + 16] = __fmul_rn(d, (float)((bp[2 + jj] >> 4) - 8));
			}
		} else {
			float m = f16_to_f32(ld_u16(bp + 2));
#pragma unroll
			for (int jj = 0; jj < DJN_QK / 2; jj++) {
				v[jj] = __fadd_rn(__fmul_rn(d, (float)(bp[4 + jj] & 0xf)), m);
				v[jj + 16] = __fadd_rn(__fmul_rn(d, (float)(bp[4 + jj] >> 4)), m);
			}
		}
#pragma unroll
		for (int q = 0; q < DJN_QK / 4; q++)
			o[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
	}
}

__global__ void __launch_bounds__(256, 4)
bias_kernel(float *y, struct vec_ref bias, int rows, size_t count)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] += vec_at(bias, (int64_t)(i % rows));
}

/* x (count floats) rounded to the weights' half type t (f16 or bf16) into
 * the matmul scratch: hi, and for bf16 the low part lo (x = hi + lo to
 * 2^-16 relative).  One conversion serves every weight of a group. */
static enum djn_status half_x(struct djn_backend *be, const char *op, const float *x,
			      size_t count, enum djn_dtype t, uint16_t **hi, uint16_t **lo)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;

	if (!(*hi = (uint16_t *)cuda_scratch(be, CUDA_SCRATCH_MM, 2 * count * sizeof(uint16_t))))
		return be->err.code;
	*lo = *hi + count;
	unsigned blocks = cuda_blocks(count, 256, (unsigned)c->n_sm * 8);
	if (t == DJN_DTYPE_F16)
		split_kernel<__half><<<blocks, 256, 0, c->compute>>>((__half *)*hi, (__half *)*lo, x,
								     count);
	else
		split_kernel<__nv_bfloat16><<<blocks, 256, 0, c->compute>>>(
			(__nv_bfloat16 *)*hi, (__nv_bfloat16 *)*lo, x, count);
	CK_LAUNCH(be);
	return DJN_OK;
}

/* Column-major view for cuBLAS: y^T (rows x n) = W (cols x rows)^T . x^T (cols x n),
 * with x already rounded by half_x. */
static enum djn_status gemm_half_on(struct djn_backend *be, const char *op, float *y,
				    const uint16_t *hi, const uint16_t *lo,
				    const struct djn_weight *w, int n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	const int rows = (int)w->rows, cols = (int)w->cols;
	const cudaDataType_t t = w->dtype == DJN_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
	const float one = 1.0f, zero = 0.0f;

	CKB(be, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->dev, t,
			     cols, hi, t, cols, &zero, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
			     CUBLAS_GEMM_DEFAULT));
	/* f16 keeps 11 bits: x rounded to it moves y by ~3e-4 relative, well
	 * inside what an f16 model's logits are checked to (1e-2), so prefill
	 * makes one pass over the weights, like every f16 engine.  bf16 keeps 8
	 * bits (~2e-3): there the low part's second GEMM stays. */
	if (w->dtype == DJN_DTYPE_F16)
		return DJN_OK;
	CKB(be, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->dev, t,
			     cols, lo, t, cols, &one, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
			     CUBLAS_GEMM_DEFAULT));
	return DJN_OK;
}

static enum djn_status gemm_half(struct djn_backend *be, const char *op, float *y,
				 const float *x, const struct djn_weight *w, int n)
{
	uint16_t *hi, *lo;
	enum djn_status st;

	if ((st = half_x(be, op, x, (size_t)n * w->cols, w->dtype, &hi, &lo)) != DJN_OK)
		return st;
	return gemm_half_on(be, op, y, hi, lo, w, n);
}

/* Dequantized tiles of at most 64 MiB, each one f32 GEMM. */
static enum djn_status gemm_quant(struct djn_backend *be, const char *op, float *y,
				  const float *x, const struct djn_weight *w, int n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	const int rows = (int)w->rows, cols = (int)w->cols;
	const float one = 1.0f, zero = 0.0f;
	int tile = (int)((64u << 20) / (sizeof(float) * (size_t)cols));
	float *buf;

	if (tile < 1)
		tile = 1;
	if (tile > rows)
		tile = rows;
	buf = (float *)cuda_scratch(be, CUDA_SCRATCH_MM, sizeof(float) * (size_t)tile * cols);
	if (!buf)
		return be->err.code;
	for (int r0 = 0; r0 < rows; r0 += tile) {
		int nr = rows - r0 < tile ? rows - r0 : tile;
		unsigned blocks = cuda_blocks((size_t)nr * (cols / DJN_QK), 256,
					      (unsigned)c->n_sm * 8);
		const uint8_t *W = (const uint8_t *)w->dev;
		switch (w->dtype) {
		case DJN_DTYPE_Q8_0:
			dequant_kernel<DJN_DTYPE_Q8_0><<<blocks, 256, 0, c->compute>>>(buf, W, r0, nr, cols);
			break;
		case DJN_DTYPE_Q4_0:
			dequant_kernel<DJN_DTYPE_Q4_0><<<blocks, 256, 0, c->compute>>>(buf, W, r0, nr, cols);
			break;
		default:
			dequant_kernel<DJN_DTYPE_Q4_1><<<blocks, 256, 0, c->compute>>>(buf, W, r0, nr, cols);
			break;
		}
		CK_LAUNCH(be);
		CKB(be, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, n, cols, &one, buf, cols,
				    x, cols, &zero, y + r0, rows));
	}
	return DJN_OK;
}

extern "C" enum djn_status cuda_matmul(struct djn_backend *be, float *y, const float *x,
				       const struct djn_weight *w, const struct djn_weight *bias,
				       int n)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "matmul");
	if (n <= 0)
		return DJN_OK;
	if ((st = cuda_check_weight(be, op_name_, w)) != DJN_OK)
		return st;
	if (w->rows > INT32_MAX || w->cols > INT32_MAX)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "matmul: weight '%s' is %lld x %lld, too large",
				   w->name ? w->name : "?", (long long)w->rows, (long long)w->cols);
	if (bias) {
		if ((st = cuda_check_weight(be, op_name_, bias)) != DJN_OK)
			return st;
		if (bias->cols < w->rows)
			return djn_err_set(&be->err, DJN_ERR_INVALID,
					   "matmul: bias '%s' has %lld columns, weight '%s' %lld rows",
					   bias->name ? bias->name : "?", (long long)bias->cols,
					   w->name ? w->name : "?", (long long)w->rows);
	}

	/* DJN_SKINNY=1: an f16 weight at 1 to 64 rows through the skinny GEMM,
	 * whose sums' order does not depend on n (the GEMV's and cuBLAS's do):
	 * the batch's logits are a row's own bits at any batch size */
	if (c->skinny && w->dtype == DJN_DTYPE_F16 && !bias &&
	    skinny_fits(n, (int)w->rows, (int)w->cols))
		return cuda_matmul_f16(be, y, x, DJN_DTYPE_F32, w, n, false);
	if (n <= GEMV_MAX_N) {
		struct gemv_args a = { { y, NULL, NULL, vec_of(bias) }, x, (const uint8_t *)w->dev,
				       (int)w->dtype, (int)w->rows, (int)w->cols,
				       djn_dtype_row_bytes(w->dtype, w->cols) };
		return gemv(be, op_name_, a, n);
	}

	switch (w->dtype) {
	case DJN_DTYPE_F32: {
		const float one = 1.0f, zero = 0.0f;
		CKB(be, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols,
				    &one, (const float *)w->dev, (int)w->cols, x, (int)w->cols, &zero,
				    y, (int)w->rows));
		break;
	}
	case DJN_DTYPE_F16:
	case DJN_DTYPE_BF16:
		st = gemm_half(be, op_name_, y, x, w, n);
		break;
	default:
		st = gemm_quant(be, op_name_, y, x, w, n);
		break;
	}
	if (st != DJN_OK)
		return st;
	if (bias) {
		size_t count = (size_t)n * w->rows;
		bias_kernel<<<cuda_blocks(count, 256, (unsigned)c->n_sm * 8), 256, 0, c->compute>>>(
			y, vec_of(bias), (int)w->rows, count);
		CK_LAUNCH(be);
	}
	return DJN_OK;
}

extern "C" enum djn_status cuda_matmul_add(struct djn_backend *be, float *y, float *z,
					   const float *x, const struct djn_weight *w,
					   const float *r, int n)
{
	enum djn_status st;

	CUDA_OP(be, "matmul_add");
	if (n <= 0)
		return DJN_OK;
	if (n > GEMV_MAX_N || w->rows > INT32_MAX || w->cols > INT32_MAX) {
		if ((st = cuda_matmul(be, y, x, w, NULL, n)) != DJN_OK)
			return st;
		return cuda_add(be, z, r, y, (size_t)n * w->rows);
	}
	if ((st = cuda_check_weight(be, op_name_, w)) != DJN_OK)
		return st;
	struct gemv_args a = { { y, z, r, vec_of(NULL) }, x, (const uint8_t *)w->dev,
			       (int)w->dtype, (int)w->rows, (int)w->cols,
			       djn_dtype_row_bytes(w->dtype, w->cols) };
	return gemv(be, op_name_, a, n);
}

/* --- f16 weights, f16 activations: the batch's GEMMs ------------------------ */

/* x rounded to f16, nothing else (split_kernel's hi for f16 weights). */
__global__ void __launch_bounds__(256, 4) half_kernel(__half *hi, const float *x, size_t count)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
	     i += (size_t)gridDim.x * blockDim.x)
		hi[i] = __float2half_rn(x[i]);
}

/* The GEMM of gemm_half_on for an f16 weight, on x the op before wrote as
 * halves (rmsnorm_f16, swiglu_f16) or rounded here; with accumulate, cuBLAS's
 * beta = 1 adds y's old contents in its epilogue, in place of a separate add
 * kernel and the round trip of the product through memory. */
extern "C" enum djn_status cuda_matmul_f16(struct djn_backend *be, float *y, const void *x,
					   enum djn_dtype x_dtype, const struct djn_weight *w,
					   int n, bool accumulate)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;

	CUDA_OP(be, "matmul_f16");
	if (n <= 0)
		return DJN_OK;
	if ((st = cuda_check_weight(be, op_name_, w)) != DJN_OK)
		return st;
	if (w->dtype != DJN_DTYPE_F16 || (x_dtype != DJN_DTYPE_F16 && x_dtype != DJN_DTYPE_F32))
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "matmul_f16: weight '%s' is %s and x %s: need an f16 weight and "
				   "x f16 or f32",
				   w->name ? w->name : "?", djn_dtype_name(w->dtype),
				   djn_dtype_name(x_dtype));
	if (w->rows > INT32_MAX || w->cols > INT32_MAX)
		return djn_err_set(&be->err, DJN_ERR_UNSUPPORTED,
				   "matmul_f16: weight '%s' is %lld x %lld, too large",
				   w->name ? w->name : "?", (long long)w->rows, (long long)w->cols);
	const void *xh = x;
	if (x_dtype == DJN_DTYPE_F32) {
		const size_t count = (size_t)n * w->cols;
		__half *h = (__half *)cuda_scratch(be, CUDA_SCRATCH_MM, count * sizeof(__half));
		if (!h)
			return be->err.code;
		half_kernel<<<cuda_blocks(count, 256, (unsigned)c->n_sm * 8), 256, 0, c->compute>>>(
			h, (const float *)x, count);
		CK_LAUNCH(be);
		xh = h;
	}
	const int rows = (int)w->rows, cols = (int)w->cols;
	/* DJN_SKINNY=1: cuBLAS picks its algorithm, and so its order of the sums,
	 * by n, so a session's logits change with the batch it is in; the skinny
	 * GEMM sums in an order fixed by the weight's shape alone */
	if (c->skinny && skinny_fits(n, rows, cols) && is_aligned(w->dev, 16) &&
	    is_aligned(xh, 16)) {
		const int splits = skinny_splits_for(rows, cols, c->n_sm);
		float *part = NULL;
		if ((splits > 1 || accumulate) &&
		    !(part = (float *)cuda_scratch(be, CUDA_SCRATCH_SPLITK,
						   sizeof(float) * splits * n * rows)))
			return be->err.code;
		CK(be, skinny_gemm_launch((const __half *)w->dev, (const __half *)xh, part, y, n,
					  rows, cols, splits, accumulate, c->compute));
		return DJN_OK;
	}
	const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
	CKB(be, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->dev,
			     CUDA_R_16F, cols, xh, CUDA_R_16F, cols, &beta, y, CUDA_R_32F, rows,
			     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return DJN_OK;
}

/* --- grouped GEMV: q, k, v (or gate and up) in one launch ------------------- */

/* Up to three weights over one x: a decode step reads them in one pass, one
 * launch instead of three, and the rows of all of them fill the GPU at once.
 * With SWIGLU two weights are read by the same block, row for row, and it
 * writes silu(gate) * up: the MLP's activation never makes a round trip to
 * memory.  Plain dtypes, one activation row (decode): gemv_rows_kernel. */
/* Fills a for one launch of the grouped GEMV; false when the weights, x or
 * n do not fit it (then one matmul each). */
static bool group_args(struct rows_args &a, float *const *ys, const float *x,
		       const struct djn_weight *const *ws, int n_w, int n, bool swiglu)
{
	long long total = 0;

	a = rows_args{};
	if (n != 1 || n_w < 1 || n_w > 3 || (swiglu && n_w != 2) || !is_aligned(x, 16) ||
	    ws[0]->cols % 8 || ws[0]->cols > INT32_MAX)
		return false;
	for (int i = 0; i < n_w; i++) {
		if (ws[i]->dtype != ws[0]->dtype || ws[i]->cols != ws[0]->cols || !ws[i]->dev ||
		    !is_aligned(ws[i]->dev, 16) ||
		    (ws[i]->dtype != DJN_DTYPE_F32 && ws[i]->dtype != DJN_DTYPE_F16 &&
		     ws[i]->dtype != DJN_DTYPE_BF16) ||
		    (swiglu && ws[i]->rows != ws[0]->rows))
			return false;
		a.W[i] = (const uint8_t *)ws[i]->dev;
		a.y[i] = ys[i];
		a.rows[i] = (int)ws[i]->rows;
		total += ws[i]->rows;
	}
	a.cols = (int)ws[0]->cols;
	return total <= INT32_MAX;
}

/* Whether the grouped GEMV can do rope's rotation and the cache store
 * itself: whole heads, rope pairs that fall in one block, k rows that are
 * the cache's kv_dim.  Fills a's rope fields. */
static enum djn_status rope_args(struct djn_backend *be, const char *op, struct rows_args &a,
				 const struct djn_qkv_rope *r, bool *ok)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const struct djn_kv_view *kv = r->kv;
	enum djn_status st;

	*ok = false;
	if (r->head_dim % 2 || a.rows[0] % r->head_dim || a.rows[1] % r->head_dim ||
	    a.rows[0] % (2 * GEMV_RB) || a.rows[1] % (2 * GEMV_RB) || !kv || !kv->pages ||
	    kv->kv_dim != a.rows[1] || a.rows[2] != a.rows[1] || kv->page_tokens <= 0 ||
	    r->layer < 0 || r->layer >= kv->n_layer || r->pos < 0 ||
	    (int64_t)r->pos >= (int64_t)kv->n_pages * kv->page_tokens)
		return DJN_OK; /* the separate op checks and says what is wrong */
	if ((st = cuda_step_pos(be, op, r->pos, 1, &a.dpos)) != DJN_OK)
		return st;
	if ((st = cuda_rope_table(be, op, r->theta, r->head_dim)) != DJN_OK)
		return st;
	a.freq = c->rope_freq;
	a.pages = kv->pages;
	a.pos = r->pos;
	a.head_dim = r->head_dim;
	a.page_tokens = kv->page_tokens;
	a.kv_dim = kv->kv_dim;
	a.layer = r->layer;
	a.interleaved = r->style == DJN_ROPE_INTERLEAVED;
	a.kv_f16 = kv->dtype == DJN_DTYPE_F16;
	*ok = true;
	return DJN_OK;
}

/* Weights a group's GEMMs can share one rounding of x for: all f16 or all
 * bf16, the same columns, shapes cuBLAS takes. */
static bool half_group(const struct djn_weight *const *ws, int n_w)
{
	for (int i = 0; i < n_w; i++)
		if ((ws[i]->dtype != DJN_DTYPE_F16 && ws[i]->dtype != DJN_DTYPE_BF16) ||
		    ws[i]->dtype != ws[0]->dtype || ws[i]->cols != ws[0]->cols ||
		    ws[i]->rows > INT32_MAX || ws[i]->cols > INT32_MAX)
			return false;
	return n_w > 0;
}

extern "C" enum djn_status cuda_matmul_group(struct djn_backend *be, float *const *ys,
					     const float *x, const struct djn_weight *const *ws,
					     int n_w, int n, bool swiglu,
					     const struct djn_qkv_rope *rope)
{
	struct cuda_ctx *c = cuda_ctx(be);
	struct rows_args a;
	enum djn_status st;
	bool roped = false;

	CUDA_OP(be, "matmul_group");
	if (rope && (n != 1 || n_w != 3 || swiglu || rope->head_dim <= 0))
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "%s: rope needs one row of q, k and v (3 weights, no swiglu) and "
				   "head_dim > 0",
				   op_name_);
	if (group_args(a, ys, x, ws, n_w, n, swiglu)) {
		for (int i = 0; i < n_w; i++)
			if ((st = cuda_check_weight(be, op_name_, ws[i])) != DJN_OK)
				return st;
		if (rope && (st = rope_args(be, op_name_, a, rope, &roped)) != DJN_OK)
			return st;
		CK(be, rows_dispatch(c, (int)ws[0]->dtype, x, a, swiglu));
		CK_LAUNCH(be);
	} else if (n > GEMV_MAX_N && half_group(ws, n_w) && !cuda_env_is("DJN_GEMM_SHARED_X", '0')) {
		/* f16/bf16 GEMMs (a prefill, a batch of sessions): x rounded
		 * once for all of them, the arithmetic of one matmul each
		 * (DJN_GEMM_SHARED_X=0: one matmul each, to compare) */
		uint16_t *hi, *lo;
		for (int i = 0; i < n_w; i++)
			if ((st = cuda_check_weight(be, op_name_, ws[i])) != DJN_OK)
				return st;
		if ((st = half_x(be, op_name_, x, (size_t)n * ws[0]->cols, ws[0]->dtype, &hi,
				 &lo)) != DJN_OK)
			return st;
		for (int i = 0; i < n_w; i++)
			if ((st = gemm_half_on(be, op_name_, ys[i], hi, lo, ws[i], n)) != DJN_OK)
				return st;
		if (swiglu)
			return cuda_swiglu(be, ys[0], ys[0], ys[1], (size_t)n * ws[0]->rows);
	} else {
		/* prefill, quantized weights, odd shapes: one matmul each */
		for (int i = 0; i < n_w; i++)
			if ((st = cuda_matmul(be, ys[i], x, ws[i], NULL, n)) != DJN_OK)
				return st;
		if (swiglu)
			return cuda_swiglu(be, ys[0], ys[0], ys[1], (size_t)n * ws[0]->rows);
	}
	if (!rope || roped)
		return DJN_OK;
	/* shapes the fused epilogue does not take: the ops one by one */
	const int hd = rope->head_dim;
	if ((st = cuda_rope(be, ys[0], 1, (int)(ws[0]->rows / hd), hd, hd, rope->pos, rope->theta,
			    rope->style)) != DJN_OK ||
	    (st = cuda_rope(be, ys[1], 1, (int)(ws[1]->rows / hd), hd, hd, rope->pos, rope->theta,
			    rope->style)) != DJN_OK)
		return st;
	return cuda_kv_store(be, rope->kv, rope->layer, rope->pos, 1, ys[1], ys[2]);
}
