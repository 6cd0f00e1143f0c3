-- agents.lua - many agents on one GPU: each alternates thinking (decoding)
-- and tool calls (IO_WAIT); the scheduler batches the thinking ones.  The
-- same seeded trace runs under every policy and agent count.
--
--   djinn lua/exp/agents.lua MODEL [--device auto] [--policies signal,lru,recompute,none]
--         [--agents 1,8,16] [--seed 1] [--rate 40] [--steps 3] [--think 32] [--tool-s 0.3]
--         [--tool-tokens 8] [--prompt 64] [--kv-limit SIZE] [--kv-dtype f32|f16] [--budget 512]
--         [--check N]
--         [--slo-x 2] [--out FILE.json] [--trace-out FILE.json]
--
-- Result schema "djinn.agents/1" (docs/experiments.md).
local djinn = require "djinn"
local rng_mod = require "rng"
local stats = require "stats"
local trace = require "trace"
local results = require "results"
local opts = require "opts"

local o, model_path = opts.parse("agents", arg, {
  device = "auto", policies = { "signal", "lru", "recompute", "none" }, agents = { 1, 8 },
  seed = 1, rate = 40, steps = 3, think = 32, tool_s = 0.3, tool_tokens = 8, prompt = 64,
  kv_limit = nil, kv_dtype = "f32", budget = 512, check = 4, slo_x = 2, out = "-",
  trace_out = nil,
}, {
  strings = { "device", "out", "trace_out", "kv_limit", "kv_dtype" },
  lists = { policies = "string", agents = "int" },
})

local m = assert(djinn.load(model_path, { device = o.device, kv_limit = o.kv_limit,
  kv_dtype = o.kv_dtype }))
local info = m:info()
local vocab = info.vocab

-- The trace: arrivals, and per agent a prompt then steps of (think, tool).
local function make_trace(n)
  local t = trace.generate { kind = "agent", seed = o.seed, n = n, rate = o.rate,
    models = { model_path }, steps_min = o.steps, steps_max = o.steps,
    think_tokens = o.think, tool_s = o.tool_s, tool_dist = "exponential",
    tool_tokens = o.tool_tokens, prompt_tokens = o.prompt }
  -- token ids, seeded per agent: the same agent is the same in every run
  for _, a in ipairs(t.sessions) do
    local r = rng_mod.new(o.seed * 100003 + a.id)
    a.ids = { 1 }
    for k = 2, a.prompt_tokens do a.ids[k] = r:int(3, vocab - 1) end
    for _, st in ipairs(a.steps) do
      st.ids = {}
      for k = 1, st.tool_tokens do st.ids[k] = r:int(3, vocab - 1) end
    end
    local ctx = a.prompt_tokens + 1
    for _, st in ipairs(a.steps) do ctx = ctx + st.think_tokens + st.tool_tokens end
    a.ctx = ctx
  end
  return t
end

-- One agent alone: the tokens it must produce.  It runs in a scheduler of
-- its own, with the run's budget: there a batch of one is the session alone
-- (the same bits as in a batch on the CPU), and on a batch-invariant backend
-- (CUDA with DJN_SKINNY=1) the batch path, whose rows do not depend on the
-- batch, so that the same tokens are owed there too.
local function alone(a)
  local q = djinn.sched { policy = "none", budget = o.budget, model = m }
  local s = assert(m:session { ctx = a.ctx })
  s:start(a.ids, { n = a.steps[1].think_tokens, eos = false })
  assert(q:add(s))
  for k = 1, #a.steps do
    while q:phase(s) == "compute" do assert(q:step(), "alone: nothing to step") end
    local ph = q:phase(s)
    if ph ~= "done" then error(("alone: agent stopped (%s) in turn %d"):format(ph, k)) end
    if k < #a.steps then
      assert(q:io_wait(s))
      s:extend(a.steps[k].ids, { n = a.steps[k + 1].think_tokens })
      assert(q:resume(s))
    end
  end
  local toks = s:tokens()
  q:remove(s)
  q:close()
  s:close()
  return toks
end

local now = function() return djinn.clock() / 1e9 end

local function run(policy, t)
  -- the swaps' pinned memory is locked before the clock starts, a block an
  -- agent's whole cache (pinning costs far more than the copy)
  local block, pool = 0, 0
  if policy ~= "none" then
    local ctx = 0
    for _, a in ipairs(t.sessions) do ctx = math.max(ctx, a.ctx) end
    block = ((ctx + 15) // 16) * 16 * info.kv_bytes_per_token
    pool = block * #t.sessions
  end
  local q = djinn.sched { policy = policy, budget = o.budget, host_pool = pool, host_block = block,
                          model = m }
  -- warm up before the clock: the scheduler's first steps pay one-time
  -- costs (buffers laid out, kernels loaded, graphs recorded) that are a
  -- server's start-up, not an agent's latency; their times are reported
  local warm_ms = {}
  do
    local a = t.sessions[1]
    local s = assert(m:session { ctx = a.prompt_tokens + 4 })
    s:start(a.ids, { n = 2, eos = false })
    assert(q:add(s))
    while q:phase(s) == "compute" do
      local c0 = now()
      if not q:step() then break end
      warm_ms[#warm_ms + 1] = (now() - c0) * 1e3
    end
    q:remove(s)
    s:close()
  end
  local agents, pending = {}, {}
  for k, a in ipairs(t.sessions) do
    agents[k] = { a = a, state = "future", step = 1, tok_ms = {}, n_gen = 0 }
    pending[#pending + 1] = agents[k]
  end
  local tok_ms, ttft_ms, step_ms, batch, signal_ms, resume_ms = {}, {}, {}, {}, {}, {}
  local start_ms, add_ms = {}, {}
  local failed, completed, n_tokens = 0, 0, 0
  local t0 = now()
  local live = 0
  while completed + failed < #agents do
    local tnow = now() - t0
    -- arrivals
    for _, g in ipairs(agents) do
      if g.state == "future" and g.a.arrival_s <= tnow then
        local c0 = now()
        local s, err = m:session { ctx = g.a.ctx }
        if not s then
          g.state, g.err = "failed", err
          failed = failed + 1
        else
          g.s = s
          s:start(g.a.ids, { n = g.a.steps[1].think_tokens, eos = false })
          local c1 = now()
          local ok, e = q:add(s)
          local c2 = now()
          -- the arrival's own costs, apart: making and starting the
          -- session, then handing it to the scheduler (both in its TTFT)
          start_ms[#start_ms + 1] = (c1 - c0) * 1e3
          add_ms[#add_ms + 1] = (c2 - c1) * 1e3
          if not ok then
            g.state, g.err = "failed", e
            failed = failed + 1
            s:close()
          else
            g.state, g.ready_at, g.arrived = "think", tnow, tnow
            live = live + 1
          end
        end
      end
    end
    -- tools that returned
    for _, g in ipairs(agents) do
      if g.state == "tool" and g.tool_end <= tnow then
        local st = g.a.steps[g.step]
        g.s:extend(st.ids, { n = g.a.steps[g.step + 1].think_tokens })
        local c0 = now()
        local ok, e = q:resume(g.s)
        resume_ms[#resume_ms + 1] = (now() - c0) * 1e3
        if not ok then error("resume: " .. e) end
        g.step = g.step + 1
        g.state, g.ready_at = "think", now() - t0
      end
    end
    local s0 = now()
    local info_step = q:step()
    if info_step then
      local s1 = now()
      step_ms[#step_ms + 1] = (s1 - s0) * 1e3
      batch[#batch + 1] = info_step.batched
      local tdone = s1 - t0
      for _, g in ipairs(agents) do
        if g.state == "think" then
          local _, np = g.s:tokens()
          local n = #g.s:tokens() - np
          if n > g.n_gen then
            -- a token: its latency is the time since the agent was last
            -- ready for one (its previous token, its arrival, its resume)
            -- the first token after arrival is the TTFT (queueing and
            -- prefill), reported on its own; every later one counts here,
            -- the first after a tool included (the policy's swap-in or
            -- recompute is paid there)
            local ms = (tdone - g.ready_at) * 1e3
            if g.n_gen == 0 then
              ttft_ms[#ttft_ms + 1] = (tdone - g.arrived) * 1e3
            else
              tok_ms[#tok_ms + 1] = ms
              g.tok_ms[#g.tok_ms + 1] = ms
            end
            n_tokens = n_tokens + (n - g.n_gen)
            g.n_gen = n
            g.ready_at = tdone
          end
          local ph = q:phase(g.s)
          if ph == "done" then
            if g.step < #g.a.steps then
              -- its turn is over: it waits on its tool
              local c0 = now()
              local ok, e = q:io_wait(g.s)
              signal_ms[#signal_ms + 1] = (now() - c0) * 1e3
              if not ok then error("io_wait: " .. e) end
              g.state, g.tool_end = "tool", tdone + g.a.steps[g.step].tool_s
            else
              g.state = "done"
              g.tokens = g.s:tokens()
              q:remove(g.s)
              g.s:close()
              g.s = nil
              completed = completed + 1
              live = live - 1
            end
          elseif ph == "stopped" then
            g.state, g.err = "failed", "stopped"
            failed = failed + 1
            q:remove(g.s)
          end
        end
      end
    else
      -- nothing runnable: wait for the next arrival or tool
      local next_t = math.huge
      for _, g in ipairs(agents) do
        if g.state == "future" then next_t = math.min(next_t, g.a.arrival_s) end
        if g.state == "tool" then next_t = math.min(next_t, g.tool_end) end
      end
      if next_t == math.huge then break end
      local w = next_t - (now() - t0)
      if w > 0 then djinn.sleep(math.min(w, 0.05)) end
    end
  end
  local wall = now() - t0
  local st = q:stats()
  q:close()
  for _, g in ipairs(agents) do if g.s then g.s:close() end end
  -- the first agents again, alone: the same tokens?
  -- where an agent's tokens part from its tokens alone, the share that
  -- agreed first (a near-tie flipped by another summation order on a GPU
  -- shows late; a bug shows at once)
  local identical, checked, agreed = true, 0, {}
  for k = 1, math.min(o.check, #agents) do
    local g = agents[k]
    if g.tokens then
      local want = alone(g.a)
      checked = checked + 1
      local j = g.a.prompt_tokens + 1
      while j <= #want and want[j] == g.tokens[j] do j = j + 1 end
      if j <= #want or #want ~= #g.tokens then identical = false end
      agreed[#agreed + 1] = (j - 1 - g.a.prompt_tokens) / math.max(1, #want - g.a.prompt_tokens)
    end
  end
  local function pct(xs)
    if #xs == 0 then return { p50 = 0, p99 = 0, mean = 0, n = 0 } end
    return { p50 = stats.percentile(xs, 50), p99 = stats.percentile(xs, 99),
             mean = stats.mean(xs), n = #xs }
  end
  local per_agent = {}
  for k, g in ipairs(agents) do
    per_agent[k] = { id = g.a.id, state = g.state, n_generated = g.n_gen,
                     token_ms = pct(g.tok_ms), err = g.err }
  end
  return {
    policy = policy, n_agents = #agents, completed = completed, failed = failed,
    warmup_step_ms = warm_ms,
    wall_s = wall, tokens = n_tokens, tokens_per_s = n_tokens / wall,
    token_ms = pct(tok_ms), ttft_ms = pct(ttft_ms), step_ms = pct(step_ms),
    token_cdf = #tok_ms > 1 and stats.cdf(tok_ms, 101) or {},
    batch = { mean = #batch > 0 and stats.mean(batch) or 0, max = st.max_batch },
    swaps_out = st.swaps_out, swaps_in = st.swaps_in, recomputes = st.recomputes,
    swap_bytes = st.swap_bytes_out + st.swap_bytes_in,
    swap_gbps = (st.swap_ms_out + st.swap_ms_in) > 0 and
      (st.swap_bytes_out + st.swap_bytes_in) / ((st.swap_ms_out + st.swap_ms_in) * 1e6) or 0,
    signal_ms = pct(signal_ms), resume_ms = pct(resume_ms),
    start_ms = pct(start_ms), add_ms = pct(add_ms),
    kv_peak_bytes = st.kv_peak_bytes, device_peak_bytes = st.device_peak_bytes,
    graph_steps = st.graph_steps, identical = identical, checked = checked,
    agreed_before_parting = #agreed > 0 and stats.mean(agreed) or 1,
    per_agent = per_agent,
  }
end

local out = { schema = "djinn.agents/1",
  model = { name = info.name, path = model_path:match("[^/]+/*$"):gsub("/+$", ""), device = info.device, n_layer = info.n_layer,
            dim = info.dim },
  config = o, runs = {} }
-- density: per policy, the most agents that all completed, none failed,
-- within the SLO: P99 token latency within slo_x times one agent's alone,
-- and P99 time to first token within slo_x times one agent's alone (both
-- one agent's P99 under the best policy; the TTFT bound is what shows an
-- agent queued for admission: its tokens, once admitted, may all be fast).
-- Token identity is reported beside it.  The result is rewritten after
-- every run, so a run cut short keeps what it did.
local baseline, baseline_ttft
local function finish()
  out.slo_ms = baseline and baseline * o.slo_x or nil
  out.slo_ttft_ms = baseline_ttft and baseline_ttft * o.slo_x or nil
  out.density = {}
  for _, p in ipairs(o.policies) do
    local best = 0
    for _, r in ipairs(out.runs) do
      if r.policy == p and r.failed == 0 and r.completed == r.n_agents and
         (not out.slo_ms or r.token_ms.p99 <= out.slo_ms) and
         (not out.slo_ttft_ms or r.ttft_ms.p99 <= out.slo_ttft_ms) and r.n_agents > best then
        best = r.n_agents
      end
    end
    out.density[p] = best
  end
  assert(results.write_json(o.out, out))
end
for _, n in ipairs(o.agents) do
  local t = make_trace(n)
  if o.trace_out and n == o.agents[#o.agents] then assert(results.write_json(o.trace_out, t)) end
  for _, p in ipairs(o.policies) do
    local r = run(p, t)
    out.runs[#out.runs + 1] = r
    io.stderr:write(("agents: %-9s n=%-4d done %d/%d failed %d  token p50 %.2f p99 %.2f ms  "
      .. "%.0f tok/s  batch %.1f (max %d)  swaps %d/%d  recompute %d  same=%s\n"):format(
      p, n, r.completed, n, r.failed, r.token_ms.p50, r.token_ms.p99, r.tokens_per_s,
      r.batch.mean, r.batch.max, r.swaps_out, r.swaps_in, r.recomputes, tostring(r.identical)))
    -- the SLO's reference: one agent alone, its P99, under the best policy
    if n == 1 and r.token_ms.n > 0 and (not baseline or r.token_ms.p99 < baseline) then
      baseline = r.token_ms.p99
    end
    if n == 1 and r.ttft_ms.n > 0 and (not baseline_ttft or r.ttft_ms.p99 < baseline_ttft) then
      baseline_ttft = r.ttft_ms.p99
    end
    if o.out ~= "-" then finish() end
  end
end
finish()
