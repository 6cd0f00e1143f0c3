-- remote_bench.lua - one side of bench/remote_bench.sh: the same work
-- locally (djinn.load) or through a server (djinn.connect), timed.
-- usage: djinn remote_bench.lua local|remote MODEL TOKENIZER|- ADDR OUT.json
-- environment: BENCH_TOKENS (256), BENCH_BW_SITE (L0.resid_post) and
-- BENCH_BW_REPEAT (12: the prompt of the bandwidth test, that many sentences),
-- NET_BOUND (bench/net_bound: the bounds, measured between the rounds)
local mode, model, tok, addr, out = arg[1], arg[2], arg[3], arg[4], arg[5]
local N, PROMPT = tonumber(os.getenv("BENCH_TOKENS") or "256"), "Once upon a time"
local BW_SITE = os.getenv("BENCH_BW_SITE") or "L0.resid_post"
local BW_PROMPT = string.rep("Once upon a time there was a girl. ", tonumber(os.getenv("BENCH_BW_REPEAT") or "12"))
local BW_ROUNDS, BW_REPS = 5, 10
local function now() return djinn.clock() / 1e3 end -- microseconds
local res = {mode = mode, gen_tokens = N, bw_site = BW_SITE}

-- tensor bandwidth: the best of BW_ROUNDS rounds of BW_REPS reads of one
-- site; between the rounds (remote side) the same reads over the socket
-- (read2: a second client without shared memory) and the bounds for the
-- same bytes, so that a busy machine weighs on all of them alike
local function bandwidth(read, read2)
  local t = read()
  local bytes, best, bound = t.n * 4, 0, {memcpy_gbps = 0, socket_gbps = 0, read2_gbps = 0}
  local function round(f)
    local a = now()
    for _ = 1, BW_REPS do f() end
    return bytes * BW_REPS / ((now() - a) / 1e6) / 1e9
  end
  if read2 then assert(read2() == t, "the socket's tensor differs from shared memory's") end
  for _ = 1, BW_ROUNDS do
    best = math.max(best, round(read))
    if read2 then bound.read2_gbps = math.max(bound.read2_gbps, round(read2)) end
    local nb = os.getenv("NET_BOUND")
    if mode == "remote" and nb and nb ~= "" then
      local p = io.popen(nb .. " " .. bytes .. " " .. BW_REPS)
      local j = p and djinn.json.decode(p:read("a"))
      if p then p:close() end
      if j then
        bound.memcpy_gbps = math.max(bound.memcpy_gbps, j.memcpy_gbps)
        bound.socket_gbps = math.max(bound.socket_gbps, j.socket_gbps)
      end
    end
  end
  return bytes, best, bound
end
local loadline = "load " .. model .. (tok ~= "-" and (" --tokenizer " .. tok) or "")
if mode == "local" then
  local m = assert(djinn.load(model, {tokenizer = tok ~= "-" and tok or nil}))
  local s = m:session()
  local t0 = now(); s:start(PROMPT, {n = N, eos = false}); s:continue()
  res.gen_us = now() - t0
  s:break_at("L*.resid_post")
  t0 = now(); s:start(PROMPT, {n = 16, eos = false})
  local stops = 0
  while s:continue() == "breakpoint" do s:tensor(); stops = stops + 1 end
  res.bp_us, res.bp_stops = now() - t0, stops
  s:delete(); s:break_at(BW_SITE)
  s:start(BW_PROMPT, {n = 1, eos = false}); s:continue()
  res.bw_bytes, res.bw_gbps = bandwidth(function() return s:tensor(BW_SITE) end)
else
  local r = assert(djinn.connect(addr))
  res.shm = r:shm()
  assert(r:command(loadline))
  local t0 = now(); assert(r:command(string.format('run "%s" -n %d', PROMPT, N)))
  res.gen_us = now() - t0
  local _, _, n0 = r:phases()
  res.gen_phases = select(1, r:phases())
  assert(r:command("break L*.resid_post"))
  t0 = now(); r:command(string.format('start "%s" -n 16', PROMPT))
  local stops = 0
  while true do
    local _, _, why = r:command("continue")
    if why ~= "breakpoint" then break end
    r:tensor(); stops = stops + 1
  end
  res.bp_us, res.bp_stops = now() - t0, stops
  local _, sum, n = r:phases()
  res.bp_phases_mean = {}
  for k, v in pairs(sum) do res.bp_phases_mean[k] = v / math.max(1, n - n0) end
  -- inspect round trip: the widest per-token site, read 200 times
  r:command("delete"); r:command("break L0.resid_post"); r:command(string.format('start "%s" -n 4', PROMPT))
  r:command("continue"); r:command("continue") -- a decode step: one row
  local t = r:tensor("L0.resid_post")
  local lat = {}
  for i = 1, 200 do local a = now(); r:tensor("L0.resid_post"); lat[i] = now() - a end
  table.sort(lat)
  res.inspect_floats, res.inspect_us = t.n, lat[100]
  local pl = {}
  for i = 1, 200 do pl[i] = r:ping() end
  table.sort(pl); res.ping_us = pl[100]
  -- bandwidth: a prompt chunk's BW_SITE (rows x width) read again and again
  r:command("delete"); r:command("break " .. BW_SITE)
  r:command('start "' .. BW_PROMPT .. '" -n 1')
  r:command("continue")
  -- the same tensor through a second client that keeps to the socket
  local r2 = assert(djinn.connect(addr, {shm = false}))
  assert(r2:command(loadline)); r2:command("break " .. BW_SITE)
  r2:command('start "' .. BW_PROMPT .. '" -n 1'); r2:command("continue")
  local bound
  res.bw_bytes, res.bw_gbps, bound = bandwidth(function() return r:tensor(BW_SITE) end,
                                               function() return r2:tensor(BW_SITE) end)
  res.memcpy_gbps, res.socket_gbps = bound.memcpy_gbps, bound.socket_gbps
  res.bw_sock_gbps = bound.read2_gbps
  r2:command("quit")
  r:command("quit")
end
local f = assert(io.open(out, "w")); f:write(djinn.json.encode(res)); f:close()
