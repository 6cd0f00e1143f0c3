-- test_kvlimit.lua - a limit on the KV pages of all sessions (kv_limit): a
-- session that needs pages swaps out the least recently used paused one,
-- which continues unchanged when it runs again.  A 16-token page of
-- stories260K's 5 layers is 20 KiB: 60k holds three pages, a run of 24
-- tokens needs two.
local djinn = require "djinn"

local MODEL = arg[1] or "models/stories260K.gguf"
local m = assert(djinn.load(MODEL, { device = "cpu", kv_limit = "60k" }))

local function finish(s)
  local why
  repeat why = s:continue() until why == "done"
end

local ref = m:session()
ref:start("Once upon a time", { n = 20 })
finish(ref)
local want = ref:tokens()
ref:close()

local a, b = m:session(), m:session()
a:break_at("token 10")
a:start("Once upon a time", { n = 20 })
assert(a:continue() == "breakpoint")
b:start("Once upon a time", { n = 20 })
finish(b)
a:delete(1)
finish(a) -- needs a second page: b, the least recently used, makes room
local got = a:tokens()
assert(#got == #want, ("%d tokens, want %d"):format(#got, #want))
for i = 1, #want do assert(got[i] == want[i], "token " .. i .. " differs after the swap") end
local mem = b:memory()
assert(mem.swapped > 0, "b was swapped out to make room")

local ok, err = pcall(djinn.load, MODEL, { kv_limit = "lots" })
assert(not ok and err:find("kv_limit must be bytes"), err)
print("ok")
