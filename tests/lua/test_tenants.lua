-- test_tenants.lua - tenants from Lua: q:add with a tenant, class and SLO;
-- the order knob; priority takes the interactive session first; SLO
-- admission refuses with the tenant, the SLO and the prediction named and
-- loses nothing; bad options say why.
local djinn = require "djinn"

local MODEL = arg[1] or "models/stories260K.gguf"
local m = assert(djinn.load(MODEL, { device = "cpu" }))

local function alone(prompt, n)
  local s = m:session()
  s:start(prompt, { n = n })
  repeat local why = s:continue() until why == "done"
  local t = s:tokens()
  s:close()
  return t
end

local function same(a, b, what)
  assert(#a == #b, ("%s: %d tokens, want %d"):format(what, #a, #b))
  for i = 1, #b do assert(a[i] == b[i], what .. ": token " .. i .. " differs") end
end

-- priority with one seat: the interactive session, added last, goes first
local q = djinn.sched { order = "priority", max_batch = 1, aging = 1000 }
local b, u = m:session(), m:session()
b:start("Lily and the dog", { n = 6 })
u:start("Once upon a time", { n = 6 })
assert(q:add(b, { tenant = "eval", class = "batch" }))
assert(q:add(u, { tenant = "alice", class = "interactive", slo_ms = 60000 }))
assert(q:order() == "priority")
q:step()
local mb, mu = q:member(b), q:member(u)
assert(mu.steps == 1 and mb.steps == 0 and mb.waited == 1, "interactive first")
assert(mu.tenant == "alice" and mu.class == "interactive" and mu.slo_ms == 60000)
assert(mb.tenant == "eval" and mb.class == "batch" and mb.slo_ms == 0)
while q:step() do end
assert(q:member(u).tokens == 6 and q:member(u).violations == 0)
same(u:tokens(), alone("Once upon a time", 6), "interactive")
same(b:tokens(), alone("Lily and the dog", 6), "batch")
assert(q:stats().order == "priority")

-- slo admission: 5 ms + 1 ms a row, two seats; a third 10 ms session is refused
local r = djinn.sched { order = "slo", max_batch = 2 }
local s = {}
for i = 1, 3 do
  s[i] = m:session()
  s[i]:start("The sun was", { n = 4 })
end
assert(r:add(s[1], { tenant = "a", class = "interactive", slo_ms = 10 }))
local sm = r:step_model { base_ms = 5, row_ms = 1 }
assert(sm.base_ms == 5 and sm.row_ms == 1, "the model set")
assert(r:add(s[2], { tenant = "a", class = "interactive", slo_ms = 10 }))
local ok, err = r:add(s[3], { tenant = "late", class = "interactive", slo_ms = 10 })
assert(not ok and err:find("tenant 'late' (interactive, slo 10 ms) refused", 1, true)
  and err:find("predicted token latency 14 ms", 1, true), err)
assert(r:member(s[3]) == nil and r:phase(s[3]) == nil, "the refused session is not in")
assert(r:add(s[3], { tenant = "late", class = "batch" }), "without an slo it is admitted")
while r:step() do end
for i = 1, 3 do same(s[i]:tokens(), alone("The sun was", 4), "slo session " .. i) end

-- bad options
local okc, e1 = pcall(q.add, q, m:session(), { class = "gold" })
assert(not okc and e1:find("unknown class 'gold'"), e1)
local okk, e2 = pcall(q.add, q, m:session(), { tenent = "x" })
assert(not okk and e2:find("tenent"), e2)
local oko, e3 = pcall(djinn.sched, { order = "lifo" })
assert(not oko and e3:find("unknown order 'lifo'"), e3)
local okn, e4 = q:order("lifo")
assert(not okn and e4:find("unknown order"), e4)
print("ok")
