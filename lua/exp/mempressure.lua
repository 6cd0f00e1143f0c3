-- mempressure.lua - serving past the memory a batch needs: B requests
-- handed to the scheduler at once, more than fit the device's KV memory.
-- Under policy "none" a request is admitted while the KV caches of all
-- admitted ones fit the KV limit, and waits (holding no pages) otherwise;
-- an admitted request is never failed for memory.  The peer is transformers'
-- generate at the same batch (bench/hf_mempressure.py), which runs all B
-- rows at once or fails with out-of-memory.
--
--   djinn lua/exp/mempressure.lua MODEL [--device auto] [--batches 64,128]
--         [--prompt 512] [--new 64] [--kv-limit SIZE] [--kv-dtype f16] [--budget 2048]
--         [--max-batch 256] [--policy none] [--check 1] [--out FILE.json]
--
-- Per batch: completed and failed requests, wall time, tokens/s (generated
-- tokens over the wall time, prefill included), the most sessions in one
-- step, peak KV bytes and peak device memory (all of it, weights included).
-- Nothing aborts the run: a request that cannot be created, started or
-- scheduled, or that stops in a step, is counted failed with its reason
-- ("failures": the first few, "failure_reasons": a count a reason), and the
-- run goes on (a batch that raises is reported with its error).
-- Schema "djinn.mempressure/1" (docs/tenants.md).
local djinn = require "djinn"
local rng_mod = require "rng"
local results = require "results"
local opts = require "opts"

local o, model_path = opts.parse("mempressure", arg, {
  device = "auto", batches = { 64, 128 }, prompt = 512, new = 64, kv_limit = nil,
  kv_dtype = "f16", budget = 2048, max_batch = 256, policy = "none", check = 1, out = "-",
}, {
  strings = { "device", "out", "kv_limit", "kv_dtype", "policy" },
  lists = { batches = "int" },
})

local m = assert(djinn.load(model_path, { device = o.device, kv_limit = o.kv_limit,
  kv_dtype = o.kv_dtype }))
local info = m:info()
local now = function() return djinn.clock() / 1e9 end

local function ids_of(k)
  local r = rng_mod.new(7919 * k + 1)
  local ids = { 1 }
  for x = 2, o.prompt do ids[x] = r:int(3, info.vocab - 1) end
  return ids
end

local function alone(k)
  local s = assert(m:session { ctx = o.prompt + o.new + 1 })
  local ok, t = pcall(function()
    s:start(ids_of(k), { n = o.new, eos = false })
    repeat local why = s:continue() until why == "done"
    return s:tokens()
  end)
  s:close()
  return ok and t or nil
end

-- a reason without its traceback or the script's position
local function reason(e)
  e = tostring(e):gsub("\nstack traceback:.*", "")
  return (e:gsub("^[^:]*%.lua:%d+: ", ""))
end

local function run(B)
  local q = djinn.sched { policy = o.policy, budget = o.budget, max_batch = o.max_batch,
                          model = m }
  local t0 = now()
  local live, failed, completed, tokens = {}, 0, 0, 0
  local failures, reasons = {}, {}
  local function fail(k, why)
    why = reason(why)
    failed = failed + 1
    if #failures < 10 then failures[#failures + 1] = { request = k, reason = why } end
    reasons[why] = (reasons[why] or 0) + 1
  end
  for k = 1, B do
    local s, err = m:session { ctx = o.prompt + o.new + 1 }
    if s then
      local ok, e = pcall(s.start, s, ids_of(k), { n = o.new, eos = false })
      if ok then ok, e = q:add(s, { tenant = "eval", class = "batch" }) end
      if ok then live[#live + 1] = { k = k, s = s } else s:close(); err = e end
    end
    if err then fail(k, err) end
  end
  local first, why_not = {}, nil
  while #live > 0 do
    local st, e = q:step()
    if not st then why_not = e; break end
    local j = 1
    while j <= #live do
      local g = live[j]
      local ph = q:phase(g.s)
      if ph == "done" or ph == "stopped" then
        if ph == "done" then
          completed = completed + 1
          local t, np = g.s:tokens()
          tokens = tokens + (#t - np)
          if g.k <= o.check then first[g.k] = t end
        else
          local mi = q:member(g.s)
          fail(g.k, "stopped in a step: " .. tostring(mi and mi.error or "?"))
        end
        q:remove(g.s)
        g.s:close()
        table.remove(live, j)
      else
        j = j + 1
      end
    end
  end
  local wall = now() - t0
  -- none runnable yet some left: failed too
  for _, g in ipairs(live) do
    fail(g.k, "never ran: " .. tostring(q:phase(g.s)) .. " when nothing was runnable (" ..
      tostring(why_not) .. ")")
    g.s:close()
  end
  local st = q:stats()
  q:close()
  local identical = true
  for k, t in pairs(first) do
    local want = alone(k)
    if not want or #want ~= #t then identical = false end
    for x = 1, want and #want or 0 do if want[x] ~= t[x] then identical = false end end
  end
  identical = identical and next(first) ~= nil -- nothing checked is no match
  return { batch = B, completed = completed, failed = failed, error = failures[1] and
           failures[1].reason, failures = failures, failure_reasons = reasons, wall_s = wall,
           tokens = tokens, tokens_per_s = tokens / wall, steps = st.steps,
           max_batch = st.max_batch, swaps_out = st.swaps_out, swaps_in = st.swaps_in,
           kv_peak_bytes = st.kv_peak_bytes, device_peak_bytes = st.device_peak_bytes,
           identical = identical }
end

local out = { schema = "djinn.mempressure/1",
  model = { name = info.name, path = model_path, device = info.device, n_layer = info.n_layer,
            dim = info.dim, kv_bytes_per_token = info.kv_bytes_per_token },
  config = o, runs = {} }
for _, B in ipairs(o.batches) do
  local ok, r = pcall(run, B)
  if not ok then
    r = { batch = B, completed = 0, failed = B, error = reason(r), wall_s = 0, tokens = 0,
          tokens_per_s = 0, steps = 0, max_batch = 0, swaps_out = 0, swaps_in = 0,
          kv_peak_bytes = 0, device_peak_bytes = 0, identical = false }
    collectgarbage() -- its sessions go before the next batch
  end
  out.runs[#out.runs + 1] = r
  io.stderr:write(("mempressure: batch %d: %d done, %d failed, %.1f s, %.0f tok/s, " ..
    "peak %.2f GB (KV %.2f GB), same=%s\n"):format(B, r.completed, r.failed, r.wall_s,
    r.tokens_per_s, r.device_peak_bytes / 1e9, r.kv_peak_bytes / 1e9, tostring(r.identical)))
  if r.error then io.stderr:write(("mempressure: batch %d: first failure: %s\n"):format(B, r.error)) end
  if o.out ~= "-" then assert(results.write_json(o.out, out)) end
end
if o.out == "-" then assert(results.write_json(o.out, out)) end
