#!/usr/bin/env bash
# sched_gpu.sh - the scheduler issue's measurements in one go, on a GPU
# machine, from a bundle (make bundle): the GPU tests of the batched path,
# batched decode on a Llama-2-7B-shaped f16 model (djinn mkmodel) at several
# batch sizes beside its roofline and beside transformers' batched static-cache
# compiled decode, and the agent density experiment (lua/exp/agents.lua) under
# every policy.  Logs and JSON go to OUT_DIR; a short table is printed last.
# usage: (from the bundle) bench/sched_gpu.sh OUT_DIR [MODEL_DIR]
#   SKIP_TESTS=1, SKIP_BATCH=1, SKIP_HF=1, SKIP_AGENTS=1 leave parts out (the table reads
#   what OUT_DIR holds);
#   BATCHES="1,8,32,64,128", AGENTS="1,8,16,24,32", KV_LIMIT=1G (about five whole agent
#   contexts of the 7B model), TOOL_S=1.0, BUDGET=64 (rows a step), KV_DTYPE=f16 (of
#   djinn's KV cache in the batched decode and the agents; transformers' is f16)
set -uo pipefail
out=${1:?usage: bench/sched_gpu.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
run() { ./run.sh "$@"; }
[ -f "$m/config.json" ] || run djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" >&2 || exit 1

if [ -z "${SKIP_TESTS:-}" ]; then
	echo "== GPU tests of the batched path" >&2
	: >"$out/tests.log"
	for t in bin/tests/gpu-test-cuda-batch bin/tests/gpu-test-cuda-model; do
		[ -x "$t" ] && { run "$t" >>"$out/tests.log" 2>&1 || echo "FAILED: $t" >>"$out/tests.log"; }
	done
	for t in test-sched test-exec test-batch-ops; do
		[ -x "bin/tests/$t" ] && { DJINN_TEST_DEVICE=cuda run "bin/tests/$t" >>"$out/tests.log" 2>&1 ||
			echo "FAILED: $t (cuda)" >>"$out/tests.log"; }
	done
	grep -E "Synthesis|FAILED" "$out/tests.log" >&2
fi

if [ -z "${SKIP_BATCH:-}" ]; then
	echo "== djinn: batched decode" >&2
	run bin/bench/batch_bench "$m" --batches "${BATCHES:-1,8,32,64,128}" --prompt 128 --new 64 \
		--kv-dtype "${KV_DTYPE:-f16}" \
		>"$out/batch.json" 2>"$out/batch.err" || tail -3 "$out/batch.err"
fi

if [ -z "${SKIP_HF:-}" ]; then
	echo "== transformers: batched static-cache compiled decode" >&2
	timeout "${HF_TIMEOUT:-240}" python3 bench/hf_batch.py "$m" --batches "${BATCHES:-1,8,32,64,128}" \
		--prompt-len 128 --new 64 --out "$out/hf_batch.json" >"$out/hf_batch.log" 2>&1 ||
		tail -5 "$out/hf_batch.log"
fi

if [ -z "${SKIP_AGENTS:-}" ]; then
	echo "== agents: density under every policy" >&2
	timeout "${AGENTS_TIMEOUT:-300}" ./run.sh djinn lua/exp/agents.lua "$m" --device cuda \
		--agents "${AGENTS:-1,8,16,24,32}" --kv-limit "${KV_LIMIT:-1G}" --rate 20 --steps 3 \
		--think 32 --tool-s "${TOOL_S:-1.0}" --tool-tokens 8 --prompt 64 --check 3 \
		--budget "${BUDGET:-64}" --kv-dtype "${KV_DTYPE:-f16}" \
		--out "$out/agents.json" --trace-out "$out/agents_trace.json" 2>"$out/agents.log" ||
		tail -5 "$out/agents.log"
fi

python3 - "$out" <<'PY'
import json, os, sys
o = sys.argv[1]
def load(n):
    p = os.path.join(o, n)
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else None
b, h, a = load("batch.json"), load("hf_batch.json"), load("agents.json")
if b:
    base = next((x for x in b["batches"] if x["batch"] == 1), None)
    hf = {x["batch"]: x for x in (h or {}).get("batches", [])}
    print(f"d2d {b['d2d_bytes_per_s']/1e12:.2f} TB/s, weights {b['weight_bytes']/1e9:.2f} GB, "
          f"KV {b.get('kv_dtype', 'f32')}; "
          f"batch 1 alone {b['solo_decode_ms_per_token']:.3f} ms/token")
    print(f"{'batch':>5} {'ms/step':>8} {'tok/s':>8} {'x b1':>6} {'roof ms':>8} {'% roof':>6} "
          f"{'hf tok/s':>9} {'vs hf':>6} {'graphs':>6} {'same':>5}")
    for x in b["batches"]:
        hx = hf.get(x["batch"], {})
        ht = hx.get("tokens_per_s")
        print(f"{x['batch']:>5} {x['decode_ms_per_step']:>8.3f} {x['tokens_per_s']:>8.0f} "
              f"{x['tokens_per_s']/base['tokens_per_s'] if base else 0:>6.1f} "
              f"{x['roofline_ms_per_step']:>8.3f} {x['pct_of_roofline']:>6.1f} "
              f"{'-' if ht is None else round(ht):>9} "
              f"{(x['tokens_per_s']/ht) if ht else float('nan'):>6.2f} {x['graph_steps']:>6} "
              f"{x['greedy_same_as_alone']}/{x['checked']} ({x.get('agreed_before_parting', 1):.2f})")
if a:
    print(f"agents: SLO {a.get('slo_ms') or float('nan'):.2f} ms (P99 token latency), density {a['density']}")
    for r in a["runs"]:
        print(f"  {r['policy']:<9} n={r['n_agents']:<4} done {r['completed']}/{r['n_agents']} "
              f"token p50 {r['token_ms']['p50']:.2f} p99 {r['token_ms']['p99']:.2f} ms "
              f"ttft p99 {r['ttft_ms']['p99']:.0f} ms {r['tokens_per_s']:.0f} tok/s "
              f"swaps {r['swaps_out']}/{r['swaps_in']} {r['swap_gbps']:.1f} GB/s "
              f"signal p99 {r['signal_ms']['p99']:.2f} ms same={r['identical']} ({r.get('agreed_before_parting', 1):.2f})")
PY
