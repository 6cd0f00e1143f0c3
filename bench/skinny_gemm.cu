// skinny_gemm.cu - a batch-invariant skinny GEMM for the batched decode step,
// against cuBLAS, on the 7B shapes: Y[M][N] = X[M][K] . W[N][K]^T, f16 in,
// f32 accumulate and out, M the batch (1 to 64 rows).
//
// The kernel (src/backend/cuda/skinny.cuh, which the CUDA backend's
// matmul_f16 uses under DJN_SKINNY=1): tensor cores (mma.sync m16n8k16)
// with the weights as the A operand (16 of W's rows a warp) and the batch
// as B (8 rows of X a tile, up to 8 tiles), so a step reads each weight
// once for every row.  The reduction over K runs in an order fixed by
// (N, K) alone: each warp walks its K slice in 32-wide chunks, and the K
// slices (split-K, chosen from N and K, never from M) are summed in a
// fixed order by a second kernel.  So row r of a batch of M is bit for bit
// row r computed alone (checked here): what greedy decoding needs to give
// the same tokens batched and alone on a GPU (issue 10).  Within a 32-wide
// chunk each thread loads 16 bytes of two of W's rows and of one of X's;
// the k positions are permuted the same way for A and B, which leaves the
// dot product's terms unchanged.
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

#include "../src/backend/cuda/skinny.cuh"
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

// M > SKINNY_MAX_M is this program's bug: say so rather than return
// cudaErrorInvalidValue from the launcher.
static void skinny(const __half *W, const __half *X, float *part, float *Y, int M, int N, int K,
		   int splits, cudaStream_t st)
{
	if (M > SKINNY_MAX_M) {
		fprintf(stderr, "skinny_gemm: M %d > %d\n", M, SKINNY_MAX_M);
		exit(1);
	}
	CK(skinny_gemm_launch(W, X, part, Y, M, N, K, splits, false, st));
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
		int N = sh.N, K = sh.K, splits = skinny_splits_for(N, K, prop.multiProcessorCount);
		size_t nw = (size_t)N * K;
		__half *W, *X, *X1;
		float *Y, *Yc, *Y1, *part;
		CK(cudaMalloc(&W, nw * sizeof(__half)));
		CK(cudaMalloc(&X, (size_t)SKINNY_MAX_M * K * sizeof(__half)));
		CK(cudaMalloc(&X1, (size_t)K * sizeof(__half)));
		CK(cudaMalloc(&Y, (size_t)SKINNY_MAX_M * N * sizeof(float)));
		CK(cudaMalloc(&Yc, (size_t)SKINNY_MAX_M * N * sizeof(float)));
		CK(cudaMalloc(&Y1, (size_t)N * sizeof(float)));
		CK(cudaMalloc(&part, (size_t)splits * SKINNY_MAX_M * N * sizeof(float)));
		fill_kernel<<<(unsigned)((nw + 255) / 256), 256>>>(W, nw, 12345u + N, 0.1f);
		fill_kernel<<<(SKINNY_MAX_M * K + 255) / 256, 256>>>(X, (size_t)SKINNY_MAX_M * K,
								     777u + K, 2.f);
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
