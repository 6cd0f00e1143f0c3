#!/bin/sh
# run.sh BUILD_DIR - the Lua tests, through BUILD_DIR/djinn on stories260K (CPU):
#   tests/lua/test_*.lua  must exit 0;
#   tests/lua/bad/*.lua   must exit 1 with "djinn: <message>" and a Lua traceback
#                         on stderr, the message given by the script's
#                         "-- expect: " line (one line and no traceback where
#                         the script says "-- traceback: no");
#   lua/exp/whitebox.lua and lua/exp/generate_trace.lua run end to end and
#   their JSON is checked by tests/lua/check_results.lua.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 2
DJINN=$BUILD/djinn
MODEL=models/stories260K.gguf
[ -x "$DJINN" ] || { echo "run.sh: no $DJINN (build first)" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "run.sh: no $MODEL (make models)" >&2; exit 2; }
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT INT TERM
pass=0 fail=0

ok()  { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s: %s\n' "$1" "$2"; sed 's/^/      /' "$TMP/err" | head -20; }

for t in tests/lua/test_*.lua; do
	if "$DJINN" "$t" "$MODEL" >"$TMP/out" 2>"$TMP/err"; then ok "$t"
	else cat "$TMP/out" >>"$TMP/err"; bad "$t" "exit $?"; fi
done

for t in tests/lua/bad/*.lua; do
	expect=$(sed -n 's/^-- expect: //p' "$t" | head -1)
	"$DJINN" "$t" "$MODEL" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" -ne 1 ]; then bad "$t" "exit $rc, want 1"
	elif ! head -1 "$TMP/err" | grep -q '^djinn: '; then bad "$t" "no 'djinn: ' prefix"
	elif ! grep -qF -- "$expect" "$TMP/err"; then bad "$t" "no '$expect'"
	elif grep -q '^-- traceback: no' "$t"; then
		if grep -q '^stack traceback:' "$TMP/err" || [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
			bad "$t" "want one line, no traceback"
		else ok "$t"; fi
	elif ! grep -q '^stack traceback:' "$TMP/err"; then bad "$t" "no traceback"
	else ok "$t"; fi
done

# a missing script is an error too, and so is a missing model given to a protocol
"$DJINN" tests/lua/bad/no-such-script.lua >"$TMP/out" 2>"$TMP/err"
if [ $? -eq 1 ] && grep -q 'cannot open tests/lua/bad/no-such-script.lua' "$TMP/err" &&
   [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "missing script"
else bad "missing script" "want exit 1 and one line 'cannot open'"; fi

if "$DJINN" lua/exp/whitebox.lua "$MODEL" --device cpu --layers 1,3 --prompts 2 --n 32 \
	--repeats 2 --out "$TMP/wb.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" tests/lua/check_results.lua whitebox "$TMP/wb.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/whitebox.lua"
else bad "lua/exp/whitebox.lua" "see above"; fi

if "$DJINN" lua/exp/generate_trace.lua --seed 3 --n 6 --models a,b --out "$TMP/t1.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" lua/exp/generate_trace.lua --seed 3 --n 6 --models a,b --out "$TMP/t2.json" >>"$TMP/out" 2>>"$TMP/err" &&
   cmp -s "$TMP/t1.json" "$TMP/t2.json" &&
   "$DJINN" tests/lua/check_results.lua trace "$TMP/t1.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/generate_trace.lua"
else bad "lua/exp/generate_trace.lua" "see above"; fi

# agents under every policy, under a KV limit that holds about four whole
# agent contexts: all complete, with the tokens each gets alone
if "$DJINN" lua/exp/agents.lua "$MODEL" --device cpu --agents 1,8 --kv-limit 1M --rate 200 \
	--tool-s 0.02 --steps 2 --think 12 --check 8 --out "$TMP/ag.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" tests/lua/check_results.lua agents "$TMP/ag.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/agents.lua"
else bad "lua/exp/agents.lua" "see above"; cat "$TMP/err" >&2; fi

# three tenants under every step order on a short seeded trace: every request
# completes, with its tokens alone (the goals are the GPU run's: bench/tenants.sh)
if "$DJINN" lua/exp/tenants.lua "$MODEL" --device cpu --max-batch 4 --budget 32 --steps 60 \
	--eval-prompt 96 --burst 6 --burst-prompt 8 --burst-new 16 --eval-every 30 --eval-new 12 --user-every 10 --user-new 8 \
	--svc-every 15 --svc-prompt 24 --svc-new 12 --check 1 --sweep 0.8:1,0.9:2.5,0.8:1:0.5 \
	--out "$TMP/tn.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" tests/lua/check_results.lua tenants "$TMP/tn.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/tenants.lua"
else bad "lua/exp/tenants.lua" "see above"; cat "$TMP/err" >&2; fi

# a bad sweep item, a sweep without fcfs or a bad SLO scale: one clear message, exit 2,
# before the model is loaded
for a in "--sweep 1.5:2" "--sweep 0.9" "--sweep 0.9:1:0" "--orders slo --sweep 0.9:2" "--slo-scale 0"; do
	# shellcheck disable=SC2086
	"$DJINN" lua/exp/tenants.lua "$MODEL" --device cpu $a >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" = 2 ] && grep -qE "^tenants: --(sweep|slo-scale)" "$TMP/err" && [ "$(wc -l <"$TMP/err")" = 1 ]; then
		ok "tenants.lua $a refused"
	else bad "tenants.lua $a refused" "exit $rc: $(cat "$TMP/err")"; fi
done

# memory pressure: 16 requests at once where the KV limit holds 2 whole
# caches: the others wait (policy none) and all complete, none failed
if "$DJINN" lua/exp/mempressure.lua "$MODEL" --device cpu --batches 8,16 --prompt 40 --new 8 \
	--kv-limit 200K --kv-dtype f32 --budget 128 --max-batch 16 --out "$TMP/mp.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" tests/lua/check_results.lua mempressure "$TMP/mp.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/mempressure.lua"
else bad "lua/exp/mempressure.lua" "see above"; cat "$TMP/err" >&2; fi

# issue 12's switching protocol on three tiny llamas (different seeds) under a
# budget that holds their fixed parts and about one and a half models' layers
mm_models=
for i in 1 2 3; do
	"$DJINN" mkmodel --shape tiny-llama --seed "$i" "$TMP/mm$i" >"$TMP/out" 2>"$TMP/err" || break
	mm_models="$mm_models $TMP/mm$i"
done
# shellcheck disable=SC2086
if "$DJINN" lua/exp/multimodel.lua $mm_models --vram-budget 17M --device cpu --requests 30 --n 8 \
	--seed 3 --out "$TMP/mm.json" >"$TMP/out" 2>"$TMP/err" &&
   "$DJINN" tests/lua/check_results.lua multimodel "$TMP/mm.json" >>"$TMP/out" 2>>"$TMP/err"; then
	ok "lua/exp/multimodel.lua"
else bad "lua/exp/multimodel.lua" "see above"; fi

echo "lua tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
