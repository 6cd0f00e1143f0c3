/* cmd-sched.c - many sessions at once: sched add/remove/step/run/policy/
 * budget/order, tenants, io_wait, resume, info sched.  The shell's scheduler (djinn/sched.h)
 * steps every runnable session together, batching those nothing can stop;
 * a session that stops (breakpoint, watchpoint, error) leaves the batch
 * paused, becomes current, and `resume` puts it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/sched.h"
#include "shell/shell_impl.h"

static struct sh_session *by_name(struct djn_shell *sh, const char *name)
{
	for (int i = 0; i < sh->n_sess; i++)
		if (!strcmp(sh->sess[i].name, name))
			return &sh->sess[i];
	return NULL;
}

static struct sh_session *by_session(struct djn_shell *sh, const struct djn_session *s)
{
	for (int i = 0; i < sh->n_sess; i++)
		if (sh->sess[i].s == s)
			return &sh->sess[i];
	return NULL;
}

/* The shell's scheduler, made on first use (and again when the last
 * member left and the backend changed). */
static struct djn_sched *sched(struct djn_shell *sh)
{
	struct djn_err err = { 0 };
	struct djn_sched_opts o = { .policy = sh->sched_policy, .token_budget = sh->sched_budget,
				    .order = sh->sched_order };

	if (sh->sched && !djn_sched_session(sh->sched, 0) &&
	    (sh->sched_be != sh->be || sh->sched_dirty)) {
		djn_sched_free(sh->sched);
		sh->sched = NULL;
	}
	if (!sh->sched) {
		if (!(sh->sched = djn_sched_new(sh->be, &o, &err))) {
			sh_fail(sh, "sched: %s", err.msg);
			return NULL;
		}
		sh->sched_be = sh->be;
		sh->sched_dirty = false;
	}
	return sh->sched;
}

void sh_sched_free(struct djn_shell *sh)
{
	djn_sched_free(sh->sched);
	sh->sched = NULL;
}

/* Sessions named in argv[first..], or the current one. */
static bool each_named(struct djn_shell *sh, int argc, char **argv, int first,
		       enum djn_cmd_ret (*fn)(struct djn_shell *, struct sh_session *))
{
	if (argc <= first)
		return fn(sh, sh_cur(sh)) == DJN_CMD_OK;
	for (int i = first; i < argc; i++) {
		struct sh_session *ss = by_name(sh, argv[i]);
		if (!ss) {
			sh_fail(sh, "%s: no session '%s' (info sessions lists them)", argv[0], argv[i]);
			return false;
		}
		if (fn(sh, ss) != DJN_CMD_OK)
			return false;
	}
	return true;
}

/* The tenant of the sessions a `sched add` names (its options). */
static struct djn_tenant add_tenant;

static enum djn_cmd_ret add_one(struct djn_shell *sh, struct sh_session *ss)
{
	struct djn_sched *q = sched(sh);

	if (!q)
		return DJN_CMD_FAIL;
	if (djn_sched_has(q, ss->s)) {
		if (djn_sched_phase(q, ss->s) != DJN_PHASE_DONE)
			return sh_fail(sh, "sched add: '%s' is scheduled already", ss->name);
		djn_sched_remove(q, ss->s); /* a new run of a finished member */
	}
	if (djn_sched_add_as(q, ss->s, &add_tenant))
		return sh_fail(sh, "sched add: '%s': %s", ss->name, djn_sched_errmsg(q));
	ss->sched = q;
	char who[160];
	sh_sched_tenant_str(sh, ss->s, who, sizeof(who));
	sh_printf(sh, "[Session '%s' scheduled: %s%s]\n", ss->name,
		  djn_phase_name(djn_sched_phase(q, ss->s)), who);
	return DJN_CMD_OK;
}

/* sched add [--tenant NAME] [--class CLASS] [--slo MS[ms]] [NAME...] */
DJN_CMD_FN(cmd_sched_add)
{
	int i = 1;

	add_tenant = (struct djn_tenant){
		sh->tenant[0] ? sh->tenant : NULL,
		sh->tenant_class_set ? (enum djn_class)sh->tenant_class : DJN_CLASS_STANDARD,
		sh->tenant_slo_ms,
	};
	for (; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return sh_fail(sh, "sched add: %s needs a value", a);
		if (!strcmp(a, "--tenant")) {
			add_tenant.name = v;
		} else if (!strcmp(a, "--class")) {
			if (!djn_class_parse(v, &add_tenant.cls))
				return sh_fail(sh, "sched add: unknown class '%s' (interactive, "
						   "standard, batch)", v);
		} else if (!strcmp(a, "--slo")) {
			char *end;
			double ms = strtod(v, &end);
			if (end == v || (*end && strcmp(end, "ms")) || !(ms > 0 && ms <= 3.6e6))
				return sh_fail(sh, "sched add: bad slo '%s' (a token latency in ms, "
						   "e.g. 50ms)", v);
			add_tenant.slo_ms = ms;
		} else {
			return sh_fail(sh, "sched add: unknown option '%s' (--tenant, --class, --slo)",
				       a);
		}
	}
	return each_named(sh, argc, argv, i, add_one) ? DJN_CMD_OK : DJN_CMD_FAIL;
}

void sh_sched_tenant_str(struct djn_shell *sh, const struct djn_session *s, char *buf, size_t n)
{
	struct djn_member_info mi;

	buf[0] = 0;
	if (!sh->sched || djn_sched_member(sh->sched, s, &mi))
		return;
	if (mi.slo_ms > 0)
		snprintf(buf, n, " [tenant %s, %s, slo %g ms]", mi.tenant, djn_class_name(mi.cls),
			 mi.slo_ms);
	else
		snprintf(buf, n, " [tenant %s, %s]", mi.tenant, djn_class_name(mi.cls));
}

void sh_sched_tenant_json(struct djn_shell *sh, const struct djn_session *s, cJSON *e)
{
	struct djn_member_info mi;

	if (!sh->sched || djn_sched_member(sh->sched, s, &mi))
		return;
	cJSON_AddStringToObject(e, "tenant", mi.tenant);
	cJSON_AddStringToObject(e, "class", djn_class_name(mi.cls));
	cJSON_AddNumberToObject(e, "slo_ms", mi.slo_ms);
}

static enum djn_cmd_ret remove_one(struct djn_shell *sh, struct sh_session *ss)
{
	if (!sh->sched || !djn_sched_has(sh->sched, ss->s))
		return sh_fail(sh, "sched remove: '%s' is not scheduled", ss->name);
	djn_sched_remove(sh->sched, ss->s);
	ss->sched = NULL;
	sh_printf(sh, "[Session '%s' left the scheduler]\n", ss->name);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_sched_remove)
{
	return each_named(sh, argc, argv, 1, remove_one) ? DJN_CMD_OK : DJN_CMD_FAIL;
}

static enum djn_cmd_ret io_wait_one(struct djn_shell *sh, struct sh_session *ss)
{
	if (!sh->sched || !djn_sched_has(sh->sched, ss->s))
		return sh_fail(sh, "io_wait: '%s' is not scheduled (sched add %s)", ss->name,
			       ss->name);
	if (djn_sched_io_wait(sh->sched, ss->s))
		return sh_fail(sh, "%s ('%s')", djn_sched_errmsg(sh->sched), ss->name);
	sh_printf(sh, "[Session '%s' waits on a tool%s]\n", ss->name,
		  djn_session_swapped(ss->s) ? "; its KV cache is on the host" : "");
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_io_wait)
{
	return each_named(sh, argc, argv, 1, io_wait_one) ? DJN_CMD_OK : DJN_CMD_FAIL;
}

static enum djn_cmd_ret resume_one(struct djn_shell *sh, struct sh_session *ss)
{
	if (!sh->sched || !djn_sched_has(sh->sched, ss->s))
		return sh_fail(sh, "resume: '%s' is not scheduled", ss->name);
	if (djn_sched_resume(sh->sched, ss->s))
		return sh_fail(sh, "%s ('%s')", djn_sched_errmsg(sh->sched), ss->name);
	sh_printf(sh, "[Session '%s' runnable again]\n", ss->name);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_resume)
{
	return each_named(sh, argc, argv, 1, resume_one) ? DJN_CMD_OK : DJN_CMD_FAIL;
}

/* Report what a step did to each member whose phase changed. */
static void report(struct djn_shell *sh, enum djn_phase *before, cJSON *events)
{
	struct djn_sched *q = sh->sched;
	struct djn_session *s;

	for (int i = 0; (s = djn_sched_session(q, i)); i++) {
		enum djn_phase ph = djn_sched_phase(q, s);
		struct sh_session *ss = by_session(sh, s);
		const char *name = ss ? ss->name : "?";
		if (ph == before[i])
			continue;
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "session", name);
		cJSON_AddStringToObject(ev, "phase", djn_phase_name(ph));
		if (ph == DJN_PHASE_DONE) {
			int n, np;
			djn_session_tokens(s, &n, &np);
			sh_printf(sh, "[Session '%s' finished: %d token%s generated]\n", name, n - np,
				  n - np == 1 ? "" : "s");
			cJSON_AddNumberToObject(ev, "n_generated", n - np);
		} else if (ph == DJN_PHASE_STOPPED) {
			char where[256];
			struct djn_bp_info bi;
			sh_cursor_str(sh, s, where, sizeof(where));
			if (djn_session_last_hit_info(s, &bi))
				sh_printf(sh, "[Session '%s' stopped: %s %d, %s]\n", name,
					  bi.kind == DJN_BP_WATCH ? "Watchpoint" : "Breakpoint", bi.id,
					  where);
			else
				sh_printf(sh, "[Session '%s' stopped: %s: %s]\n", name, where,
					  djn_session_errmsg(s));
			cJSON_AddItemToObject(ev, "cursor", sh_cursor_json(sh, s));
			/* the debugger goes to it, as gdb's non-stop mode selects
			 * the thread that stopped */
			if (ss)
				sh->cur = (int)(ss - sh->sess);
		}
		cJSON_AddItemToArray(events, ev);
	}
}

static enum djn_cmd_ret steps(struct djn_shell *sh, long max)
{
	struct djn_sched *q = sh->sched;
	struct djn_step_info info;
	long n = 0, rows = 0;
	int most = 0, n_mem = 0;
	bool stopped = false;
	cJSON *events = cJSON_CreateArray();

	if (!q || !djn_sched_session(q, 0)) {
		cJSON_Delete(events);
		return sh_fail(sh, "sched: no session is scheduled (sched add NAME)");
	}
	while (djn_sched_session(q, n_mem))
		n_mem++;
	enum djn_phase *before = djn_xcalloc((size_t)n_mem, sizeof(*before));
	for (; n < max && !stopped; n++) {
		for (int i = 0; i < n_mem; i++)
			before[i] = djn_sched_phase(q, djn_sched_session(q, i));
		if (djn_sched_step(q, &info))
			break;
		rows += info.n_rows;
		if (info.n_batched > most)
			most = info.n_batched;
		stopped = info.n_stopped > 0;
		report(sh, before, events);
		if (djn_shell_sigint)
			break;
	}
	free(before);
	int runnable = 0, waiting = 0;
	for (int i = 0; djn_sched_session(q, i); i++) {
		enum djn_phase ph = djn_sched_phase(q, djn_sched_session(q, i));
		runnable += ph == DJN_PHASE_COMPUTE || ph == DJN_PHASE_QUEUED;
		waiting += ph == DJN_PHASE_IO_WAIT;
	}
	sh_printf(sh, "[Scheduler: %ld step%s, %ld row%s, up to %d session%s a batch; %d runnable, "
		      "%d waiting]\n", n, n == 1 ? "" : "s", rows, rows == 1 ? "" : "s", most,
		  most == 1 ? "" : "s", runnable, waiting);
	sh_json_num(sh, "steps", (double)n);
	sh_json_num(sh, "rows", (double)rows);
	sh_json_num(sh, "max_batch", most);
	sh_json_num(sh, "runnable", runnable);
	sh_json_num(sh, "waiting", waiting);
	sh_json_add(sh, "events", events);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_sched_step)
{
	long n = 1;

	if (argc >= 2 && !sh_parse_long(argv[1], 1, 1L << 30, &n))
		return sh_fail(sh, "sched step: bad count '%s' (a positive number)", argv[1]);
	return steps(sh, n);
}

DJN_CMD_FN(cmd_sched_run)
{
	return steps(sh, sh->sandbox ? 256 : 1L << 40);
}

DJN_CMD_FN(cmd_sched_policy)
{
	enum djn_sched_policy p;

	if (!djn_sched_policy_parse(argv[1], &p))
		return sh_fail(sh, "sched policy: unknown policy '%s' (signal, lru, recompute, none)",
			       argv[1]);
	if (sh->sched && djn_sched_session(sh->sched, 0))
		return sh_fail(sh, "sched policy: sessions are scheduled (sched remove them first)");
	sh->sched_policy = p;
	sh->sched_dirty = true;
	sh_printf(sh, "IO_WAIT policy: %s\n", argv[1]);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_sched_budget)
{
	long n;

	if (!sh_parse_long(argv[1], 1, 1 << 20, &n))
		return sh_fail(sh, "sched budget: bad token budget '%s' (1 to 1048576 rows a step)",
			       argv[1]);
	if (sh->sched && djn_sched_session(sh->sched, 0))
		return sh_fail(sh, "sched budget: sessions are scheduled (sched remove them first)");
	sh->sched_budget = (int)n;
	sh->sched_dirty = true;
	sh_printf(sh, "Token budget: %ld rows a step\n", n);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_sched_order)
{
	enum djn_sched_order o;

	if (!djn_sched_order_parse(argv[1], &o))
		return sh_fail(sh, "sched order: unknown order '%s' (fcfs, rr, priority, slo)",
			       argv[1]);
	sh->sched_order = (int)o;
	if (sh->sched)
		(void)djn_sched_set_order(sh->sched, o); /* from the next step on */
	sh_printf(sh, "Step order: %s\n", argv[1]);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_info_sched)
{
	struct djn_sched *q = sh->sched;
	struct djn_session *s;
	struct djn_sched_stats st;
	cJSON *arr = cJSON_CreateArray();

	sh_printf(sh, "Policy %s, order %s, token budget %d rows a step\n",
		  djn_sched_policy_name(sh->sched_policy),
		  djn_sched_order_name((enum djn_sched_order)sh->sched_order),
		  sh->sched_budget ? sh->sched_budget : 512);
	sh_json_str(sh, "policy", djn_sched_policy_name(sh->sched_policy));
	sh_json_str(sh, "order", djn_sched_order_name((enum djn_sched_order)sh->sched_order));
	for (int i = 0; q && (s = djn_sched_session(q, i)); i++) {
		struct sh_session *ss = by_session(sh, s);
		struct djn_member_info mi;
		char who[160];
		int n, np;
		djn_session_tokens(s, &n, &np);
		djn_sched_member(q, s, &mi);
		sh_sched_tenant_str(sh, s, who, sizeof(who));
		sh_printf(sh, "  %-12s %-8s %4d tokens (%d generated)%s%s\n", ss ? ss->name : "?",
			  djn_phase_name(djn_sched_phase(q, s)), n, n - np,
			  djn_session_swapped(s) ? ", KV on the host" : "", who);
		if (mi.slo_ms > 0)
			sh_printf(sh, "               %ld of %ld tokens over the slo\n",
				  mi.violations, mi.tokens);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "session", ss ? ss->name : "?");
		cJSON_AddStringToObject(o, "phase", djn_phase_name(djn_sched_phase(q, s)));
		cJSON_AddNumberToObject(o, "n_tokens", n);
		cJSON_AddBoolToObject(o, "swapped", djn_session_swapped(s));
		sh_sched_tenant_json(sh, s, o);
		cJSON_AddNumberToObject(o, "tokens", (double)mi.tokens);
		cJSON_AddNumberToObject(o, "violations", (double)mi.violations);
		cJSON_AddNumberToObject(o, "max_latency_ms", mi.max_ms);
		cJSON_AddItemToArray(arr, o);
	}
	sh_json_add(sh, "sessions", arr);
	if (!q) {
		sh_printf(sh, "No session is scheduled.\n");
		return DJN_CMD_OK;
	}
	djn_sched_stats(q, &st);
	sh_printf(sh, "%ld steps, %ld rows, up to %d sessions a batch, %ld graph replays; "
		      "swaps %ld out / %ld in, %ld recomputes\n", st.steps, st.batched_rows,
		  st.max_batch, st.graph_steps, st.swaps_out, st.swaps_in, st.recomputes);
	sh_json_num(sh, "steps", (double)st.steps);
	sh_json_num(sh, "rows", (double)st.batched_rows);
	sh_json_num(sh, "max_batch", st.max_batch);
	sh_json_num(sh, "graph_steps", (double)st.graph_steps);
	sh_json_num(sh, "swaps_out", (double)st.swaps_out);
	sh_json_num(sh, "swaps_in", (double)st.swaps_in);
	sh_json_num(sh, "recomputes", (double)st.recomputes);
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_sched)
{
	if (argc >= 2)
		return sh_fail(sh, "sched: unknown subcommand '%s' (add, remove, step, run, policy, "
				   "budget, order)", argv[1]);
	return cmd_info_sched(sh, argc, argv);
}
