-- s:attn_pattern: rows sum to 1 over the causal window and are zero past
-- it; the pattern times V is the attention output (the head's columns of
-- L1.attn); one row is that row of all; misuse raises.
local djinn = require "djinn"
local m = assert(djinn.load(arg[1], {device = "cpu"}))
local info = m:info()
local s = m:session()
local hd = info.dim // info.n_head
local group = info.n_head // info.n_kv_head
local ids = m:tokenize("Once upon a time")

local ok, msg = pcall(s.attn_pattern, s, 1, 0)
assert(not ok and msg:find("not being run"), msg)
s:break_at("L1.attn")
s:start(ids, {n = 2})
local vs = {} -- V rows of every position so far (L1.v of each chunk)
for chunk = 1, 2 do
  assert(s:continue() == "breakpoint")
  local cur = s:cursor()
  local v, out = s:tensor("L1.v"), s:tensor("L1.attn")
  for r = 1, cur.n_rows do vs[cur.pos + r] = v:row(r) end
  for h = 0, info.n_head - 1 do
    local p = s:attn_pattern(1, h)
    assert(p.rows == cur.n_rows and p.cols == cur.pos + cur.n_rows, "rows x window")
    for r = 1, p.rows do
      local sum, pos = 0, cur.pos + r - 1
      for u = 1, p.cols do
        if u <= pos + 1 then sum = sum + p:get(r, u)
        else assert(p:get(r, u) == 0, "zero past the window") end
      end
      assert(math.abs(sum - 1) < 1e-6, "a row sums to 1: " .. sum)
      local kvh = h // group
      for i = 1, hd do
        local y = 0
        for u = 1, pos + 1 do y = y + p:get(r, u) * vs[u]:get(1, kvh * hd + i) end
        local want = out:get(r, h * hd + i)
        assert(math.abs(y - want) < 1e-5, ("pattern . V %g, attn %g"):format(y, want))
      end
    end
    local one = s:attn_pattern(1, h, p.rows)
    assert(one.rows == 1 and one.cols == p.cols)
    for u = 1, p.cols do assert(one:get(1, u) == p:get(p.rows, u)) end
  end
end
ok, msg = pcall(s.attn_pattern, s, 1, info.n_head)
assert(not ok and msg:find("head " .. info.n_head .. " outside"), msg)
ok, msg = pcall(s.attn_pattern, s, 2, 0)
assert(not ok and msg:find("'L2.q' is not live"), msg)
s:close()
m:close()
print("ok")
