-- stats.lua - descriptive statistics for experiment results: mean, standard
-- deviation, percentiles (linear interpolation, numpy's default) and CDF points.
local M = {}

local function check(xs, fn)
  if type(xs) ~= "table" then
    error(("stats.%s: a table of numbers expected, got %s"):format(fn, type(xs)), 3)
  end
  for i = 1, #xs do
    if type(xs[i]) ~= "number" then
      error(("stats.%s: element %d is %s, not a number"):format(fn, i, type(xs[i])), 3)
    end
  end
end

function M.sum(xs)
  check(xs, "sum")
  local s = 0
  for i = 1, #xs do s = s + xs[i] end
  return s
end

-- Arithmetic mean; nil for an empty list.
function M.mean(xs)
  check(xs, "mean")
  if #xs == 0 then return nil end
  local s = 0
  for i = 1, #xs do s = s + xs[i] end
  return s / #xs
end

-- Variance: sample (n - 1) by default, population with pop = true.
function M.variance(xs, pop)
  check(xs, "variance")
  local n = #xs
  if n == 0 or (n == 1 and not pop) then return nil end
  local m, ss = M.mean(xs), 0
  for i = 1, n do ss = ss + (xs[i] - m) ^ 2 end
  return ss / (pop and n or n - 1)
end

function M.stdev(xs, pop)
  local v = M.variance(xs, pop)
  return v and math.sqrt(v)
end

local function sorted(xs)
  local c = table.move(xs, 1, #xs, 1, {})
  table.sort(c)
  return c
end

-- p in [0, 100]; rank p/100 * (n - 1) between the sorted neighbours.
local function pct_sorted(s, p)
  local n = #s
  if n == 0 then return nil end
  local r = p / 100 * (n - 1)
  local lo = math.floor(r)
  local frac = r - lo
  if lo + 1 >= n then return s[n] end
  return s[lo + 1] + frac * (s[lo + 2] - s[lo + 1])
end

function M.percentile(xs, p)
  check(xs, "percentile")
  if type(p) ~= "number" or p < 0 or p > 100 then
    error("stats.percentile: p must be a number in 0..100", 2)
  end
  return pct_sorted(sorted(xs), p)
end

-- percentiles(xs, {50, 90, 99}) -> {[50] = ..., [90] = ..., [99] = ...}
function M.percentiles(xs, ps)
  check(xs, "percentiles")
  local s, out = sorted(xs), {}
  for _, p in ipairs(ps) do
    if type(p) ~= "number" or p < 0 or p > 100 then
      error("stats.percentiles: each p must be a number in 0..100", 2)
    end
    out[p] = pct_sorted(s, p)
  end
  return out
end

function M.median(xs) return M.percentile(xs, 50) end

-- Empirical CDF as points {x, F(x)}: every distinct value, or `n_points`
-- evenly spaced quantiles when given (for plotting large samples).
function M.cdf(xs, n_points)
  check(xs, "cdf")
  local s, n, pts = sorted(xs), #xs, {}
  if n == 0 then return pts end
  if n_points then
    if math.type(n_points) ~= "integer" or n_points < 2 then
      error("stats.cdf: n_points must be an integer >= 2", 2)
    end
    for k = 0, n_points - 1 do
      local q = k / (n_points - 1)
      pts[#pts + 1] = { pct_sorted(s, q * 100), q }
    end
    return pts
  end
  for i = 1, n do
    if i == n or s[i + 1] ~= s[i] then pts[#pts + 1] = { s[i], i / n } end
  end
  return pts
end

-- One table with the usual summary: n, mean, stdev, min, p50, p90, p99, max.
function M.summary(xs)
  check(xs, "summary")
  local s = sorted(xs)
  return {
    n = #s, mean = M.mean(s), stdev = M.stdev(s), min = s[1], max = s[#s],
    p50 = pct_sorted(s, 50), p90 = pct_sorted(s, 90), p99 = pct_sorted(s, 99),
  }
end

return M
