/* cuda.cuh - the CUDA backend's private state, its error checks, and the
 * device helpers its kernels share (internal to src/backend/cuda).
 *
 * Every op runs on ctx->compute, in call order.  An op begins with
 * CUDA_OP(be, "name"), which fails fast on a poisoned device and makes the
 * backend's device current; every runtime call inside goes through CK(), every
 * cuBLAS call through CKB(), and every launch is followed by CK_LAUNCH().  A
 * sticky error (illegal address, launch failure, ...) poisons the backend:
 * from then on every op returns DJN_ERR_DEVICE without touching the device.
 */
#ifndef DJINN_CUDA_CUH
#define DJINN_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "djinn/backend.h"
}

/* Scratch buffers, grown on demand and reused by every call: an op may use
 * several slots at once, never one slot for two things. */
enum cuda_scratch_slot {
	CUDA_SCRATCH_MM,     /* matmul: activations in the weight's dtype, or a dequantized tile */
	CUDA_SCRATCH_ATTN,   /* attention: split-KV partial results */
	CUDA_SCRATCH_RED,    /* argmax / stats: per-block partials */
	CUDA_SCRATCH_SPLITK, /* skinny GEMM: split-K partial sums (its x may be in MM) */
	CUDA_SCRATCH_COUNT
};

/* Written by kernels into mapped pinned memory and read by the host after a
 * stream synchronization: errors found on the device that are not CUDA
 * faults (an out-of-range token id), reported at the next synchronizing call. */
struct cuda_flags {
	int bad_id;       /* nonzero once embed saw a token id out of range */
	int id;           /* one such id (plain stores: with several, any of them) */
	long long n_rows; /* rows of that embedding table */
};

struct cuda_ctx {
	int dev;
	cudaStream_t compute; /* every op, copy and memset */
	cudaStream_t copy;    /* weight prefetch and KV swap (stream.cu); unused by ops */
	cublasHandle_t blas;  /* bound to compute, default (no TF32) math */
	void *blas_ws;        /* cuBLAS's workspace, ours: fixed, so a GEMM recorded
				 in a graph allocates nothing and picks the
				 algorithm it picks op by op */
	char name[256];
	int cc_major, cc_minor, n_sm;
	size_t smem_optin;    /* max dynamic shared memory per block after opt-in */
	struct {
		void *p;
		size_t cap;
	} scratch[CUDA_SCRATCH_COUNT];
	/* rope frequencies, computed on the host with the CPU's powf so that the
	 * angles match the reference bit for bit; re-uploaded when theta or
	 * rot_dim change */
	float *rope_freq;        /* device, rope_cap floats */
	float *rope_freq_host;   /* host copy of the same table */
	int rope_cap, rope_n, rope_rot_dim;
	float rope_theta;
	void *host_res;          /* pinned, 4 KiB: results that cross to the host */
	void *stat_slots;        /* device, DJN_STATS_SLOTS partial sums (reduce.cu) */
	void *stat_slots_host;   /* pinned copy that stats_collect reads */
	void *many_host;         /* pinned staging of stats_defer_many's descriptors */
	void *many_dev;          /* their device copy */
	struct cuda_flags *flags;     /* mapped pinned memory, host address */
	struct cuda_flags *flags_dev; /* the same, device address */
	char poison[DJN_ERRMSG_MAX / 2];
	/* decode-step graphs (graph.cu) */
	int *step_pos;           /* device: the position a recording replays at */
	bool capturing;          /* between graph_begin and graph_end */
	bool cap_failed;         /* an op failed or could not be recorded */
	int cap_pos;             /* the position being recorded */
	unsigned gen;            /* bumped when a scratch buffer or the rope table
				    moves: recordings of an older gen are stale */
	bool pdl;                /* launch the decode kernels with programmatic
				    dependent launch (cuda_launch) */
	bool skinny;             /* f16 GEMMs of 1 to 64 rows through the
				    batch-invariant skinny GEMM (skinny.cuh) */
};

static inline struct cuda_ctx *cuda_ctx(struct djn_backend *be)
{
	return (struct cuda_ctx *)be->ctx;
}

/* --- checks (backend.cu) --------------------------------------------------- */

/* Fails fast if poisoned, else makes the backend's device current. */
enum djn_status cuda_enter(struct djn_backend *be, const char *op);
/* Records a failed runtime call in be->err (poisoning on sticky errors). */
enum djn_status cuda_fail(struct djn_backend *be, cudaError_t e, const char *op,
			  const char *call, const char *file, int line);
enum djn_status cublas_fail(struct djn_backend *be, cublasStatus_t s, const char *op,
			    const char *call, const char *file, int line);
/* Scratch slot of at least `bytes`; NULL with be->err set (out of memory).
 * Growing it waits for the work already queued, which may use the old one. */
void *cuda_scratch(struct djn_backend *be, enum cuda_scratch_slot slot, size_t bytes);
/* While a graph is recorded: *dpos is the device word the recorded kernels
 * read their position from, else NULL (use pos0).  Fails, and spoils the
 * recording, for what cannot be replayed at another position: more than one
 * row, or a position other than the one being recorded. */
enum djn_status cuda_step_pos(struct djn_backend *be, const char *op, int pos0, int n,
			      const int **dpos);
/* Backend state a recording refers to is about to change (or cannot, while
 * recording): DJN_ERR_STATE when recording, else bumps ctx->gen. */
enum djn_status cuda_state_moves(struct djn_backend *be, const char *op, const char *what);
/* Waits for the compute stream, then reports device-side flags. */
enum djn_status cuda_sync_compute(struct djn_backend *be, const char *op);
/* A weight an op can read: device copy present, known dtype, whole blocks. */
enum djn_status cuda_check_weight(struct djn_backend *be, const char *op,
				  const struct djn_weight *w);

#define CUDA_OP(be, name)                                                     \
	const char *const op_name_ = (name);                                  \
	do {                                                                  \
		enum djn_status st_ = cuda_enter((be), op_name_);             \
		if (st_ != DJN_OK)                                            \
			return st_;                                           \
	} while (0)

#define CK(be, call)                                                          \
	do {                                                                  \
		cudaError_t e_ = (call);                                      \
		if (e_ != cudaSuccess)                                        \
			return cuda_fail((be), e_, op_name_, #call, __FILE__, __LINE__); \
	} while (0)

#define CK_LAUNCH(be) CK(be, cudaGetLastError())

#define CKB(be, call)                                                         \
	do {                                                                  \
		cublasStatus_t s_ = (call);                                   \
		if (s_ != CUBLAS_STATUS_SUCCESS)                              \
			return cublas_fail((be), s_, op_name_, #call, __FILE__, __LINE__); \
	} while (0)

/* Environment switches for A/B runs, NAME=1 (cuda_env_on) or NAME=V: pick a
 * kernel or path kept to compare against (read at each call, so a recorded
 * graph keeps what it was recorded with). */
static inline bool cuda_env_is(const char *name, char v)
{
	const char *e = getenv(name);

	return e && e[0] == v;
}

static inline bool cuda_env_on(const char *name)
{
	return cuda_env_is(name, '1');
}

static inline unsigned cuda_blocks(size_t work, unsigned per_block, unsigned cap)
{
	size_t b = (work + per_block - 1) / per_block;

	return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

/* Threads for a one-block-per-row kernel: about four elements each, a whole
 * number of warps, at most 1024. */
static inline unsigned row_threads(int dim)
{
	unsigned t = 32;

	while (t < 1024 && (size_t)t * 4 < (size_t)dim)
		t *= 2;
	return t;
}

/* --- ops (one file per family); the vtable is in backend.cu ---------------- */

extern "C" {
/* elementwise.cu */
enum djn_status cuda_embed(struct djn_backend *be, float *out, const struct djn_weight *table,
			   const int32_t *ids, int n);
enum djn_status cuda_copy_pages(struct djn_backend *be, void *contig, void *const *pages,
				int n_pages, size_t page_bytes, bool to_pages);
enum djn_status cuda_swiglu(struct djn_backend *be, float *out, const float *gate,
			    const float *up, size_t n);
enum djn_status cuda_swiglu_f16(struct djn_backend *be, uint16_t *out, const float *gate,
				const float *up, size_t n);
enum djn_status cuda_gelu(struct djn_backend *be, float *out, const float *x, size_t n);
enum djn_status cuda_add(struct djn_backend *be, float *out, const float *a, const float *b,
			 size_t n);
enum djn_status cuda_axpby(struct djn_backend *be, float *y, float scale, const float *x,
			   float alpha, size_t n);
enum djn_status cuda_softmax(struct djn_backend *be, float *x, int n, int dim);
/* norm.cu */
enum djn_status cuda_rmsnorm(struct djn_backend *be, float *out, const float *x,
			     const struct djn_weight *w, int n, int dim, float eps);
enum djn_status cuda_layernorm(struct djn_backend *be, float *out, const float *x,
			       const struct djn_weight *w, const struct djn_weight *b, int n,
			       int dim, float eps);
enum djn_status cuda_rmsnorm_f16(struct djn_backend *be, uint16_t *out, const float *x,
				 const struct djn_weight *w, int n, int dim, float eps);
/* rope.cu */
enum djn_status cuda_rope(struct djn_backend *be, float *x, int n, int n_head, int head_dim,
			  int rot_dim, int pos0, float theta, enum djn_rope_style style);
/* gemv.cu */
enum djn_status cuda_matmul_add(struct djn_backend *be, float *y, float *z, const float *x,
				const struct djn_weight *w, const float *r, int n);
enum djn_status cuda_matmul_group(struct djn_backend *be, float *const *ys, const float *x,
				  const struct djn_weight *const *ws, int n_w, int n, bool swiglu,
				  const struct djn_qkv_rope *rope);
enum djn_status cuda_matmul(struct djn_backend *be, float *y, const float *x,
			    const struct djn_weight *w, const struct djn_weight *bias, int n);
enum djn_status cuda_matmul_f16(struct djn_backend *be, float *y, const void *x,
				enum djn_dtype x_dtype, const struct djn_weight *w, int n,
				bool accumulate);
/* attention.cu */
enum djn_status cuda_kv_store(struct djn_backend *be, const struct djn_kv_view *kv, int layer,
			      int pos0, int n, const float *k, const float *v);
enum djn_status cuda_attention(struct djn_backend *be, float *out, const float *q,
			       const struct djn_kv_view *kv, const struct djn_attn_shape *s);
/* batch.cu: the rows of a batch of sessions */
enum djn_status cuda_rope_rows(struct djn_backend *be, float *x, const struct djn_kv_rows *kv,
			       int n_head, int head_dim, int rot_dim, float theta,
			       enum djn_rope_style style);
enum djn_status cuda_kv_store_rows(struct djn_backend *be, const struct djn_kv_rows *kv,
				   int layer, const float *k, const float *v);
enum djn_status cuda_rope_store_rows(struct djn_backend *be, float *q, float *k, const float *v,
				     const struct djn_kv_rows *kv, int layer, int n_head,
				     int n_kv_head, int head_dim, float theta,
				     enum djn_rope_style style);
enum djn_status cuda_attention_rows(struct djn_backend *be, float *out, const float *q,
				    const struct djn_kv_rows *kv, int n_head, int n_kv_head,
				    int head_dim, int layer);
enum djn_status cuda_argmax_rows(struct djn_backend *be, const float *x, int n, int dim,
				 int *out);
/* reduce.cu */
enum djn_status cuda_argmax(struct djn_backend *be, const float *x, int n, int *out);
enum djn_status cuda_stats_defer(struct djn_backend *be, const float *x, int64_t n, int slot);
enum djn_status cuda_stats_collect(struct djn_backend *be, struct djn_stats *out, int n_slots);
enum djn_status cuda_stats_defer_many(struct djn_backend *be, const float *const *xs,
				      const int64_t *ns, int n, int slot0);
enum djn_status cuda_stats_defer_many_slow(struct djn_backend *be, const float *const *xs,
					   const int64_t *ns, int n, int slot0);
enum djn_status cuda_stats(struct djn_backend *be, const float *x, int64_t n,
			   struct djn_stats *out);
/* graph.cu */
enum djn_status cuda_graph_begin(struct djn_backend *be, int pos);
enum djn_status cuda_graph_end(struct djn_backend *be, struct djn_graph **out);
enum djn_status cuda_graph_launch(struct djn_backend *be, struct djn_graph *g, int pos);
void cuda_graph_free(struct djn_backend *be, struct djn_graph *g);
/* stream.cu: the copy stream, events, pinned host memory */
void *cuda_host_alloc(struct djn_backend *be, size_t bytes, bool *pinned);
void cuda_host_free(struct djn_backend *be, void *p, bool pinned);
enum djn_status cuda_host_register(struct djn_backend *be, void *p, size_t bytes);
void cuda_host_unregister(struct djn_backend *be, void *p);
struct djn_event *cuda_event_new(struct djn_backend *be);
void cuda_event_free(struct djn_backend *be, struct djn_event *ev);
enum djn_status cuda_event_record(struct djn_backend *be, struct djn_event *ev, int stream);
enum djn_status cuda_event_wait(struct djn_backend *be, int stream, struct djn_event *ev);
enum djn_status cuda_event_sync(struct djn_backend *be, struct djn_event *ev);
bool cuda_event_done(struct djn_backend *be, struct djn_event *ev);
enum djn_status cuda_copy_h2d_async(struct djn_backend *be, void *dst, const void *src,
				    size_t n, int stream);
enum djn_status cuda_copy_d2h_async(struct djn_backend *be, void *dst, const void *src,
				    size_t n, int stream);
}

/* Makes ctx->rope_freq hold the table for (theta, rot_dim) (rope.cu). */
enum djn_status cuda_rope_table(struct djn_backend *be, const char *op, float theta, int rot_dim);

/* RoPE of a pair (v0, v1) at position pos, frequency freq: rope_cs gives the
 * cosine and sine, rope_rot the first (second = false) or the second element
 * rotated.  Every kernel that applies RoPE calls these, so they round alike,
 * and as the CPU reference does. */
__device__ __forceinline__ void rope_cs(int pos, float freq, float *fcr, float *fci)
{
	float val = __fmul_rn((float)pos, freq);

	*fcr = cosf(val);
	*fci = sinf(val);
}

__device__ __forceinline__ float rope_rot(float v0, float v1, bool second, float fcr, float fci)
{
	return second ? __fadd_rn(__fmul_rn(v0, fci), __fmul_rn(v1, fcr))
		      : __fsub_rn(__fmul_rn(v0, fcr), __fmul_rn(v1, fci));
}

/* --- programmatic dependent launch ------------------------------------------
 *
 * On sm_90 a kernel launched by cuda_launch may begin while the kernel before
 * it on the stream is still finishing: its blocks fill the SMs the earlier
 * kernel's last blocks leave idle, and a GEMV's blocks issue their weight
 * loads (weights never change during a step) before they wait.  The rules,
 * for every kernel launched so:
 *   - pdl_wait() before reading or writing any buffer an earlier kernel
 *     writes or reads (activations, the KV cache, scratch): it returns once
 *     the kernel before has completed and its writes are visible, and as that
 *     kernel obeyed the same rule, once every earlier one has;
 *   - a block that exits before pdl_wait() writes nothing;
 *   - pdl_trigger() first thing, so that the kernel after may launch once
 *     every block of this one has started.
 * Kernels launched plainly may call both: they are no-ops there. */
__device__ __forceinline__ void pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

template <typename... K, typename... A>
static inline cudaError_t cuda_launch(const struct cuda_ctx *c, void (*kernel)(K...), dim3 grid,
				      dim3 block, size_t smem, A... args)
{
	cudaLaunchAttribute attr;
	cudaLaunchConfig_t cfg = {};

	attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
	attr.val.programmaticStreamSerializationAllowed = 1;
	cfg.gridDim = grid;
	cfg.blockDim = block;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = c->compute;
	cfg.attrs = &attr;
	cfg.numAttrs = c->pdl ? 1 : 0;
	return cudaLaunchKernelEx(&cfg, kernel, args...);
}

/* --- device helpers -------------------------------------------------------- */

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL_MASK, v, o);
	return v;
}

__device__ __forceinline__ double warp_sum_d(double v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL_MASK, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
	return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
 * gets the result.  `sh` holds 32 values; the call ends with a barrier-free
 * read, so two calls in a row need a __syncthreads() between them. */
__device__ __forceinline__ float block_sum(float v, float *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = warp_sum(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0f;
	return warp_sum(v);
}

__device__ __forceinline__ double block_sum_d(double v, double *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = warp_sum_d(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0;
	return warp_sum_d(v);
}

__device__ __forceinline__ float block_max(float v, float *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = warp_max(v);
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return warp_max(v);
}

__device__ __forceinline__ float f16_to_f32(uint16_t h)
{
	return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ float bf16_to_f32(uint16_t h)
{
	return __uint_as_float((uint32_t)h << 16);
}

/* The KV cache's elements (djn_kv_view.dtype): f32, or f16 stored rounded
 * to nearest even (as the CPU's djn_f32_to_f16) and read back exactly.
 * Kernels that touch the cache are templates on KT = float or __half,
 * chosen by the dtype at launch. */
__device__ __forceinline__ float kv_ld(const float *p)
{
	return *p;
}

__device__ __forceinline__ float kv_ld(const __half *p)
{
	return __half2float(__ushort_as_half(*(const unsigned short *)p));
}

__device__ __forceinline__ void kv_st(float *p, float v)
{
	*p = v;
}

__device__ __forceinline__ void kv_st(__half *p, float v)
{
	*p = __float2half_rn(v);
}

/* Four consecutive elements (16-byte aligned for f32, 8 for f16), read-only. */
__device__ __forceinline__ float4 kv_ld4(const float *p)
{
	return __ldg((const float4 *)p);
}

__device__ __forceinline__ float4 kv_ld4(const __half *p)
{
	const uint2 u = __ldg((const uint2 *)p);

	return make_float4(__half2float(__ushort_as_half((unsigned short)(u.x & 0xffffu))),
			   __half2float(__ushort_as_half((unsigned short)(u.x >> 16))),
			   __half2float(__ushort_as_half((unsigned short)(u.y & 0xffffu))),
			   __half2float(__ushort_as_half((unsigned short)(u.y >> 16))));
}

/* Four halves as stored (8-byte aligned, read-only), and widened exactly.
 * The f16 attention kernels load a whole step's halves raw with kv_raw4h
 * before widening any: a widening between two loads makes the warp wait for
 * the first before it issues the second. */
__device__ __forceinline__ uint2 kv_raw4h(const __half *p)
{
	return __ldg((const uint2 *)p);
}

__device__ __forceinline__ float4 kv_wide4h(uint2 u)
{
	return make_float4(__half2float(__ushort_as_half((unsigned short)(u.x & 0xffffu))),
			   __half2float(__ushort_as_half((unsigned short)(u.x >> 16))),
			   __half2float(__ushort_as_half((unsigned short)(u.y & 0xffffu))),
			   __half2float(__ushort_as_half((unsigned short)(u.y >> 16))));
}

/* s + a.b, in the order x, y, z, w (fused multiply-adds). */
__device__ __forceinline__ float dot4(float4 a, float4 b, float s)
{
	s = fmaf(a.x, b.x, s);
	s = fmaf(a.y, b.y, s);
	s = fmaf(a.z, b.z, s);
	return fmaf(a.w, b.w, s);
}

/* Little-endian u16 from any address (block headers are only 2-aligned). */
__device__ __forceinline__ uint16_t ld_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/* Element c of row r of a weight of any dtype, as djn_weight_row_f32 computes
 * it (same roundings: no contraction of d * q + m).  The slow, general path:
 * embeddings, norm gains and biases, odd shapes. */
__device__ __forceinline__ float weight_at(const uint8_t *base, int dtype, size_t row_bytes,
					   int64_t r, int64_t c)
{
	const uint8_t *row = base + (size_t)r * row_bytes;

	switch (dtype) {
	case DJN_DTYPE_F32:
		return ((const float *)row)[c];
	case DJN_DTYPE_F16:
		return f16_to_f32(ld_u16(row + 2 * c));
	case DJN_DTYPE_BF16:
		return bf16_to_f32(ld_u16(row + 2 * c));
	case DJN_DTYPE_Q8_0: {
		const uint8_t *b = row + (size_t)(c / DJN_QK) * 34;
		return __fmul_rn(f16_to_f32(ld_u16(b)), (float)(int8_t)b[2 + c % DJN_QK]);
	}
	case DJN_DTYPE_Q4_0: {
		const uint8_t *b = row + (size_t)(c / DJN_QK) * 18;
		int j = (int)(c % DJN_QK), q = b[2 + (j & 15)];
		q = j < 16 ? (q & 0xf) : (q >> 4);
		return __fmul_rn(f16_to_f32(ld_u16(b)), (float)(q - 8));
	}
	case DJN_DTYPE_Q4_1: {
		const uint8_t *b = row + (size_t)(c / DJN_QK) * 20;
		int j = (int)(c % DJN_QK), q = b[4 + (j & 15)];
		q = j < 16 ? (q & 0xf) : (q >> 4);
		return __fadd_rn(__fmul_rn(f16_to_f32(ld_u16(b)), (float)q),
				 f16_to_f32(ld_u16(b + 2)));
	}
	}
	return __int_as_float(0x7fc00000); /* unknown dtype: NaN, checked on the host */
}

/* A 1-D weight (gain, bias) of any dtype: f32 is read directly, others
 * dequantized element by element. */
struct vec_ref {
	const uint8_t *p; /* NULL: absent */
	int dtype;
	size_t row_bytes;
};

__device__ __forceinline__ float vec_at(const struct vec_ref &v, int64_t j)
{
	if (v.dtype == DJN_DTYPE_F32)
		return ((const float *)v.p)[j];
	return weight_at(v.p, v.dtype, v.row_bytes, 0, j);
}

static inline struct vec_ref vec_of(const struct djn_weight *w)
{
	struct vec_ref v = { NULL, DJN_DTYPE_F32, 0 };

	if (w) {
		v.p = (const uint8_t *)w->dev;
		v.dtype = (int)w->dtype;
		v.row_bytes = djn_dtype_row_bytes(w->dtype, w->cols);
	}
	return v;
}

#endif
