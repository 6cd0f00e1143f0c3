#!/usr/bin/env bash
# gpu_all.sh - the CUDA issue's measurements in one go, on a GPU machine, from
# a bundle (scripts/bundle.sh): a Llama-2-7B-shaped f16 model made with
# `djinn mkmodel`, djinn against transformers on it (logits, greedy tokens,
# decode and TTFT with eager and compiled PyTorch), and what debugging costs
# (bench/gpu_debug_bench.c).  Logs and JSON go to OUT_DIR.
# usage: (from the bundle) bench/gpu_all.sh OUT_DIR [MODEL_DIR]
set -uo pipefail
out=${1:?usage: bench/gpu_all.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
run() { ./run.sh "$@"; }
[ -f "$m/config.json" ] || run djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" >&2 || exit 1

echo "== correctness: 64-token prompt, 32 greedy tokens, against transformers" >&2
python3 bench/hf_reference.py "$m" --prompt-len 64 --steps 32 --out "$out/hf_ref.json" \
	--logits-npy /tmp/hf_logits.npy >"$out/hf_ref.log" 2>&1 || tail -5 "$out/hf_ref.log"
prompt=$(python3 bench/bench_report.py prompt "$m" 64)
run djinn generate "$m" --device cuda -t 0 -n 32 -p "$prompt" --logits-out /tmp/dj_logits.npy \
	>"$out/djinn_ref.txt" 2>"$out/djinn_ref.err" || tail -3 "$out/djinn_ref.err"
python3 bench/compare_logits.py "$out/hf_ref.json" /tmp/hf_logits.npy /tmp/dj_logits.npy \
	--out "$out/compare.json"

echo "== djinn: speed and the cost of debugging" >&2
run bin/bench/gpu_debug_bench "$m" --prompt 512 --new 128 --ctx 2048 >"$out/debug.json" \
	2>"$out/debug.err" || tail -3 "$out/debug.err"
cat "$out/debug.json"

echo "== transformers: eager and compiled" >&2
timeout "${HF_TIMEOUT:-300}" python3 bench/hf_speed.py "$m" --prompt-len 512 --new 128 \
	--out "$out/hf_speed.json" >"$out/hf_speed.log" 2>&1 || tail -5 "$out/hf_speed.log"
python3 - "$out" <<'PY'
import json, sys, os
o = sys.argv[1]
d = json.load(open(f"{o}/debug.json"))
hs = json.load(open(f"{o}/hf_speed.json")) if os.path.exists(f"{o}/hf_speed.json") else {}
print(f"roofline {d['roofline_ms_per_token']:.3f} ms/token (weights {d['weight_bytes']/1e9:.2f} GB / d2d {d['d2d_bytes_per_s']/1e12:.2f} TB/s)")
print(f"djinn decode {d['decode_ms_per_token']:.3f} ms/token = {d['pct_of_roofline']:.1f}% of roofline ({d['graph_steps']} steps replayed from graphs); op by op {d['decode_ms_per_token_op_by_op']:.3f} ms/token; TTFT {d['ttft_ms']:.1f} ms")
for k, v in hs.items():
    if isinstance(v, dict) and "decode_ms_per_token" in v:
        print(f"transformers {k}: decode {v['decode_ms_per_token']:.3f} ms/token, TTFT {v.get('ttft_ms', float('nan')):.1f} ms")
print(f"armed never-hit bps (stats cond): +{d['bp_stats_overhead_pct']:.2f}%  (pos cond): +{d['bp_pos_overhead_pct']:.2f}%")
print(f"inspect at a hit: {d['inspect_ms']:.3f} ms; checkpoint of {d['ckpt_bytes']/2**30:.2f} GiB (KV {d['kv_bytes']/2**30:.2f} GiB + activations) {d['checkpoint_ms']:.2f} ms ({d['checkpoint_pct_of_d2d']:.0f}% of d2d; KV bytes alone {d['checkpoint_kv_only_pct_of_d2d']:.0f}%), restore {d['restore_ms']:.2f} ms ({d['restore_pct_of_d2d']:.0f}%; {d['restore_kv_only_pct_of_d2d']:.0f}%)")
print(f"device memory over weights+KV: {d['device_used_over_weights_plus_kv_pct']:.1f}%")
if os.path.exists(f"{o}/compare.json"):
    c = json.load(open(f"{o}/compare.json"))
    print("correctness:", json.dumps(c)[:400])
PY
