/* test-region.c - the shared pool's allocator (src/ringbuf/region.c):
 * carving, freeing, coalescing, a request that cannot fit, and a seeded
 * random walk checked against a byte map of the region. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringbuf/region.h"

#define A 256

Test(region, carves_low_and_high)
{
	struct djn_region r;
	size_t a, b, c;

	djn_region_init(&r, 10 * A + 17, A);
	cr_assert_eq(r.cap, 10 * A, "the capacity is rounded down to the alignment");
	cr_assert_eq(djn_region_alloc(&r, 3 * A, false, &a, NULL), DJN_OK);
	cr_assert_eq(djn_region_alloc(&r, 1, false, &b, NULL), DJN_OK);
	cr_assert_eq(djn_region_alloc(&r, 2 * A, true, &c, NULL), DJN_OK);
	cr_assert_eq(a, 0);
	cr_assert_eq(b, 3 * A, "1 byte takes one aligned unit after the first range");
	cr_assert_eq(c, 8 * A, "a high range sits at the top");
	cr_assert_eq(djn_region_free_bytes(&r), 4 * A);
	cr_assert_eq(djn_region_largest_free(&r), 4 * A);
	cr_assert_eq(r.n_live, 3);
	cr_assert(djn_region_check(&r));
	djn_region_release(&r);
}

Test(region, freeing_coalesces_with_both_neighbours)
{
	struct djn_region r;
	size_t off[5];

	djn_region_init(&r, 5 * A, A);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(djn_region_alloc(&r, A, false, &off[i], NULL), DJN_OK);
	cr_assert_eq(djn_region_free_bytes(&r), 0);
	cr_assert_eq(djn_region_free(&r, off[1]), A);
	cr_assert_eq(djn_region_free(&r, off[3]), A);
	cr_assert_eq(djn_region_largest_free(&r), A, "two holes of one unit, apart");
	cr_assert(!djn_region_fits(&r, 2 * A));
	cr_assert_eq(djn_region_free(&r, off[2]), A);
	cr_assert_eq(djn_region_largest_free(&r), 3 * A, "the middle one joins both");
	cr_assert_eq(r.n, 3, "live, one free extent, live");
	cr_assert(djn_region_check(&r));
	cr_assert_eq(djn_region_free(&r, off[2]), 0, "a range is freed once");
	cr_assert_eq(djn_region_free(&r, off[2] + 1), 0, "an offset no range starts at");
	cr_assert_eq(djn_region_free(&r, off[0]), A);
	cr_assert_eq(djn_region_free(&r, off[4]), A);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(djn_region_largest_free(&r), 5 * A, "all of it again");
	cr_assert(djn_region_check(&r));
	djn_region_release(&r);
}

Test(region, a_freed_range_is_reused_exactly)
{
	struct djn_region r;
	size_t off[4], again;

	djn_region_init(&r, 4 * 3 * A, A);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(djn_region_alloc(&r, 3 * A - 5, false, &off[i], NULL), DJN_OK);
	cr_assert_eq(djn_region_free(&r, off[2]), 3 * A);
	cr_assert_eq(djn_region_alloc(&r, 3 * A, false, &again, NULL), DJN_OK);
	cr_assert_eq(again, off[2], "a layer of the same size goes where the last one was");
	djn_region_release(&r);
}

Test(region, a_request_that_cannot_fit_says_so_with_the_bytes)
{
	struct djn_region r;
	struct djn_err err = { 0 };
	size_t a, b, c, x = 12345;

	djn_region_init(&r, 6 * A, A);
	cr_assert_eq(djn_region_alloc(&r, 2 * A, false, &a, NULL), DJN_OK);
	cr_assert_eq(djn_region_alloc(&r, 2 * A, false, &b, NULL), DJN_OK);
	cr_assert_eq(djn_region_alloc(&r, 2 * A, false, &c, NULL), DJN_OK);
	djn_region_free(&r, a);
	djn_region_free(&r, c);
	/* 4 units free, but in two holes of 2 */
	cr_assert_eq(djn_region_alloc(&r, 3 * A, false, &x, &err), DJN_ERR_NOMEM);
	cr_assert_eq(x, 12345, "nothing written on failure");
	cr_assert(strstr(err.msg, "no free range of 768 B (768 bytes)"), "%s", err.msg);
	cr_assert(strstr(err.msg, "1.0 KiB free, the largest range 512 B"), "%s", err.msg);
	cr_assert(djn_region_check(&r));
	cr_assert_eq(r.n_live, 1, "the region is unchanged");
	cr_assert_eq(djn_region_alloc(&r, SIZE_MAX, false, &x, &err), DJN_ERR_NOMEM,
		     "a size that wraps when rounded up");
	djn_region_release(&r);
}

Test(region, an_empty_region_holds_nothing)
{
	struct djn_region r;
	size_t x;

	djn_region_init(&r, A - 1, A);
	cr_assert_eq(r.cap, 0);
	cr_assert_eq(djn_region_alloc(&r, 1, false, &x, NULL), DJN_ERR_NOMEM);
	cr_assert(djn_region_check(&r));
	djn_region_release(&r);
}

/* A seeded random walk of allocations (low and high, a few sizes as the
 * pool's are, and odd ones) and frees, against a byte map of the region: a
 * range never overlaps a live one, stays inside, is aligned; an allocation
 * fails only when no run of free units is long enough; the counts agree. */
static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

#define UNITS 512
#define MAX_LIVE 256

static size_t longest_free_run(const unsigned char *owner)
{
	size_t best = 0, run = 0;

	for (int u = 0; u < UNITS; u++) {
		run = owner[u] ? 0 : run + 1;
		if (run > best)
			best = run;
	}
	return best;
}

Test(region, random_walk_matches_a_model_of_the_region)
{
	static const size_t sizes[] = { 16 * A, 16 * A, 16 * A, 9 * A, 9 * A, 33 * A, 1, A + 1, 3 * A };
	for (uint64_t seed = 1; seed <= 20; seed++) {
		struct djn_region r;
		unsigned char owner[UNITS] = { 0 }; /* 0 free, else the live range's id + 1 */
		size_t off[MAX_LIVE], len[MAX_LIVE];
		int n_live = 0, n_fail = 0, n_ok = 0;

		rng = seed * 0x9e3779b97f4a7c15ull;
		djn_region_init(&r, UNITS * A, A);
		for (int step = 0; step < 3000; step++) {
			bool do_alloc = n_live == 0 || (n_live < MAX_LIVE && next() % 100 < 55);
			if (do_alloc) {
				size_t want = sizes[next() % (sizeof(sizes) / sizeof(sizes[0]))];
				size_t units = (want + A - 1) / A, o;
				bool high = next() % 4 == 0;
				enum djn_status st = djn_region_alloc(&r, want, high, &o, NULL);
				if (st) {
					cr_assert_lt(longest_free_run(owner), units,
						     "seed %llu step %d: %zu units refused with a run "
						     "of %zu free", (unsigned long long)seed, step, units,
						     longest_free_run(owner));
					n_fail++;
					continue;
				}
				cr_assert_eq(o % A, 0);
				cr_assert_leq(o + units * A, (size_t)UNITS * A);
				for (size_t u = o / A; u < o / A + units; u++)
					cr_assert_eq(owner[u], 0, "seed %llu step %d: unit %zu given twice",
						     (unsigned long long)seed, step, u);
				memset(owner + o / A, 1, units);
				off[n_live] = o;
				len[n_live] = units;
				n_live++;
				n_ok++;
			} else {
				int k = (int)(next() % (uint64_t)n_live);
				cr_assert_eq(djn_region_free(&r, off[k]), len[k] * A);
				memset(owner + off[k] / A, 0, len[k]);
				off[k] = off[n_live - 1];
				len[k] = len[n_live - 1];
				n_live--;
			}
			cr_assert(djn_region_check(&r), "seed %llu step %d", (unsigned long long)seed,
				  step);
			size_t used = 0;
			for (int u = 0; u < UNITS; u++)
				used += owner[u] != 0;
			cr_assert_eq(djn_region_free_bytes(&r), (UNITS - used) * A);
			cr_assert_eq(djn_region_largest_free(&r), longest_free_run(owner) * A);
			cr_assert_eq(r.n_live, n_live);
		}
		cr_assert_gt(n_ok, 500, "seed %llu: the walk allocated", (unsigned long long)seed);
		cr_assert_gt(n_fail, 0, "seed %llu: the walk reached a full region",
			     (unsigned long long)seed);
		while (n_live > 0)
			djn_region_free(&r, off[--n_live]);
		cr_assert_eq(r.n, 1);
		cr_assert_eq(djn_region_largest_free(&r), (size_t)UNITS * A);
		djn_region_release(&r);
	}
}
