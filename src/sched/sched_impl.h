/* sched_impl.h - the scheduler's insides, shared by sched.c (steps, phases,
 * IO_WAIT policies) and order.c (tenants, orders, the step-time model). */
#ifndef DJINN_SCHED_IMPL_H
#define DJINN_SCHED_IMPL_H

#include "djinn/sched.h"

#define DJN_TENANT_MAX 64
#define DJN_SLO_HEADROOM 0.8 /* a step may take this much of the tightest SLO (default) */
#define DJN_SLO_WINDOW 20    /* the row cap holds this many SLOs after the last */
#define DJN_MISS_N 64        /* steps whose over-run of the model the margin reads */

struct member {
	struct djn_session *s;
	enum djn_phase phase;
	uint64_t seq; /* order of arrival, for admission */
	int fails;    /* steps in a row whose next chunk found no room */
	char tenant[DJN_TENANT_MAX];
	enum djn_class cls;
	double slo_ms;
	/* service */
	int waited;       /* steps runnable and left out, in a row (aging) */
	long last_step;   /* the step it last ran in (round-robin) */
	long steps, tokens, violations;
	int n_seen;       /* tokens of its run seen so far */
	double ready_ms;  /* its last token, or when it was added or resumed */
	double last_ms, max_ms;
	bool ran, fits;   /* this step */
};

struct model_batch {
	const struct djn_model *m;
	struct djn_batch *b;
};

struct djn_sched {
	struct djn_backend *be;
	struct djn_err err;
	struct djn_sched_opts o;
	struct member *mem;
	int n_mem, cap_mem;
	uint64_t seq;
	struct model_batch *batches;
	int n_batches;
	/* a step's scratch */
	struct djn_session **pick;
	enum djn_stop *why;
	int *ord;
	int cap_pick;
	struct djn_swap_totals *snap;
	int cap_snap;
	struct djn_sched_stats st;
	/* the step-time model: decayed sums of 1, rows, ms, rows^2, rows*ms,
	 * and of k (thousands of cached positions read), k^2, rows*k, k*ms */
	double m0, mx, my, mxx, mxy;
	double mk, mkk, mxk, mky;
	long m_n;
	/* the caller's time between back-to-back steps (an average), and when
	 * the last step ended (0: none runnable since, or never) */
	double gap_ms, last_end_ms;
	/* the tightest SLO of the members that last carried one, and when
	 * one was last in the scheduler (order slo's row cap holds a while) */
	double slo_recent_ms, slo_seen_ms;
	/* what the last DJN_MISS_N steps under the slo row cap took (with the
	 * gap before them) over what the model predicted, ms, a ring; the cap
	 * keeps the 95th percentile of them free (margin; off with
	 * DJN_SLO_MARGIN=0); capped: the last row cap held */
	double miss[DJN_MISS_N];
	int n_miss, i_miss;
	double margin_ms;
	bool margin, capped;
};

/* order.c */
double djn_sched_now(const struct djn_sched *q);
/* The runnable members' indices into q->ord, in the order's order; their count. */
int djn_sched_order_runnable(struct djn_sched *q);
/* Rows a step may take under the order (the budget, or less under SLO);
 * *ms_left: under SLO with a KV term in the model, the ms the step's rows
 * may add to its base (each row's share and its reads), else HUGE_VAL;
 * *row_ms, *kv_ms: the model's terms to charge them by. */
int djn_sched_row_cap(struct djn_sched *q, double *ms_left, double *row_ms, double *kv_ms);
/* May a session of tenant t join?  DJN_OK, or the refusal in q->err. */
enum djn_status djn_sched_admit_slo(struct djn_sched *q, const struct djn_tenant *t);
/* After a step of `rows` rows reading kv cached positions that began at
 * t0: the model, tokens, latencies. */
void djn_sched_account(struct djn_sched *q, int rows, double kv, double t0);
/* Cached positions a chunk of n rows from position pos brings from memory:
 * the pos before it and its own n (a decode row: pos + 1).  A prompt
 * chunk's attention computes n x pos scores, but it reads the cache once:
 * decode rows are what make a step's time grow with its contexts. */
static inline double djn_chunk_kv(int pos, int n)
{
	return (double)pos + n;
}
/* The latency clock of a member restarts (added, resumed). */
void djn_sched_member_ready(struct djn_sched *q, struct member *e);

#endif
