/* skinny.cuh - a batch-invariant skinny GEMM for the batched decode step:
 * Y[M][N] (+)= X[M][K] . W[N][K]^T, f16 in, f32 accumulate and out, M the
 * batch (1 to SKINNY_MAX_M rows).  Shared by the CUDA backend (gemv.cu,
 * cuda_matmul_f16 under DJN_SKINNY=1) and bench/skinny_gemm.cu; everything
 * here is static, each includer gets its own copy.
 *
 * Tensor cores (mma.sync m16n8k16) take the weights as the A operand (16 of
 * W's rows a warp) and the batch as B (8 rows of X a tile, up to 8 tiles),
 * so a step reads each weight once for every row.  Batch-invariant: the
 * reduction over K runs in an order fixed by (N, K) alone.  Each warp walks
 * its K slice in 32-wide chunks, and the K slices (split-K, from N, K and
 * the SM count, never from M) are summed in split order by a second kernel,
 * so row r of a batch of M is bit for bit row r in a batch of one: a
 * session's logits do not depend on the batch it is in.  cuBLAS picks its
 * algorithm, and so its order, by M.
 *
 * Requirements (skinny_fits, plus what the caller must see to): N a multiple
 * of SKINNY_ROWS, K of SKINNY_KC; W and X 16-byte aligned; Y must not
 * overlap W, X or part.  part holds splits * M * N floats when splits > 1
 * or accumulate (else it is unused and may be NULL).  Launches go on the
 * stream given; part is in use until they finish.
 */
#ifndef DJINN_CUDA_SKINNY_CUH
#define DJINN_CUDA_SKINNY_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

enum {
	SKINNY_WARPS = 4,                 /* a block's warps, 16 of W's rows each */
	SKINNY_ROWS = 16 * SKINNY_WARPS,  /* W's rows a block */
	SKINNY_KC = 256,                  /* K staged in shared memory at a time */
	SKINNY_XPAD = 32,                 /* halves of padding a staged row of X */
	SKINNY_MAX_M = 64,                /* 8 tiles of 8 rows */
};

static __device__ __forceinline__ void skinny_mma16816(float *d, uint32_t a0, uint32_t a1,
						       uint32_t a2, uint32_t a3, uint32_t b0,
						       uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One block: SKINNY_ROWS of W's rows (16 a warp), all M rows of X, the K
 * chunks [c0, c1) of SKINNY_KC each; partial sums to out[split][m][n] (with
 * one split and no accumulate, out is Y itself). */
template <int MT>
static __global__ void __launch_bounds__(32 * SKINNY_WARPS)
skinny_kernel(const __half *__restrict__ W, const __half *__restrict__ X, float *__restrict__ out,
	      int M, int N, int K, int chunks_per_split)
{
	__shared__ __align__(16) __half xs[MT * 8][SKINNY_KC + SKINNY_XPAD];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t = lane & 3;
	const int n0 = blockIdx.x * SKINNY_ROWS + warp * 16;
	const int split = blockIdx.y;
	const int n_chunks = K / SKINNY_KC;
	const int c0 = split * chunks_per_split;
	const int c1 = min(n_chunks, c0 + chunks_per_split);
	float acc[MT][4];

	for (int i = 0; i < MT; i++)
		acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
	const __half *w0 = W + (size_t)(n0 + g) * K + t * 8;
	const __half *w8 = w0 + (size_t)8 * K;
	for (int c = c0; c < c1; c++) {
		const int k0 = c * SKINNY_KC;
		__syncthreads(); /* the last chunk's reads of xs are done */
		/* X's rows [0, MT*8) of this chunk; rows past M are zeros */
		for (int v = threadIdx.x; v < MT * 8 * (SKINNY_KC / 8); v += 32 * SKINNY_WARPS) {
			int m = v / (SKINNY_KC / 8), k = (v % (SKINNY_KC / 8)) * 8;
			uint4 val = make_uint4(0, 0, 0, 0);
			if (m < M)
				val = *reinterpret_cast<const uint4 *>(X + (size_t)m * K + k0 + k);
			*reinterpret_cast<uint4 *>(&xs[m][k]) = val;
		}
		__syncthreads();
#pragma unroll 2
		for (int kk = 0; kk < SKINNY_KC; kk += 32) {
			/* 16 bytes of rows g and g + 8: k0 + kk + t*8 .. + 7 */
			const uint4 a = __ldg(reinterpret_cast<const uint4 *>(w0 + k0 + kk));
			const uint4 b = __ldg(reinterpret_cast<const uint4 *>(w8 + k0 + kk));
#pragma unroll
			for (int i = 0; i < MT; i++) {
				const uint4 x =
					*reinterpret_cast<const uint4 *>(&xs[i * 8 + g][kk + t * 8]);
				/* the k positions are permuted the same way for A and B,
				 * which leaves the dot product's terms unchanged: k step 0
				 * takes logical k (2t, 2t+1) from t*8 + {0,1} and
				 * (8+2t, 9+2t) from t*8 + {2,3}; k step 1 the same + 4 */
				skinny_mma16816(acc[i], a.x, b.x, a.y, b.y, x.x, x.y);
				skinny_mma16816(acc[i], a.z, b.z, a.w, b.w, x.z, x.w);
			}
		}
	}
	/* acc[i]: (row g, cols 2t, 2t+1) and (row g + 8, the same cols) of the
	 * 16 x 8 tile: W rows n0 + g (+ 8), X rows i*8 + 2t (+ 1) */
	float *p = out + (size_t)split * M * N;
#pragma unroll
	for (int i = 0; i < MT; i++) {
		const int m = i * 8 + 2 * t;
		if (m < M) {
			p[(size_t)m * N + n0 + g] = acc[i][0];
			p[(size_t)m * N + n0 + g + 8] = acc[i][2];
		}
		if (m + 1 < M) {
			p[(size_t)(m + 1) * N + n0 + g] = acc[i][1];
			p[(size_t)(m + 1) * N + n0 + g + 8] = acc[i][3];
		}
	}
}

/* Y = the splits' partial sums added in split order, then Y's old value. */
static __global__ void skinny_reduce_kernel(const float *__restrict__ part, float *__restrict__ Y,
					    int MN, int splits, bool accumulate)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= MN)
		return;
	float s = part[i];
	for (int k = 1; k < splits; k++)
		s += part[(size_t)k * MN + i];
	Y[i] = accumulate ? s + Y[i] : s;
}

/* The shapes the kernel takes (alignment is the caller's to check). */
static inline bool skinny_fits(int M, int N, int K)
{
	return M >= 1 && M <= SKINNY_MAX_M && N > 0 && N % SKINNY_ROWS == 0 && K > 0 &&
	       K % SKINNY_KC == 0;
}

/* Split-K from the shape and the SM count alone (never M): about 4 blocks
 * an SM, and no split left empty. */
static inline int skinny_splits_for(int N, int K, int n_sm)
{
	int blocks = N / SKINNY_ROWS, chunks = K / SKINNY_KC;
	int s = (4 * n_sm + blocks - 1) / blocks;
	if (s > chunks)
		s = chunks;
	if (s < 1)
		s = 1;
	int per = (chunks + s - 1) / s;
	return (chunks + per - 1) / per;
}

/* Y = X W^T, or Y += X W^T with accumulate, on st; splits from
 * skinny_splits_for.  Accumulating always goes through the reduction, even
 * with one split: the GEMM kernel then never reads Y, and stays at the
 * registers it had without the flag (a runtime flag in its epilogue cost 4
 * more at 6 and 7 row tiles).  cudaErrorInvalidValue for a shape skinny_fits
 * refuses or a missing part, else the launches' error (cudaGetLastError: it
 * also reports, and clears, an earlier non-sticky error of this thread). */
static inline cudaError_t skinny_gemm_launch(const __half *W, const __half *X, float *part,
					     float *Y, int M, int N, int K, int splits,
					     bool accumulate, cudaStream_t st)
{
	const bool reduce = splits > 1 || accumulate;

	if (!skinny_fits(M, N, K) || splits < 1 || (reduce && !part))
		return cudaErrorInvalidValue;
	const int n_chunks = K / SKINNY_KC, per = (n_chunks + splits - 1) / splits;
	const dim3 grid(N / SKINNY_ROWS, splits);
	float *out = reduce ? part : Y;

	switch ((M + 7) / 8) {
#define SKINNY_CASE(mt)                                                                \
	case mt:                                                                       \
		skinny_kernel<mt><<<grid, 32 * SKINNY_WARPS, 0, st>>>(W, X, out, M, N, \
								       K, per);        \
		break;
		SKINNY_CASE(1) SKINNY_CASE(2) SKINNY_CASE(3) SKINNY_CASE(4)
		SKINNY_CASE(5) SKINNY_CASE(6) SKINNY_CASE(7) SKINNY_CASE(8)
#undef SKINNY_CASE
	}
	if (reduce) {
		const int mn = M * N;
		cudaError_t e = cudaGetLastError();
		if (e != cudaSuccess)
			return e;
		skinny_reduce_kernel<<<(mn + 255) / 256, 256, 0, st>>>(part, Y, mn, splits,
								      accumulate);
	}
	return cudaGetLastError();
}

#endif
