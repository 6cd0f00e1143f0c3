-- lua_overhead.lua - what driving the engine from Lua costs:
--   1. per call, s:tensor(site):stats() at a breakpoint (and s:stats(site),
--      which computes on the backend without a host copy), median ns;
--   2. a 256-token greedy generation driven from Lua (s:start + s:continue)
--      against the same through the C API (s:generate -> djn_generate, the
--      path of `djinn generate`), interleaved, medians and their ratio; and
--      the same generation stepped one token per Lua call (s:run_until).
--
--   djinn bench/lua_overhead.lua [MODEL] [--device D] [--n 256] [--repeats 11]
--         [--calls 20000] [--json FILE]
local djinn = require "djinn"
local stats = require "stats"
local results = require "results"

local o = { model = "models/stories260K.gguf", device = "auto", n = 256, repeats = 11,
            calls = 20000, prompt = "Once upon a time" }
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--device" then o.device = v
  elseif a == "--n" then o.n = math.tointeger(tonumber(v))
  elseif a == "--repeats" then o.repeats = math.tointeger(tonumber(v))
  elseif a == "--calls" then o.calls = math.tointeger(tonumber(v))
  elseif a == "--json" then o.json = v
  elseif a:sub(1, 1) ~= "-" then o.model = a; i = i - 1
  else error("unknown option " .. a) end
  if a:sub(1, 1) == "-" and not v then error("option " .. a .. " needs a value") end
  i = i + 2
end
assert(o.n and o.repeats and o.calls, "numeric options must be integers")

local m = assert(djinn.load(o.model, { device = o.device }))
local info = m:info()
local s = m:session()
local site = ("L%d.resid_post"):format(info.n_layer // 2)

-- 1. per-call costs at a breakpoint
s:break_at(site)
s:start(o.prompt, { n = o.n })
repeat assert(s:continue() == "breakpoint") until s:cursor().n_rows == 1 -- a decode step
local clock = djinn.clock
local function per_call(fn)
  local ns = {}
  for k = 1, 200 do fn() end -- warm up
  for k = 1, o.calls do
    local t0 = clock()
    fn()
    ns[k] = clock() - t0
  end
  return stats.median(ns)
end
local clock_ns = per_call(function() end)
local tensor_stats_ns = per_call(function() return s:tensor(site):stats() end)
local tensor_ns = per_call(function() return s:tensor(site) end)
local backend_stats_ns = per_call(function() return s:stats(site) end)
s:delete()
assert(s:finish() == "step")
local logits_ns = per_call(function() return s:tensor("logits"):stats() end)
s:kill()

-- 2. whole generations
local lua_ns, c_ns, step_ns = {}, {}, {}
local function via_lua()
  local t0 = clock()
  s:start(o.prompt, { n = o.n })
  assert(s:continue() == "done")
  return clock() - t0, s:text()
end
local function via_c()
  local t0 = clock()
  local text = s:generate(o.prompt, { n = o.n })
  return clock() - t0, text
end
local function via_steps()
  local t0 = clock()
  s:start(o.prompt, { n = o.n })
  local _, pos = s:tokens()
  while s:state() ~= "done" do pos = pos + 1; s:run_until(pos) end
  return clock() - t0, s:text()
end
-- rotate the order, so that warm caches and clock drift favour no path
local order = { { via_lua, lua_ns }, { via_c, c_ns }, { via_steps, step_ns } }
local ref_text
for r = 1, o.repeats do
  for k = 0, 2 do
    local fn, out = table.unpack(order[(r + k) % 3 + 1])
    local ns, text = fn()
    ref_text = ref_text or text
    assert(text == ref_text, "the three paths agree")
    out[#out + 1] = ns
  end
end
local _, n_prompt = s:tokens()
local n_gen = #s:tokens() - n_prompt

local res = {
  schema = "djinn.bench.lua_overhead/1",
  model = info.name, device = info.device, site = site, n = o.n, generated = n_gen,
  repeats = o.repeats, calls = o.calls,
  per_call_ns = { clock = clock_ns, tensor = tensor_ns, tensor_stats = tensor_stats_ns,
                  backend_stats = backend_stats_ns, logits_tensor_stats = logits_ns },
  generate_ns = { lua = stats.median(lua_ns), c = stats.median(c_ns),
                  lua_per_token_calls = stats.median(step_ns) },
}
res.generate_ns.ratio = res.generate_ns.lua / res.generate_ns.c
res.generate_ns.ratio_per_token_calls = res.generate_ns.lua_per_token_calls / res.generate_ns.c

print(("lua_overhead: %s on %s, breakpoint at %s (1 x %d)"):format(info.name, info.device, site, info.dim))
print(("  per call (median of %d): clock pair %.0f ns, s:tensor %.0f ns, s:tensor():stats() %.0f ns, " ..
       "s:stats() %.0f ns, logits (1 x %d) tensor():stats() %.0f ns"):format(o.calls, clock_ns, tensor_ns,
       tensor_stats_ns, backend_stats_ns, info.vocab, logits_ns))
print(("  %d-token greedy generation (median of %d): Lua start+continue %.3f ms, C djn_generate %.3f ms, " ..
       "ratio %.4f"):format(n_gen, o.repeats, res.generate_ns.lua / 1e6, res.generate_ns.c / 1e6,
       res.generate_ns.ratio))
print(("  one Lua call per token (s:run_until): %.3f ms, ratio %.4f"):format(
       res.generate_ns.lua_per_token_calls / 1e6, res.generate_ns.ratio_per_token_calls))
if o.json then assert(results.write_json(o.json, res)) end
