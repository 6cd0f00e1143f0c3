-- s:record / s:cache (run_with_cache): the rows kept at every position equal
-- the live tensor a breakpoint reads at that site and position; a new run
-- forgets the last one's; misuse raises with the reason.
local djinn = require "djinn"
local m = assert(djinn.load(arg[1], {device = "cpu"}))
local s = m:session()
local ids = m:tokenize("Once upon a time")

local ok, msg = pcall(s.record, s, {"L9.q"})
assert(not ok and msg:find("layers are L0..L4"), msg)
assert(#s:record() == 0, "a bad pattern adds none")
assert(s:record{"L*.resid_post", "logits"})
assert(s:record("L2.q"))
local pats = s:record()
assert(#pats == 3 and pats[1] == "L*.resid_post" and pats[3] == "L2.q")
ok, msg = pcall(s.cache, s, "L1.k")
assert(not ok and msg:find("not recorded"), msg)

-- the live rows at each chunk's logits, by position
s:break_at("logits")
s:start(ids, {n = 4})
local live, head = {}, {}
while s:continue() == "breakpoint" do
  local cur = s:cursor()
  local t = s:tensor("L3.resid_post")
  for r = 1, cur.n_rows do live[cur.pos + r - 1] = t:row(r):flat() end
  head[cur.pos + cur.n_rows - 1] = s:tensor("logits"):row(1):flat()
end
local all = s:cache("L3.resid_post")
assert(all.rows == #ids + 3 and all.cols == m:info().dim, all.rows .. " positions")
for p = 0, all.rows - 1 do
  local want, one = live[p], s:cache("L3.resid_post", p)
  for c = 1, all.cols do
    assert(all:get(p + 1, c) == want[c], "row " .. p + 1 .. " is position " .. p)
    assert(one:get(1, c) == want[c], "cache(site, pos)")
  end
end
for p, want in pairs(head) do
  local got = s:cache("logits", p)
  for c = 1, got.cols do assert(got:get(1, c) == want[c], "logits at " .. p) end
end
ok, msg = pcall(s.cache, s, "logits")
assert(not ok and msg:find("last position only"), msg)
ok, msg = pcall(s.cache, s, "logits", 1)
assert(not ok and msg:find("never computed"), msg)

-- a new run forgets; record(false) stops
s:start(ids, {n = 1})
assert(s:continue() == "breakpoint")
assert(s:cache("L3.resid_post").rows == #ids, "only the new run's prompt so far")
assert(s:record(false))
assert(#s:record() == 0)
print("ok record")
