-- whitebox.lua - the white-box protocol: does debugging change the program,
-- what do checkpoints cost, what does a steering vector do, and what do armed
-- breakpoints cost when they never fire.  One JSON result (schema
-- "djinn.whitebox/1", documented in docs/experiments.md).
--
--   djinn lua/exp/whitebox.lua MODEL [--layers 1,3] [--prompts N] [--n TOKENS]
--         [--out FILE.json] [--device auto|cpu|cuda] [--seed S] [--repeats R]
--         [--steer-scale X]
local djinn = require "djinn"
local rng_mod = require "rng"
local stats = require "stats"
local results = require "results"

local USAGE = "usage: djinn lua/exp/whitebox.lua MODEL [--layers 1,3] [--prompts N] [--n TOKENS]\n" ..
              "       [--out FILE.json] [--device auto|cpu|cuda] [--seed S] [--repeats R] [--steer-scale X]"

local PROMPTS = {
  "Once upon a time", "The little dog", "One day, a girl named Lily", "Tom and his friend",
  "The sun was shining", "In a small town", "The cat wanted to", "Mom said",
}

local function die(msg)
  io.stderr:write("whitebox: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local function parse_args(argv)
  local o = { layers = nil, prompts = 4, n = 64, out = "-", device = "auto", seed = 1,
              repeats = 5, steer_scale = 4.0 }
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
  while i <= #argv do
    local a = argv[i]
    if a == "--layers" then
      o.layers = {}
      for x in value(a):gmatch("[^,]+") do
        o.layers[#o.layers + 1] = math.tointeger(tonumber(x)) or die("bad layer '" .. x .. "'")
      end
    elseif a == "--prompts" then o.prompts = int(a, 1)
    elseif a == "--n" then o.n = int(a, 1)
    elseif a == "--out" then o.out = value(a)
    elseif a == "--device" then o.device = value(a)
    elseif a == "--seed" then o.seed = int(a, 0)
    elseif a == "--repeats" then o.repeats = int(a, 1)
    elseif a == "--steer-scale" then o.steer_scale = tonumber(value(a)) or die("bad --steer-scale")
    elseif a:sub(1, 1) == "-" then die("unknown option '" .. a .. "'")
    elseif not o.model then o.model = a
    else die("extra argument '" .. a .. "'") end
    i = i + 1
  end
  if not o.model then die("no model") end
  return o
end

local o = parse_args(arg)
local m = assert(djinn.load(o.model, { device = o.device }))
local info = m:info()
o.layers = o.layers or { 1, info.n_layer - 2 }
for _, l in ipairs(o.layers) do
  if l < 0 or l >= info.n_layer then die(("layer %d outside 0..%d"):format(l, info.n_layer - 1)) end
end
local function site(l) return ("L%d.resid_post"):format(l) end

-- fraction of generated positions whose tokens differ (a missing one differs)
local function frac_diff(a, b, n_prompt)
  local n = math.max(#a, #b) - n_prompt
  if n <= 0 then return 0 end
  local d = 0
  for i = n_prompt + 1, n_prompt + n do if a[i] ~= b[i] then d = d + 1 end end
  return d / n
end

local function same(a, b) return #a == #b and frac_diff(a, b, 0) == 0 end

-- Run to the end; with `inspect`, look at every stop as a user would.
local function run_to_done(s, inspect)
  local stops = 0
  while true do
    local why = s:continue()
    if why == "done" then return stops end
    assert(why == "breakpoint", "unexpected stop: " .. why)
    stops = stops + 1
    if inspect then inspect(s) end
  end
end

local function timed_run(s, prompt)
  local t0 = djinn.clock()
  s:start(prompt, { n = o.n })
  local stops = run_to_done(s)
  return djinn.clock() - t0, stops
end

local function logits_after_prompt(s, prompt)
  s:start(prompt, { n = o.n })
  repeat
    local why = s:finish()
    assert(why == "step", "unexpected stop: " .. why)
  until s:cursor().site == "logits"
  return s:tensor("logits")
end

local function mean_abs(t)
  local s, f = 0, t:flat()
  for i = 1, #f do s = s + math.abs(f[i]) end
  return s / #f
end

local per_prompt = {}
local s = assert(m:session{ seed = o.seed })
for p = 1, o.prompts do
  local prompt = PROMPTS[(p - 1) % #PROMPTS + 1]
  local r = {}

  -- 1. reference, and the same run stopping at every armed layer
  timed_run(s, prompt)
  local ref, n_prompt = s:tokens()
  r.prompt, r.n_prompt, r.n_generated = prompt, n_prompt, #ref - n_prompt
  for _, l in ipairs(o.layers) do s:break_at(site(l)) end
  local norms = {}
  s:start(prompt, { n = o.n })
  r.bp_stops = run_to_done(s, function(ss)
    local c = ss:cursor()
    local t = ss:tensor()
    if c.layer == o.layers[1] then norms[#norms + 1] = t:norm() / math.sqrt(t.rows) end
  end)
  local with_bp = s:tokens()
  r.token_accuracy = 1 - frac_diff(with_bp, ref, n_prompt)
  s:delete()

  -- 2. checkpoint halfway through the generation, run on, restore, run on (twice)
  s:start(prompt, { n = o.n })
  local mid = n_prompt + (#ref - n_prompt) // 2
  s:run_until(mid)
  local ck = s:checkpoint()
  run_to_done(s)
  local a = s:tokens()
  s:restore(ck); run_to_done(s)
  local b = s:tokens()
  s:restore(ck); run_to_done(s)
  local c = s:tokens()
  r.restore_equal = same(a, ref) and same(b, ref) and same(c, ref)
  s:drop_checkpoint(ck)
  local ck_ns, rs_ns = {}, {}
  s:start(prompt, { n = o.n })
  s:run_until(mid)
  for i = 1, o.repeats do
    local t0 = djinn.clock()
    local id = s:checkpoint()
    local t1 = djinn.clock()
    s:restore(id)
    local t2 = djinn.clock()
    ck_ns[i], rs_ns[i] = t1 - t0, t2 - t1
    s:drop_checkpoint(id)
  end
  r.checkpoint_ns, r.restore_ns = stats.median(ck_ns), stats.median(rs_ns)
  r.checkpoint_bytes = s:memory().page_bytes * s:memory().data_pages
  s:kill()

  -- 3. steering: a seeded random direction scaled to steer_scale x the mean
  --    row norm at the first layer, added at every position
  local g = rng_mod.new(o.seed * 1000 + p)
  local v = {}
  for i = 1, info.dim do v[i] = g:normal() end
  local dir = djinn.tensor(v)
  dir = dir / dir:norm()
  local norm = #norms > 0 and stats.mean(norms) or 1
  local vec = dir * (o.steer_scale * norm)
  local steer_site = site(o.layers[1])
  local l0 = logits_after_prompt(s, prompt)
  local id = s:steer(steer_site, "add", djinn.tensor(1, info.dim), { persist = true })
  timed_run(s, prompt)
  local zero_changed = frac_diff(s:tokens(), ref, n_prompt)
  s:unsteer(id)
  id = s:steer(steer_site, "add", vec, { persist = true })
  local l1 = logits_after_prompt(s, prompt)
  timed_run(s, prompt)
  local steered = s:tokens()
  s:unsteer(id)
  r.steer = {
    site = steer_site, vector_norm = vec:norm(), resid_norm = norm,
    tokens_changed_frac = frac_diff(steered, ref, n_prompt),
    mean_abs_logit_change = mean_abs(l1 - l0),
    argmax_changed = l1:argmax() ~= l0:argmax(),
    zero_tokens_changed_frac = zero_changed,
  }

  -- 4. overhead of breakpoints armed but never hit, interleaved with plain runs
  local modes = { none = {}, armed = {}, armed_stats = {} }
  local conds = { armed = "pos < 0", armed_stats = "norm < 0" }
  for _ = 1, o.repeats do
    for _, mode in ipairs{ "none", "armed", "armed_stats" } do
      if conds[mode] then
        for _, l in ipairs(o.layers) do s:break_at(site(l), { cond = conds[mode] }) end
      end
      local ns, stops = timed_run(s, prompt)
      assert(stops == 0 and same(s:tokens(), ref), "armed breakpoints changed the run")
      modes[mode][#modes[mode] + 1] = ns
      s:delete()
    end
  end
  local none = stats.median(modes.none)
  r.overhead = {
    none_ns = none, armed_ns = stats.median(modes.armed),
    armed_stats_ns = stats.median(modes.armed_stats),
  }
  r.overhead.ratio = r.overhead.armed_ns / none
  r.overhead.ratio_stats = r.overhead.armed_stats_ns / none
  r.overhead.ns_per_token = none / math.max(1, r.n_generated)
  per_prompt[p] = r
end

local function col(key, sub)
  local out = {}
  for i, r in ipairs(per_prompt) do out[i] = sub and r[key][sub] or r[key] end
  return out
end
local restore_all = true
for _, r in ipairs(per_prompt) do restore_all = restore_all and r.restore_equal end

local result = {
  schema = "djinn.whitebox/1",
  model = { name = info.name, path = info.path, arch = info.arch, n_layer = info.n_layer,
            dim = info.dim, vocab = info.vocab, device = info.device },
  config = { layers = o.layers, prompts = o.prompts, n = o.n, seed = o.seed,
             repeats = o.repeats, steer_scale = o.steer_scale },
  env = { djinn = djinn.version, lua = _VERSION, time = os.date("!%Y-%m-%dT%H:%M:%SZ") },
  per_prompt = per_prompt,
  summary = {
    token_accuracy = stats.mean(col("token_accuracy")),
    token_accuracy_min = math.min(table.unpack(col("token_accuracy"))),
    restore_equal_all = restore_all,
    checkpoint_ns = stats.summary(col("checkpoint_ns")),
    restore_ns = stats.summary(col("restore_ns")),
    steer_tokens_changed_frac = stats.mean(col("steer", "tokens_changed_frac")),
    steer_mean_abs_logit_change = stats.mean(col("steer", "mean_abs_logit_change")),
    steer_zero_tokens_changed_frac = stats.mean(col("steer", "zero_tokens_changed_frac")),
    overhead_ratio = stats.median(col("overhead", "ratio")),
    overhead_ratio_stats = stats.median(col("overhead", "ratio_stats")),
  },
}
local ok, err = results.write_json(o.out, result)
if not ok then io.stderr:write("whitebox: ", err, "\n"); os.exit(1) end
if o.out ~= "-" then
  local sm = result.summary
  print(("whitebox: %d prompts, accuracy %.4f, restore %s, ckpt %.0f us, restore %.0f us, " ..
         "steer changed %.2f, armed overhead x%.3f (with stats x%.3f) -> %s"):format(
    o.prompts, sm.token_accuracy, sm.restore_equal_all and "equal" or "DIFFERS",
    sm.checkpoint_ns.p50 / 1e3, sm.restore_ns.p50 / 1e3, sm.steer_tokens_changed_frac,
    sm.overhead_ratio, sm.overhead_ratio_stats, o.out))
end
