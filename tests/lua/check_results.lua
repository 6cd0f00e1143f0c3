-- check_results.lua KIND FILE - validate a protocol's JSON output (used by run.sh).
local results = require "results"
local kind, path = arg[1], arg[2]
local r = assert(results.read_json(path))

if kind == "whitebox" then
  assert(r.schema == "djinn.whitebox/1", "schema")
  assert(r.model.n_layer == 5 and r.config.layers[2] == 3)
  assert(#r.per_prompt == r.config.prompts)
  local sm = r.summary
  assert(sm.token_accuracy == 1 and sm.token_accuracy_min == 1, "token accuracy 100%")
  assert(sm.restore_equal_all == true, "restore equality")
  assert(sm.steer_zero_tokens_changed_frac == 0, "a zero steer changes nothing")
  assert(sm.steer_tokens_changed_frac > 0 and sm.steer_mean_abs_logit_change > 0, "a steer changes")
  assert(sm.checkpoint_ns.p50 > 0 and sm.restore_ns.p50 > 0 and sm.overhead_ratio > 0)
  for _, p in ipairs(r.per_prompt) do
    assert(p.bp_stops == 2 * p.n_generated, "a stop per armed layer per token")
    assert(p.overhead.none_ns > 0 and p.steer.site == "L1.resid_post")
  end
elseif kind == "trace" then
  assert(r.schema == "djinn.trace/1" and r.kind == "agent" and #r.sessions == 6)
  local last = 0
  for _, s in ipairs(r.sessions) do
    assert(s.arrival_s > last and (s.model == "a" or s.model == "b") and #s.steps >= 1)
    last = s.arrival_s
  end
else
  error("check_results: unknown kind " .. tostring(kind))
end
print("check_results: " .. kind .. " ok")
