/* sched.h - many sessions on one backend: continuous batching, chunked
 * prefill, and sessions as agents that wait on tools (IO_WAIT).
 *
 * A scheduler holds sessions that were started (djn_session_start) and
 * moves them all forward, one step at a time.  A step gathers the chunk in
 * flight of every runnable session (a decode token each, and prefill
 * chunks cut to the step's token budget) into one forward pass per model
 * (djn_batch_run): each weight is read once for the step.  A session that
 * a debugger may stop (an enabled breakpoint or watchpoint, a steer) or
 * that is paused inside a chunk steps alone in the same step, on the exact
 * per-site path: its breakpoints and steers apply to it only.  When it
 * stops (a hit, an interrupt, an error) it leaves the batch, paused with its
 * state intact, and the others go on; djn_sched_resume puts it back.
 *
 * Phases.  COMPUTE: runnable.  IO_WAIT: told it waits on a tool
 * (djn_sched_io_wait); it takes no step until djn_sched_resume.  STOPPED:
 * stopped by the debugger (or an error: djn_sched_errmsg of that step, and
 * djn_session_errmsg(s)).  DONE: its run finished.  QUEUED: not admitted yet
 * (policy NONE, while its whole KV cache does not fit).
 *
 * Policies: what an IO_WAIT session does with its KV pages.
 *   SIGNAL     swapped out to the pinned host pool at io_wait; brought back
 *              at resume, before its next step
 *   LRU        kept; swapped out only when pages run out (least recently
 *              used paused session first, as without a scheduler)
 *   RECOMPUTE  dropped at io_wait; recomputed as a prefill at its next step
 *   NONE       kept, never swapped: a session is admitted only while the KV
 *              caches of all admitted sessions fit the backend's KV limit
 *
 * Order (a separate knob from the policy above): which runnable sessions
 * enter a step when more are runnable than max_batch and the token budget
 * allow, and in which order prefill chunks take the budget.
 *   FCFS      in order of arrival; decode tokens first, then prefill chunks
 *             (each pass by arrival), until max_batch or the budget is spent
 *   RR        round-robin: the sessions served longest ago first (the step
 *             each last ran in, then arrival)
 *   PRIORITY  strict by class (interactive, standard, batch), with aging: a
 *             session runnable but left out of a step waits one step more,
 *             and every `aging` steps waited raise it one class (never past
 *             interactive); ties go to the longest wait, then arrival.  A
 *             session waits at most 2 * aging + ceil(n / max_batch) steps.
 *   SLO       earliest deadline first: a session with a token-latency SLO
 *             has its next token due at its last token (or its arrival, or
 *             resume) plus its SLO; sessions without one come after, by
 *             class then arrival.  The step's rows are capped so that the
 *             step-time model predicts at most 80% of the tightest SLO of a
 *             runnable session, and djn_sched_add refuses a session with an
 *             SLO when the token latency of the sessions with an SLO, all
 *             decoding (ceil(n / max_batch) steps of min(n, max_batch) rows
 *             each), is predicted over 80% of an SLO, its own or an admitted
 *             one's.  Before any step is measured nothing is refused.
 * Under every order but FCFS the step's sessions are chosen first (the
 * first max_batch in the order), then within them decode tokens before
 * prefill chunks, each in the order.
 *
 * Tenants.  A session carries a tenant name, a class and an optional
 * token-latency SLO (djn_sched_add_as).  Under memory pressure (a KV limit,
 * or the device full) the step takes sessions whose pages fit by class
 * first, and the sessions left out are parked (their KV swapped to the host)
 * lowest class first, least recently used within a class
 * (djn_session_set_park_rank): an admitted session is slowed, never failed.
 * A session STOPPED by the debugger or in IO_WAIT costs nothing: it is in no
 * step, no SLO prediction, and its latency clock restarts at resume.
 *
 * Token latency: the scheduler's clock (opts.clock_ms, or the monotonic
 * clock) read after each step; a token's latency is the time since the
 * session's previous token, or since it was added or resumed for the first
 * token of a run.  A token later than the session's SLO is a violation.
 *
 * The scheduler borrows its sessions: remove a session (djn_sched_remove)
 * before freeing it, and free the scheduler before the backend.  Errors:
 * actions return enum djn_status with the message in djn_sched_errmsg(q);
 * a failed call changes nothing. */
#ifndef DJINN_SCHED_H
#define DJINN_SCHED_H

#include "djinn/djinn.h"

enum djn_sched_policy {
	DJN_POLICY_SIGNAL,
	DJN_POLICY_LRU,
	DJN_POLICY_RECOMPUTE,
	DJN_POLICY_NONE,
};

enum djn_phase {
	DJN_PHASE_COMPUTE,
	DJN_PHASE_IO_WAIT,
	DJN_PHASE_STOPPED,
	DJN_PHASE_DONE,
	DJN_PHASE_QUEUED,
};

enum djn_sched_order {
	DJN_ORDER_FCFS,
	DJN_ORDER_RR,
	DJN_ORDER_PRIORITY,
	DJN_ORDER_SLO,
};

enum djn_class {
	DJN_CLASS_INTERACTIVE,
	DJN_CLASS_STANDARD,
	DJN_CLASS_BATCH,
};

struct djn_sched_opts {
	enum djn_sched_policy policy;
	enum djn_sched_order order;
	int token_budget; /* rows a step, decode tokens and prefill chunks; 0: 512 */
	int max_batch;    /* sessions in one forward pass; 0: 256 */
	/* pinned host memory to lock ahead of need for the swaps, in blocks of
	 * host_block bytes (0: 256 MiB); a block holds one session's cache.
	 * 0: pinned when a session first swaps (tens of ms a GiB) */
	size_t host_pool, host_block;
	int aging; /* PRIORITY: steps waited to rise one class; 0: 8 */
	/* SLO: the share of the tightest SLO a capped step may take with the
	 * gap before it and the margin, in (0, 1]; 0: 0.8 */
	double slo_headroom;
	/* the clock of token latencies and the step-time model, in ms; NULL:
	 * the monotonic clock (tests give a scripted one) */
	double (*clock_ms)(void *ud);
	void *clock_ud;
};

/* Who a session runs for.  name: copied (63 bytes at most, printable, no
 * spaces); NULL: "default".  slo_ms: its token-latency SLO, 0 for none. */
struct djn_tenant {
	const char *name;
	enum djn_class cls;
	double slo_ms;
};

struct djn_sched;

struct djn_sched *djn_sched_new(struct djn_backend *be, const struct djn_sched_opts *o,
				struct djn_err *err);
void djn_sched_free(struct djn_sched *q);
const char *djn_sched_errmsg(const struct djn_sched *q);

/* "signal", "lru", "recompute", "none" <-> the policy; false / NULL if none. */
bool djn_sched_policy_parse(const char *name, enum djn_sched_policy *out);
const char *djn_sched_policy_name(enum djn_sched_policy p);
const char *djn_phase_name(enum djn_phase p);
/* "fcfs", "rr", "priority", "slo"; "interactive", "standard", "batch". */
bool djn_sched_order_parse(const char *name, enum djn_sched_order *out);
const char *djn_sched_order_name(enum djn_sched_order o);
bool djn_class_parse(const char *name, enum djn_class *out);
const char *djn_class_name(enum djn_class c);
/* Change the order from the next step on. */
enum djn_status djn_sched_set_order(struct djn_sched *q, enum djn_sched_order o);
enum djn_sched_order djn_sched_order(const struct djn_sched *q);

/* Add a started (paused) session, on the scheduler's backend.  It is
 * runnable, or QUEUED under policy NONE until its cache fits. */
enum djn_status djn_sched_add(struct djn_sched *q, struct djn_session *s);
/* The same, for tenant t (NULL: "default", standard, no SLO).  Under order
 * SLO a session with an SLO may be refused (DJN_ERR_STATE, the message
 * names the tenant, the SLO and the predicted latency); nothing changes. */
enum djn_status djn_sched_add_as(struct djn_sched *q, struct djn_session *s,
				 const struct djn_tenant *t);
/* Take s out (it stays as it is: paused, swapped out, ...). */
enum djn_status djn_sched_remove(struct djn_sched *q, struct djn_session *s);
bool djn_sched_has(const struct djn_sched *q, const struct djn_session *s);
enum djn_phase djn_sched_phase(const struct djn_sched *q, const struct djn_session *s);

/* The session waits on a tool: IO_WAIT, with the policy's treatment of its
 * KV pages.  Its run may have finished (an agent's turn): a resume after
 * djn_session_extend goes on with the cache it had.  Errors: not in the
 * scheduler, already waiting, stopped by the debugger, no run. */
enum djn_status djn_sched_io_wait(struct djn_sched *q, struct djn_session *s);
/* Back to COMPUTE, from IO_WAIT (its pages are prefetched now, SIGNAL) or
 * from STOPPED (after the debugger let it go); DONE when its run has
 * finished and was not extended.  Errors: not waiting or stopped. */
enum djn_status djn_sched_resume(struct djn_sched *q, struct djn_session *s);

struct djn_step_info {
	int n_batched;  /* sessions in the batched forward passes (a batch of one
			 * runs on the path of a session alone: the same numbers) */
	int n_rows;     /* their rows */
	int n_alone;    /* sessions that stepped alone */
	int n_stopped;  /* of those, stopped (breakpoint, watchpoint, error) */
	int n_done;     /* runs that finished in this step */
	int n_runnable; /* COMPUTE sessions after the step */
	double kv;      /* cached positions its rows read (the step model's k) */
	double predicted_ms; /* the step model's time for it, before it ran
			      * (the gap before it not counted; 0: no model yet) */
};

/* One step of every runnable session.  DJN_ERR_STATE when none is
 * runnable.  A session's own failure stops that session (STOPPED, message
 * in its errmsg), not the step. */
enum djn_status djn_sched_step(struct djn_sched *q, struct djn_step_info *out);

struct djn_sched_stats {
	long steps, batched_rows, alone_steps, graph_steps;
	long batch_passes; /* forward passes through the batch path (djn_batch_run) */
	long swaps_out, swaps_in, recomputes;
	size_t swap_bytes_out, swap_bytes_in;
	double swap_ms_out, swap_ms_in; /* copy time, summed */
	int max_batch;                  /* most sessions in one forward pass */
	size_t kv_bytes, kv_peak_bytes; /* KV pages on the backend now, and the most after a step */
	size_t device_peak_bytes;       /* device memory in use (all of it), the most after a step */
};
void djn_sched_stats(const struct djn_sched *q, struct djn_sched_stats *out);

/* One session's tenant and service.  tenant: borrowed, lives while s is in
 * the scheduler. */
struct djn_member_info {
	const char *tenant;
	enum djn_class cls;
	double slo_ms;
	enum djn_phase phase;
	bool parked;             /* runnable with its KV on the host */
	int waited;              /* steps runnable and left out, in a row */
	long steps;              /* steps it ran in */
	long tokens;             /* tokens it was given while scheduled */
	long violations;         /* of those, later than its SLO */
	double last_ms, max_ms;  /* latency of its last token, the worst */
};
enum djn_status djn_sched_member(const struct djn_sched *q, const struct djn_session *s,
				 struct djn_member_info *out);

/* The step-time model: a step of r rows that bring k cached positions from
 * memory (a decode row at position p: p + 1; a prompt chunk of n rows from
 * p: p + n, the cache read once) takes
 * base_ms + row_ms * r + kv_ms * k / 1000, fitted by least squares to the
 * measured steps, each step's weight decaying by 0.98 a step (the last ~50
 * count).  Where k barely varied apart from r, or its fit is negative,
 * kv_ms is 0 and the line in r alone is fitted; rows that barely varied
 * make that proportional (base 0).  gap_ms: the caller's own time between
 * back-to-back steps (a running average of the gaps shorter than the step
 * after them; a token waits for it too), added to every prediction.
 * n: steps measured.  Set one (from an earlier run) to predict before
 * measuring; measured steps refine it. */
struct djn_step_model {
	double base_ms, row_ms, gap_ms;
	long n;
	double kv_ms; /* a thousand cached positions read */
	/* order slo: the row cap's margin, the 95th percentile of the recent
	 * capped steps' over-runs of the model (read only; DJN_SLO_MARGIN=0:
	 * none) */
	double margin_ms;
};
void djn_sched_step_model(const struct djn_sched *q, struct djn_step_model *out);
void djn_sched_set_step_model(struct djn_sched *q, const struct djn_step_model *m);
/* The model's prediction for a step of r rows with the gap before it, ms
 * (0 before any). */
double djn_sched_predict_ms(const struct djn_sched *q, int rows);
/* The same for a step that reads kv cached positions. */
double djn_sched_predict_kv_ms(const struct djn_sched *q, int rows, double kv);
/* Sessions held, in the order added: i from 0; NULL past the end. */
struct djn_session *djn_sched_session(const struct djn_sched *q, int i);

#endif
