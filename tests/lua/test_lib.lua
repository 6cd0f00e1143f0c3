-- test_lib.lua - lua/lib: stats, rng, trace, results.
local stats = require "stats"
local rng = require "rng"
local trace = require "trace"
local results = require "results"
local djinn = require "djinn"

local function near(a, b, eps, what)
  assert(math.abs(a - b) <= (eps or 1e-9), ("%s: %.17g vs %.17g"):format(what or "near", a, b))
end

-- stats ---------------------------------------------------------------
near(stats.mean{ 1, 2, 3, 4 }, 2.5)
assert(stats.mean{} == nil)
near(stats.stdev{ 2, 4, 4, 4, 5, 5, 7, 9 }, math.sqrt(32 / 7))
near(stats.stdev({ 2, 4, 4, 4, 5, 5, 7, 9 }, true), 2)
-- numpy.percentile(linear): [1,2,3,4] -> p50 2.5, p90 3.7, p0 1, p100 4
near(stats.percentile({ 4, 1, 3, 2 }, 50), 2.5)
near(stats.percentile({ 4, 1, 3, 2 }, 90), 3.7)
near(stats.percentile({ 4, 1, 3, 2 }, 0), 1)
near(stats.percentile({ 4, 1, 3, 2 }, 100), 4)
near(stats.percentile({ 7 }, 33), 7)
local ps = stats.percentiles({ 10, 20, 30, 40, 50 }, { 25, 75 })
near(ps[25], 20); near(ps[75], 40)
near(stats.median{ 5, 1, 3 }, 3)
local c = stats.cdf{ 3, 1, 2, 2 }
assert(#c == 3 and c[1][1] == 1 and c[1][2] == 0.25 and c[2][1] == 2 and c[2][2] == 0.75
       and c[3][2] == 1, "cdf of distinct values")
c = stats.cdf({ 1, 2, 3, 4, 5 }, 3)
assert(#c == 3 and c[1][1] == 1 and c[2][1] == 3 and c[3][1] == 5 and c[2][2] == 0.5, "cdf points")
local sm = stats.summary{ 1, 2, 3, 4, 5 }
assert(sm.n == 5 and sm.min == 1 and sm.max == 5 and sm.p50 == 3)
assert(not pcall(stats.mean, { 1, "x" }), "non-numbers rejected")
assert(not pcall(stats.percentile, { 1 }, 101), "p out of range rejected")

-- rng -----------------------------------------------------------------
local a, b = rng.new(42), rng.new(42)
for _ = 1, 100 do assert(a:next() == b:next(), "same seed, same stream") end
assert(rng.new(1):next() ~= rng.new(2):next(), "different seeds differ")
local r = rng.new(7)
local us, ns, es = {}, {}, {}
for i = 1, 20000 do
  local u = r:uniform()
  assert(u >= 0 and u < 1)
  us[i], ns[i], es[i] = u, r:normal(3, 2), r:exponential(4)
end
near(stats.mean(us), 0.5, 0.01, "uniform mean")
near(stats.mean(ns), 3, 0.05, "normal mean")
near(stats.stdev(ns), 2, 0.05, "normal stdev")
near(stats.mean(es), 0.25, 0.01, "exponential mean")
local counts = { a = 0, b = 0 }
for _ = 1, 10000 do local v = r:choice({ "a", "b" }, { 1, 3 }); counts[v] = counts[v] + 1 end
near(counts.b / 10000, 0.75, 0.02, "weighted choice")
for _ = 1, 1000 do local k = r:int(-2, 2); assert(k >= -2 and k <= 2 and math.type(k) == "integer") end
local sh = r:shuffle{ 1, 2, 3, 4, 5 }
table.sort(sh)
assert(table.concat(sh, ",") == "1,2,3,4,5", "shuffle is a permutation")
assert(not pcall(rng.new, 1.5), "float seed rejected")

-- trace ---------------------------------------------------------------
local arr = trace.poisson(rng.new(3), 10, { n = 5000 })
assert(#arr == 5000)
for i = 2, #arr do assert(arr[i] > arr[i - 1], "arrivals ascend") end
near(#arr / arr[#arr], 10, 0.5, "poisson rate")
local within = trace.poisson(rng.new(3), 10, { duration = 2 })
assert(within[#within] < 2)
local z = trace.zipf(3, 1)
near(z.probs[1], 1 / (1 + 1 / 2 + 1 / 3)); near(z.probs[1] + z.probs[2] + z.probs[3], 1)
local zc, zr = { 0, 0, 0 }, rng.new(5)
for _ = 1, 30000 do local k = z:sample(zr); zc[k] = zc[k] + 1 end
near(zc[1] / 30000, z.probs[1], 0.015, "zipf rank 1")
near(zc[3] / 30000, z.probs[3], 0.015, "zipf rank 3")
local t1 = trace.generate{ seed = 9, n = 8, models = { "a", "b" } }
local t2 = trace.generate{ seed = 9, n = 8, models = { "a", "b" } }
assert(djinn.json.encode(t1) == djinn.json.encode(t2), "a seed names a trace")
assert(t1.schema == "djinn.trace/1" and #t1.sessions == 8)
for _, s in ipairs(t1.sessions) do
  assert(#s.steps >= 2 and #s.steps <= 6 and s.steps[#s.steps].tool_s == 0)
  assert(s.model == "a" or s.model == "b")
end
local mm = trace.generate{ kind = "multimodel", seed = 1, n = 4 }
assert(#mm.requests == 4 and mm.requests[1].output_tokens >= 1)
assert(not pcall(trace.generate, { sede = 1 }), "unknown option rejected")

-- results -------------------------------------------------------------
local tmp = os.tmpname()
assert(results.write_json(tmp, { a = { 1, 2 }, b = "x" }))
local back = assert(results.read_json(tmp))
assert(back.a[2] == 2 and back.b == "x")
assert(results.csv_line{ 1, "a,b", 'q"q', 2.5 } == '1,"a,b","q""q",2.5')
local csv = results.csv({ { x = 1, y = "z" }, { x = 2 } }, { "x", "y" })
assert(csv == "x,y\n1,z\n2,\n", csv)
assert(results.write_csv(tmp, { { 1, 2 } }, { "a", "b" }))
local f = io.open(tmp); assert(f:read("a") == "a,b\n1,2\n"); f:close()
os.remove(tmp)
local ok, err = results.write_json("/nonexistent/dir/x.json", {})
assert(ok == nil and err:find("No such file"), "write failure is nil, msg")

print("test_lib: ok")
