/* ops.c - the CPU reference for the elementwise, norm and rope ops.  The
 * arithmetic follows llama2.c's run.c operation for operation (same float
 * types, same summation order), so greedy tokens match it exactly. */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

enum djn_status cpu_embed(struct djn_backend *be, float *out, const struct djn_weight *table,
			  const int32_t *ids, int n)
{
	struct djn_weight w = *table;

	w.host = w.dev; /* the CPU backend computes from dev == host memory */
	for (int i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= table->rows)
			return djn_err_set(&be->err, DJN_ERR_RANGE,
					   "embed: token id %d out of range 0..%lld", ids[i],
					   (long long)table->rows - 1);
		djn_weight_row_f32(&w, ids[i], out + (size_t)i * table->cols);
	}
	return DJN_OK;
}

/* Norm gains and biases are tiny; read them through the generic path. */
static const float *gain(const struct djn_weight *w, float *tmp)
{
	struct djn_weight c;

	if (w->dtype == DJN_DTYPE_F32)
		return w->dev;
	c = *w;
	c.host = w->dev;
	djn_weight_row_f32(&c, 0, tmp);
	return tmp;
}

enum djn_status cpu_rmsnorm(struct djn_backend *be, float *out, const float *x,
			    const struct djn_weight *w, int n, int dim, float eps)
{
	float *tmp = malloc(sizeof(float) * (size_t)dim);
	const float *g = gain(w, tmp);

	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * dim;
		float *o = out + (size_t)r * dim;
		float ss = 0.0f;
		for (int j = 0; j < dim; j++)
			ss += xr[j] * xr[j];
		ss /= dim;
		ss += eps;
		ss = 1.0f / sqrtf(ss);
		for (int j = 0; j < dim; j++)
			o[j] = g[j] * (ss * xr[j]);
	}
	free(tmp);
	return DJN_OK;
}

enum djn_status cpu_layernorm(struct djn_backend *be, float *out, const float *x,
			      const struct djn_weight *w, const struct djn_weight *b, int n,
			      int dim, float eps)
{
	float *tmp = malloc(sizeof(float) * 2 * (size_t)dim);
	const float *g = gain(w, tmp);
	const float *bb = b ? gain(b, tmp + dim) : NULL;

	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * dim;
		float *o = out + (size_t)r * dim;
		double mean = 0, var = 0;
		for (int j = 0; j < dim; j++)
			mean += xr[j];
		mean /= dim;
		for (int j = 0; j < dim; j++)
			var += (xr[j] - mean) * (xr[j] - mean);
		var /= dim;
		float inv = (float)(1.0 / sqrt(var + eps));
		for (int j = 0; j < dim; j++)
			o[j] = (float)(xr[j] - mean) * inv * g[j] + (bb ? bb[j] : 0.0f);
	}
	free(tmp);
	return DJN_OK;
}

void cpu_rope_row(float *x, int n_head, int head_dim, int rot_dim, int pos, float theta,
		  enum djn_rope_style style)
{
	int half = rot_dim / 2;

	for (int h = 0; h < n_head; h++) {
		float *v = x + (size_t)h * head_dim;
		for (int i = 0; i < half; i++) {
			float freq = 1.0f / powf(theta, (float)(2 * i) / (float)rot_dim);
			float val = pos * freq;
			float fcr = cosf(val), fci = sinf(val);
			int a = style == DJN_ROPE_INTERLEAVED ? 2 * i : i;
			int b = style == DJN_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
			float v0 = v[a], v1 = v[b];
			v[a] = v0 * fcr - v1 * fci;
			v[b] = v0 * fci + v1 * fcr;
		}
	}
}

enum djn_status cpu_rope(struct djn_backend *be, float *x, int n, int n_head, int head_dim,
			 int rot_dim, int pos0, float theta, enum djn_rope_style style)
{
	for (int r = 0; r < n; r++)
		cpu_rope_row(x + (size_t)r * n_head * head_dim, n_head, head_dim, rot_dim, pos0 + r,
			     theta, style);
	return DJN_OK;
}

enum djn_status cpu_swiglu(struct djn_backend *be, float *out, const float *gate,
			   const float *up, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float val = gate[i];
		val *= (1.0f / (1.0f + expf(-val)));
		val *= up[i];
		out[i] = val;
	}
	return DJN_OK;
}

enum djn_status cpu_gelu(struct djn_backend *be, float *out, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float v = x[i];
		out[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
	}
	return DJN_OK;
}

enum djn_status cpu_add(struct djn_backend *be, float *out, const float *a, const float *b,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
	return DJN_OK;
}

enum djn_status cpu_axpby(struct djn_backend *be, float *y, float scale, const float *x,
			  float alpha, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = y[i] * scale + (x ? alpha * x[i] : 0.0f);
	return DJN_OK;
}

void cpu_softmax_row(float *x, int n)
{
	float max_val = x[0], sum = 0.0f;

	for (int i = 1; i < n; i++)
		if (x[i] > max_val)
			max_val = x[i];
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - max_val);
		sum += x[i];
	}
	for (int i = 0; i < n; i++)
		x[i] /= sum;
}

enum djn_status cpu_softmax(struct djn_backend *be, float *x, int n, int dim)
{
	for (int r = 0; r < n; r++)
		cpu_softmax_row(x + (size_t)r * dim, dim);
	return DJN_OK;
}

enum djn_status cpu_argmax(struct djn_backend *be, const float *x, int n, int *out)
{
	int best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
			best = i;
	*out = best;
	return DJN_OK;
}

enum djn_status cpu_stats(struct djn_backend *be, const float *x, int64_t n,
			  struct djn_stats *out)
{
	djn_stats_f32(x, n, out);
	return DJN_OK;
}
