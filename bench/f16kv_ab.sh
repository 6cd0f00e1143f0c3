#!/usr/bin/env bash
# f16kv_ab.sh - the f16 KV cache's attention kernels, in one call from a GPU bundle
# (scripts/gpu-bundle-dev.sh): the GPU tests that cover them; the rows attention kernel and the
# decode split kernel on caches of f32 and f16, the f16 ones beside the kernels they replace
# (bin/bench/attn_rows_bench --f16kv, GB/s beside the d2d copy bandwidth of the same run); and
# decode on the Llama-2-7B-shaped f16 model (bin/bench/batch_bench: batch 1 alone in ms a token,
# batch 1 and 64 through the scheduler in ms a step, tokens/s, x batch 1, % of roofline) with an
# f32 cache, an f16 cache, and an f16 cache through the old kernels (DJN_ATTN_F16_OLD=1; OLD=0
# leaves that run out), and with the f16 cache again under each run of AB_ENV (runs separated by
# ';', a run's variables by spaces; default DJN_BATCH_FUSE=0: src/exec/batch.c's fused ops off,
# as they were before bench/results/h100-2026-12-06b-fuse; AB_ENV= leaves these runs out; e.g.
# AB_ENV='DJN_BATCH_FUSE=0;DJN_BATCH_FUSE_RESID=0;DJN_BATCH_FUSE_NORM=0 DJN_BATCH_FUSE_SWIGLU=0').
# Logs and JSON go to OUT_DIR; a short table is printed last.  About 3 to 4 minutes (TESTS=0:
# about 1.5; each further AB_ENV run about 20 s).
# usage: (from the bundle) bench/f16kv_ab.sh OUT_DIR [MODEL_DIR]
#   TESTS=0 skips the tests, MEMCHECK=0 compute-sanitizer on the f16 tests, BATCHES=1,64,
#   OLD=0, AB_ENV='VAR=VALUE [VAR=VALUE...][;...]'
set -uo pipefail
out=${1:?usage: bench/f16kv_ab.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader |
	sed 's/^/gpu: /' | tee -a "$summary"

if [ "${TESTS:-1}" != 0 ]; then
	t0=$SECONDS
	run_test() { # LOG BINARY [ARGS...]
		local log=$1
		shift
		./run.sh "$@" >"$out/$log.log" 2>&1
		note "$log: rc=$? $(grep -o 'Tested: .*' "$out/$log.log" | tail -1)"
		grep -E -A1 'Assertion Failed|CRASH|\[FAIL\]' "$out/$log.log" | head -8
	}
	run_test ops-attention bin/tests/gpu-test-cuda-ops --filter 'attention/*'
	run_test ops-graph bin/tests/gpu-test-cuda-ops --filter 'graph/*'
	run_test ops-group bin/tests/gpu-test-cuda-ops --filter 'matmul/group_shares_x_rounding'
	run_test batch bin/tests/gpu-test-cuda-batch
	run_test model-f16 bin/tests/gpu-test-cuda-model --filter '*/*f16*'
	if [ "${MEMCHECK:-1}" != 0 ] && command -v compute-sanitizer >/dev/null; then
		# both new kernels, over many pages and positions, in two short tests
		for f in 'gpu-test-cuda-ops graph/replay_at_other_positions_f16' \
			'gpu-test-cuda-batch graph/batched_step_replays_with_new_positions_f16' \
			'gpu-test-cuda-batch graph/batched_step_replays_fused_rope_store_f16'; do
			set -- $f
			timeout 60 ./run.sh compute-sanitizer --tool memcheck --error-exitcode 9 \
				"bin/tests/$1" --jobs 1 --filter "$2" >"$out/memcheck-$1.log" 2>&1
			note "memcheck $2: rc=$? $(grep -o 'ERROR SUMMARY: .*' "$out/memcheck-$1.log" | tail -1)"
		done
	fi
	note "tests: $((SECONDS - t0)) s"
fi

echo "== attention kernels (attn_rows_bench --f16kv)" >&2
./run.sh bin/bench/attn_rows_bench --f16kv >"$out/attn.json" 2>"$out/attn.log" ||
	tail -3 "$out/attn.log"

[ -f "$m/config.json" ] || ./run.sh djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" \
	>"$out/mkmodel.log" 2>&1 || { note "mkmodel failed"; tail -3 "$out/mkmodel.log"; exit 1; }

batch() { # NAME KV_DTYPE [VAR=VALUE...]
	local name=$1 kvd=$2
	shift 2
	echo "== 7B decode: $name ($kvd $*)" >&2
	env "$@" ./run.sh bin/bench/batch_bench "$m" --batches "${BATCHES:-1,64}" --prompt 128 \
		--new 64 --check 2 --kv-dtype "$kvd" >"$out/batch-$name.json" 2>"$out/batch-$name.err" ||
		tail -3 "$out/batch-$name.err"
}
batch f32 f32
batch f16 f16
[ "${OLD:-1}" = 0 ] || batch f16-old f16 DJN_ATTN_F16_OLD=1
ab=${AB_ENV-DJN_BATCH_FUSE=0}
i=0
IFS=';' read -ra abs <<<"$ab"
for run in "${abs[@]}"; do
	[ -n "${run// /}" ] || continue
	i=$((i + 1))
	batch "f16-ab$i" f16 $run
done

python3 - "$out" "$ab" <<'PY' | tee -a "$summary"
import json, os, sys
o = sys.argv[1]
ab = [r.strip() for r in sys.argv[2].split(";") if r.strip()]
def load(n):
    p = os.path.join(o, n)
    try:
        return json.load(open(p)) if os.path.getsize(p) else None
    except (OSError, ValueError):
        return None
a = load("attn.json")
if a:
    d2d = a["d2d_GBps"]
    print(f"attention, one layer ({a['device']}; d2d {d2d:.0f} GB/s; old: {a['old']}):")
    print(f"{'kv':<4}{'heads':<11}{'rows':>5}{'ctx':>6} | {'rows kernel us':>14}{'GB/s':>7}{'%d2d':>6}"
          f"{'old us':>8} | {'decode op us':>12}{'old us':>8} | {'err':>8}")
    for r in a["results"]:
        gbs = r["kv_bytes"] / r["new_us"] / 1e3
        print(f"{r['kv_dtype']:<4}{r['n_head']}/{r['n_kv_head']}/{r['head_dim']:<5}{r['rows']:>5}"
              f"{r['ctx']:>6} | {r['new_us']:>14.1f}{gbs:>7.0f}{100 * gbs / d2d:>6.1f}"
              f"{r['old_us']:>8.1f} | {r['session_us'] if r['rows'] == 1 else float('nan'):>12.1f}"
              f"{r['session_old_us'] if r['rows'] == 1 else float('nan'):>8.1f} | "
              f"{max(r['err_new'], r['err_old']):>8.1e}"
              f"{'  WRONG' if max(r['err_new'], r['err_old']) > 1e-4 else ''}")
names = ["f32", "f16", "f16-old"] + [f"f16-ab{i + 1}" for i in range(len(ab))]
runs = [(n, load(f"batch-{n}.json")) for n in names]
runs = [(n, b) for n, b in runs if b]
ref = next((b for n, b in runs if n == "f32"), None)
solo32 = ref["solo_decode_ms_per_token"] if ref else float("nan")
if runs:
    print(f"7B decode (prompt 128, 64 new; goal: batch 64 >= 40x batch 1, i.e. <= "
          f"{64 * solo32 / 40 if ref else float('nan'):.2f} ms a step against this run's f32 "
          f"batch 1 alone, 6.14 against 3.84 ms):")
    print(f"{'kv':<9}{'alone ms/tok':>13}{'batch':>6}{'ms/step':>9}{'tok/s':>8}{'x b1':>6}"
          f"{'x f32 alone':>12}{'roof ms':>8}{'% roof':>7}{'same':>6}{'graph':>10}")
    for n, b in runs:
        b1 = next((x for x in b["batches"] if x["batch"] == 1), None)
        label = n
        if n.startswith("f16-ab"):
            print(f"{n}: f16 with {ab[int(n[6:]) - 1]}")
        for x in b["batches"]:
            xb1 = x["tokens_per_s"] / b1["tokens_per_s"] if b1 else float("nan")
            xf = x["tokens_per_s"] * solo32 / 1e3
            print(f"{label:<9}{b['solo_decode_ms_per_token']:>13.3f}{x['batch']:>6}"
                  f"{x['decode_ms_per_step']:>9.3f}{x['tokens_per_s']:>8.0f}{xb1:>6.1f}{xf:>12.1f}"
                  f"{x['roofline_ms_per_step']:>8.3f}{x['pct_of_roofline']:>7.1f}"
                  f"{x['greedy_same_as_alone']:>4}/{x['checked']}"
                  f"{x.get('graph_steps', -1):>6}/{x.get('steps', -1)}")
PY
