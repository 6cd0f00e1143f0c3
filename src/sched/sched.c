/* sched.c - the scheduler: every runnable session one step forward, the
 * batchable ones in one forward pass per model, in the step order
 * (order.c), and the IO_WAIT policies. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched_impl.h"

static const char *const policy_names[] = { "signal", "lru", "recompute", "none" };
static const char *const phase_names[] = { "compute", "io_wait", "stopped", "done", "queued" };

bool djn_sched_policy_parse(const char *name, enum djn_sched_policy *out)
{
	for (int i = 0; i < 4; i++)
		if (name && !strcmp(name, policy_names[i])) {
			*out = (enum djn_sched_policy)i;
			return true;
		}
	return false;
}

const char *djn_sched_policy_name(enum djn_sched_policy p)
{
	return (unsigned)p < 4 ? policy_names[p] : NULL;
}

const char *djn_phase_name(enum djn_phase p)
{
	return (unsigned)p < 5 ? phase_names[p] : NULL;
}

struct djn_sched *djn_sched_new(struct djn_backend *be, const struct djn_sched_opts *o,
				struct djn_err *err)
{
	struct djn_sched *q;

	if (!be) {
		djn_err_set(err, DJN_ERR_INVALID, "scheduler: no backend");
		return NULL;
	}
	if (o && (o->token_budget < 0 || o->max_batch < 0 || o->aging < 0 ||
		  !(o->slo_headroom >= 0 && o->slo_headroom <= 1) ||
		  !djn_sched_policy_name(o->policy) || !djn_sched_order_name(o->order))) {
		djn_err_set(err, DJN_ERR_INVALID,
			    "scheduler: token budget, batch size and aging must be >= 0, the slo "
			    "headroom in (0, 1] (0: 0.8), policy and order known");
		return NULL;
	}
	if (o && o->host_pool &&
	    djn_swap_pool_reserve(be, o->host_pool, o->host_block ? o->host_block : 256u << 20,
				  err))
		return NULL;
	q = djn_xcalloc(1, sizeof(*q));
	q->be = be;
	if (o)
		q->o = *o;
	if (!q->o.token_budget)
		q->o.token_budget = 512;
	if (!q->o.max_batch)
		q->o.max_batch = 256;
	if (!q->o.slo_headroom)
		q->o.slo_headroom = DJN_SLO_HEADROOM;
	const char *margin = getenv("DJN_SLO_MARGIN");
	q->margin = !margin || strcmp(margin, "0") != 0;
	return q;
}

void djn_sched_free(struct djn_sched *q)
{
	if (!q)
		return;
	for (int i = 0; i < q->n_batches; i++)
		djn_batch_free(q->batches[i].b);
	free(q->batches);
	free(q->mem);
	free(q->pick);
	free(q->why);
	free(q->ord);
	free(q->snap);
	free(q);
}

const char *djn_sched_errmsg(const struct djn_sched *q)
{
	return q->err.msg;
}

static struct member *find(const struct djn_sched *q, const struct djn_session *s)
{
	for (int i = 0; i < q->n_mem; i++)
		if (q->mem[i].s == s)
			return &q->mem[i];
	return NULL;
}

bool djn_sched_has(const struct djn_sched *q, const struct djn_session *s)
{
	return find(q, s) != NULL;
}

enum djn_phase djn_sched_phase(const struct djn_sched *q, const struct djn_session *s)
{
	const struct member *e = find(q, s);

	return e ? e->phase : DJN_PHASE_DONE;
}

struct djn_session *djn_sched_session(const struct djn_sched *q, int i)
{
	return i >= 0 && i < q->n_mem ? q->mem[i].s : NULL;
}

void djn_sched_stats(const struct djn_sched *q, struct djn_sched_stats *out)
{
	*out = q->st;
	out->kv_bytes = q->be->data_bytes;
	out->graph_steps = 0;
	for (int i = 0; i < q->n_batches; i++)
		out->graph_steps += djn_batch_graph_steps(q->batches[i].b);
}

/* KV bytes the admitted sessions may come to hold (policy NONE). */
static size_t admitted_need(const struct djn_sched *q)
{
	size_t n = 0;

	for (int i = 0; i < q->n_mem; i++)
		if (q->mem[i].phase != DJN_PHASE_QUEUED) /* a finished run holds its pages too */
			n += djn_session_kv_need(q->mem[i].s);
	return n;
}

/* Policy NONE admits in order of arrival while every admitted cache fits. */
static void admit(struct djn_sched *q)
{
	size_t used;

	if (q->o.policy != DJN_POLICY_NONE)
		return;
	used = admitted_need(q);
	for (;;) {
		struct member *next = NULL;
		for (int i = 0; i < q->n_mem; i++)
			if (q->mem[i].phase == DJN_PHASE_QUEUED &&
			    (!next || q->mem[i].seq < next->seq))
				next = &q->mem[i];
		if (!next)
			return;
		size_t need = djn_session_kv_need(next->s);
		if (q->be->data_limit && used + need > q->be->data_limit && used > 0)
			return;
		next->phase = DJN_PHASE_COMPUTE;
		used += need;
	}
}

enum djn_status djn_sched_add(struct djn_sched *q, struct djn_session *s)
{
	return djn_sched_add_as(q, s, NULL);
}

static enum djn_status check_tenant(struct djn_sched *q, const struct djn_tenant *t)
{
	size_t n = t->name ? strlen(t->name) : 0;

	if (t->name && (n == 0 || n >= DJN_TENANT_MAX))
		return djn_err_set(&q->err, DJN_ERR_INVALID,
				   "scheduler: tenant name must be 1 to %d bytes", DJN_TENANT_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)t->name[i]))
			return djn_err_set(&q->err, DJN_ERR_INVALID,
					   "scheduler: tenant name '%s' has a space or control "
					   "character at byte %zu", t->name, i);
	if (!djn_class_name(t->cls))
		return djn_err_set(&q->err, DJN_ERR_INVALID, "scheduler: unknown class %d",
				   (int)t->cls);
	if (!(t->slo_ms >= 0 && t->slo_ms <= 3.6e6)) /* NaN too */
		return djn_err_set(&q->err, DJN_ERR_INVALID,
				   "scheduler: tenant '%s': slo must be 0 (none) to 3600000 ms",
				   t->name ? t->name : "default");
	return DJN_OK;
}

enum djn_status djn_sched_add_as(struct djn_sched *q, struct djn_session *s,
				 const struct djn_tenant *t)
{
	static const struct djn_tenant none = { NULL, DJN_CLASS_STANDARD, 0 };
	enum djn_status st;

	if (!t)
		t = &none;
	if ((st = check_tenant(q, t)))
		return st;
	if (!s)
		return djn_err_set(&q->err, DJN_ERR_INVALID, "scheduler: no session");
	if (find(q, s))
		return djn_err_set(&q->err, DJN_ERR_INVALID, "scheduler: the session is in it already");
	if (djn_session_backend(s) != q->be)
		return djn_err_set(&q->err, DJN_ERR_INVALID,
				   "scheduler: the session is on another backend");
	if (djn_session_state(s) != DJN_RUN_PAUSED)
		return djn_err_set(&q->err, DJN_ERR_STATE,
				   "scheduler: the session has no run to go on with (start one)");
	if (q->o.policy == DJN_POLICY_NONE && q->be->data_limit &&
	    djn_session_kv_need(s) > q->be->data_limit)
		return djn_err_set(&q->err, DJN_ERR_NOMEM,
				   "scheduler: the run needs %zu bytes of KV pages, the limit is %zu",
				   djn_session_kv_need(s), q->be->data_limit);
	if ((st = djn_sched_admit_slo(q, t)))
		return st;
	if (q->n_mem == q->cap_mem) {
		q->cap_mem = q->cap_mem ? 2 * q->cap_mem : 16;
		q->mem = djn_xrealloc(q->mem, sizeof(*q->mem) * (size_t)q->cap_mem);
	}
	struct member *e = &q->mem[q->n_mem++];
	*e = (struct member){
		.s = s,
		.phase = q->o.policy == DJN_POLICY_NONE ? DJN_PHASE_QUEUED : DJN_PHASE_COMPUTE,
		.seq = ++q->seq,
		.cls = t->cls,
		.slo_ms = t->slo_ms,
		.last_step = -1,
	};
	snprintf(e->tenant, sizeof(e->tenant), "%s", t->name ? t->name : "default");
	djn_sched_member_ready(q, e);
	/* under memory pressure the lowest class is parked first */
	djn_session_set_park_rank(s, (int)t->cls);
	admit(q);
	/* a session that waits for admission holds no pages: a run not begun
	 * yet (its prompt's pages were taken at start) gives them back, and
	 * lays its first chunk out when it runs */
	struct djn_cursor c = djn_session_cursor(s);
	if (q->mem[q->n_mem - 1].phase == DJN_PHASE_QUEUED && c.site == -1 && c.pos == 0)
		(void)djn_session_drop_kv(s);
	return DJN_OK;
}

enum djn_status djn_sched_remove(struct djn_sched *q, struct djn_session *s)
{
	struct member *e = find(q, s);

	if (!e)
		return djn_err_set(&q->err, DJN_ERR_NOTFOUND, "scheduler: no such session in it");
	memmove(e, e + 1, sizeof(*e) * (size_t)(q->mem + q->n_mem - e - 1));
	q->n_mem--;
	if (!q->n_mem) { /* the step buffers go with the last member */
		for (int i = 0; i < q->n_batches; i++)
			djn_batch_free(q->batches[i].b);
		free(q->batches);
		q->batches = NULL;
		q->n_batches = 0;
	}
	admit(q);
	return DJN_OK;
}

/* Swaps are counted from the sessions' own totals, before and after a
 * call that may swap (the scheduler's, or an eviction it caused). */
static void snap(const struct djn_sched *q, struct djn_swap_totals *t)
{
	for (int i = 0; i < q->n_mem; i++)
		djn_session_swap_totals(q->mem[i].s, &t[i]);
}

static void count(struct djn_sched *q, const struct djn_swap_totals *before)
{
	for (int i = 0; i < q->n_mem; i++) {
		struct djn_swap_totals a;
		djn_session_swap_totals(q->mem[i].s, &a);
		q->st.swaps_out += a.n_out - before[i].n_out;
		q->st.swaps_in += a.n_in - before[i].n_in;
		q->st.swap_bytes_out += a.bytes_out - before[i].bytes_out;
		q->st.swap_bytes_in += a.bytes_in - before[i].bytes_in;
		q->st.swap_ms_out += a.ms_out - before[i].ms_out;
		q->st.swap_ms_in += a.ms_in - before[i].ms_in;
	}
}

static struct djn_swap_totals *snapshot(struct djn_sched *q)
{
	if (q->cap_snap < q->n_mem) {
		q->cap_snap = q->n_mem;
		q->snap = djn_xrealloc(q->snap, sizeof(*q->snap) * (size_t)q->cap_snap);
	}
	snap(q, q->snap);
	return q->snap;
}

enum djn_status djn_sched_io_wait(struct djn_sched *q, struct djn_session *s)
{
	struct member *e = find(q, s);
	enum djn_status st = DJN_OK;

	if (!e)
		return djn_err_set(&q->err, DJN_ERR_NOTFOUND, "io_wait: the session is not scheduled");
	if (e->phase != DJN_PHASE_COMPUTE && e->phase != DJN_PHASE_DONE)
		return djn_err_set(&q->err, DJN_ERR_STATE,
				   "io_wait: the session is %s, not computing or finished",
				   djn_phase_name(e->phase));
	if (djn_session_state(s) == DJN_RUN_IDLE)
		return djn_err_set(&q->err, DJN_ERR_STATE, "io_wait: the session has no run");
	struct djn_swap_totals *before = snapshot(q);
	switch (q->o.policy) {
	case DJN_POLICY_SIGNAL:
		/* queued behind the compute so far, not waited for: the pages
		 * go when the copies are done (djn_sched_step polls) */
		if (!djn_session_swapped(s) && (st = djn_session_swapout_begin(s)))
			return djn_err_set(&q->err, st, "io_wait: %s", djn_session_errmsg(s));
		break;
	case DJN_POLICY_RECOMPUTE:
		/* at a chunk boundary; inside one (a debugger stopped it
		 * earlier) its pages go to the host instead */
		if (djn_session_cursor(s).site == -1 || djn_session_state(s) == DJN_RUN_DONE) {
			if ((st = djn_session_drop_kv(s)))
				return djn_err_set(&q->err, st, "io_wait: %s", djn_session_errmsg(s));
			q->st.recomputes++;
		} else if (!djn_session_swapped(s) && (st = djn_session_swapout(s))) {
			return djn_err_set(&q->err, st, "io_wait: %s", djn_session_errmsg(s));
		}
		break;
	case DJN_POLICY_LRU:
	case DJN_POLICY_NONE:
		break;
	}
	count(q, before);
	e->phase = DJN_PHASE_IO_WAIT;
	return DJN_OK;
}

enum djn_status djn_sched_resume(struct djn_sched *q, struct djn_session *s)
{
	struct member *e = find(q, s);

	if (!e)
		return djn_err_set(&q->err, DJN_ERR_NOTFOUND, "resume: the session is not scheduled");
	if (e->phase != DJN_PHASE_IO_WAIT && e->phase != DJN_PHASE_STOPPED)
		return djn_err_set(&q->err, DJN_ERR_STATE,
				   "resume: the session is %s, not waiting or stopped",
				   djn_phase_name(e->phase));
	if (djn_session_state(s) != DJN_RUN_PAUSED) {
		e->phase = DJN_PHASE_DONE;
		return DJN_OK;
	}
	/* prefetch: the pages come back now, before its next step; when
	 * there is no room yet the step brings them (making room) */
	if (djn_session_swapped(s)) {
		struct djn_swap_totals *before = snapshot(q);
		(void)djn_session_swapin(s);
		count(q, before);
	}
	e->phase = DJN_PHASE_COMPUTE;
	djn_sched_member_ready(q, e); /* a pause cost it nothing: its latency clock restarts */
	return DJN_OK;
}

static struct djn_batch *batch_for(struct djn_sched *q, const struct djn_model *m)
{
	struct djn_batch *b;

	for (int i = 0; i < q->n_batches; i++)
		if (q->batches[i].m == m)
			return q->batches[i].b;
	if (!(b = djn_batch_new(q->be, &q->err)))
		return NULL;
	q->batches = djn_xrealloc(q->batches, sizeof(*q->batches) * (size_t)(q->n_batches + 1));
	q->batches[q->n_batches++] = (struct model_batch){ m, b };
	return b;
}

/* Does s's chunk fit what is left of the KV limit this step?  The first
 * session always does (alone it fails with the bytes named, if at all). */
static bool fits(const struct djn_sched *q, struct djn_session *s, size_t *left, bool *any)
{
	size_t need = djn_session_kv_step_bytes(s);

	if (!q->be->data_limit)
		return true;
	if (*any && need > *left)
		return false;
	*left = need > *left ? 0 : *left - need;
	*any = true;
	return true;
}

/* The chunk in flight of s, on the per-site path, and what it ended in. */
static void run_chunk(struct member *e, struct djn_step_info *info)
{
	struct djn_cursor c = djn_session_cursor(e->s);

	switch (djn_session_run(e->s, DJN_RUN_UNTIL_POS, c.pos + c.n_rows)) {
	case DJN_STOP_STEP:
		break;
	case DJN_STOP_DONE:
		e->phase = DJN_PHASE_DONE;
		info->n_done++;
		break;
	default: /* a hit, an interrupt, an error: the debugger has it */
		e->phase = DJN_PHASE_STOPPED;
		info->n_stopped++;
		break;
	}
}

/* The rows of a prompt chunk from pos that fit the step: at most budget,
 * and under an SLO cap with a KV term (ms_left finite) as many as fit
 * ms_left at row_ms a row and kv_ms a thousand positions read. */
static int rows_within(int pos, int budget, double ms_left, double row_ms, double kv_ms)
{
	if (ms_left == HUGE_VAL)
		return budget;
	int lo = 0, hi = budget;
	while (lo < hi) { /* the cost grows with n: the largest n within */
		int mid = lo + (hi - lo + 1) / 2;
		if (row_ms * mid + kv_ms * djn_chunk_kv(pos, mid) / 1e3 <= ms_left)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* One chunk of s alone (breakpoints, steers), its prompt cut to the budget. */
static void step_alone(struct djn_sched *q, struct member *e, struct djn_step_info *info,
		       int *budget)
{
	struct djn_cursor c = djn_session_cursor(e->s);

	if (c.site == -1 && c.n_rows > 1 && *budget > 0 && c.n_rows > *budget)
		if (!djn_session_chunk_limit(e->s, *budget))
			c = djn_session_cursor(e->s);
	*budget -= c.n_rows;
	run_chunk(e, info);
	info->n_alone++;
	q->st.alone_steps++;
}

enum djn_status djn_sched_step(struct djn_sched *q, struct djn_step_info *out)
{
	struct djn_step_info info = { 0 };
	double t0 = djn_sched_now(q);
	double ms_left, row_ms, kv_ms, kv = 0;
	int cap = djn_sched_row_cap(q, &ms_left, &row_ms, &kv_ms), budget, n_pick = 0,
	    runnable = 0;
	/* a batch-invariant backend is so up to invariant_rows a step */
	if (q->be->invariant_rows > 0 && cap > q->be->invariant_rows)
		cap = q->be->invariant_rows;
	budget = cap;

	/* swap-outs begun by io_wait whose copies are done give their pages
	 * back (so admission sees them free) */
	struct djn_swap_totals *polled = snapshot(q);
	for (int i = 0; i < q->n_mem; i++)
		(void)djn_session_swap_poll(q->mem[i].s, false);
	count(q, polled);
	admit(q);
	for (int i = 0; i < q->n_mem; i++) {
		struct member *e = &q->mem[i];
		if (e->phase == DJN_PHASE_COMPUTE && djn_session_state(e->s) != DJN_RUN_PAUSED)
			e->phase = DJN_PHASE_DONE;
		runnable += e->phase == DJN_PHASE_COMPUTE;
	}
	if (!runnable) {
		q->last_end_ms = 0; /* what comes next is idle time, not the caller's work */
		if (out)
			*out = info;
		return djn_err_set(&q->err, DJN_ERR_STATE, "no session is runnable");
	}
	if (q->cap_pick < q->n_mem) {
		q->cap_pick = q->n_mem;
		q->pick = djn_xrealloc(q->pick, sizeof(*q->pick) * (size_t)q->cap_pick);
		q->why = djn_xrealloc(q->why, sizeof(*q->why) * (size_t)q->cap_pick);
		q->ord = djn_xrealloc(q->ord, sizeof(*q->ord) * (size_t)q->cap_pick);
	}
	struct djn_swap_totals *before = snapshot(q);
	int n_ord = djn_sched_order_runnable(q);
	/* with a KV limit, a step takes the sessions whose pages fit it, by
	 * class first (interactive before batch), then decode before prefill,
	 * each in the order; the others wait, and are parked (swapped out,
	 * lowest class first) when the step's sessions need their pages */
	size_t kv_left = q->be->data_limit;
	bool kv_any = false;
	for (int c = 0; c < 3; c++)
		for (int pass = 0; pass < 2; pass++)
			for (int k = 0; k < n_ord; k++) {
				struct member *e = &q->mem[q->ord[k]];
				struct djn_cursor cur = djn_session_cursor(e->s);
				bool decode = cur.site == -1 && cur.n_rows == 1;
				if ((int)e->cls == c && (pass == 0) == decode)
					e->fits = fits(q, e->s, &kv_left, &kv_any);
			}
	/* every order but fcfs chooses the step's sessions first: the first
	 * max_batch in the order (a session alone takes no place) */
	int seats = q->o.order == DJN_ORDER_FCFS ? n_ord : q->o.max_batch;
	for (int k = 0; k < n_ord; k++) {
		struct member *e = &q->mem[q->ord[k]];
		bool in = e->fits && (!djn_session_batchable(e->s) || seats-- > 0);
		e->fits = in;
	}
	/* decode rows first (one token each), then prefill chunks cut to what
	 * is left of the budget, so a long prompt never stalls the others */
	for (int pass = 0; pass < 2; pass++) {
		for (int k = 0; k < n_ord; k++) {
			struct member *e = &q->mem[q->ord[k]];
			if (e->phase != DJN_PHASE_COMPUTE || e->ran || !e->fits)
				continue;
			struct djn_cursor c = djn_session_cursor(e->s);
			bool decode = c.site == -1 && c.n_rows == 1;
			if ((pass == 0) != decode)
				continue;
			if (!djn_session_batchable(e->s)) {
				if (pass == 0 || budget > 0) {
					int was = budget; /* its chunk may be cut to it */
					e->ran = true;
					step_alone(q, e, &info, &budget);
					kv += djn_chunk_kv(c.pos, was - budget);
				}
				continue;
			}
			if (n_pick >= q->o.max_batch || budget <= 0)
				continue;
			int n = decode ? 1 : rows_within(c.pos, budget, ms_left, row_ms, kv_ms);
			/* under an SLO a row is charged its reads too: what does not
			 * fit waits, except the decode rows of the sessions with one;
			 * a step always takes one row (whatever the model says) */
			if (decode && e->slo_ms <= 0 && n_pick > 0 &&
			    row_ms + kv_ms * djn_chunk_kv(c.pos, 1) / 1e3 > ms_left)
				continue;
			if (n < 1 && n_pick == 0)
				n = 1;
			if (n < 1 || (!decode && djn_session_chunk_limit(e->s, n)))
				continue;
			c = djn_session_cursor(e->s);
			budget -= c.n_rows;
			if (ms_left != HUGE_VAL)
				ms_left -= row_ms * c.n_rows + kv_ms * djn_chunk_kv(c.pos, c.n_rows) / 1e3;
			kv += djn_chunk_kv(c.pos, c.n_rows);
			e->ran = true;
			q->pick[n_pick++] = e->s;
		}
	}
	/* one forward pass per model */
	for (int i = 0; i < n_pick;) {
		const struct djn_model *m = djn_session_model(q->pick[i]);
		int n = 0;
		for (int j = i; j < n_pick; j++) { /* gather m's sessions at [i, i+n) */
			if (djn_session_model(q->pick[j]) != m)
				continue;
			struct djn_session *t = q->pick[j];
			q->pick[j] = q->pick[i + n];
			q->pick[i + n++] = t;
		}
		if (n == 1 && !q->be->invariant_rows) {
			/* a batch of one runs as a session alone: the same path,
			 * fused and recorded, and the same numbers to the bit (a
			 * batch-invariant backend runs it as a batch: its rows
			 * have the same bits in any batch, alone ones too) */
			run_chunk(find(q, q->pick[i]), &info);
			info.n_batched++;
			if (q->st.max_batch < 1)
				q->st.max_batch = 1;
			i++;
			continue;
		}
		struct djn_batch *b = batch_for(q, m);
		bool ok = false;
		if (b) {
			ok = !djn_batch_run(b, q->pick + i, n, q->why + i);
			if (!ok)
				djn_err_set(&q->err, DJN_ERR_STATE, "%s", djn_batch_errmsg(b));
		}
		for (int j = 0; j < n; j++) {
			struct member *e = find(q, q->pick[i + j]);
			if (!ok) { /* each alone: a failure stays with its session */
				step_alone(q, e, &info, &budget);
				continue;
			}
			info.n_batched++;
			if (q->why[i + j] == DJN_STOP_DONE) {
				e->phase = DJN_PHASE_DONE;
				info.n_done++;
			} else if (q->why[i + j] == DJN_STOP_ERROR && ++e->fails >= 3) {
				/* its next chunk found no room three steps running */
				e->phase = DJN_PHASE_STOPPED;
				info.n_stopped++;
			} else if (q->why[i + j] != DJN_STOP_ERROR) {
				e->fails = 0;
			}
		}
		q->st.batch_passes += ok;
		if (ok && n > q->st.max_batch)
			q->st.max_batch = n;
		i += n;
	}
	count(q, before);
	info.n_rows = cap - budget;
	if (q->be->data_bytes > q->st.kv_peak_bytes)
		q->st.kv_peak_bytes = q->be->data_bytes;
	size_t free_b, total_b;
	if (!q->be->host_memory && !q->be->i->mem_info(q->be, &free_b, &total_b) &&
	    total_b - free_b > q->st.device_peak_bytes)
		q->st.device_peak_bytes = total_b - free_b;
	q->st.batched_rows += info.n_rows;
	info.kv = kv;
	double pred = info.n_rows > 0 ? djn_sched_predict_kv_ms(q, info.n_rows, kv) : 0;
	if (pred > 0)
		info.predicted_ms = pred - q->gap_ms;
	djn_sched_account(q, info.n_rows, kv, t0);
	q->st.steps++;
	for (int i = 0; i < q->n_mem; i++)
		info.n_runnable += q->mem[i].phase == DJN_PHASE_COMPUTE;
	admit(q);
	if (out)
		*out = info;
	return DJN_OK;
}
