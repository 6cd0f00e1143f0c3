-- remote_bench.lua - one side of bench/remote_bench.sh: the same work
-- locally (djinn.load) or through a server (djinn.connect), timed.
-- usage: djinn remote_bench.lua local|remote MODEL TOKENIZER|- ADDR OUT.json
local mode, model, tok, addr, out = arg[1], arg[2], arg[3], arg[4], arg[5]
local N, PROMPT = tonumber(os.getenv("BENCH_TOKENS") or "256"), "Once upon a time"
local function now() return djinn.clock() / 1e3 end -- microseconds
local res = {mode = mode}
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
else
  local r = assert(djinn.connect(addr))
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
  -- bandwidth: a prompt chunk's L0.resid_post (rows x dim) read again and again
  r:command("delete"); r:command("break L0.resid_post")
  r:command('start "' .. string.rep("Once upon a time there was a girl. ", 12) .. '" -n 1')
  r:command("continue")
  local big = r:tensor("L0.resid_post")
  local reps, a = 20, now()
  for _ = 1, reps do r:tensor("L0.resid_post") end
  local dt = (now() - a) / 1e6
  res.bw_bytes, res.bw_gbps = big.n * 4, big.n * 4 * reps / dt / 1e9
  r:command("quit")
end
local f = assert(io.open(out, "w")); f:write(djinn.json.encode(res)); f:close()
