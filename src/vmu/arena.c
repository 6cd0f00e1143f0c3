/* arena.c - the Stack segment: one backend buffer, bump-allocated and reset
 * at every chunk, so activations never fragment device memory.  Buffers
 * come from and go back to the backend's kept ones (djn_backend_take), so
 * a session that starts or ends, or a prefill arena that shrinks for
 * decoding, costs no device allocation and no free (which waits for the
 * whole device) in the step loop. */
#include <string.h>

#include "djinn/vmu.h"

#define ARENA_ALIGN 256
#define ARENA_SHRINK ((size_t)16 << 20)

/* An arena of cap bytes is far too large past 16 MiB and 8 times cap. */
static size_t largest_for(size_t cap)
{
	return 8 * cap < ARENA_SHRINK ? ARENA_SHRINK : 8 * cap;
}

static enum djn_status replace(struct djn_arena *a, size_t cap, struct djn_err *err)
{
	size_t got;
	/* the new one first: a failure leaves the old one as it was */
	char *p = djn_backend_take(a->be, cap, largest_for(cap), &got);

	if (!p)
		return djn_err_set(err, DJN_ERR_NOMEM, "activation arena: %s", a->be->err.msg);
	djn_backend_keep(a->be, a->base, a->cap);
	a->base = p;
	a->cap = got;
	a->used = 0;
	return DJN_OK;
}

enum djn_status djn_arena_init(struct djn_arena *a, struct djn_backend *be, size_t cap,
			       struct djn_err *err)
{
	memset(a, 0, sizeof(*a));
	a->be = be;
	return djn_arena_reserve(a, cap, err);
}

enum djn_status djn_arena_reserve(struct djn_arena *a, size_t cap, struct djn_err *err)
{
	if (cap <= a->cap)
		return DJN_OK;
	return replace(a, cap, err);
}

enum djn_status djn_arena_fit(struct djn_arena *a, size_t cap, struct djn_err *err)
{
	if (a->base && a->cap > largest_for(cap))
		return replace(a, cap, err);
	return djn_arena_reserve(a, cap, err);
}

float *djn_arena_floats(struct djn_arena *a, size_t n)
{
	size_t bytes = (n * sizeof(float) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	char *p;

	if (a->used + bytes > a->cap)
		return NULL;
	p = a->base + a->used;
	a->used += bytes;
	return (float *)p;
}

void djn_arena_reset(struct djn_arena *a)
{
	a->used = 0;
}

void djn_arena_release(struct djn_arena *a)
{
	if (a->base)
		djn_backend_keep(a->be, a->base, a->cap);
	memset(a, 0, sizeof(*a));
}
