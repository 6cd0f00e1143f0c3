/* gemv_bench.cu - decode GEMV variants (f16 weights, f32 x and y, one row of
 * activations) timed beside a device-to-device copy, on the 7B shapes.  For
 * choosing the shape of src/backend/cuda/gemv.cu's kernel; each result is
 * checked against the first variant.
 *
 * build: nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 bench/gemv_bench.cu -o gemv_bench
 * run:   ./gemv_bench            (prints a table: variant, shape, us, TB/s, % of d2d) */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#include "cuda_check.cuh"

/* LD 0: ld.global.cs (evict-first); 1: ld.global.nc.L1::no_allocate.L2::256B */
template <int LD>
__device__ __forceinline__ uint4 ldw(const uint4 *p)
{
	if (LD == 0)
		return __ldcs(p);
	uint4 r;
	asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
		     : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
		     : "l"(p));
	return r;
}

__device__ __forceinline__ float dot8(uint4 w, const float *x)
{
	const __half2 *h = (const __half2 *)&w;
	float4 a = *(const float4 *)x, b = *(const float4 *)(x + 4);
	float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]);
	float2 f2 = __half22float2(h[2]), f3 = __half22float2(h[3]);
	float s = f0.x * a.x;
	s = fmaf(f0.y, a.y, s);
	s = fmaf(f1.x, a.z, s);
	s = fmaf(f1.y, a.w, s);
	s = fmaf(f2.x, b.x, s);
	s = fmaf(f2.y, b.y, s);
	s = fmaf(f3.x, b.z, s);
	s = fmaf(f3.y, b.w, s);
	return s;
}

/* Warp per RW rows; each lane U 16-byte loads per row per batch. */
template <int U, int RW, int LD, int MINB>
__global__ void __launch_bounds__(256, MINB)
gemv_warp(float *y, const float *__restrict__ x, const __half *__restrict__ W, int rows, int cols)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r0 = (blockIdx.x * 8 + warp) * RW;
	if (r0 >= rows)
		return;
	float acc[RW];
	for (int j = 0; j < RW; j++)
		acc[j] = 0.0f;
	for (int c0 = lane * 8; c0 < cols; c0 += 256 * U) {
		uint4 w[RW][U];
#pragma unroll
		for (int j = 0; j < RW; j++)
#pragma unroll
			for (int u = 0; u < U; u++) {
				int c = c0 + u * 256;
				w[j][u] = c < cols ? ldw<LD>((const uint4 *)(W + (size_t)(r0 + j) * cols + c))
						   : make_uint4(0, 0, 0, 0);
			}
#pragma unroll
		for (int u = 0; u < U; u++) {
			int c = c0 + u * 256;
			if (c >= cols)
				break;
#pragma unroll
			for (int j = 0; j < RW; j++)
				acc[j] += dot8(w[j][u], x + c);
		}
	}
#pragma unroll
	for (int j = 0; j < RW; j++) {
		float v = acc[j];
		for (int o = 16; o > 0; o >>= 1)
			v += __shfl_xor_sync(0xffffffffu, v, o);
		if (lane == 0)
			y[r0 + j] = v;
	}
}

/* Block per RB rows: all 256 threads stride the columns, a block reduction. */
template <int RB, int U, int LD>
__global__ void __launch_bounds__(256, 4)
gemv_block(float *y, const float *__restrict__ x, const __half *__restrict__ W, int rows, int cols)
{
	__shared__ float sh[8][RB];
	const int r0 = blockIdx.x * RB, t = threadIdx.x;
	float acc[RB];
	for (int j = 0; j < RB; j++)
		acc[j] = 0.0f;
	for (int c0 = t * 8; c0 < cols; c0 += 2048 * U) {
		uint4 w[RB][U];
#pragma unroll
		for (int j = 0; j < RB; j++)
#pragma unroll
			for (int u = 0; u < U; u++) {
				int c = c0 + u * 2048;
				w[j][u] = c < cols && r0 + j < rows
						  ? ldw<LD>((const uint4 *)(W + (size_t)(r0 + j) * cols + c))
						  : make_uint4(0, 0, 0, 0);
			}
#pragma unroll
		for (int u = 0; u < U; u++) {
			int c = c0 + u * 2048;
			if (c >= cols)
				break;
#pragma unroll
			for (int j = 0; j < RB; j++)
				acc[j] += dot8(w[j][u], x + c);
		}
	}
#pragma unroll
	for (int j = 0; j < RB; j++) {
		float v = acc[j];
		for (int o = 16; o > 0; o >>= 1)
			v += __shfl_xor_sync(0xffffffffu, v, o);
		if ((t & 31) == 0)
			sh[t >> 5][j] = v;
	}
	__syncthreads();
	if (t < RB && r0 + t < rows) {
		float v = 0;
		for (int w = 0; w < 8; w++)
			v += sh[w][t];
		y[r0 + t] = v;
	}
}

typedef void (*kfn)(float *, const float *, const __half *, int, int);
struct variant {
	const char *name;
	kfn k;
	int rows_per_block;
};

int main(void)
{
	const int shapes[][2] = { { 4096, 4096 }, { 12288, 4096 }, { 22016, 4096 }, { 4096, 11008 },
				  { 32000, 4096 } };
	const variant vs[] = {
		{ "warp U8 ldcs (now)", gemv_warp<8, 1, 0, 2>, 8 },
		{ "warp U8 L2::256B", gemv_warp<8, 1, 1, 2>, 8 },
		{ "warp U16 ldcs", gemv_warp<16, 1, 0, 1>, 8 },
		{ "warp U4 x2rows ldcs", gemv_warp<4, 2, 0, 2>, 16 },
		{ "warp U8 x2rows ldcs", gemv_warp<8, 2, 0, 1>, 16 },
		{ "warp U4 ldcs minb4", gemv_warp<4, 1, 0, 4>, 8 },
		{ "block R2 U2 ldcs", gemv_block<2, 2, 0>, 2 },
		{ "block R4 U1 ldcs", gemv_block<4, 1, 0>, 4 },
		{ "block R4 U2 L2::256B", gemv_block<4, 2, 1>, 4 },
		{ "block R8 U1 ldcs", gemv_block<8, 1, 0>, 8 },
	};
	const int nv = sizeof(vs) / sizeof(vs[0]), reps = 60;
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));

	/* the bound: a 2 GiB device-to-device copy, bytes read + written */
	size_t nb = (size_t)1 << 31;
	void *a, *b;
	CK(cudaMalloc(&a, nb));
	CK(cudaMalloc(&b, nb));
	CK(cudaMemset(a, 1, nb));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	float best = 1e30f;
	for (int r = 0; r < 5; r++) {
		CK(cudaEventRecord(e0));
		CK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice));
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		float ms;
		CK(cudaEventElapsedTime(&ms, e0, e1));
		best = fminf(best, ms);
	}
	double d2d = 2.0 * nb / (best / 1e3);
	CK(cudaFree(a));
	CK(cudaFree(b));
	printf("%s, %d SMs, L2 %d MB: d2d %.3f TB/s\n", prop.name, prop.multiProcessorCount,
	       prop.l2CacheSize >> 20, d2d / 1e12);
	printf("%-24s %12s %9s %7s %6s %9s\n", "variant", "shape", "us", "TB/s", "%d2d", "max err");

	for (auto &sh : shapes) {
		int rows = sh[0], cols = sh[1];
		size_t wb = (size_t)rows * cols * 2;
		int nmat = (int)((size_t)400 << 20) / wb + 2; /* rotate through > L2 */
		std::vector<__half *> W(nmat);
		std::vector<__half> h((size_t)rows * cols);
		srand(1);
		for (auto &v : h)
			v = __float2half((rand() / (float)RAND_MAX - 0.5f) * 0.05f);
		for (int i = 0; i < nmat; i++) {
			CK(cudaMalloc(&W[i], wb));
			CK(cudaMemcpy(W[i], h.data(), wb, cudaMemcpyHostToDevice));
		}
		std::vector<float> hx(cols), ref(rows), got(rows);
		for (auto &v : hx)
			v = rand() / (float)RAND_MAX - 0.5f;
		float *x, *y;
		CK(cudaMalloc(&x, sizeof(float) * cols));
		CK(cudaMalloc(&y, sizeof(float) * rows));
		CK(cudaMemcpy(x, hx.data(), sizeof(float) * cols, cudaMemcpyHostToDevice));
		for (int v = 0; v < nv; v++) {
			unsigned grid = (unsigned)((rows + vs[v].rows_per_block - 1) / vs[v].rows_per_block);
			CK(cudaMemset(y, 0xff, sizeof(float) * rows));
			vs[v].k<<<grid, 256>>>(y, x, W[0], rows, cols);
			CK(cudaGetLastError());
			CK(cudaMemcpy(got.data(), y, sizeof(float) * rows, cudaMemcpyDeviceToHost));
			if (v == 0)
				ref = got;
			double err = 0;
			for (int i = 0; i < rows; i++)
				err = fmax(err, fabs(got[i] - ref[i]) / (fabs(ref[i]) + 1e-3));
			/* a graph of reps launches, so launch gaps are the GPU's, not the host's */
			cudaStream_t st;
			CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
			cudaGraph_t g;
			cudaGraphExec_t ge;
			CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
			for (int i = 0; i < reps; i++)
				vs[v].k<<<grid, 256, 0, st>>>(y, x, W[i % nmat], rows, cols);
			CK(cudaStreamEndCapture(st, &g));
			CK(cudaGraphInstantiate(&ge, g, 0));
			CK(cudaGraphLaunch(ge, st));
			CK(cudaStreamSynchronize(st));
			float tbest = 1e30f;
			for (int r = 0; r < 3; r++) {
				CK(cudaEventRecord(e0, st));
				CK(cudaGraphLaunch(ge, st));
				CK(cudaEventRecord(e1, st));
				CK(cudaEventSynchronize(e1));
				float ms;
				CK(cudaEventElapsedTime(&ms, e0, e1));
				tbest = fminf(tbest, ms);
			}
			double us = tbest * 1e3 / reps, bw = wb / (us * 1e-6);
			char shape[32];
			snprintf(shape, sizeof shape, "%dx%d", rows, cols);
			printf("%-24s %12s %9.2f %7.3f %5.1f%% %9.2g\n", vs[v].name, shape, us, bw / 1e12,
			       100 * bw / d2d, err);
			CK(cudaGraphExecDestroy(ge));
			CK(cudaGraphDestroy(g));
			CK(cudaStreamDestroy(st));
		}
		for (auto p : W)
			CK(cudaFree(p));
		CK(cudaFree(x));
		CK(cudaFree(y));
	}
	return 0;
}
