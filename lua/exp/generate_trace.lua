-- generate_trace.lua - write a synthetic agent or multi-model trace (JSON,
-- schema "djinn.trace/1") from lua/lib/trace.lua; a seed names a trace.
--
--   djinn lua/exp/generate_trace.lua [--kind agent|multimodel] [--seed S] [--n N]
--         [--rate PER_S] [--models a.gguf,b.gguf] [--zipf-s S] [--steps-min K]
--         [--steps-max K] [--think-tokens T] [--tool-s SEC] [--tool-dist exponential|lognormal|fixed]
--         [--tool-tokens T] [--prompt-tokens T] [--output-tokens T] [--out FILE.json]
local trace = require "trace"
local results = require "results"

local opts, out = {}, "-"
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a:sub(1, 2) ~= "--" or not v then
    io.stderr:write("generate_trace: expected --option VALUE, got '", a, "'\n")
    os.exit(2)
  end
  local key = a:sub(3):gsub("-", "_")
  if key == "out" then out = v
  elseif key == "models" then
    opts.models = {}
    for m in v:gmatch("[^,]+") do opts.models[#opts.models + 1] = m end
  elseif key == "kind" or key == "tool_dist" then opts[key] = v
  else
    local n = tonumber(v)
    if not n then
      io.stderr:write("generate_trace: --", a:sub(3), " needs a number, got '", v, "'\n")
      os.exit(2)
    end
    opts[key] = math.tointeger(n) or n
  end
  i = i + 2
end

local ok, t = pcall(trace.generate, opts)
if not ok then
  io.stderr:write("generate_trace: ", tostring(t), "\n")
  os.exit(2)
end
local wok, err = results.write_json(out, t)
if not wok then
  io.stderr:write("generate_trace: ", err, "\n")
  os.exit(1)
end
if out ~= "-" then
  local items = t.sessions or t.requests
  print(("generate_trace: %s trace, %d %s over %.1f s, seed %d -> %s"):format(t.kind, #items,
    t.sessions and "agents" or "requests", items[#items] and items[#items].arrival_s or 0, t.seed, out))
end
