/* region.h - the shared pool's allocator: ranges of one device allocation
 * made once, handed out and taken back with no device call (internal to
 * src/ringbuf; tests/unit/test-region.c exercises it directly).
 *
 * The region is [0, cap) of offsets; the caller owns the memory they index
 * (one backend allocation).  It is a sorted array of extents, each free or
 * live, covering the region with no gap.  Allocation is first fit: from the
 * low end for short-lived ranges (layers), from the high end for long-lived
 * ones (a model's embedding and head, its streaming slot), so that the two
 * kinds do not interleave.  Freeing merges a range with free neighbours:
 * two free extents are never adjacent.
 *
 * Why this shape: the pool places whole layers, a few hundred at most, of a
 * few distinct sizes (equal within a model); a linear walk of that many
 * extents costs microseconds, and first fit over equal sizes reuses a
 * freed layer's range exactly.  Worst case: with mixed sizes the free bytes
 * can be split into holes each smaller than a request (at most one hole
 * more than there are live ranges); the pool then evicts further, least
 * recently used first, until coalescing opens a hole large enough, or
 * reports that none can be made.
 *
 * Sizes are rounded up to `align` (a power of two); offsets are multiples
 * of it.  Not thread-safe (the engine is single-threaded). */
#ifndef DJINN_RINGBUF_REGION_H
#define DJINN_RINGBUF_REGION_H

#include <stdbool.h>
#include <stddef.h>

#include "djinn/status.h"

struct djn_extent {
	size_t off, size;
	bool live;
};

struct djn_region {
	size_t cap, align;
	size_t live_bytes;      /* sum of the live extents' sizes */
	int n_live;
	int n, n_cap;           /* extents in use, allocated */
	struct djn_extent *ext; /* sorted by off, covering [0, cap) */
};

/* An empty region of cap bytes (rounded down to align); align a power of
 * two >= 1.  Release with djn_region_release. */
void djn_region_init(struct djn_region *r, size_t cap, size_t align);
void djn_region_release(struct djn_region *r);

/* A range of `bytes` (rounded up to align; 0 counts as align) into *off:
 * the lowest free one that fits, or with `high` the highest.  DJN_ERR_NOMEM
 * when no free extent is large enough, with the bytes asked, the free bytes
 * and the largest free extent in err; the region is unchanged then. */
enum djn_status djn_region_alloc(struct djn_region *r, size_t bytes, bool high, size_t *off,
				 struct djn_err *err);
/* Give back the live range that starts at off; its size, or 0 (nothing
 * changed) when no live range starts there. */
size_t djn_region_free(struct djn_region *r, size_t off);
/* Can a range of bytes be allocated now? */
bool djn_region_fits(const struct djn_region *r, size_t bytes);
/* The largest free extent, and the free bytes in all. */
size_t djn_region_largest_free(const struct djn_region *r);
size_t djn_region_free_bytes(const struct djn_region *r);
/* The internal invariants hold (sorted, covering, no two free neighbours,
 * the counts right): for tests. */
bool djn_region_check(const struct djn_region *r);

#endif
