-- tenants.lua - three tenants share one scheduler: an interactive user with
-- a token-latency SLO, a standard service, and a batch evaluation job that
-- submits a burst of requests at once, then keeps sending long prompts.  The same seeded
-- trace runs under every step order (fcfs, rr, priority, slo); per tenant:
-- tokens/s, token latency P50/P99, time to first token, SLO violations.
--
--   djinn lua/exp/tenants.lua MODEL [--device auto] [--orders fcfs,rr,priority,slo]
--         [--seed 1] [--steps 1000] [--max-batch 32] [--budget 512] [--kv-dtype f32|f16]
--         [--slo-ms 0] [--slo-x 0] [--slo-scale 2.5] [--aging 8] [--headroom 0.6]
--         [--user-every 12] [--user-prompt 16] [--user-new 16]
--         [--svc-every 40] [--svc-prompt 64] [--svc-new 64]
--         [--eval-every 22] [--eval-prompt 1024] [--eval-new 64]
--         [--burst 64] [--burst-prompt 64] [--burst-new 128]
--         [--check 2] [--sweep HEADROOM:SCALE[:LOAD],...] [--out FILE.json]
--
-- Time is in steps of the model: a calibration first measures the step-time
-- model (djinn/sched.h) and t_step, a step of max_batch decode rows; arrival
-- gaps (--*-every, exponential, in steps) and the length of the trace
-- (--steps) are in those units, so a load means the same on a CPU and a GPU.
-- The SLO is --slo-ms, or --slo-x times the predicted step of max_batch
-- decode rows plus one user prompt, or by default --slo-scale times the
-- geometric mean of that step and one of max_batch rows plus a full budget
-- of prefill (the base).  --sweep runs slo again at each HEADROOM and SCALE
-- times the base, and reads the fcfs run's interactive tokens against the
-- same SLO (fcfs does not look at SLOs: its schedule is the same at any).
-- A LOAD (default 1) multiplies the steady arrival rates (the burst stays):
-- its point runs on a trace of its own, fcfs once a load and slo at each of
-- its points.  Result schema "djinn.tenants/1" (docs/experiments.md,
-- docs/tenants.md).
local djinn = require "djinn"
local rng_mod = require "rng"
local stats = require "stats"
local results = require "results"
local opts = require "opts"

local o, model_path = opts.parse("tenants", arg, {
  device = "auto", orders = { "fcfs", "rr", "priority", "slo" }, seed = 1, steps = 1000,
  max_batch = 32, budget = 512, kv_dtype = "f32", slo_ms = 0, slo_x = 0, slo_scale = 2.5, aging = 8,
  headroom = 0.6,
  user_every = 12, user_prompt = 16, user_new = 16,
  svc_every = 40, svc_prompt = 64, svc_new = 64,
  eval_every = 22, eval_prompt = 1024, eval_new = 64,
  burst = 64, burst_prompt = 64, burst_new = 128,
  check = 2, out = "-", sweep = "",
}, {
  strings = { "device", "out", "kv_dtype", "sweep" }, lists = { orders = "string" },
})

-- --sweep: "HEADROOM:SCALE[:LOAD],..."
local sweep = {}
for item in o.sweep:gmatch("[^,%s]+") do
  local h, x, l = item:match("^([%d.]+):([%d.]+)$")
  if not h then h, x, l = item:match("^([%d.]+):([%d.]+):([%d.]+)$") end
  h, x, l = tonumber(h), tonumber(x), tonumber(l or "1")
  if not (h and x and l and h > 0 and h <= 1 and x > 0 and l > 0 and l <= 4) then
    io.stderr:write(("tenants: --sweep item '%s' is not HEADROOM:SCALE[:LOAD] (headroom in " ..
      "(0, 1], scale > 0, load in (0, 4])\n"):format(item))
    os.exit(2)
  end
  sweep[#sweep + 1] = { headroom = h, scale = x, load = l }
end
local has_fcfs = false
for _, order in ipairs(o.orders) do has_fcfs = has_fcfs or order == "fcfs" end
if #sweep > 0 and not has_fcfs then
  io.stderr:write("tenants: --sweep reads the fcfs run: add fcfs to --orders\n")
  os.exit(2)
end

if not (o.slo_scale > 0) then
  io.stderr:write("tenants: --slo-scale must be > 0 (it multiplies the calibrated SLO)\n")
  os.exit(2)
end
if not (o.headroom > 0 and o.headroom <= 1) then
  io.stderr:write("tenants: --headroom must be in (0, 1] (the share of the SLO a capped step takes)\n")
  os.exit(2)
end

local m = assert(djinn.load(model_path, { device = o.device, kv_dtype = o.kv_dtype }))
local info = m:info()
local vocab = info.vocab
local now = function() return djinn.clock() / 1e9 end

local TENANTS = {
  { name = "user", class = "interactive", every = o.user_every, prompt = o.user_prompt,
    new = o.user_new },
  { name = "svc", class = "standard", every = o.svc_every, prompt = o.svc_prompt,
    new = o.svc_new },
  { name = "eval", class = "batch", every = o.eval_every, prompt = o.eval_prompt,
    new = o.eval_new, burst = o.burst, burst_prompt = o.burst_prompt, burst_new = o.burst_new },
}

local function ids_of(seed, n)
  local r = rng_mod.new(seed)
  local ids = { 1 }
  for k = 2, n do ids[k] = r:int(3, vocab - 1) end
  return ids
end

-- Calibration: short sessions decoding, then long prompts joining them
-- (their prefill chunks, then their decode rows at long contexts) through a
-- scheduler, so that the step-time model sees the three shapes apart: many
-- rows reading little of the cache (prefill), few rows reading little
-- (short decodes) and few rows reading much (long decodes): the row and the
-- KV terms both.
local function calibrate()
  local q = djinn.sched { budget = o.budget, max_batch = o.max_batch, model = m }
  local ss = {}
  local n_short, n_long = math.max(1, o.max_batch // 2), math.max(1, o.max_batch // 4)
  for k = 1, n_short do
    local s = assert(m:session { ctx = 72 })
    s:start(ids_of(900 + k, 4), { n = 64, eos = false })
    assert(q:add(s))
    ss[#ss + 1] = s
  end
  for _ = 1, 12 do q:step() end -- warm: graphs recorded, arenas grown
  for k = 1, n_long do
    local long = assert(m:session { ctx = o.eval_prompt + 24 })
    long:start(ids_of(999 + k, o.eval_prompt), { n = 16, eos = false })
    assert(q:add(long))
    ss[#ss + 1] = long
  end
  while q:step() do end
  local sm = q:step_model()
  q:close()
  for _, s in ipairs(ss) do s:close() end
  return sm
end

local sm = calibrate()
-- a step of the calibration's shape: its decode rows read ~24 positions
-- each (4-token prompts, 40 new), which the line in rows alone absorbed
local function predict(rows) return sm.base_ms + sm.row_ms * rows + sm.kv_ms * rows * 24 / 1e3 end
local t_step_ms = predict(o.max_batch)
-- the SLO: given, or slo_x times a decode step with a user prompt, or (by
-- default) slo_scale times the base, the geometric mean of that step and
-- one that carries a full budget of prefill: between the two whatever a row
-- costs on this device (the sweep's scales are of the base)
local slo_base_ms = o.slo_ms > 0 and o.slo_ms
  or o.slo_x > 0 and o.slo_x * predict(o.max_batch + o.user_prompt)
  or math.sqrt(predict(o.max_batch + o.user_prompt) * predict(o.max_batch + o.budget))
local slo_ms = (o.slo_ms > 0 or o.slo_x > 0) and slo_base_ms or o.slo_scale * slo_base_ms

-- The trace: per tenant exponential gaps (in steps of t_step, divided by
-- load); the eval job adds a burst at step 5 (its own prompt and length).
-- Seeded: every order sees the same requests.
local function make_trace(load)
  local rng = rng_mod.new(o.seed)
  local reqs = {}
  for ti, t in ipairs(TENANTS) do
    local at = 0
    if t.burst and t.burst > 0 then
      for _ = 1, t.burst do reqs[#reqs + 1] = { tenant = ti, at_steps = 5, burst = true } end
    end
    while t.every > 0 do
      at = at + rng:exponential(load / t.every)
      if at >= o.steps then break end
      reqs[#reqs + 1] = { tenant = ti, at_steps = at }
    end
  end
  table.sort(reqs, function(a, b)
    if a.at_steps ~= b.at_steps then return a.at_steps < b.at_steps end
    return a.tenant < b.tenant
  end)
  for k, r in ipairs(reqs) do
    local t = TENANTS[r.tenant]
    r.id = k
    r.at_s = r.at_steps * t_step_ms / 1e3
    r.ids = ids_of(o.seed * 100003 + k, r.burst and t.burst_prompt or t.prompt)
    r.new = r.burst and t.burst_new or t.new
  end
  return reqs
end

local function alone(r)
  local s = assert(m:session { ctx = #r.ids + r.new + 1 })
  s:start(r.ids, { n = r.new, eos = false })
  repeat local why = s:continue() until why == "done"
  local toks = s:tokens()
  s:close()
  return toks
end

local function pct(xs)
  if #xs == 0 then return { p50 = 0, p99 = 0, mean = 0, n = 0 } end
  return { p50 = stats.percentile(xs, 50), p99 = stats.percentile(xs, 99),
           mean = stats.mean(xs), n = #xs }
end

-- One order over the trace, the interactive tenant's SLO slo (ms) and the
-- slo order's headroom; the second result is every interactive token's
-- latency after its request's first ({ ms = {...}, req = {...} }).
local function run(order, reqs, slo_ms, headroom)
  local q = djinn.sched { order = order, budget = o.budget, max_batch = o.max_batch,
                          aging = o.aging, headroom = headroom, model = m }
  -- admission and the row cap know the model from step 1
  q:step_model { base_ms = sm.base_ms, row_ms = sm.row_ms, kv_ms = sm.kv_ms, gap_ms = sm.gap_ms }
  local per = {}
  for ti, t in ipairs(TENANTS) do
    per[ti] = { tenant = t.name, class = t.class, lat = {}, all = {}, ttft = {}, tokens = 0,
                violations = 0, req_violated = 0, requests = 0, completed = 0, failed = 0,
                refused = 0, first_s = math.huge, last_s = 0 }
  end
  local live, pending, done = {}, {}, 0
  for _, r in ipairs(reqs) do
    -- what an earlier run left on the request (a run is the trace afresh)
    r.s, r.tokens, r.refused_once, r.violated = nil, nil, nil, nil
    pending[#pending + 1] = r
  end
  local head, n_steps, rows, step_ms = 1, 0, 0, {}
  -- where a token's latency goes beyond the model: each step's time over
  -- its prediction (all steps, and those while an interactive request was
  -- live), and the caller's time between steps
  local over, over_user, gaps, last_end, last_gap = {}, {}, {}, nil, 0
  -- every step: its time, the gap before it, the prediction, rows, cached
  -- positions read, the slo margin after it, and the interactive tokens it
  -- made late
  local trace = { ms = {}, gap_ms = {}, predicted_ms = {}, rows = {}, kv = {}, margin_ms = {},
                  late = {} }
  local function r2(x) return math.floor(x * 100 + 0.5) / 100 end
  local n_interactive = 0 -- live interactive requests
  local raw = { ms = {}, req = {} }
  local t0 = now()
  while done < #reqs do
    local tnow = now() - t0
    -- arrivals (a refused SLO admission waits and tries again next step)
    local k = head
    while k <= #pending and pending[k].at_s <= tnow do
      local r = pending[k]
      if not r.s then
        r.s = assert(m:session { ctx = #r.ids + r.new + 1 })
        r.s:start(r.ids, { n = r.new, eos = false })
      end
      local t = TENANTS[r.tenant]
      local ok, err = q:add(r.s, { tenant = t.name, class = t.class,
                                  slo_ms = t.class == "interactive" and slo_ms or 0 })
      if ok then
        r.added, r.ready, r.n_gen, r.violated = tnow, tnow, 0, false
        live[#live + 1] = r
        if TENANTS[r.tenant].class == "interactive" then n_interactive = n_interactive + 1 end
        per[r.tenant].requests = per[r.tenant].requests + 1
        per[r.tenant].first_s = math.min(per[r.tenant].first_s, r.at_s)
        table.remove(pending, k)
      else
        if not r.refused_once then
          per[r.tenant].refused = per[r.tenant].refused + 1
          per[r.tenant].refusal = per[r.tenant].refusal or err
          r.refused_once = true
        end
        k = k + 1
      end
    end
    local s0 = now()
    local st = q:step()
    if st then
      local s1 = now()
      n_steps, rows = n_steps + 1, rows + st.rows
      step_ms[#step_ms + 1] = (s1 - s0) * 1e3
      last_gap = last_end and (s0 - last_end) * 1e3 or 0
      if last_end then gaps[#gaps + 1] = last_gap end
      last_end = s1
      -- the step, for reading the late tokens against it afterwards
      trace.ms[n_steps] = r2((s1 - s0) * 1e3)
      trace.gap_ms[n_steps] = r2(last_gap)
      trace.predicted_ms[n_steps] = r2(st.predicted_ms)
      trace.rows[n_steps], trace.kv[n_steps] = st.rows, st.kv
      trace.margin_ms[n_steps] = r2(q:step_model().margin_ms)
      trace.late[n_steps] = 0
      if st.predicted_ms > 0 then
        local ratio = (s1 - s0) * 1e3 / st.predicted_ms
        over[#over + 1] = ratio
        if n_interactive > 0 then over_user[#over_user + 1] = ratio end
      end
      local tdone = s1 - t0
      local j = 1
      while j <= #live do
        local r = live[j]
        local p = per[r.tenant]
        local mi = q:member(r.s) -- a count, not the token list: cheap every step
        local n = mi.tokens
        if n > r.n_gen then
          -- the standard split: the first token is the time to first
          -- token (from the request's arrival: the step in flight, its
          -- prefill); every later one's latency is the time since the
          -- previous token (time per output token), and the SLO is on those
          -- (all_ms: every token from its previous one or the add, the
          -- first included, as the priority goal measures)
          p.all[#p.all + 1] = (tdone - r.ready) * 1e3
          if r.n_gen == 0 then
            p.ttft[#p.ttft + 1] = (tdone - r.at_s) * 1e3
          else
            local ms = (tdone - r.ready) * 1e3
            p.lat[#p.lat + 1] = ms
            if TENANTS[r.tenant].class == "interactive" then
              raw.ms[#raw.ms + 1], raw.req[#raw.req + 1] = ms, r.id
            end
            if TENANTS[r.tenant].class == "interactive" and ms > slo_ms then
              p.violations = p.violations + 1
              trace.late[n_steps] = trace.late[n_steps] + 1
              r.violated = true
            end
          end
          p.tokens = p.tokens + (n - r.n_gen)
          r.n_gen, r.ready = n, tdone
        end
        local ph = mi.phase
        if ph == "done" or ph == "stopped" then
          if ph == "done" then
            p.completed = p.completed + 1
            r.tokens = r.s:tokens()
          else
            p.failed = p.failed + 1
          end
          if r.violated then p.req_violated = p.req_violated + 1 end
          p.last_s = math.max(p.last_s, tdone)
          q:remove(r.s)
          r.s:close()
          r.s = nil
          done = done + 1
          table.remove(live, j)
          if TENANTS[r.tenant].class == "interactive" then n_interactive = n_interactive - 1 end
        else
          j = j + 1
        end
      end
    else
      last_end = nil -- idle until the next arrival: not the caller's work
      -- nothing runnable: wait for the next arrival
      local w = (pending[1] and pending[1].at_s or tnow) - (now() - t0)
      if w > 0 then djinn.sleep(math.min(w, 0.05)) end
    end
  end
  local wall = now() - t0
  local sst = q:stats()
  local fitted = q:step_model()
  q:close()
  -- the first requests of each tenant again, alone: the same tokens?
  local identical, checked = true, 0
  local seen = {}
  for _, r in ipairs(reqs) do
    seen[r.tenant] = (seen[r.tenant] or 0) + 1
    if seen[r.tenant] <= o.check and r.tokens then
      local want = alone(r)
      checked = checked + 1
      if #want ~= #r.tokens then identical = false end
      for x = 1, #want do if want[x] ~= r.tokens[x] then identical = false end end
    end
  end
  local out_t, total = {}, 0
  for ti, p in ipairs(per) do
    local span = p.last_s > p.first_s and p.last_s - p.first_s or wall
    total = total + p.tokens
    out_t[ti] = {
      tenant = p.tenant, class = p.class, requests = p.requests, completed = p.completed,
      failed = p.failed, refused = p.refused, refusal = p.refusal, tokens = p.tokens,
      tokens_per_s = p.tokens / span, token_ms = pct(p.lat), ttft_ms = pct(p.ttft),
      token_all_ms = pct(p.all),
      slo_ms = p.class == "interactive" and slo_ms or nil,
      violations = p.violations,
      violation_frac = p.class == "interactive" and p.violations / math.max(1, #p.lat) or nil,
      requests_violated = p.class == "interactive" and p.req_violated or nil,
      token_cdf = #p.lat > 1 and stats.cdf(p.lat, 101) or {},
    }
  end
  return {
    order = order, slo_ms = slo_ms, headroom = headroom,
    wall_s = wall, steps = n_steps, rows = rows, tokens = total,
    tokens_per_s = total / wall, step_ms = pct(step_ms), max_batch = sst.max_batch,
    swaps_out = sst.swaps_out, swaps_in = sst.swaps_in,
    kv_peak_bytes = sst.kv_peak_bytes, device_peak_bytes = sst.device_peak_bytes,
    identical = identical, checked = checked, tenants = out_t,
    -- the step-time model as the run left it (fitted to its last ~50 steps)
    step_model = { base_ms = fitted.base_ms, row_ms = fitted.row_ms, kv_ms = fitted.kv_ms,
                   gap_ms = fitted.gap_ms, margin_ms = fitted.margin_ms },
    -- a step's measured time over the model's prediction, and the gaps
    over_predicted = pct(over), over_predicted_interactive = pct(over_user),
    gap_ms = pct(gaps), step_trace = trace,
  }, raw
end

-- Interactive tokens over slo_ms among raw's, and the requests with one.
local function late_at(raw, slo_ms)
  local n, reqs = 0, {}
  for k, ms in ipairs(raw.ms) do
    if ms > slo_ms then
      n = n + 1
      reqs[raw.req[k]] = true
    end
  end
  local nr = 0
  for _ in pairs(reqs) do nr = nr + 1 end
  return n, nr
end

local reqs = make_trace(1)
local out = {
  schema = "djinn.tenants/1",
  model = { name = info.name, path = model_path, device = info.device, n_layer = info.n_layer,
            dim = info.dim },
  config = o,
  calibration = { base_ms = sm.base_ms, row_ms = sm.row_ms, kv_ms = sm.kv_ms, gap_ms = sm.gap_ms,
                  steps = sm.n,
                  t_step_ms = t_step_ms, slo_ms = slo_ms, slo_base_ms = slo_base_ms },
  trace = { n = #reqs, per_tenant = {} },
  runs = {},
  sweep = {},
}
for ti, t in ipairs(TENANTS) do
  local n = 0
  for _, r in ipairs(reqs) do if r.tenant == ti then n = n + 1 end end
  out.trace.per_tenant[t.name] = n
end
io.stderr:write(("tenants: step %.3f ms + %.4f ms a row; t_step %.3f ms, slo %.3f ms; " ..
  "%d requests\n"):format(sm.base_ms, sm.row_ms, t_step_ms, slo_ms, #reqs))
local fcfs_raw, fcfs_run
for _, order in ipairs(o.orders) do
  local r, raw = run(order, reqs, slo_ms, o.headroom)
  out.runs[#out.runs + 1] = r
  if order == "fcfs" then fcfs_raw, fcfs_run = raw, r end
  local u = r.tenants[1]
  io.stderr:write(("tenants: %-8s %.1f s, %.0f tok/s; user p50 %.2f p99 %.2f ms, " ..
    "violations %d (%.1f%%), same=%s\n"):format(order, r.wall_s, r.tokens_per_s,
    u.token_ms.p50, u.token_ms.p99, u.violations, 100 * (u.violation_frac or 0),
    tostring(r.identical)))
  if o.out ~= "-" then assert(results.write_json(o.out, out)) end -- rewritten after each run
end
-- the sweep: slo at other headrooms, SLOs and loads, fcfs's run (at the
-- point's load: the first run's at 1) read at each SLO
local at_load = { [1] = { reqs = reqs, raw = fcfs_raw, run = fcfs_run } }
for _, p in ipairs(sweep) do
  local base = at_load[p.load]
  if not base then
    base = { reqs = make_trace(p.load) }
    base.run, base.raw = run("fcfs", base.reqs, slo_ms, o.headroom)
    at_load[p.load] = base
    io.stderr:write(("tenants: sweep load %.2f: %d requests, fcfs %.1f s, %.0f tok/s, same=%s\n")
      :format(p.load, #base.reqs, base.run.wall_s, base.run.tokens_per_s,
              tostring(base.run.identical)))
  end
  local ms = slo_base_ms * p.scale
  local r = run("slo", base.reqs, ms, p.headroom)
  local u, fu = r.tenants[1], base.run.tenants[1]
  local fl, flr = late_at(base.raw, ms)
  local point = {
    headroom = p.headroom, scale = p.scale, load = p.load, requests = #base.reqs, slo_ms = ms,
    throughput_x_fcfs = r.tokens_per_s / base.run.tokens_per_s,
    fcfs = { late = fl, late_frac = fl / math.max(1, #base.raw.ms), requests_late = flr,
             requests = fu.requests, tokens_per_s = base.run.tokens_per_s,
             wall_s = base.run.wall_s, steps = base.run.steps, identical = base.run.identical },
    slo = { late = u.violations, late_frac = u.violation_frac, requests_late = u.requests_violated,
            requests = u.requests, completed = u.completed, failed = u.failed,
            tokens_per_s = r.tokens_per_s, wall_s = r.wall_s, steps = r.steps,
            identical = r.identical, token_ms = u.token_ms },
  }
  out.sweep[#out.sweep + 1] = point
  io.stderr:write(("tenants: sweep headroom %.2f slo %.2f ms load %.2f: fcfs late %d (%.1f%%), " ..
    "slo late %d (%.1f%%) at %.3fx fcfs, same=%s\n"):format(p.headroom, ms, p.load, fl,
    100 * point.fcfs.late_frac, u.violations, 100 * (u.violation_frac or 0),
    point.throughput_x_fcfs, tostring(r.identical)))
  if o.out ~= "-" then assert(results.write_json(o.out, out)) end
end
if o.out == "-" then assert(results.write_json(o.out, out)) end
