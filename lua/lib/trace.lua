-- trace.lua - synthetic workloads for the scheduling protocols: Poisson
-- arrivals, Zipf model popularity, and agents that alternate thinking
-- (generating tokens) with tool calls (waiting on I/O).  Everything draws
-- from a seeded rng.lua generator, so a seed names a trace.
local rng_mod = require "rng"

local M = {}
M.SCHEMA = "djinn.trace/1"

local function need(cond, msg)
  if not cond then error("trace." .. msg, 3) end
end

-- Arrival times (seconds, ascending) of a Poisson process of `rate` per
-- second: until `duration`, or `n` of them.
function M.poisson(rng, rate, opts)
  opts = opts or {}
  need(type(rate) == "number" and rate > 0, "poisson: rate must be positive")
  need(opts.duration or opts.n, "poisson: give duration or n")
  local t, out = opts.start or 0, {}
  while true do
    t = t + rng:exponential(rate)
    if opts.duration and t >= (opts.start or 0) + opts.duration then break end
    out[#out + 1] = t
    if opts.n and #out >= opts.n then break end
  end
  return out
end

-- A Zipf(s) sampler over ranks 1..n: P(k) proportional to 1 / k^s.
function M.zipf(n, s)
  need(math.type(n) == "integer" and n >= 1, "zipf: n must be a positive integer")
  need(type(s) == "number" and s >= 0, "zipf: s must be >= 0")
  local cdf, total = {}, 0
  for k = 1, n do total = total + 1 / k ^ s; cdf[k] = total end
  local probs = {}
  for k = 1, n do cdf[k] = cdf[k] / total; probs[k] = (k == 1 and cdf[1]) or cdf[k] - cdf[k - 1] end
  return {
    probs = probs,
    sample = function(_, rng)
      local u = rng:uniform()
      local lo, hi = 1, n
      while lo < hi do -- first k with cdf[k] > u
        local mid = (lo + hi) // 2
        if cdf[mid] > u then hi = mid else lo = mid + 1 end
      end
      return lo
    end,
  }
end

-- A positive duration with the given mean: "exponential", "lognormal"
-- (sigma 1 unless given) or "fixed".
function M.duration(rng, mean, dist, sigma)
  dist = dist or "exponential"
  if dist == "fixed" then return mean end
  if dist == "exponential" then return rng:exponential(1 / mean) end
  if dist == "lognormal" then
    sigma = sigma or 1
    return math.exp(rng:normal(math.log(mean) - sigma * sigma / 2, sigma))
  end
  error("trace.duration: unknown distribution '" .. tostring(dist) .. "'", 2)
end

local function count(rng, mean)
  -- at least 1, geometric-ish around the mean
  return math.max(1, math.floor(M.duration(rng, mean, "exponential") + 0.5))
end

-- One agent: a prompt, then steps of {think_tokens, tool_s}; the last step
-- has no tool call (the agent answers).
function M.agent(rng, o)
  local steps = {}
  local n_steps = math.max(1, math.floor(rng:uniform(o.steps_min, o.steps_max + 1)))
  for i = 1, n_steps do
    steps[i] = {
      think_tokens = count(rng, o.think_tokens),
      tool_s = i < n_steps and M.duration(rng, o.tool_s, o.tool_dist) or 0,
      tool_tokens = i < n_steps and count(rng, o.tool_tokens) or 0,
    }
  end
  return { prompt_tokens = count(rng, o.prompt_tokens), steps = steps }
end

local defaults = {
  kind = "agent", seed = 1, n = 16, rate = 2.0, models = { "models/stories260K.gguf" },
  zipf_s = 1.0, steps_min = 2, steps_max = 6, think_tokens = 48, tool_s = 0.5,
  tool_dist = "lognormal", tool_tokens = 24, prompt_tokens = 32, output_tokens = 64,
}

-- A whole trace, as a table ready for json.encode:
--   kind = "agent":      sessions = {{id, arrival_s, model, prompt_tokens, steps}}
--   kind = "multimodel": requests = {{id, arrival_s, model, prompt_tokens, output_tokens}}
function M.generate(opts)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do
    need(defaults[k] ~= nil, "generate: unknown option '" .. tostring(k) .. "'")
    o[k] = v
  end
  need(o.kind == "agent" or o.kind == "multimodel", "generate: kind is agent or multimodel")
  need(#o.models >= 1, "generate: at least one model")
  need(o.steps_min >= 1 and o.steps_max >= o.steps_min, "generate: 1 <= steps_min <= steps_max")
  local rng = rng_mod.new(o.seed)
  local z = M.zipf(#o.models, o.zipf_s)
  local arrivals = M.poisson(rng, o.rate, { n = o.n })
  local items = {}
  for i, t in ipairs(arrivals) do
    local model = o.models[z:sample(rng)]
    if o.kind == "agent" then
      local a = M.agent(rng, o)
      items[i] = { id = i, arrival_s = t, model = model,
                   prompt_tokens = a.prompt_tokens, steps = a.steps }
    else
      items[i] = { id = i, arrival_s = t, model = model,
                   prompt_tokens = count(rng, o.prompt_tokens),
                   output_tokens = count(rng, o.output_tokens) }
    end
  end
  local params = {}
  for k, v in pairs(o) do params[k] = v end
  local trace = { schema = M.SCHEMA, kind = o.kind, seed = o.seed, params = params,
                  models = o.models, model_probs = z.probs }
  trace[o.kind == "agent" and "sessions" or "requests"] = items
  return trace
end

return M
