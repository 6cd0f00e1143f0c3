-- test_sched.lua - djinn.sched from Lua: sessions stepped together give the
-- tokens they give alone; a breakpoint stops one while the other goes on;
-- io_wait / extend / resume keeps the cache; bad calls say why.
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

local want_a, want_b = alone("Once upon a time", 20), alone("Lily and the dog", 14)
local q = djinn.sched { policy = "signal", budget = 64 }
local a, b = m:session(), m:session()
a:start("Once upon a time", { n = 20 })
b:start("Lily and the dog", { n = 14 })
assert(q:add(a) and q:add(b))
local ok, err = q:add(a)
assert(not ok and err:find("already"), err)
b:break_at("L1.resid_post", { cond = "pos == 9" })
local stopped = false
while true do
  local info = q:step()
  if not info then break end
  if q:phase(b) == "stopped" then
    stopped = true
    assert(b:tensor("L1.resid_post").rows == 1)
    b:delete(1)
    assert(q:resume(b))
  end
end
assert(stopped, "b never stopped at its breakpoint")
same(a:tokens(), want_a, "a")
same(b:tokens(), want_b, "b")

-- a finished turn waits on a tool, goes on after extend with its cache
assert(q:io_wait(a))
assert(q:phase(a) == "io_wait" and a:memory().swapped > 0, "signal swaps at io_wait")
a:extend({ 300, 301, 302 }, { n = 5 })
assert(q:resume(a))
while q:step() do end
local t = a:tokens()
assert(#t == #want_a + 3 + 5, "3 input and 5 more tokens")
ok, err = q:resume(a)
assert(not ok and err:find("not waiting or stopped"), err)
ok, err = pcall(a.extend, a, {}, { n = 0 })
assert(not ok and err:find("n 0 outside"), err)
ok, err = pcall(djinn.sched, { policy = "fifo" })
assert(not ok and err:find("unknown policy 'fifo'"), err)
-- closing a scheduled session takes it out of the scheduler
b:close()
assert(q:phase(a) == "done")
q:close()
print("ok")
