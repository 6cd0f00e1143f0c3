/* order.c - tenants and the order of a step: which runnable sessions enter
 * it (fcfs, round-robin, priority with aging, EDF on SLO deadlines), the
 * step-time model that SLO admission and the SLO row cap predict from, and
 * the accounting of token latencies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sched_impl.h"

static const char *const order_names[] = { "fcfs", "rr", "priority", "slo" };
static const char *const class_names[] = { "interactive", "standard", "batch" };

bool djn_sched_order_parse(const char *name, enum djn_sched_order *out)
{
	for (int i = 0; i < 4; i++)
		if (name && !strcmp(name, order_names[i])) {
			*out = (enum djn_sched_order)i;
			return true;
		}
	return false;
}

const char *djn_sched_order_name(enum djn_sched_order o)
{
	return (unsigned)o < 4 ? order_names[o] : NULL;
}

bool djn_class_parse(const char *name, enum djn_class *out)
{
	for (int i = 0; i < 3; i++)
		if (name && !strcmp(name, class_names[i])) {
			*out = (enum djn_class)i;
			return true;
		}
	return false;
}

const char *djn_class_name(enum djn_class c)
{
	return (unsigned)c < 3 ? class_names[c] : NULL;
}

enum djn_status djn_sched_set_order(struct djn_sched *q, enum djn_sched_order o)
{
	if (!djn_sched_order_name(o))
		return djn_err_set(&q->err, DJN_ERR_INVALID, "scheduler: unknown order %d", (int)o);
	q->o.order = o;
	return DJN_OK;
}

enum djn_sched_order djn_sched_order(const struct djn_sched *q)
{
	return q->o.order;
}

double djn_sched_now(const struct djn_sched *q)
{
	struct timespec ts;

	if (q->o.clock_ms)
		return q->o.clock_ms(q->o.clock_ud);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ the order */

static int aging(const struct djn_sched *q)
{
	return q->o.aging > 0 ? q->o.aging : 8;
}

/* A class raised one level every `aging` steps waited, interactive at most. */
static int effective_class(const struct djn_sched *q, const struct member *e)
{
	int c = (int)e->cls - e->waited / aging(q);
	return c < 0 ? 0 : c;
}

static double deadline(const struct member *e)
{
	return e->slo_ms > 0 ? e->ready_ms + e->slo_ms : INFINITY;
}

#define CMP(a, b) do { if ((a) != (b)) return (a) < (b) ? -1 : 1; } while (0)

static int by_order(const void *pa, const void *pb, void *ctx)
{
	const struct djn_sched *q = ctx;
	const struct member *a = &q->mem[*(const int *)pa], *b = &q->mem[*(const int *)pb];

	switch (q->o.order) {
	case DJN_ORDER_FCFS:
		break;
	case DJN_ORDER_RR:
		CMP(a->last_step, b->last_step);
		break;
	case DJN_ORDER_PRIORITY:
		CMP(effective_class(q, a), effective_class(q, b));
		CMP(b->waited, a->waited);
		break;
	case DJN_ORDER_SLO: {
		double da = deadline(a), db = deadline(b);
		if (da != db) /* both infinite compare equal */
			return da < db ? -1 : 1;
		CMP(a->cls, b->cls);
		break;
	}
	}
	CMP(a->seq, b->seq);
	return 0;
}

int djn_sched_order_runnable(struct djn_sched *q)
{
	int n = 0;

	for (int i = 0; i < q->n_mem; i++)
		if (q->mem[i].phase == DJN_PHASE_COMPUTE)
			q->ord[n++] = i;
	qsort_r(q->ord, (size_t)n, sizeof(*q->ord), by_order, q);
	return n;
}

/* ------------------------------------------------------ the step model */

static bool line_of(const struct djn_sched *q, double *a, double *b)
{
	if (q->m_n == 0 || q->m0 <= 0)
		return false;
	double det = q->m0 * q->mxx - q->mx * q->mx;
	double mean_x = q->mx / q->m0, mean_y = q->my / q->m0;
	/* rows that barely varied say nothing of a row's cost: then a step's
	 * time is taken as proportional to its rows (an over-estimate for
	 * steps larger than those seen, the safe side for a cap) */
	if (det <= 1e-9 * q->m0 * q->m0 * (1 + mean_x * mean_x)) {
		*a = 0;
		*b = mean_x > 0 ? mean_y / mean_x : 0;
		return true;
	}
	*b = (q->m0 * q->mxy - q->mx * q->my) / det;
	if (*b < 0)
		*b = 0;
	*a = mean_y - *b * mean_x;
	if (*a < 0)
		*a = 0;
	return true;
}

/* a + b rows + c k: the plane when k varied apart from the rows and its
 * terms come out non-negative, else the line in rows (c = 0). */
static bool model_of(const struct djn_sched *q, double *a, double *b, double *c)
{
	*c = 0;
	if (!line_of(q, a, b))
		return false;
	double n = q->m0;
	double vxx = q->mxx - q->mx * q->mx / n, vkk = q->mkk - q->mk * q->mk / n;
	double vxk = q->mxk - q->mx * q->mk / n;
	double vxy = q->mxy - q->mx * q->my / n, vky = q->mky - q->mk * q->my / n;
	double det = vxx * vkk - vxk * vxk;
	if (vkk <= 1e-12 * n || det <= 1e-9 * vxx * vkk)
		return true;
	double pb = (vxy * vkk - vky * vxk) / det, pc = (vxx * vky - vxk * vxy) / det;
	double pa = (q->my - pb * q->mx - pc * q->mk) / n;
	if (pb < 0 || pc <= 0)
		return true;
	*a = pa > 0 ? pa : 0;
	*b = pb;
	*c = pc;
	return true;
}

/* Every sum of the model times w (0: forget them). */
static void model_scale(struct djn_sched *q, double w)
{
	q->m0 *= w;
	q->mx *= w;
	q->my *= w;
	q->mxx *= w;
	q->mxy *= w;
	q->mk *= w;
	q->mkk *= w;
	q->mxk *= w;
	q->mky *= w;
}

static void model_add(struct djn_sched *q, double w, double x, double k, double y)
{
	q->m0 += w;
	q->mx += w * x;
	q->my += w * y;
	q->mxx += w * x * x;
	q->mxy += w * x * y;
	q->mk += w * k;
	q->mkk += w * k * k;
	q->mxk += w * x * k;
	q->mky += w * k * y;
}

void djn_sched_step_model(const struct djn_sched *q, struct djn_step_model *out)
{
	*out = (struct djn_step_model){ 0 };
	out->n = q->m_n;
	out->gap_ms = q->gap_ms;
	out->margin_ms = q->margin_ms;
	(void)model_of(q, &out->base_ms, &out->row_ms, &out->kv_ms);
}

void djn_sched_set_step_model(struct djn_sched *q, const struct djn_step_model *m)
{
	/* points on the plane, of weight 1 each: two on the line in rows, a
	 * third off it when it reads the cache; measured steps soon outweigh
	 * them */
	double x1 = 1, x2 = q->o.token_budget, k3 = 100;

	model_scale(q, 0);
	model_add(q, 1, x1, 0, m->base_ms + m->row_ms * x1);
	model_add(q, 1, x2, 0, m->base_ms + m->row_ms * x2);
	if (m->kv_ms > 0)
		model_add(q, 1, x1, k3, m->base_ms + m->row_ms * x1 + m->kv_ms * k3);
	q->m_n = m->n > 0 ? m->n : 1;
	q->gap_ms = m->gap_ms > 0 ? m->gap_ms : 0;
	/* over-runs of another model say nothing of this one */
	q->n_miss = q->i_miss = 0;
	q->margin_ms = 0;
}

double djn_sched_predict_kv_ms(const struct djn_sched *q, int rows, double kv)
{
	double a, b, c;

	return model_of(q, &a, &b, &c) ? q->gap_ms + a + b * rows + c * kv / 1e3 : 0;
}

double djn_sched_predict_ms(const struct djn_sched *q, int rows)
{
	return djn_sched_predict_kv_ms(q, rows, 0);
}

/* The SLO the step's rows are capped for, or 0: the tightest of the
 * members with one that run or wait for admission, or while there is none,
 * the last such for DJN_SLO_WINDOW times it after one was last here.  A
 * request that arrives while a step is in flight waits for that step: the
 * step must already be short, so the cap outlives the SLO sessions between
 * an interactive tenant's requests (a paused or io_wait session costs
 * nothing, as before). */
static double cap_slo(struct djn_sched *q)
{
	double t = 0, now = djn_sched_now(q);

	for (int i = 0; i < q->n_mem; i++) {
		const struct member *e = &q->mem[i];
		if ((e->phase == DJN_PHASE_COMPUTE || e->phase == DJN_PHASE_QUEUED) &&
		    e->slo_ms > 0 && (t == 0 || e->slo_ms < t))
			t = e->slo_ms;
	}
	if (t > 0) {
		q->slo_recent_ms = t;
		q->slo_seen_ms = now;
		return t;
	}
	if (q->slo_recent_ms > 0 && now - q->slo_seen_ms < DJN_SLO_WINDOW * q->slo_recent_ms)
		return q->slo_recent_ms;
	q->slo_recent_ms = 0;
	return 0;
}

int djn_sched_row_cap(struct djn_sched *q, double *ms_left, double *row_ms, double *kv_ms)
{
	double a, b, c, slo;
	int n_slo = 0;

	*ms_left = HUGE_VAL;
	*row_ms = *kv_ms = 0;
	q->capped = false;
	if (q->o.order != DJN_ORDER_SLO || !(slo = cap_slo(q)) || !model_of(q, &a, &b, &c) ||
	    b <= 0)
		return q->o.token_budget;
	q->capped = true;
	for (int i = 0; i < q->n_mem; i++)
		n_slo += q->mem[i].phase == DJN_PHASE_COMPUTE && q->mem[i].slo_ms > 0;
	double room = q->o.slo_headroom * slo - q->gap_ms - a - q->margin_ms;
	/* the rows with no reads; with a KV term the step charges each row
	 * its reads too (sched.c) */
	if (c > 0) {
		*ms_left = room;
		*row_ms = b;
		*kv_ms = c;
	}
	double rows = floor(room / b);
	/* the decode rows of the sessions with an SLO always go */
	if (rows < n_slo)
		rows = n_slo;
	if (rows < 1)
		rows = 1;
	return rows < q->o.token_budget ? (int)rows : q->o.token_budget;
}

enum djn_status djn_sched_admit_slo(struct djn_sched *q, const struct djn_tenant *t)
{
	const char *name = t->name ? t->name : "default";
	int n_slo = 1;
	double a, b, c;
	const struct member *tight = NULL;

	if (q->o.order != DJN_ORDER_SLO || t->slo_ms <= 0)
		return DJN_OK;
	for (int i = 0; i < q->n_mem; i++) {
		const struct member *e = &q->mem[i];
		if (e->phase != DJN_PHASE_COMPUTE || e->slo_ms <= 0)
			continue;
		n_slo++;
		if (!tight || e->slo_ms < tight->slo_ms)
			tight = e;
	}
	if (!model_of(q, &a, &b, &c))
		return DJN_OK; /* nothing measured yet: nothing to predict from */
	/* all of them decoding, max_batch a step: each has a token every
	 * `rounds` steps of min(n_slo, max_batch) rows */
	int seats = n_slo < q->o.max_batch ? n_slo : q->o.max_batch;
	int rounds = (n_slo + q->o.max_batch - 1) / q->o.max_batch;
	double ms = rounds * (q->gap_ms + a + b * seats + q->margin_ms);
	bool own = !tight || t->slo_ms <= tight->slo_ms;
	double slo = own ? t->slo_ms : tight->slo_ms;
	if (ms <= q->o.slo_headroom * slo)
		return DJN_OK;
	if (own)
		return djn_err_set(&q->err, DJN_ERR_STATE,
				   "admission: tenant '%s' (%s, slo %g ms) refused: predicted token "
				   "latency %.3g ms (%d sessions with an slo; a step %.3g ms + %.3g ms "
				   "a row + a margin of %.3g ms) is over %.0f%% of its slo",
				   name, djn_class_name(t->cls), t->slo_ms, ms, n_slo, q->gap_ms + a, b,
				   q->margin_ms, 100 * q->o.slo_headroom);
	return djn_err_set(&q->err, DJN_ERR_STATE,
			   "admission: tenant '%s' (%s, slo %g ms) refused: predicted token "
			   "latency %.3g ms (%d sessions with an slo; a step %.3g ms + %.3g ms a "
			   "row + a margin of %.3g ms) is over %.0f%% of the slo %g ms of tenant '%s'",
			   name, djn_class_name(t->cls), t->slo_ms, ms, n_slo, q->gap_ms + a, b,
			   q->margin_ms, 100 * q->o.slo_headroom, tight->slo_ms, tight->tenant);
}

/* ----------------------------------------------------------- accounting */

void djn_sched_member_ready(struct djn_sched *q, struct member *e)
{
	int n_total, n_prompt;

	(void)djn_session_tokens(e->s, &n_total, &n_prompt);
	e->n_seen = n_total;
	e->ready_ms = djn_sched_now(q);
	e->waited = 0;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* A step under the row cap took `took` ms with the gap before it where the
 * model said `predicted`: the margin becomes the 95th percentile of the
 * last DJN_MISS_N such over-runs (what the model does not see: a device
 * allocation, the caller's work varying, a clock boost), never below 0.
 * Only capped steps count: the margin is for steps of their size, and the
 * long uncapped ones (a prefill budget at a time) miss by more in ms. */
static void miss_add(struct djn_sched *q, double took, double predicted)
{
	double v[DJN_MISS_N];

	q->miss[q->i_miss] = took - predicted;
	q->i_miss = (q->i_miss + 1) % DJN_MISS_N;
	if (q->n_miss < DJN_MISS_N)
		q->n_miss++;
	memcpy(v, q->miss, sizeof(double) * (size_t)q->n_miss);
	qsort(v, (size_t)q->n_miss, sizeof(double), by_value);
	double p95 = v[(int)(0.95 * (q->n_miss - 1))];
	q->margin_ms = p95 > 0 ? p95 : 0;
}

void djn_sched_account(struct djn_sched *q, int rows, double kv, double t0)
{
	double now = djn_sched_now(q), ms = now - t0, gap = t0 - q->last_end_ms;
	bool back_to_back = q->last_end_ms > 0 && gap >= 0 && gap <= ms;
	double predicted = 0;

	/* the margin learns from capped steps, against the model before them */
	if (q->margin && q->capped && rows > 0)
		predicted = djn_sched_predict_kv_ms(q, rows, kv);
	if (predicted > 0)
		miss_add(q, ms + (back_to_back ? gap : q->gap_ms), predicted);
	/* a gap no longer than the step after it is the caller's work between
	 * back-to-back steps; a longer one is idle time (a person, a sleep) */
	if (back_to_back)
		q->gap_ms = q->gap_ms > 0 ? 0.9 * q->gap_ms + 0.1 * gap : gap;
	q->last_end_ms = now;
	if (rows > 0) {
		model_scale(q, 0.98);
		model_add(q, 1, rows, kv / 1e3, ms);
		q->m_n++;
	}
	for (int i = 0; i < q->n_mem; i++) {
		struct member *e = &q->mem[i];
		int n_total, n_prompt;
		if (!e->ran) {
			e->waited += e->phase == DJN_PHASE_COMPUTE;
			continue;
		}
		e->ran = false;
		e->waited = 0;
		e->last_step = q->st.steps;
		e->steps++;
		(void)djn_session_tokens(e->s, &n_total, &n_prompt);
		if (n_total <= e->n_seen) {
			e->n_seen = n_total;
			continue;
		}
		/* one token a step at most from a decode row or a prompt's last chunk */
		double lat = now - e->ready_ms;
		e->tokens += n_total - e->n_seen;
		e->n_seen = n_total;
		e->ready_ms = now;
		/* the first token of a run is its time to first token (its
		 * prompt's prefill): the SLO is on the tokens after it */
		e->last_ms = lat;
		if (lat > e->max_ms)
			e->max_ms = lat;
		if (e->slo_ms > 0 && lat > e->slo_ms && n_total - n_prompt > 1)
			e->violations++;
	}
}

enum djn_status djn_sched_member(const struct djn_sched *q, const struct djn_session *s,
				 struct djn_member_info *out)
{
	for (int i = 0; i < q->n_mem; i++) {
		const struct member *e = &q->mem[i];
		if (e->s != s)
			continue;
		*out = (struct djn_member_info){
			.tenant = e->tenant, .cls = e->cls, .slo_ms = e->slo_ms, .phase = e->phase,
			.parked = e->phase == DJN_PHASE_COMPUTE && djn_session_swapped(s),
			.waited = e->waited, .steps = e->steps, .tokens = e->tokens,
			.violations = e->violations, .last_ms = e->last_ms, .max_ms = e->max_ms,
		};
		return DJN_OK;
	}
	return DJN_ERR_NOTFOUND;
}
