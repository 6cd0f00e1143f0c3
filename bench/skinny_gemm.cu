// skinny_gemm.cu - a batch-invariant skinny GEMM for the batched decode step,
// against cuBLAS, on the 7B shapes: Y[M][N] = X[M][K] . W[N][K]^T, f16 in,
// f32 accumulate and out, M the batch (1 to 64 rows).
//
// The kernel: tensor cores (mma.sync m16n8k16) with the weights as the A
// operand (16 of W's rows a warp) and the batch as B (8 rows of X a tile,
// up to 8 tiles), so a step reads each weight once for every row.  The
// reduction over K runs in an order fixed by (N, K) alone: each warp walks
// its K slice in 32-wide chunks, and the K slices (split-K, chosen from N
// and K, never from M) are summed in a fixed order by a second kernel.  So
// row r of a batch of M is bit for bit row r computed alone (checked here):
// what greedy decoding needs to give the same tokens batched and alone on a
// GPU (issue 10).  Within a 32-wide chunk each thread loads 16 bytes of two
// of W's rows and of one of X's; the k positions are permuted the same way
// for A and B, which leaves the dot product's terms unchanged.
//
// Printed: per shape and M, our time and cuBLAS's (cublasGemmEx, f32
// compute, default algorithm) in us, the HBM bound (W, X and Y's bytes at
// the device-to-device copy bandwidth measured in the same run), our share
// of it, the largest error against cuBLAS relative to the largest |Y|, and
// whether every row equals the same row computed with M = 1 (bitwise).
//
// usage: skinny_gemm [--json FILE] [--reps N]        (not yet run on a GPU)
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_check.cuh"

#define CB(x)                                                                              \
	do {                                                                               \
		cublasStatus_t s_ = (x);                                                   \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                         \
			fprintf(stderr, "skinny_gemm: %s:%d: %s: cublas status %d\n", __FILE__, \
				__LINE__, #x, (int)s_);                                    \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

enum { WARPS = 4, ROWS = 16 * WARPS, KC = 256, XPAD = 32, MAX_M = 64 };

__device__ __forceinline__ void mma16816(float *d, uint32_t a0, uint32_t a1, uint32_t a2,
					 uint32_t a3, uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One block: ROWS of W's rows (16 a warp), all M rows of X, the K chunks
// [c0, c1) of KC each; partial sums to part[split][m][n].
template <int MT>
__global__ void __launch_bounds__(32 * WARPS)
skinny_kernel(const __half *__restrict__ W, const __half *__restrict__ X, float *__restrict__ part,
	      int M, int N, int K, int chunks_per_split)
{
	__shared__ __align__(16) __half xs[MT * 8][KC + XPAD];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t = lane & 3;
	const int n0 = blockIdx.x * ROWS + warp * 16;
	const int split = blockIdx.y;
	const int n_chunks = K / KC;
	const int c0 = split * chunks_per_split;
	const int c1 = min(n_chunks, c0 + chunks_per_split);
	float acc[MT][4];

	for (int i = 0; i < MT; i++)
		acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
	const __half *w0 = W + (size_t)(n0 + g) * K + t * 8;
	const __half *w8 = w0 + (size_t)8 * K;
	for (int c = c0; c < c1; c++) {
		const int k0 = c * KC;
		__syncthreads(); // the last chunk's reads of xs are done
		// X's rows [0, MT*8) of this chunk; rows past M are zeros
		for (int v = threadIdx.x; v < MT * 8 * (KC / 8); v += 32 * WARPS) {
			int m = v / (KC / 8), k = (v % (KC / 8)) * 8;
			uint4 val = make_uint4(0, 0, 0, 0);
			if (m < M)
				val = *reinterpret_cast<const uint4 *>(X + (size_t)m * K + k0 + k);
			*reinterpret_cast<uint4 *>(&xs[m][k]) = val;
		}
		__syncthreads();
#pragma unroll 2
		for (int kk = 0; kk < KC; kk += 32) {
			// 16 bytes of rows g and g + 8: k0 + kk + t*8 .. + 7
			const uint4 a = __ldg(reinterpret_cast<const uint4 *>(w0 + k0 + kk));
			const uint4 b = __ldg(reinterpret_cast<const uint4 *>(w8 + k0 + kk));
#pragma unroll
			for (int i = 0; i < MT; i++) {
				const uint4 x = *reinterpret_cast<const uint4 *>(&xs[i * 8 + g][kk + t * 8]);
				// k step 0: logical k (2t, 2t+1) -> t*8 + {0,1}, (8+2t, 9+2t) -> t*8 + {2,3};
				// k step 1: the same + 4
				mma16816(acc[i], a.x, b.x, a.y, b.y, x.x, x.y);
				mma16816(acc[i], a.z, b.z, a.w, b.w, x.z, x.w);
			}
		}
	}
	// acc[i]: (row g, cols 2t, 2t+1) and (row g + 8, the same cols) of the
	// 16 x 8 tile: W rows n0 + g (+ 8), X rows i*8 + 2t (+ 1)
	float *p = part + (size_t)split * M * N;
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

// Y = the splits' partial sums, added in split order.
__global__ void reduce_kernel(const float *__restrict__ part, float *__restrict__ Y, int MN,
			      int splits)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= MN)
		return;
	float s = part[i];
	for (int k = 1; k < splits; k++)
		s += part[(size_t)k * MN + i];
	Y[i] = s;
}

// Split-K from the shape alone (never M): about 4 blocks an SM.
static int splits_for(int N, int K, int n_sm)
{
	int blocks = N / ROWS, chunks = K / KC;
	int s = (4 * n_sm + blocks - 1) / blocks;
	if (s > chunks)
		s = chunks;
	if (s < 1)
		s = 1;
	int per = (chunks + s - 1) / s;
	return (chunks + per - 1) / per; // no split left empty
}

static void skinny(const __half *W, const __half *X, float *part, float *Y, int M, int N, int K,
		   int splits, cudaStream_t st)
{
	int n_chunks = K / KC, per = (n_chunks + splits - 1) / splits;
	dim3 grid(N / ROWS, splits);
	float *out = splits == 1 ? Y : part;

	switch ((M + 7) / 8) {
#define CASE(mt)                                                                               \
	case mt:                                                                               \
		skinny_kernel<mt><<<grid, 32 * WARPS, 0, st>>>(W, X, out, M, N, K, per);       \
		break;
		CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
	default:
		fprintf(stderr, "skinny_gemm: M %d > %d\n", M, MAX_M);
		exit(1);
	}
	CK(cudaGetLastError());
	if (splits > 1) {
		int mn = M * N;
		reduce_kernel<<<(mn + 255) / 256, 256, 0, st>>>(part, Y, mn, splits);
		CK(cudaGetLastError());
	}
}

__global__ void fill_kernel(__half *p, size_t n, uint32_t seed, float scale)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	uint32_t x = (uint32_t)i * 2654435761u ^ seed;
	x ^= x >> 15;
	x *= 2246822519u;
	x ^= x >> 13;
	p[i] = __float2half(((x & 0xffff) / 65535.f - 0.5f) * scale);
}

static double d2d_gbps(void)
{
	size_t n = (size_t)1 << 30;
	void *a, *b;
	cudaEvent_t e0, e1;
	float ms = 0;

	CK(cudaMalloc(&a, n));
	CK(cudaMalloc(&b, n));
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
	CK(cudaEventRecord(e0));
	for (int i = 0; i < 10; i++)
		CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
	CK(cudaEventRecord(e1));
	CK(cudaEventSynchronize(e1));
	CK(cudaEventElapsedTime(&ms, e0, e1));
	CK(cudaFree(a));
	CK(cudaFree(b));
	CK(cudaEventDestroy(e0));
	CK(cudaEventDestroy(e1));
	return 2.0 * n * 10 / (ms * 1e-3) / 1e9; // read and write
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	int reps = 100;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: skinny_gemm [--json FILE] [--reps N]\n");
			return 2;
		}
	}
	static const struct {
		const char *name;
		int N, K;
	} shapes[] = { { "q/k/v/o 4096x4096", 4096, 4096 },
		       { "gate/up 11008x4096", 11008, 4096 },
		       { "down 4096x11008", 4096, 11008 },
		       { "lm head 32000x4096", 32000, 4096 } };
	static const int Ms[] = { 1, 2, 4, 8, 16, 32, 64 };
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	double bw = d2d_gbps();
	cublasHandle_t h;
	CB(cublasCreate(&h));
	cudaStream_t st;
	CK(cudaStreamCreate(&st));
	CB(cublasSetStream(h, st));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	FILE *jf = json ? fopen(json, "w") : NULL;
	if (json && !jf) {
		fprintf(stderr, "skinny_gemm: cannot write %s\n", json);
		return 1;
	}
	if (jf)
		fprintf(jf, "{\"device\": \"%s\", \"d2d_gbps\": %.1f, \"rows\": [", prop.name, bw);
	printf("skinny GEMM (%s, %d SMs; d2d %.0f GB/s, reads and writes): f16 W and X, f32 "
	       "accumulate and Y\n",
	       prop.name, prop.multiProcessorCount, bw);
	printf("%-20s %3s %6s | %9s %9s %9s | %6s %7s | %9s %s\n", "shape", "M", "splits", "ours us",
	       "cublas us", "bound us", "%bound", "x cublas", "rel err", "batch-invariant");
	bool first = true, all_ok = true;
	for (const auto &sh : shapes) {
		int N = sh.N, K = sh.K, splits = splits_for(N, K, prop.multiProcessorCount);
		size_t nw = (size_t)N * K;
		__half *W, *X, *X1;
		float *Y, *Yc, *Y1, *part;
		CK(cudaMalloc(&W, nw * sizeof(__half)));
		CK(cudaMalloc(&X, (size_t)MAX_M * K * sizeof(__half)));
		CK(cudaMalloc(&X1, (size_t)K * sizeof(__half)));
		CK(cudaMalloc(&Y, (size_t)MAX_M * N * sizeof(float)));
		CK(cudaMalloc(&Yc, (size_t)MAX_M * N * sizeof(float)));
		CK(cudaMalloc(&Y1, (size_t)N * sizeof(float)));
		CK(cudaMalloc(&part, (size_t)splits * MAX_M * N * sizeof(float)));
		fill_kernel<<<(unsigned)((nw + 255) / 256), 256>>>(W, nw, 12345u + N, 0.1f);
		fill_kernel<<<(MAX_M * K + 255) / 256, 256>>>(X, (size_t)MAX_M * K, 777u + K, 2.f);
		CK(cudaGetLastError());
		CK(cudaDeviceSynchronize());
		for (int M : Ms) {
			float ms_ours = 0, ms_cb = 0, alpha = 1, beta = 0;
			skinny(W, X, part, Y, M, N, K, splits, st);
			CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16F, K,
					X, CUDA_R_16F, K, &beta, Yc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
					CUBLAS_GEMM_DEFAULT));
			CK(cudaStreamSynchronize(st));
			std::vector<float> y((size_t)M * N), yc((size_t)M * N), y1(N);
			CK(cudaMemcpy(y.data(), Y, y.size() * 4, cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(yc.data(), Yc, yc.size() * 4, cudaMemcpyDeviceToHost));
			double big = 0, err = 0;
			for (size_t i = 0; i < y.size(); i++) {
				big = fmax(big, fabs(yc[i]));
				err = fmax(err, fabs((double)y[i] - yc[i]));
			}
			double rel = big > 0 ? err / big : err;
			// every row alone (M = 1) against its row of the batch, bit for bit
			bool inv = true;
			for (int r = 0; r < M && inv; r += (M > 8 ? 7 : 1)) {
				CK(cudaMemcpy(X1, X + (size_t)r * K, K * sizeof(__half),
					      cudaMemcpyDeviceToDevice));
				skinny(W, X1, part, Y1, 1, N, K, splits, st);
				CK(cudaStreamSynchronize(st));
				CK(cudaMemcpy(y1.data(), Y1, N * 4, cudaMemcpyDeviceToHost));
				inv = !memcmp(y1.data(), y.data() + (size_t)r * N, N * 4);
			}
			CK(cudaEventRecord(e0, st));
			for (int i = 0; i < reps; i++)
				skinny(W, X, part, Y, M, N, K, splits, st);
			CK(cudaEventRecord(e1, st));
			CK(cudaEventSynchronize(e1));
			CK(cudaEventElapsedTime(&ms_ours, e0, e1));
			CK(cudaEventRecord(e0, st));
			for (int i = 0; i < reps; i++)
				CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W,
						CUDA_R_16F, K, X, CUDA_R_16F, K, &beta, Yc, CUDA_R_32F,
						N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
			CK(cudaEventRecord(e1, st));
			CK(cudaEventSynchronize(e1));
			CK(cudaEventElapsedTime(&ms_cb, e0, e1));
			double us = ms_ours * 1e3 / reps, us_cb = ms_cb * 1e3 / reps;
			double bytes = nw * 2.0 + (double)M * K * 2 + (double)M * N * 4;
			double bound = bytes / (bw * 1e9) * 1e6; // bw: a copy's reads and writes
			bool ok = rel < 1e-3;
			all_ok = all_ok && ok && inv;
			printf("%-20s %3d %6d | %9.1f %9.1f %9.1f | %5.1f%% %7.2f | %9.2e %s\n", sh.name, M,
			       splits, us, us_cb, bound, 100 * bound / us, us_cb / us, rel,
			       inv ? "yes" : "NO");
			if (jf)
				fprintf(jf,
					"%s\n  {\"shape\": \"%s\", \"N\": %d, \"K\": %d, \"M\": %d, "
					"\"splits\": %d, \"us\": %.2f, \"cublas_us\": %.2f, "
					"\"bound_us\": %.2f, \"rel_err\": %.3g, \"batch_invariant\": %s}",
					first ? "" : ",", sh.name, N, K, M, splits, us, us_cb, bound, rel,
					inv ? "true" : "false");
			first = false;
		}
		CK(cudaFree(W));
		CK(cudaFree(X));
		CK(cudaFree(X1));
		CK(cudaFree(Y));
		CK(cudaFree(Yc));
		CK(cudaFree(Y1));
		CK(cudaFree(part));
	}
	if (jf) {
		fprintf(jf, "\n]}\n");
		fclose(jf);
	}
	printf("%s\n", all_ok ? "all within 1e-3 of cuBLAS and batch-invariant"
			      : "FAILED: an error over 1e-3 or a row that differs alone");
	CB(cublasDestroy(h));
	CK(cudaStreamDestroy(st));
	return all_ok ? 0 : 1;
}
