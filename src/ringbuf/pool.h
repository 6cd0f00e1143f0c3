/* pool.h - the shared pool's side of a ring (internal to src/ringbuf). */
#ifndef DJINN_RINGBUF_POOL_H
#define DJINN_RINGBUF_POOL_H

#include "djinn/ringbuf.h"

struct djn_pooled;

struct djn_pooled *djn_pooled_new(struct djn_model *m, struct djn_backend *be,
				  size_t fixed_bytes, size_t working_set, size_t budget,
				  struct djn_err *err);
void djn_pooled_free(struct djn_pooled *p);
enum djn_status djn_pooled_begin(struct djn_pooled *p, int layer, struct djn_err *err);
enum djn_status djn_pooled_end(struct djn_pooled *p, int layer, struct djn_err *err);
bool djn_pooled_streams(const struct djn_pooled *p, int layer);
uint64_t djn_pooled_graph_key(const struct djn_pooled *p);
enum djn_status djn_pooled_graph_prepare(struct djn_pooled *p, struct djn_err *err);
/* The plan as it stands now (refreshed at each call). */
const struct djn_ring_plan *djn_pooled_plan(struct djn_pooled *p);
void djn_pooled_stats(const struct djn_pooled *p, struct djn_ring_stats *out);
/* ring.c: the pooled part of r, or NULL. */
struct djn_pooled *djn_ring_pooled(const struct djn_ring *r);

#endif
