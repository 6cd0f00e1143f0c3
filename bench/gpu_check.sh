#!/usr/bin/env bash
# gpu_check.sh - one call's worth of GPU work from a bundle (scripts/bundle.sh): the CUDA tests,
# the 7B decode benchmark (recorded graph and op by op), and where one decode step's time goes,
# kernel by kernel (Nsight Compute, when it is there).  Logs go to OUT_DIR; a table is printed last.
# usage: (from the bundle) bench/gpu_check.sh OUT_DIR [MODEL_DIR]
#   TESTS=0 skips the tests, NCU=0 the kernel breakdown, BENCH=0 the 7B benchmark.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader |
	sed 's/^/gpu: /' | tee -a "$summary"

if [ "${TESTS:-1}" != 0 ]; then
	for t in gpu-test-cuda-ops gpu-test-cuda-model gpu-test-ringbuf-gpu; do
		[ -x bin/tests/$t ] || continue
		./run.sh bin/tests/$t --jobs 1 >"$out/$t.log" 2>&1
		note "$t: rc=$? $(grep -o 'Tested: .*' "$out/$t.log" | tail -1)"
	done
	for t in test-exec test-ringbuf test-hf-fixtures; do
		[ -x bin/tests/$t ] || continue
		DJINN_TEST_DEVICE=cuda ./run.sh bin/tests/$t --jobs 1 >"$out/$t-cuda.log" 2>&1
		note "$t on cuda: rc=$? $(grep -o 'Tested: .*' "$out/$t-cuda.log" | tail -1)"
	done
	if command -v compute-sanitizer >/dev/null && [ -x bin/tests/gpu-test-cuda-ops ]; then
		for f in graph fused; do
			./run.sh compute-sanitizer --tool memcheck --error-exitcode 9 \
				bin/tests/gpu-test-cuda-ops --jobs 1 --filter "$f/*" >"$out/memcheck-$f.log" 2>&1
			note "memcheck $f ops: rc=$? $(grep -o 'ERROR SUMMARY: .*' "$out/memcheck-$f.log" | tail -1)"
		done
	fi
fi

[ -f "$m/config.json" ] || ./run.sh djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" \
	>"$out/mkmodel.log" 2>&1 || { note "mkmodel failed"; exit 1; }

bench() { # NAME [VAR=VALUE...]: the 7B decode benchmark, its JSON in OUT_DIR/NAME.json
	local name=$1
	shift
	env "$@" ./run.sh bin/bench/gpu_debug_bench "$m" --prompt 512 --new 128 --ctx 2048 \
		>"$out/$name.json" 2>"$out/$name.err" || tail -3 "$out/$name.err"
	note "== $name $*"
	python3 - "$out/$name.json" <<'PY' | tee -a "$summary"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"roofline {d['roofline_ms_per_token']:.3f} ms/token ({d['weight_bytes']/1e9:.2f} GB / {d['d2d_bytes_per_s']/1e12:.2f} TB/s d2d)")
print(f"decode graph {d['decode_ms_per_token']:.3f} ms/token = {d['pct_of_roofline']:.1f}% ({d['graph_steps']} steps replayed); op by op {d['decode_ms_per_token_op_by_op']:.3f}; TTFT {d['ttft_ms']:.1f} ms")
print(f"armed never-hit bps: stats +{d['bp_stats_overhead_pct']:.2f}%, pos +{d['bp_pos_overhead_pct']:.2f}%; inspect {d['inspect_ms']:.3f} ms")
print(f"checkpoint {d['checkpoint_pct_of_d2d']:.0f}% / restore {d['restore_pct_of_d2d']:.0f}% of d2d ({d['ckpt_bytes']/2**30:.2f} GiB each way); memory +{d['device_used_over_weights_plus_kv_pct']:.1f}%")
PY
}
if [ "${BENCH:-1}" != 0 ]; then
	bench debug
	[ "${BENCH_PDL0:-0}" = 0 ] || bench debug-pdl0 DJINN_PDL=0
	[ -z "${BENCH_ENV:-}" ] || bench debug-env $BENCH_ENV
fi
if [ -n "${AB:-}" ]; then # AB="A=1;A=0 B=2": decode alone under each setting, twice, interleaved
	IFS=';' read -ra settings <<<"$AB"
	for round in 1 2; do
		for i in "${!settings[@]}"; do
			env ${settings[$i]} ./run.sh bin/bench/gpu_debug_bench "$m" --prompt 512 --new 128 \
				--ctx 2048 --decode-only >"$out/ab$i-$round.json" 2>>"$out/ab.err"
			note "ab $round [${settings[$i]}]: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['decode_ms_per_token']:.4f} ms/token {d['pct_of_roofline']:.1f}% of {d['roofline_ms_per_token']:.3f}\")" "$out/ab$i-$round.json")"
		done
	done
fi

if [ "${NCU:-1}" != 0 ] && command -v ncu >/dev/null; then
	# a one-token prompt: its chunk is a decode-shaped step; the first layers
	# and the kernels before them are enough (every layer is the same)
	DJINN_GRAPH=0 ./run.sh ncu --clock-control none --csv --print-units base --launch-count "${NCU_KERNELS:-60}" \
		--metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
		bin/djinn generate "$m" --device cuda -t 0 -n 1 -p x >"$out/ncu.csv" 2>"$out/ncu.err"
	python3 - "$out/ncu.csv" <<'PY' | tee -a "$summary"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    print("ncu: no rows"); sys.exit()
h = rows[0]; ix = {k: i for i, k in enumerate(h)}
k = collections.OrderedDict()
for r in rows[1:]:
    if not r[ix["ID"]].isdigit():
        continue
    key = (r[ix["ID"]], r[ix["Kernel Name"]][:40])
    k.setdefault(key, {})[r[ix["Metric Name"]]] = float(r[ix["Metric Value"]].replace(",", ""))
print(f"{'kernel':42s} {'us':>8s} {'MB read':>9s} {'TB/s':>6s}")
for (i, name), v in k.items():
    t = v.get("gpu__time_duration.sum", 0) / 1e3  # ns -> us
    rd = v.get("dram__bytes_read.sum", 0)
    print(f"{name:42s} {t:8.2f} {rd/1e6:9.2f} {rd/t/1e6 if t else 0:6.2f}")
PY
fi
echo "== summary"
cat "$summary"
