-- test_session.lua - the engine through Lua on stories260K (CPU): breakpoints
-- do not change tokens, restore replays exactly, steering changes what it
-- should, errors leave the session usable.
local djinn = require "djinn"
local rng = require "rng"

local MODEL = arg[1] or "models/stories260K.gguf"
local PROMPT = "Once upon a time"
local N = 48

local m = assert(djinn.load(MODEL, { device = "cpu" }))
local info = m:info()
assert(info.n_layer == 5 and info.dim == 64 and info.vocab == 512, "stories260K shape")
assert(info.arch == "llama" and info.format == "gguf" and info.device == "cpu")
assert(#m:sites() == info.n_sites and m:sites()[1] == "embed" and m:sites()[info.n_sites] == "logits")

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function finish_run(s)
  local why
  repeat why = s:continue() until why == "done"
end

-- the reference: no breakpoints
local s = m:session()
local n_prompt = s:start(PROMPT, { n = N })
assert(n_prompt == #m:tokenize(PROMPT))
assert(s:continue() == "done")
local ref, ref_np = s:tokens()
local ref_text = s:text()
assert(ref_np == n_prompt and #ref == n_prompt + N, "n tokens generated")
assert(ref_text:find("^, there was a little girl"), "greedy stories260K text: " .. ref_text)
-- the plain C path gives the same
assert(s:generate(PROMPT, { n = N }) == ref_text, "djn_generate agrees")
-- a prompt given as ids gives the same
s:start(m:tokenize(PROMPT), { n = N }); finish_run(s)
assert(same(s:tokens(), ref), "ids prompt")

-- 1. breakpoints: token accuracy 100 %, a hit per chunk per layer
local b1 = s:break_at("L1.resid_post")
local b3 = s:break_at("L3.resid_post")
s:start(PROMPT, { n = N })
local hits = { [b1] = 0, [b3] = 0 }
while true do
  local why, id = s:continue()
  if why == "done" then break end
  assert(why == "breakpoint", why)
  hits[id] = hits[id] + 1
  local cur = s:cursor()
  assert(cur.site == (id == b1 and "L1.resid_post" or "L3.resid_post") and cur.layer == (id == b1 and 1 or 3))
  local t = s:tensor()
  assert(t.rows == cur.n_rows and t.cols == info.dim)
  local st, bst = t:stats(), s:stats()
  assert(math.abs(st.l2 - bst.l2) < 1e-3 * st.l2 and st.argmax == bst.argmax and st.n == bst.n)
end
assert(same(s:tokens(), ref), "tokens with breakpoints")
assert(hits[b1] == N and hits[b3] == N, ("hits %d %d"):format(hits[b1], hits[b3]))
local bps = s:breakpoints()
assert(#bps == 2 and bps[1].hits == N and bps[1].pattern == "L1.resid_post")
s:delete()
assert(#s:breakpoints() == 0)

-- conditions, temporary breakpoints, watchpoints
s:break_at("L2.q", { temporary = true })
s:watch("L0.resid_post", "pos == 7")
s:start(PROMPT, { n = N })
local why = s:continue()
assert(why == "breakpoint" and s:cursor().site == "L2.q")
assert(#s:breakpoints() == 1, "temporary breakpoint deleted")
why = s:continue()
assert(why == "watchpoint" and s:cursor().pos == 7, why)
finish_run(s)
assert(same(s:tokens(), ref))
s:delete()

-- stepping: the cursor moves as documented
s:start(PROMPT, { n = N })
local c = s:cursor()
assert(c.pos == 0 and c.n_rows == n_prompt and c.site == nil and c.state == "paused")
assert(s:step() == "step" and s:cursor().site == "embed")
assert(s:step(2) == "step" and s:cursor().site == "L0.q")
assert(s:next() == "step" and s:cursor().site == "L0.resid_post")
assert(s:next(2) == "step" and s:cursor().site == "L2.resid_post")
assert(s:finish() == "step" and s:cursor().site == "logits")
assert(s:tensor("logits").cols == info.vocab)
assert(s:run_until(n_prompt + 3) == "step" and s:cursor().pos == n_prompt + 3)
finish_run(s)
assert(same(s:tokens(), ref))

-- 2. checkpoint / restore: the replay is the same, twice, and from mid-layer
s:start(PROMPT, { n = N })
s:run_until(n_prompt + 10)
local ck = s:checkpoint()
finish_run(s)
local a = s:tokens()
s:restore(ck)
assert(s:state() == "paused" and s:cursor().pos == n_prompt + 10)
finish_run(s)
local b = s:tokens()
s:restore(ck)
finish_run(s)
assert(same(a, ref) and same(b, ref) and same(s:tokens(), ref), "restore replays")
assert(s:text() == ref_text)
local bp = s:break_at("L2.q", { cond = "pos == 20" })
s:start(PROMPT, { n = N })
assert(s:continue() == "breakpoint")
local mid = s:checkpoint()
local before = s:tensor("L2.q")
s:delete(bp)
finish_run(s)
s:restore(mid)
assert(s:tensor("L2.q") == before, "activations restored")
finish_run(s)
assert(same(s:tokens(), ref), "mid-layer restore")
assert(#s:checkpoints() == 2 and s:checkpoints()[1].bytes > 0)
s:drop_checkpoint(ck)
assert(#s:checkpoints() == 1)
assert(not pcall(s.restore, s, ck), "dropped checkpoint")

-- 3. steering: zero does nothing, a large vector changes the text
local zero = djinn.tensor(1, info.dim)
local id = s:steer("L2.resid_post", "add", zero, { persist = true })
s:start(PROMPT, { n = N }); finish_run(s)
assert(same(s:tokens(), ref), "zero steer")
assert(s:steers()[1].n_applied == N)
s:unsteer(id)
local r = rng.new(1)
local big = {}
for i = 1, info.dim do big[i] = r:normal() * 50 end
id = s:steer("L2.resid_post", "add", djinn.tensor(big), { persist = true })
s:start(PROMPT, { n = N }); finish_run(s)
assert(not same(s:tokens(), ref), "large steer changes tokens")
s:unsteer()
assert(#s:steers() == 0)
s:start(PROMPT, { n = N }); finish_run(s)
assert(same(s:tokens(), ref), "unsteer restores")
-- per position: pos = P steers the rows at P only (a persistent steer at a
-- generated token's position leaves every token up to it as it was)
local P = n_prompt + 5
id = s:steer("L2.resid_post", "add", djinn.tensor(big), { persist = true, pos = P })
assert(s:steers()[1].pos[1] == P and s:steers()[1].pos[2] == P + 1)
s:start(PROMPT, { n = N }); finish_run(s)
local toks = s:tokens()
for i = 1, P + 1 do assert(toks[i] == ref[i], "pos steer: token " .. i .. " kept") end
assert(not same(toks, ref), "pos steer changes the tokens after it")
assert(s:steers()[1].n_applied == 1, "pos steer: one chunk")
s:unsteer()
bp = s:break_at("L2.resid_post", { temporary = true })
s:start(PROMPT, { n = N })
assert(s:continue() == "breakpoint")
local x0 = s:tensor("L2.resid_post")
s:steer("L2.resid_post", "add", djinn.tensor(big), { pos = { 1, 3 } })
local x1 = s:tensor("L2.resid_post")
local bigt = djinn.tensor(big)
for r = 1, n_prompt do
	local want = (r == 2 or r == 3) and x0:row(r) + bigt or x0:row(r)
	assert(x1:row(r) == want, "one-shot pos steer, row " .. r)
end
assert(not pcall(s.steer, s, "L2.resid_post", "add", bigt, { pos = { 3, 3 } }), "empty pos")
assert(not pcall(s.steer, s, "L2.resid_post", "add", bigt, { pos = 40 }), "pos not held")
finish_run(s)
-- one-shot at a breakpoint: scale 1 and add 0 are no-ops; the full-shape
-- form (t * 0) too; a big add changes the next token's logits
s:break_at("L3.resid_post", { cond = "pos == 12" })
s:start(PROMPT, { n = N })
assert(s:continue() == "breakpoint")
s:steer("L3.resid_post", "scale", 1.0)
s:steer("L3.resid_post", "add", 0)
local t = s:tensor("L3.resid_post")
s:steer("L3.resid_post", "add", t * 0)
s:write("L3.resid_post", t)
finish_run(s)
assert(same(s:tokens(), ref), "no-op edits")
s:start(PROMPT, { n = N })
assert(s:continue() == "breakpoint")
s:finish()
local l0 = s:tensor("logits")
s:start(PROMPT, { n = N })
assert(s:continue() == "breakpoint")
s:steer("L3.resid_post", "add", djinn.tensor(big), { scale = 2 })
s:finish()
local l1 = s:tensor("logits")
assert((l1 - l0):norm() > 1, "one-shot steer moves the logits")
s:steer("logits", "zero", { 0, 1, 2 })
assert(s:tensor("logits"):get(1, 1) == 0 and s:tensor("logits"):get(1, 4) ~= 0)
s:delete()

-- 4. sampling is reproducible from the seed
s:start(PROMPT, { n = N, temperature = 1, top_p = 0.9, seed = 5 }); finish_run(s)
local t1 = s:tokens()
s:start(PROMPT, { n = N, temperature = 1, top_p = 0.9, seed = 5 }); finish_run(s)
assert(same(t1, s:tokens()), "seeded sampling")

-- 5. errors raise and leave the session usable
s:start(PROMPT, { n = N })
s:run_until(n_prompt + 2)
local ok, err = pcall(s.tensor, s, "L3.resid_pst")
assert(not ok and err:find("no site 'L3.resid_pst'") and err:find("did you mean L3.resid_post"), err)
ok, err = pcall(s.steer, s, "L0.q", "add", djinn.tensor{ 1, 2, 3 }, { persist = true })
assert(not ok and err:find("3 columns"), err)
ok, err = pcall(s.break_at, s, "L2.q", { cond = "nrm > 1" })
assert(not ok and err:find("condition"), err)
ok, err = pcall(s.start, s, PROMPT, { n = -1 })
assert(not ok and err:find("n %-1"), err)
ok, err = pcall(s.restore, s, 999)
assert(not ok and err:find("no checkpoint 999"), err)
ok, err = pcall(s.delete, s, 42)
assert(not ok and err:find("no breakpoint number 42"), err)
assert(s:cursor().pos == n_prompt + 2)
finish_run(s)
assert(same(s:tokens(), ref), "usable after errors")
ok, err = pcall(s.continue, s)
assert(not ok and err:find("the run has finished"), err)
local mem = s:memory()
assert(mem.data > 0 and mem.stack > 0)

-- 6. lifetimes: close, <close>, closing the model closes its sessions
s:close()
ok, err = pcall(s.text, s)
assert(not ok and err:find("session is closed"), err)
s:close() -- twice is fine
do
  local s2 <close> = m:session()
  s2:start(PROMPT, { n = 4 })
end
local s3 = m:session()
assert(#djinn.models() >= 1)
m:close()
ok, err = pcall(s3.start, s3, PROMPT)
assert(not ok and err:find("session is closed"), err)
ok, err = pcall(m.info, m)
assert(not ok and err:find("model is closed"), err)
collectgarbage()
print("test_session: ok")
