-- djinn.connect: a remote server from Lua (tests/server/run.sh gives the address).
-- arg[2]: "shm" (reads must come through a shared-memory segment) or
-- "socket" (DJINN_NO_SHM=1: they must not).
local addr = assert(arg[1], "usage: djinn test_remote.lua HOST:PORT [shm|socket]")
local want_shm = (arg[2] or "shm") == "shm"
local r = assert(djinn.connect(addr))
local shm0, size0 = r:shm()
assert(shm0 == want_shm, "r:shm() is " .. tostring(shm0))
assert(tostring(r):find("djinn.Remote", 1, true))
local bad, msg = djinn.connect("127.0.0.1:1")
assert(bad == nil and msg:find("djinn.connect: ", 1, true), msg)

local ok, out = r:command("load models/stories260K.bin --tokenizer models/tok512.bin")
assert(ok and out:find("Loaded stories260K.bin", 1, true), out)
assert(r:command("break L2.resid_post if pos == 6"))
local ok2, out2, stop = r:command('run "Once upon a time" -n 20')
assert(ok2 and stop == "breakpoint", tostring(stop) .. " " .. out2)

-- a site tensor comes back as a djinn.Tensor, equal to what print shows
local t = r:tensor("L2.resid_post")
assert(t.rows == 1 and t.cols == 64, t.rows .. "x" .. t.cols)
local _, p = r:command("print L2.resid_post", {json = true})
local j = djinn.json.decode(p)
assert(math.abs(j.stats.max - t:stats().max) < 1e-4 * math.max(1, math.abs(t:stats().max)))

-- a one-shot steer at positions (as s:steer's pos): the paused chunk is one
-- row, at pos 6; a range without it is refused, pos 6 is scaled
local before = r:tensor("L2.resid_post")
local okp, ep = pcall(r.steer, r, "L2.resid_post", "scale", 2, {pos = {0, 3}})
assert(not okp and tostring(ep):find("none in 0..2", 1, true), tostring(ep))
assert(r:tensor("L2.resid_post") == before)
assert(r:steer("L2.resid_post", "scale", 2, {pos = 6}) == 0)
assert(r:tensor("L2.resid_post") == before * 2)
local okq, eq = pcall(r.steer, r, "L2.resid_post", "scale", 2, {pos = {5, 2}})
assert(not okq and tostring(eq):find("pos wants", 1, true), tostring(eq))
t = r:tensor("L2.resid_post")

-- steer with a Tensor: zeroing the paused tensor through a remote "set"
assert(r:steer("L2.resid_post", "set", t * 0) == 0)
assert(r:tensor("L2.resid_post"):norm() == 0)
local ok3, e3 = pcall(r.tensor, r, "L9.q")
assert(not ok3 and e3:find("no site 'L9.q'", 1, true), e3)

-- continue to the end; phases are reported
local _, _, why = r:command("continue")
assert(why == "done", tostring(why))
assert(r:ping() > 0)

-- a large tensor (a long prompt's L0.mlp_act, rows x hidden: far more than
-- the client's receive buffer, so it lands straight in the Tensor) equals
-- the local one byte for byte
local long = string.rep("Once upon a time there was a girl. ", 36)
assert(r:command("delete"))
assert(r:command("break L0.mlp_act"))
local okb, outb, whyb = r:command(string.format('start "%s" -n 1', long))
assert(okb, outb)
_, _, whyb = r:command("continue")
assert(whyb == "breakpoint", tostring(whyb))
local rt = r:tensor("L0.mlp_act")
local m = assert(djinn.load("models/stories260K.bin", {tokenizer = "models/tok512.bin"}))
local s = m:session()
s:break_at("L0.mlp_act")
s:start(long, {n = 1, eos = false})
assert(s:continue() == "breakpoint")
local lt = s:tensor("L0.mlp_act")
assert(rt.rows == lt.rows and rt.cols == lt.cols and rt.rows > 300,
       rt.rows .. "x" .. rt.cols .. " vs " .. lt.rows .. "x" .. lt.cols)
local dir = os.getenv("TMPDIR") or "/tmp"
local pr, pl = dir .. "/djinn-remote-big-r.npy", dir .. "/djinn-remote-big-l.npy"
rt:save(pr); lt:save(pl)
local function slurp(p) local f = assert(io.open(p, "rb")); local d = f:read("a"); f:close(); os.remove(p); return d end
local br, bl = slurp(pr), slurp(pl)
assert(#br > 4 * 300 * rt.cols and br == bl, "the remote tensor differs from the local one")
-- over shared memory the segment grew for it (it starts at 64 KiB)
local shm1, size1 = r:shm()
assert(shm1 == want_shm and (not want_shm or (size1 > size0 and size1 >= 4 * rt.rows * rt.cols)),
       string.format("shm %s: %d then %d bytes", tostring(shm1), size0, size1))
assert(r:command("continue"))

-- a local session's methods on the remote: the same answers as s:...
local tricky = 'Once "upon"\ta\\ time'
local s2 = m:session()
r:delete()
assert(#r:breakpoints() == 0)
assert(r:start(tricky, {n = 6}) == s2:start(tricky, {n = 6, eos = false}))
local rid0, lid0 = r:break_at("L1.q", {cond = "pos == 13"}), s2:break_at("L1.q", {cond = "pos == 13"})
assert(math.type(rid0) == "integer" and math.type(lid0) == "integer")
assert(r:step() == "step" and s2:step() == "step")
local rw, rid = r:continue()
local lw, lid = s2:continue()
assert(rw == "breakpoint" and lw == rw and rid == rid0 and lid == lid0, string.format("%s %s %s %s %s %s", rw, lw, rid, rid0, lid, lid0))
assert(r:tensor() == s2:tensor())
local rb, lb = r:breakpoints(), s2:breakpoints()
assert(#rb == 1 and rb[1].pattern == lb[1].pattern and rb[1].cond == lb[1].cond and
       rb[1].hits == lb[1].hits and rb[1].kind == lb[1].kind)
r:delete(rid); s2:delete(lid)
assert(#r:breakpoints() == 0)
assert(r:continue() == "done" and s2:continue() == "done")
local okc, ec = pcall(r.continue, r)
assert(not okc and ec:find("continue: The run has finished", 1, true), ec)
local oke, ee = pcall(r.start, r, "x", {eos = false})
assert(not oke and ee:find("unknown option 'eos'", 1, true), ee)
local _, rtext = r:command("info text")
assert(rtext == tricky .. s2:text() .. "\n", string.format("%q vs %q", rtext, s2:text()))
s2:close()
s:close(); m:close()
local last, sum, n = r:phases()
assert(n >= 8 and last.total_us > 0 and sum.exec_us > 0)
r:command("quit")
r:close()

-- a tenant at connect: this client's sessions are scheduled as it
local tr = assert(djinn.connect(addr, { tenant = "alice", class = "interactive", slo_ms = 5000 }))
assert(tr:command("load models/stories260K.bin --tokenizer models/tok512.bin"))
assert(tr:command('start "Once upon a time" -n 4'))
local okt, outt = tr:command("sched add")
assert(okt and outt:find("[tenant alice, interactive, slo 5000 ms]", 1, true), outt)
local _, outs = tr:command("info sessions")
assert(outs:find("[tenant alice, interactive, slo 5000 ms]", 1, true), outs)
tr:command("quit")
tr:close()
local nt, mt = djinn.connect(addr, { class = "gold" })
assert(nt == nil and mt:find("\"class\" must be", 1, true), mt)
local ok4, e4 = pcall(r.ping, r)
assert(not ok4 and e4:find("remote is closed", 1, true))
print("lua remote: ok")
