/* sample.c - next-token sampling on host logits, after llama2.c's sampler
 * (xorshift RNG, temperature, top-p), so seeded runs are reproducible. */
#include <math.h>
#include <stdlib.h>

#include "exec/session_impl.h"

static uint32_t random_u32(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state)
{
	return (float)(random_u32(state) >> 8) / 16777216.0f;
}

struct prob_index {
	float p;
	int i;
};

static int cmp_desc(const void *a, const void *b)
{
	const struct prob_index *x = a, *y = b;

	return x->p > y->p ? -1 : x->p < y->p ? 1 : 0;
}

int djn_sample(float *logits, int n, float temperature, float top_p, uint64_t *rng)
{
	float max_val = logits[0], sum = 0.0f, coin, cdf = 0.0f;

	for (int i = 0; i < n; i++)
		logits[i] /= temperature;
	for (int i = 1; i < n; i++)
		if (logits[i] > max_val)
			max_val = logits[i];
	for (int i = 0; i < n; i++) {
		logits[i] = expf(logits[i] - max_val);
		sum += logits[i];
	}
	for (int i = 0; i < n; i++)
		logits[i] /= sum;
	coin = random_f32(rng);
	if (top_p <= 0 || top_p >= 1) {
		for (int i = 0; i < n; i++) {
			cdf += logits[i];
			if (coin < cdf)
				return i;
		}
		return n - 1;
	}
	/* top-p: keep the smallest set of tokens whose mass exceeds top_p;
	 * tokens under (1 - top_p) / (n - 1) cannot be in it, so skip sorting them */
	struct prob_index *pi = djn_xmalloc(sizeof(*pi) * (size_t)n);
	float cutoff = (1.0f - top_p) / (float)(n - 1), cum = 0.0f, r;
	int m = 0, last, out;

	for (int i = 0; i < n; i++)
		if (logits[i] >= cutoff)
			pi[m++] = (struct prob_index){ logits[i], i };
	qsort(pi, (size_t)m, sizeof(*pi), cmp_desc);
	last = m - 1;
	for (int i = 0; i < m; i++) {
		cum += pi[i].p;
		if (cum > top_p) {
			last = i;
			break;
		}
	}
	r = coin * cum;
	cdf = 0.0f;
	out = pi[last].i;
	for (int i = 0; i <= last; i++) {
		cdf += pi[i].p;
		if (r < cdf) {
			out = pi[i].i;
			break;
		}
	}
	free(pi);
	return out;
}
