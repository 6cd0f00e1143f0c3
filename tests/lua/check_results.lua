-- check_results.lua KIND FILE - validate a protocol's JSON output (used by run.sh).
local results = require "results"
local kind, path = arg[1], arg[2]
local r = assert(results.read_json(path))

if kind == "whitebox" then
  assert(r.schema == "djinn.whitebox/1", "schema")
  assert(r.model.n_layer == 5 and r.config.layers[2] == 3)
  assert(#r.per_prompt == r.config.prompts)
  local sm = r.summary
  assert(sm.token_accuracy == 1 and sm.token_accuracy_min == 1, "token accuracy 100%")
  assert(sm.restore_equal_all == true, "restore equality")
  assert(sm.steer_zero_tokens_changed_frac == 0, "a zero steer changes nothing")
  assert(sm.steer_tokens_changed_frac > 0 and sm.steer_mean_abs_logit_change > 0, "a steer changes")
  assert(sm.checkpoint_ns.p50 > 0 and sm.restore_ns.p50 > 0 and sm.overhead_ratio > 0)
  for _, p in ipairs(r.per_prompt) do
    assert(p.bp_stops == 2 * p.n_generated, "a stop per armed layer per token")
    assert(p.overhead.none_ns > 0 and p.steer.site == "L1.resid_post")
  end
elseif kind == "trace" then
  assert(r.schema == "djinn.trace/1" and r.kind == "agent" and #r.sessions == 6)
  local last = 0
  for _, s in ipairs(r.sessions) do
    assert(s.arrival_s > last and (s.model == "a" or s.model == "b") and #s.steps >= 1)
    last = s.arrival_s
  end
elseif kind == "multimodel" then
  assert(r.schema == "djinn.multimodel/1" and #r.requests == 30 and #r.trace == 30, "schema, 30 requests")
  local sm = r.summary
  assert(sm.completed == 30 and sm.failed == 0, "30/30 complete")
  assert(sm.tokens_identical == 30 and sm.tokens_identical_all == true, "tokens equal each model alone")
  assert(sm.hit + sm.partial + sm.miss == 30 and sm.partial + sm.miss > 0 and sm.hit > 0,
         "the budget makes some switches copy and some not")
  assert(sm.p50_ms > 0 and sm.p99_ms >= sm.p50_ms and sm.copied_bytes > 0 and sm.miss_gbps > 0)
  assert(#r.models == 3 and #r.reference > 0)
  local b = sm.switch_breakdown
  assert(b.copies > 0 and b.evicted > 0 and b.queue_ms >= 0 and b.wait_ms >= 0, "switch breakdown")
  local seen = {}
  for _, q in ipairs(r.requests) do
    assert(q.ok and q.tokens_equal and q.n_generated == r.config.n, "request " .. q.id)
    assert(q.switch_bytes == q.missing_bytes, "a switch copies exactly the missing layers")
    assert((q.switch_copies > 0) == (q.switch_bytes > 0) and q.switch_evicted >= 0 and
           q.switch_queue_ms >= 0 and q.switch_wait_ms >= 0 and
           q.switch_queue_ms + q.switch_wait_ms <= q.switch_ms + 1e-3, "a switch's breakdown")
    assert((q.kind == "hit") == (q.switch_bytes == 0), "hit means nothing copied")
    assert(q.layers_after == ("R"):rep(r.models[q.model].n_layer), "the model whole after its request")
    assert(q.total_ms >= q.switch_ms + q.run_ms - 1e-3)
    seen[q.model .. ":" .. q.prompt] = true
  end
  for _, e in ipairs(r.reference) do seen[e.model .. ":" .. e.prompt] = nil end
  assert(next(seen) == nil, "a reference for every (model, prompt) of the trace")
elseif kind == "tenants" then
  -- every order: every request of every tenant done, none failed, tokens as
  -- alone; the interactive tenant has an SLO and violations counted
  assert(r.schema == "djinn.tenants/1", "schema")
  assert(#r.runs == #r.config.orders, "a run per order")
  assert(r.calibration.slo_ms > 0 and r.calibration.t_step_ms > 0, "calibrated")
  for _, run in ipairs(r.runs) do
    local n = 0
    for _, t in ipairs(run.tenants) do
      assert(t.completed == t.requests and t.failed == 0,
        run.order .. ": " .. t.tenant .. " " .. t.completed .. "/" .. t.requests)
      assert(t.requests == r.trace.per_tenant[t.tenant], run.order .. ": the same trace")
      n = n + t.requests
      assert(t.requests == 0 or (t.tokens > 0 and t.token_ms.p99 >= t.token_ms.p50))
    end
    assert(n == r.trace.n and run.tenants[1].class == "interactive" and
      run.tenants[1].slo_ms == r.calibration.slo_ms and run.tenants[1].violations >= 0)
    assert(run.identical and run.checked > 0, run.order .. ": tokens differ from alone")
    -- the step trace: an entry a step in every array; its late tokens are
    -- the interactive tenant's violations, its rows the run's
    local tr, late, rows = run.step_trace, 0, 0
    for _, k in ipairs { "ms", "gap_ms", "predicted_ms", "rows", "kv", "margin_ms", "late" } do
      assert(#tr[k] == run.steps, run.order .. ": step_trace." .. k .. " has " .. #tr[k] ..
        " entries for " .. run.steps .. " steps")
    end
    for i = 1, run.steps do
      late, rows = late + tr.late[i], rows + tr.rows[i]
      assert(tr.ms[i] >= 0 and tr.margin_ms[i] >= 0 and tr.rows[i] > 0, run.order .. ": step " .. i)
    end
    assert(late == run.tenants[1].violations and rows == run.rows, run.order .. ": step_trace totals")
  end
  -- the sweep: a point an item, slo's run complete and as alone, fcfs's run
  -- read at the point's SLO (at the run's SLO and load 1 exactly its own count);
  -- a point at another load has its own trace and fcfs run
  local items, fcfs = 0, nil
  for _ in r.config.sweep:gmatch("[^,%s]+") do items = items + 1 end
  for _, run in ipairs(r.runs) do if run.order == "fcfs" then fcfs = run.tenants[1] end end
  assert(#r.sweep == items, #r.sweep .. " sweep points for " .. items .. " items")
  for _, p in ipairs(r.sweep) do
    local what = ("sweep %g:%g:%g"):format(p.headroom, p.scale, p.load)
    local c = r.calibration
    assert(math.abs(p.slo_ms - p.scale * c.slo_base_ms) < 1e-6 * p.slo_ms, what .. ": slo_ms")
    assert(p.slo.completed == p.slo.requests and p.slo.failed == 0 and p.slo.identical,
      what .. ": slo's run incomplete or not as alone")
    assert(p.fcfs.identical, what .. ": fcfs's run not as alone")
    if p.load == 1 then
      -- a longer SLO, fewer late tokens; at the run's SLO its own count
      assert(p.requests == r.trace.n and p.fcfs.requests == fcfs.requests, what .. ": fcfs requests")
      assert((p.slo_ms < c.slo_ms or p.fcfs.late <= fcfs.violations) and
        (p.slo_ms > c.slo_ms or p.fcfs.late >= fcfs.violations),
        what .. ": fcfs late " .. p.fcfs.late .. ", its run counted " .. fcfs.violations)
    else
      -- the same gaps divided by the load (one seeded stream): a lower
      -- load, a prefix of the arrivals; a higher one, more
      assert(p.load < 1 and p.requests <= r.trace.n or p.load > 1 and p.requests >= r.trace.n,
        what .. ": " .. p.requests .. " requests against " .. r.trace.n .. " at load 1")
    end
    assert(p.throughput_x_fcfs > 0, what .. ": throughput")
  end
elseif kind == "mempressure" then
  -- more requests than the KV limit holds at once: every one completes (the
  -- others wait), none fails, tokens as alone
  assert(r.schema == "djinn.mempressure/1", "schema")
  assert(#r.runs == #r.config.batches, "a run per batch")
  for _, run in ipairs(r.runs) do
    assert(run.completed == run.batch and run.failed == 0,
      "batch " .. run.batch .. ": " .. run.completed .. " completed, " .. run.failed ..
      " failed: " .. tostring(run.error))
    assert(run.max_batch < run.batch, "batch " .. run.batch .. ": all fitted at once")
    assert(run.identical, "batch " .. run.batch .. ": tokens differ from alone")
  end
elseif kind == "agents" then
  -- every policy at every count: all agents done, none failed, tokens as alone
  assert(r.schema == "djinn.agents/1", "schema")
  local policies = {}
  for _, run in ipairs(r.runs) do
    policies[run.policy] = true
    assert(run.completed == run.n_agents and run.failed == 0,
      run.policy .. ": " .. run.completed .. "/" .. run.n_agents .. " completed")
    assert(run.identical and run.checked == math.min(r.config.check, run.n_agents),
      run.policy .. ": tokens differ from the agents alone")
    assert(run.tokens > 0 and run.token_ms.p99 >= run.token_ms.p50)
    for _, a in ipairs(run.per_agent) do assert(a.state == "done") end
    if run.policy == "signal" and run.n_agents > 1 then
      assert(run.swaps_out > 0 and run.swaps_in > 0, "signal swapped nothing")
    end
    if run.policy == "none" then
      assert(run.swaps_out == 0 and run.swaps_in == 0, "none swapped")
    end
    if run.policy == "recompute" and run.n_agents > 1 then
      assert(run.recomputes > 0, "recompute recomputed nothing")
    end
  end
  for _, p in ipairs({ "signal", "lru", "recompute", "none" }) do
    assert(policies[p], "no run under " .. p)
    assert(r.density[p] ~= nil, "no density for " .. p)
  end
else
  error("check_results: unknown kind " .. tostring(kind))
end
print("check_results: " .. kind .. " ok")
