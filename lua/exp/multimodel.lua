-- multimodel.lua - the switching protocol of issue 12: several models in one
-- shared VRAM pool under a budget, a seeded Zipf trace of sequential requests
-- over them, each request a switch (the model's missing layers brought in,
-- timed apart) and a greedy generation in a session of that model.  Every
-- request's tokens are checked against the same model run alone.  One JSON
-- result (schema "djinn.multimodel/1", documented in docs/experiments.md).
--
--   djinn lua/exp/multimodel.lua MODEL MODEL... --vram-budget SIZE
--         [--requests R] [--n TOKENS] [--seed S] [--zipf-s S]
--         [--device auto|cpu|cuda] [--out FILE.json] [--refs FILE.json]
--         [--h2d-gbps X] [--label NAME]
local djinn = require "djinn"
local rng_mod = require "rng"
local stats = require "stats"
local results = require "results"
local trace_mod = require "trace"

local SCHEMA = "djinn.multimodel/1"
local USAGE = "usage: djinn lua/exp/multimodel.lua MODEL MODEL... --vram-budget SIZE [--requests R]\n" ..
              "       [--n TOKENS] [--seed S] [--zipf-s S] [--device auto|cpu|cuda] [--out FILE.json]\n" ..
              "       [--refs FILE.json] [--h2d-gbps X] [--label NAME]"

local PROMPTS = {
  "Once upon a time", "The little dog", "One day, a girl named Lily", "Tom and his friend",
  "The sun was shining", "In a small town", "The cat wanted to", "Mom said",
}

local function die(msg)
  io.stderr:write("multimodel: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local function fail(msg)
  io.stderr:write("multimodel: ", msg, "\n")
  os.exit(1)
end

local function parse_args(argv)
  local o = { models = {}, requests = 30, n = 32, seed = 1, zipf_s = 1.0, device = "auto",
              out = "-", label = "djinn" }
  local i = 1
  local function value(name)
    i = i + 1
    return argv[i] or die("option " .. name .. " needs a value")
  end
  local function int(name, lo)
    local v = math.tointeger(tonumber(value(name)))
    if not v or v < lo then die(("%s must be an integer >= %d"):format(name, lo)) end
    return v
  end
  local function num(name)
    local v = tonumber(value(name))
    if not v or v < 0 or v ~= v then die(name .. " must be a number >= 0") end
    return v
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--vram-budget" then o.budget = value(a)
    elseif a == "--requests" then o.requests = int(a, 1)
    elseif a == "--n" then o.n = int(a, 1)
    elseif a == "--seed" then o.seed = int(a, 0)
    elseif a == "--zipf-s" then o.zipf_s = num(a)
    elseif a == "--device" then o.device = value(a)
    elseif a == "--out" then o.out = value(a)
    elseif a == "--refs" then o.refs = value(a)
    elseif a == "--h2d-gbps" then o.h2d_gbps = num(a)
    elseif a == "--label" then o.label = value(a)
    elseif a:sub(1, 1) == "-" then die("unknown option '" .. a .. "'")
    else o.models[#o.models + 1] = a end
    i = i + 1
  end
  if #o.models < 1 then die("no model") end
  if not o.budget then die("--vram-budget is required (the shared pool's)") end
  return o
end

local o = parse_args(arg)

-- The trace: request i asks model ranks[i] (Zipf over the models in the
-- order given) with prompt prompts[i]; a seed names it.
local function make_trace()
  local g = rng_mod.new(o.seed)
  local z = trace_mod.zipf(#o.models, o.zipf_s)
  local reqs = {}
  for i = 1, o.requests do
    local m = z:sample(g)
    reqs[i] = { id = i, model = m, prompt = g:int(1, #PROMPTS) }
  end
  return reqs, z.probs
end

local trace, model_probs = make_trace()

-- Run a started session to the end; the generated ids (the prompt's apart).
local function generate(s, prompt_ids)
  s:start(prompt_ids, { n = o.n, eos = false })
  local why = s:continue()
  if why ~= "done" then error("the run stopped: " .. why, 0) end
  local ids, n_prompt = s:tokens()
  return table.move(ids, n_prompt + 1, #ids, 1, {})
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function ms_since(t0) return (djinn.clock() - t0) / 1e6 end

-- the prompts' ids, and the context a session needs for them and n tokens
local function tokenize_all(m)
  local ids, longest = {}, 0
  for p, text in ipairs(PROMPTS) do
    ids[p] = m:tokenize(text)
    if #ids[p] == 0 then fail(("prompt %d tokenizes to nothing for %s"):format(p, m:info().name)) end
    longest = math.max(longest, #ids[p])
  end
  return ids, longest + o.n + 1
end

-- ---------------------------------------------------------------- alone
-- Each model by itself (no pool, no budget: everything resident where the
-- device holds it), once per prompt the trace gives it.  --refs takes them
-- from an earlier result of the same models, prompts and n instead.
local ref = {}            -- ref[model][prompt] = generated ids
for mi = 1, #o.models do ref[mi] = {} end
local function key_of(path, n) return path .. "\0" .. n end
if o.refs then
  local r, err = results.read_json(o.refs)
  if not r then fail(("--refs %s: %s"):format(o.refs, tostring(err))) end
  if r.schema ~= SCHEMA or type(r.reference) ~= "table" then
    fail(("--refs %s: not a %s result"):format(o.refs, SCHEMA))
  end
  local by_path = {}
  for mi, path in ipairs(o.models) do by_path[key_of(path, o.n)] = mi end
  for _, e in ipairs(r.reference) do
    local mi = by_path[key_of(tostring(e.path), math.tointeger(e.n) or -1)]
    if mi and PROMPTS[e.prompt] == e.prompt_text then ref[mi][e.prompt] = e.tokens end
  end
end

local models_info = {}
local ref_ms = {}
for mi, path in ipairs(o.models) do
  local need = {}
  for _, rq in ipairs(trace) do
    if rq.model == mi and not ref[mi][rq.prompt] then need[rq.prompt] = true end
  end
  if next(need) then
    local t0 = djinn.clock()
    local m, err = djinn.load(path, { device = o.device })
    if not m then fail(("alone: %s"):format(err)) end
    local ids, ctx = tokenize_all(m)
    local s, serr = m:session{ ctx = ctx, seed = o.seed }
    if not s then fail(("alone: %s: %s"):format(path, serr)) end
    for p = 1, #PROMPTS do
      if need[p] then
        local ok, toks = pcall(generate, s, ids[p])
        if not ok then fail(("alone: %s, prompt %d: %s"):format(path, p, toks)) end
        ref[mi][p] = toks
      end
    end
    s:kill()
    m:close()
    ref_ms[mi] = ms_since(t0)
  end
end

-- ----------------------------------------------------------------- pool
-- Every model joins the pool and keeps one session for the whole trace:
-- its fixed part (embedding, head, working set) and its host copies stay,
-- its layers come and go.
local pooled, sessions, prompt_ids = {}, {}, {}
for mi, path in ipairs(o.models) do
  local t0 = djinn.clock()
  local m, err = djinn.load(path, { device = o.device, vram_budget = o.budget, pool = true })
  if not m then fail(("pool: %s"):format(err)) end
  local ids, ctx = tokenize_all(m)
  local s, serr = m:session{ ctx = ctx, seed = o.seed }
  if not s then fail(("pool: %s: %s"):format(path, serr)) end
  pooled[mi], sessions[mi], prompt_ids[mi] = m, s, ids
  local info, r = m:info(), m:residency()
  models_info[mi] = {
    name = info.name, path = path, arch = info.arch, n_layer = info.n_layer, dim = info.dim,
    weight_bytes = info.weight_bytes, fixed_bytes = r.fixed_bytes, host_bytes = r.host_bytes,
    pinned = r.pinned, load_ms = ms_since(t0), alone_ms = ref_ms[mi] or djinn.json.null,
    zipf_p = model_probs[mi], device = info.device,
  }
end

local budget_bytes = pooled[1]:residency().pool_budget

-- ------------------------------------------------------------- the trace
local rows = {}
for i, rq in ipairs(trace) do
  local mi = rq.model
  local m, s = pooled[mi], sessions[mi]
  local before = m:residency()
  local row = {
    id = i, model = mi, model_name = models_info[mi].name, prompt = rq.prompt,
    layers_before = before.layers,
    kind = before.missing_bytes == 0 and "hit" or (before.resident == 0 and "miss" or "partial"),
    missing_bytes = before.missing_bytes,
  }
  local t0 = djinn.clock()
  local ok, err = pcall(function()
    local bytes, sw_ms, detail = m:prefetch()
    if not bytes then error(sw_ms, 0) end
    row.switch_bytes, row.switch_ms = bytes, sw_ms
    -- where the switch's time went: queuing (victims, ranges, the copy
    -- calls) and waiting for the copies; what is left is the call itself
    row.switch_copies, row.switch_evicted = detail.copies, detail.evicted
    row.switch_queue_ms, row.switch_wait_ms = detail.queue_ms, detail.wait_ms
    row.switch_gbps = sw_ms > 0 and bytes / (sw_ms * 1e6) or 0
    local mid = m:residency()
    local t1 = djinn.clock()
    row.tokens = generate(s, prompt_ids[mi][rq.prompt])
    row.run_ms = ms_since(t1)
    local after = m:residency()
    -- whatever the run still had to bring in (a model larger than the pool)
    row.run_bytes = (after.bytes_admitted - mid.bytes_admitted) +
                    (after.bytes_streamed - mid.bytes_streamed)
  end)
  row.total_ms = ms_since(t0)
  row.ok = ok
  if ok then
    row.n_generated = #row.tokens
    row.tokens_equal = same(row.tokens, ref[mi][rq.prompt])
  else
    row.error = tostring(err)
    row.tokens_equal = false
  end
  row.layers_after = m:residency().layers
  rows[i] = row
end

-- --------------------------------------------------------------- summary
local function col(pred, key)
  local out = {}
  for _, r in ipairs(rows) do if r.ok and pred(r) then out[#out + 1] = r[key] end end
  return out
end
local function all() return true end
local function summary_or_null(xs) return #xs > 0 and stats.summary(xs) or djinn.json.null end

local n_ok, n_equal, kinds = 0, 0, { hit = 0, partial = 0, miss = 0 }
local copy_bytes, copy_ms = 0, 0
local sw = { queue_ms = 0, wait_ms = 0, copies = 0, evicted = 0 }
for _, r in ipairs(rows) do
  kinds[r.kind] = kinds[r.kind] + 1
  if r.ok then
    n_ok = n_ok + 1
    if r.tokens_equal then n_equal = n_equal + 1 end
    if r.switch_bytes > 0 then
      copy_bytes, copy_ms = copy_bytes + r.switch_bytes, copy_ms + r.switch_ms
      sw.queue_ms, sw.wait_ms = sw.queue_ms + r.switch_queue_ms, sw.wait_ms + r.switch_wait_ms
      sw.copies, sw.evicted = sw.copies + r.switch_copies, sw.evicted + r.switch_evicted
    end
  end
end
local copied = function(r) return r.switch_bytes > 0 end
local total = col(all, "total_ms")
local miss_gbps = copy_ms > 0 and copy_bytes / (copy_ms * 1e6) or djinn.json.null
local pct = stats.percentiles(#total > 0 and total or { 0 }, { 50, 99 })

local reference = {}
for mi = 1, #o.models do
  for p = 1, #PROMPTS do
    if ref[mi][p] then
      reference[#reference + 1] = { model = mi, path = o.models[mi], prompt = p,
                                    prompt_text = PROMPTS[p], prompt_ids = prompt_ids[mi][p],
                                    n = o.n, tokens = ref[mi][p] }
    end
  end
end
local trace_out = {}
for i, rq in ipairs(trace) do
  trace_out[i] = { id = i, model = rq.model, path = o.models[rq.model], prompt = rq.prompt,
                   prompt_ids = prompt_ids[rq.model][rq.prompt] }
end

local result = {
  schema = SCHEMA,
  system = o.label,
  config = { models = o.models, budget = o.budget, budget_bytes = budget_bytes,
             requests = o.requests, n = o.n, seed = o.seed, zipf_s = o.zipf_s,
             device = models_info[1].device, prompts = PROMPTS },
  env = { djinn = djinn.version, lua = _VERSION, time = os.date("!%Y-%m-%dT%H:%M:%SZ") },
  models = models_info,
  trace = trace_out,
  reference = reference,
  requests = rows,
  summary = {
    completed = n_ok, failed = #rows - n_ok, tokens_identical = n_equal,
    tokens_identical_all = n_equal == #rows,
    total_ms = summary_or_null(total),
    p50_ms = #total > 0 and pct[50] or djinn.json.null,
    p99_ms = #total > 0 and pct[99] or djinn.json.null,
    mean_ms = stats.mean(total) or djinn.json.null,
    switch_ms = summary_or_null(col(all, "switch_ms")),
    switch_ms_copied = summary_or_null(col(copied, "switch_ms")),
    run_ms = summary_or_null(col(all, "run_ms")),
    hit = kinds.hit, partial = kinds.partial, miss = kinds.miss,
    copied_bytes = copy_bytes,
    copied_ms = copy_ms,
    -- the switches that copied, summed: their time split (host clock)
    switch_breakdown = {
      copies = sw.copies, evicted = sw.evicted, queue_ms = sw.queue_ms, wait_ms = sw.wait_ms,
      -- the copies alone at the pinned bandwidth (the bound), and the rest
      bound_ms = (o.h2d_gbps and o.h2d_gbps > 0) and copy_bytes / (o.h2d_gbps * 1e6)
                 or djinn.json.null,
      other_ms = (o.h2d_gbps and o.h2d_gbps > 0) and copy_ms - copy_bytes / (o.h2d_gbps * 1e6)
                 or djinn.json.null,
    },
    miss_gbps = miss_gbps,
    miss_gbps_p50 = #col(copied, "switch_gbps") > 0 and stats.median(col(copied, "switch_gbps"))
                    or djinn.json.null,
    h2d_gbps = o.h2d_gbps or djinn.json.null,
    miss_bw_frac = (o.h2d_gbps and o.h2d_gbps > 0 and copy_ms > 0)
                   and miss_gbps / o.h2d_gbps or djinn.json.null,
    cdf_ms = stats.cdf(total),
  },
}

for mi = #o.models, 1, -1 do sessions[mi]:kill(); pooled[mi]:close() end

local wok, werr = results.write_json(o.out, result)
if not wok then fail(tostring(werr)) end
local sm = result.summary
local function f(x, fmt) return x == djinn.json.null and "-" or fmt:format(x) end
io.stderr:write(("multimodel: %s budget %s: %d/%d completed, %d identical, " ..
                 "hit/partial/miss %d/%d/%d, P50 %s ms, P99 %s ms, mean %s ms, misses at %s GB/s%s\n"):format(
  o.label, o.budget, sm.completed, #rows, sm.tokens_identical, sm.hit, sm.partial, sm.miss,
  f(sm.p50_ms, "%.1f"), f(sm.p99_ms, "%.1f"), f(sm.mean_ms, "%.1f"), f(miss_gbps, "%.2f"),
  o.out ~= "-" and (" -> " .. o.out) or ""))
if sm.failed > 0 or not sm.tokens_identical_all then os.exit(1) end
