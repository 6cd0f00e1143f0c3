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

struct djn_sched_opts {
	enum djn_sched_policy policy;
	int token_budget; /* rows a step, decode tokens and prefill chunks; 0: 512 */
	int max_batch;    /* sessions in one forward pass; 0: 256 */
	/* pinned host memory to lock ahead of need for the swaps, in blocks of
	 * host_block bytes (0: 256 MiB); a block holds one session's cache.
	 * 0: pinned when a session first swaps (tens of ms a GiB) */
	size_t host_pool, host_block;
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

/* Add a started (paused) session, on the scheduler's backend.  It is
 * runnable, or QUEUED under policy NONE until its cache fits. */
enum djn_status djn_sched_add(struct djn_sched *q, struct djn_session *s);
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
};

/* One step of every runnable session.  DJN_ERR_STATE when none is
 * runnable.  A session's own failure stops that session (STOPPED, message
 * in its errmsg), not the step. */
enum djn_status djn_sched_step(struct djn_sched *q, struct djn_step_info *out);

struct djn_sched_stats {
	long steps, batched_rows, alone_steps, graph_steps;
	long swaps_out, swaps_in, recomputes;
	size_t swap_bytes_out, swap_bytes_in;
	double swap_ms_out, swap_ms_in; /* copy time, summed */
	int max_batch;                  /* most sessions in one forward pass */
	size_t kv_bytes, kv_peak_bytes; /* KV pages on the backend now, and the most after a step */
	size_t device_peak_bytes;       /* device memory in use (all of it), the most after a step */
};
void djn_sched_stats(const struct djn_sched *q, struct djn_sched_stats *out);
/* Sessions held, in the order added: i from 0; NULL past the end. */
struct djn_session *djn_sched_session(const struct djn_sched *q, int i);

#endif
