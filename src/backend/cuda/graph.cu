/* graph.cu - decode steps recorded once and replayed as CUDA graphs.
 *
 * A decode step is a few hundred small launches.  Recorded with stream
 * capture and replayed with one cudaGraphLaunch, the GPU runs them back to
 * back without waiting for the host.  What changes from one step to the next
 * must then not be baked into the recording:
 *   - the position: kernels that take one (rope, kv_store, attention) read it
 *     from ctx->step_pos, a device word set by a one-thread kernel before
 *     each replay, while recording (cuda_step_pos);
 *   - the attention split: its grid is sized from the shape alone and the
 *     chunk length is worked out in the kernel from the position;
 *   - the KV pages: kernels find them through the cache's device page table,
 *     whose address is fixed for the life of the session;
 *   - a batch of sessions (batch.cu's *_rows ops): every row's position and
 *     page table are read from the caller's device arrays, whose contents
 *     change between replays and whose addresses do not; the other ops of
 *     such a step record with their n rows as they are;
 *   - backend buffers that may move (scratch slots, the rope table): moving
 *     one bumps ctx->gen, and a recording of an older gen refuses to replay.
 * Activations live in the session's arena and weights in Text: the session
 * records again when either moves.
 */
#include <stdlib.h>

#include "backend/cuda/cuda.cuh"

struct djn_graph {
	cudaGraphExec_t exec;
	unsigned gen;
};

__global__ void set_pos_kernel(int *dst, int pos)
{
	*dst = pos;
}

enum djn_status cuda_step_pos(struct djn_backend *be, const char *op, int pos0, int n,
			      const int **dpos)
{
	struct cuda_ctx *c = cuda_ctx(be);

	*dpos = NULL;
	if (!c->capturing)
		return DJN_OK;
	if (n != 1 || pos0 != c->cap_pos) {
		c->cap_failed = true;
		return djn_err_set(&be->err, DJN_ERR_STATE,
				   "%s: %d rows at position %d cannot be recorded into a step at "
				   "position %d",
				   op, n, pos0, c->cap_pos);
	}
	*dpos = c->step_pos;
	return DJN_OK;
}

enum djn_status cuda_state_moves(struct djn_backend *be, const char *op, const char *what)
{
	struct cuda_ctx *c = cuda_ctx(be);

	if (c->capturing) {
		c->cap_failed = true;
		return djn_err_set(&be->err, DJN_ERR_STATE,
				   "%s: %s cannot change while a step is recorded", op, what);
	}
	c->gen++;
	return DJN_OK;
}

extern "C" enum djn_status cuda_graph_begin(struct djn_backend *be, int pos)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "graph_begin");
	if (c->capturing)
		return djn_err_set(&be->err, DJN_ERR_STATE, "graph_begin: already recording");
	if (pos < 0)
		return djn_err_set(&be->err, DJN_ERR_INVALID, "graph_begin: position %d", pos);
	if (!c->step_pos)
		CK(be, cudaMalloc(&c->step_pos, sizeof(int)));
	/* thread-local: a call that would break the recording (a synchronous
	 * copy, an allocation) fails here instead of being recorded */
	CK(be, cudaStreamBeginCapture(c->compute, cudaStreamCaptureModeThreadLocal));
	c->capturing = true;
	c->cap_failed = false;
	c->cap_pos = pos;
	return DJN_OK;
}

extern "C" enum djn_status cuda_graph_end(struct djn_backend *be, struct djn_graph **out)
{
	struct cuda_ctx *c = cuda_ctx(be);
	cudaGraph_t g = NULL;
	cudaGraphExec_t exec = NULL;
	bool failed;
	cudaError_t e;

	*out = NULL;
	CUDA_OP(be, "graph_end");
	if (!c->capturing)
		return djn_err_set(&be->err, DJN_ERR_STATE, "graph_end: not recording");
	e = cudaStreamEndCapture(c->compute, &g);
	failed = c->cap_failed;
	c->capturing = false;
	if (failed || e != cudaSuccess) {
		if (g)
			cudaGraphDestroy(g);
		(void)cudaGetLastError();
		if (failed) /* be->err says which op */
			return be->err.code ? be->err.code : DJN_ERR_STATE;
		return cuda_fail(be, e, op_name_, "cudaStreamEndCapture", __FILE__, __LINE__);
	}
	e = cudaGraphInstantiate(&exec, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess)
		return cuda_fail(be, e, op_name_, "cudaGraphInstantiate", __FILE__, __LINE__);
	struct djn_graph *r = (struct djn_graph *)malloc(sizeof(*r));
	if (!r) {
		cudaGraphExecDestroy(exec);
		return djn_err_set(&be->err, DJN_ERR_NOMEM, "graph_end: out of host memory");
	}
	r->exec = exec;
	r->gen = c->gen;
	*out = r;
	return DJN_OK;
}

extern "C" enum djn_status cuda_graph_launch(struct djn_backend *be, struct djn_graph *g, int pos)
{
	struct cuda_ctx *c = cuda_ctx(be);

	CUDA_OP(be, "graph_launch");
	if (!g || c->capturing)
		return djn_err_set(&be->err, DJN_ERR_STATE, "graph_launch: %s",
				   g ? "recording in progress" : "no graph");
	if (g->gen != c->gen)
		return djn_err_set(&be->err, DJN_ERR_STATE,
				   "graph_launch: stale (backend buffers moved since it was recorded)");
	set_pos_kernel<<<1, 1, 0, c->compute>>>(c->step_pos, pos);
	CK_LAUNCH(be);
	CK(be, cudaGraphLaunch(g->exec, c->compute));
	return DJN_OK;
}

extern "C" void cuda_graph_free(struct djn_backend *be, struct djn_graph *g)
{
	if (!g)
		return;
	if (!be->poisoned) {
		cudaSetDevice(cuda_ctx(be)->dev);
		cudaGraphExecDestroy(g->exec);
		(void)cudaGetLastError();
	}
	free(g);
}
