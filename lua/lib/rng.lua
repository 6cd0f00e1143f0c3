-- rng.lua - a seeded xorshift64* generator, so that traces and experiments
-- are reproducible independent of Lua's math.random.
--   local rng = require("rng").new(42)
--   rng:uniform() -> [0, 1);  rng:uniform(a, b);  rng:int(lo, hi)
--   rng:normal(mu, sigma);  rng:exponential(rate);  rng:choice(list [, weights])
local M = {}
M.__index = M

-- splitmix64: spreads small seeds (0, 1, 2 ...) over the state space.
local function splitmix(x)
  x = x + 0x9e3779b97f4a7c15
  x = (x ~ (x >> 30)) * 0xbf58476d1ce4e5b9
  x = (x ~ (x >> 27)) * 0x94d049bb133111eb
  return x ~ (x >> 31)
end

function M.new(seed)
  seed = seed or 0
  if math.type(seed) ~= "integer" then
    error("rng.new: seed must be an integer, got " .. tostring(seed), 2)
  end
  local s = splitmix(seed)
  if s == 0 then s = 0x2545f4914f6cdd1d end
  return setmetatable({ state = s }, M)
end

-- Next 64-bit integer (any bit pattern; Lua integers wrap).
function M:next()
  local x = self.state
  x = x ~ (x >> 12)
  x = x ~ (x << 25)
  x = x ~ (x >> 27)
  self.state = x
  return x * 0x2545f4914f6cdd1d
end

-- Uniform in [0, 1) from the top 53 bits; or in [a, b).
function M:uniform(a, b)
  local u = (self:next() >> 11) * (1.0 / 9007199254740992.0)
  if a == nil then return u end
  b = b or error("rng:uniform: give both bounds or none", 2)
  return a + (b - a) * u
end

-- Integer in [lo, hi] (inclusive), without modulo bias worth mentioning for
-- ranges far below 2^53.
function M:int(lo, hi)
  if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" or hi < lo then
    error("rng:int: lo and hi must be integers with lo <= hi", 2)
  end
  return lo + math.floor(self:uniform() * (hi - lo + 1))
end

-- Normal (Box-Muller; the second variate is kept for the next call).
function M:normal(mu, sigma)
  mu, sigma = mu or 0, sigma or 1
  local z = self.spare
  if z then
    self.spare = nil
  else
    local u1, u2
    repeat u1 = self:uniform() until u1 > 0
    u2 = self:uniform()
    local r = math.sqrt(-2 * math.log(u1))
    z = r * math.cos(2 * math.pi * u2)
    self.spare = r * math.sin(2 * math.pi * u2)
  end
  return mu + sigma * z
end

-- Exponential with the given rate (mean 1 / rate).
function M:exponential(rate)
  rate = rate or 1
  if type(rate) ~= "number" or rate <= 0 then
    error("rng:exponential: rate must be a positive number", 2)
  end
  local u
  repeat u = self:uniform() until u > 0
  return -math.log(u) / rate
end

-- An element of list, uniformly or with the given (unnormalised) weights;
-- also returns its index.
function M:choice(list, weights)
  local n = #list
  if n == 0 then error("rng:choice: empty list", 2) end
  if not weights then
    local i = self:int(1, n)
    return list[i], i
  end
  if #weights ~= n then error("rng:choice: weights and list differ in length", 2) end
  local total = 0
  for i = 1, n do
    if weights[i] < 0 then error("rng:choice: negative weight", 2) end
    total = total + weights[i]
  end
  if total <= 0 then error("rng:choice: weights sum to zero", 2) end
  local r, acc = self:uniform() * total, 0
  for i = 1, n do
    acc = acc + weights[i]
    if r < acc then return list[i], i end
  end
  return list[n], n
end

-- A shuffled copy of list (Fisher-Yates).
function M:shuffle(list)
  local c = table.move(list, 1, #list, 1, {})
  for i = #c, 2, -1 do
    local j = self:int(1, i)
    c[i], c[j] = c[j], c[i]
  end
  return c
end

return M
