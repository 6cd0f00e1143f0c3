/* rope.cu - rotary position embedding on the GPU, both pairings.
 *
 * The angle of pair i at position p is p * freq[i] in f32, with
 * freq[i] = 1 / powf(theta, 2i / rot_dim) exactly as the CPU reference writes
 * it.  The table is computed on the host with the same libm powf and uploaded,
 * so the frequencies are bit-identical to the reference's: an ulp of
 * difference in freq becomes a visible phase error at position 4000, which a
 * device powf (up to a few ulp off) would give. */
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda.cuh"

/* One block per row; a thread per (head, pair).  dpos: the position of row
 * 0 from device memory (a recorded step), else pos0. */
__global__ void __launch_bounds__(1024, 1)
rope_kernel(float *x, int n_head, int head_dim, int half, int pos0, const int *dpos,
	    const float *__restrict__ freq, bool interleaved)
{
	const int r = blockIdx.x, pos = (dpos ? *dpos : pos0) + r;

	for (int t = threadIdx.x; t < n_head * half; t += blockDim.x) {
		int h = t / half, i = t % half;
		float *v = x + ((size_t)r * n_head + h) * head_dim;
		int a = interleaved ? 2 * i : i;
		int b = interleaved ? 2 * i + 1 : i + half;
		float v0 = v[a], v1 = v[b], fcr, fci;
		rope_cs(pos, freq[i], &fcr, &fci);
		v[a] = rope_rot(v0, v1, false, fcr, fci);
		v[b] = rope_rot(v0, v1, true, fcr, fci);
	}
}

enum djn_status cuda_rope_table(struct djn_backend *be, const char *op, float theta, int rot_dim)
{
	struct cuda_ctx *c = cuda_ctx(be);
	const char *const op_name_ = op;
	int half = rot_dim / 2;

	if (c->rope_freq && c->rope_rot_dim == rot_dim && c->rope_theta == theta)
		return DJN_OK;
	enum djn_status st = cuda_state_moves(be, op, "the rope table");
	if (st != DJN_OK)
		return st;
	if (half > c->rope_cap) {
		float *d = NULL;
		if (c->rope_freq) {
			CK(be, cudaStreamSynchronize(c->compute)); /* queued ropes read it */
			CK(be, cudaFree(c->rope_freq));
			c->rope_freq = NULL;
		}
		c->rope_cap = 0;
		CK(be, cudaMalloc(&d, sizeof(float) * (size_t)half));
		c->rope_freq = d;
		c->rope_freq_host = (float *)djn_xrealloc(c->rope_freq_host, sizeof(float) * half);
		c->rope_cap = half;
	}
	for (int i = 0; i < half; i++)
		c->rope_freq_host[i] = 1.0f / powf(theta, (float)(2 * i) / (float)rot_dim);
	/* Queued on compute: earlier ropes still see the old table.  The host
	 * table is rewritten only by a later call, after this copy has been
	 * issued; a pageable copy has left it by the time the call returns. */
	CK(be, cudaMemcpyAsync(c->rope_freq, c->rope_freq_host, sizeof(float) * (size_t)half,
			       cudaMemcpyHostToDevice, c->compute));
	c->rope_rot_dim = rot_dim;
	c->rope_theta = theta;
	return DJN_OK;
}

extern "C" enum djn_status cuda_rope(struct djn_backend *be, float *x, int n, int n_head,
				     int head_dim, int rot_dim, int pos0, float theta,
				     enum djn_rope_style style)
{
	struct cuda_ctx *c = cuda_ctx(be);
	enum djn_status st;
	int half = rot_dim / 2;

	CUDA_OP(be, "rope");
	if (rot_dim > head_dim || rot_dim < 0 || pos0 < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID,
				   "rope: rot_dim %d, head_dim %d, pos0 %d: need 0 <= rot_dim <= "
				   "head_dim and pos0 >= 0",
				   rot_dim, head_dim, pos0);
	if (n <= 0 || n_head <= 0 || half == 0)
		return DJN_OK;
	const int *dpos;
	if ((st = cuda_step_pos(be, op_name_, pos0, n, &dpos)) != DJN_OK)
		return st;
	if ((st = cuda_rope_table(be, op_name_, theta, rot_dim)) != DJN_OK)
		return st;
	unsigned threads = (unsigned)(n_head * half);
	threads = threads >= 1024 ? 1024 : (threads + 31) / 32 * 32;
	rope_kernel<<<(unsigned)n, threads, 0, c->compute>>>(x, n_head, head_dim, half, pos0, dpos,
							      c->rope_freq,
							      style == DJN_ROPE_INTERLEAVED);
	CK_LAUNCH(be);
	return DJN_OK;
}
