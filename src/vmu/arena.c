/* arena.c - the Stack segment: one backend buffer, bump-allocated and reset
 * at every chunk, so activations never fragment device memory. */
#include <string.h>

#include "djinn/vmu.h"

#define ARENA_ALIGN 256

enum djn_status djn_arena_init(struct djn_arena *a, struct djn_backend *be, size_t cap,
			       struct djn_err *err)
{
	memset(a, 0, sizeof(*a));
	a->be = be;
	return djn_arena_reserve(a, cap, err);
}

enum djn_status djn_arena_reserve(struct djn_arena *a, size_t cap, struct djn_err *err)
{
	char *p;

	if (cap <= a->cap)
		return DJN_OK;
	p = a->be->i->alloc(a->be, cap);
	if (!p)
		return djn_err_set(err, DJN_ERR_NOMEM, "activation arena: %s", a->be->err.msg);
	if (a->base)
		a->be->i->dealloc(a->be, a->base);
	a->base = p;
	a->cap = cap;
	a->used = 0;
	return DJN_OK;
}

enum djn_status djn_arena_fit(struct djn_arena *a, size_t cap, struct djn_err *err)
{
	if (a->base && a->cap > ((size_t)16 << 20) && a->cap / 8 > cap) {
		/* the new one first: a failure leaves the old one as it was */
		char *p = a->be->i->alloc(a->be, cap);
		if (!p)
			return djn_err_set(err, DJN_ERR_NOMEM, "activation arena: %s",
					   a->be->err.msg);
		a->be->i->dealloc(a->be, a->base);
		a->base = p;
		a->cap = cap;
		a->used = 0;
		return DJN_OK;
	}
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
		a->be->i->dealloc(a->be, a->base);
	memset(a, 0, sizeof(*a));
}
