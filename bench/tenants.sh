#!/usr/bin/env bash
# tenants.sh - the tenants issue's measurements in one go, on a GPU machine,
# from a bundle (scripts/gpu-bundle-dev.sh): (a) three tenants under every
# step order on one seeded trace (lua/exp/tenants.lua) and (b) memory
# pressure: transformers' generate at rising batch sizes until it runs out of
# memory (bench/hf_mempressure.py), then djinn at and past the largest batch
# transformers completed (lua/exp/mempressure.lua), on the Llama-2-7B-shaped
# f16 model that djinn mkmodel writes (safetensors: both read the same files).
# JSON and logs go to OUT_DIR, plots (gnuplot) to OUT_DIR/plots; a short
# table with each goal beside its number is printed last.
# usage: (from the bundle) bench/tenants.sh OUT_DIR [MODEL_DIR]
#   SKIP_TESTS=1, SKIP_TENANTS=1, SKIP_HF=1, SKIP_DJINN=1, SKIP_PLOTS=1 leave parts out (the table reads
#   what OUT_DIR holds); HF_BATCHES="64,128,256,384,512", PROMPT=512, NEW=64 (memory
#   pressure), KV_LIMIT (djinn's KV pages; default: what is free on the device less the
#   weights and the activations of a full step, from the model's shape: kv_limit below),
#   TENANT_ARGS (more options for tenants.lua, e.g. "--slo-x 2.5 --steps 1000")
set -uo pipefail
out=${1:?usage: bench/tenants.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
run() { ./run.sh "$@"; }

# The KV limit for memory pressure (MiB, "NNNM"): what is free on the device
# (FREE_MIB, measured before djinn starts) less the weights (the model's
# safetensors, as loaded) less a full step's activations from the model's
# shape, at BUDGET rows and MAX_BATCH sessions:
#   the batch's arena   4 B x (budget x (4 dim + q + 2 kv + 3 hidden) + max_batch x (2 dim + vocab))
#   the sessions' heads 4 B x max_batch x (dim + vocab)   (final_norm and logits each)
#   two chunks alone    2 x 4 B x 512 x (10 dim + 3 hidden)  (a batch of one runs alone)
#   the f16 matmul scratch  1.5 x 2 x 2 B x budget x hidden
#   and 3 GiB for the CUDA context, cuBLAS, attention scratch and allocator slack.
# Sessions whose whole cache does not fit wait (policy none) and run later.
kv_limit() {
	python3 - "$@" <<'PY'
import glob, json, os, sys
m, free, budget, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = json.load(open(os.path.join(m, "config.json")))
dim, hid, voc = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
nh = c["num_attention_heads"]; hd = c.get("head_dim", dim // nh)
q, kv = nh * hd, c.get("num_key_value_heads", nh) * hd
w = sum(os.path.getsize(f) for f in glob.glob(os.path.join(m, "*.safetensors")))
act = (4 * (budget * (4 * dim + q + 2 * kv + 3 * hid) + mb * (2 * dim + voc))
       + 4 * mb * (dim + voc) + 2 * 4 * 512 * (10 * dim + 3 * hid)
       + int(1.5 * 2 * 2 * budget * hid) + (3 << 30))
lim = free - (w + act) // (1 << 20)
if lim <= 0:
    sys.exit(1)
print(f"{lim}M")
PY
}
[ -f "$m/config.json" ] || run djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" >&2 || exit 1
prompt=${PROMPT:-512}
new=${NEW:-64}

if [ -z "${SKIP_TESTS:-}" ]; then
	echo "== the tenants tests on the GPU" >&2
	: >"$out/tests.log"
	for t in test-tenants; do
		[ -x "bin/tests/$t" ] && { DJINN_TEST_DEVICE=cuda run "bin/tests/$t" >>"$out/tests.log" 2>&1 ||
			echo "FAILED: $t (cuda)" >>"$out/tests.log"; }
	done
	grep -E "Synthesis|FAILED" "$out/tests.log" >&2
fi

if [ -z "${SKIP_TENANTS:-}" ]; then
	echo "== tenants: every step order on one trace" >&2
	# shellcheck disable=SC2086
	timeout "${TENANTS_TIMEOUT:-150}" ./run.sh djinn lua/exp/tenants.lua "$m" --device cuda \
		--kv-dtype f16 --check 1 ${TENANT_ARGS:-} --out "$out/tenants.json" 2>"$out/tenants.log" ||
		tail -5 "$out/tenants.log"
	grep '^tenants:' "$out/tenants.log" >&2
fi

if [ -z "${SKIP_HF:-}" ]; then
	echo "== transformers: generate at rising batch sizes until out of memory" >&2
	timeout "${HF_TIMEOUT:-150}" python3 bench/hf_mempressure.py "$m" \
		--batches "${HF_BATCHES:-64,128,256,384,512}" --prompt-len "$prompt" --new "$new" \
		--out "$out/hf_mempressure.json" >"$out/hf_mempressure.log" 2>&1 ||
		tail -5 "$out/hf_mempressure.log"
	grep '^hf_mempressure:' "$out/hf_mempressure.log" >&2
fi

if [ -z "${SKIP_DJINN:-}" ]; then
	echo "== djinn: at and past transformers' largest batch" >&2
	hf_max=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["largest_ok"])' \
		"$out/hf_mempressure.json" 2>/dev/null || echo 0)
	[ "$hf_max" -gt 0 ] 2>/dev/null || hf_max=${HF_MAX:-256}
	limit=${KV_LIMIT:-}
	if [ -z "$limit" ]; then
		free=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits -i 0 | head -1)
		limit=$(kv_limit "$m" "$free" 2048 256) || limit=
		[ -n "$limit" ] || { echo "tenants.sh: cannot size the KV limit (free '$free' MiB)" >&2; limit=16G; }
		echo "djinn: KV limit $limit ($free MiB free before it starts)" >&2
	fi
	timeout "${DJINN_TIMEOUT:-150}" ./run.sh djinn lua/exp/mempressure.lua "$m" --device cuda \
		--batches "$hf_max,$((2 * hf_max))" --prompt "$prompt" --new "$new" --kv-limit "$limit" \
		--kv-dtype f16 --budget 2048 --max-batch 256 --out "$out/mempressure.json" \
		2>"$out/mempressure.log" || tail -5 "$out/mempressure.log"
	grep '^mempressure:' "$out/mempressure.log" >&2
fi

[ -n "${SKIP_PLOTS:-}" ] || bench/plot_tenants.sh "$out" "$out/plots" >&2 ||
	echo "tenants.sh: the plots failed (gnuplot?)" >&2

python3 - "$out" <<'PY'
import json, os, sys
o = sys.argv[1]
def load(n):
    p = os.path.join(o, n)
    try:
        return json.load(open(p)) if os.path.getsize(p) else None
    except (OSError, ValueError):
        return None
t, h, d = load("tenants.json"), load("hf_mempressure.json"), load("mempressure.json")
tl = os.path.join(o, "tests.log")
if os.path.exists(tl):
    for line in open(tl, errors="replace"):
        if "Synthesis" in line or "FAILED" in line:
            print("tests (cuda):", line.strip())
if t:
    c = t["calibration"]
    print(f"tenants on {t['model']['name']} ({t['model']['device']}): step {c['base_ms']:.2f} ms + "
          f"{c['row_ms']:.4f} ms a row; SLO {c['slo_ms']:.2f} ms for the interactive tenant; "
          f"{t['trace']['n']} requests {t['trace']['per_tenant']}")
    print("(tpot: the latency of each token after a request's first; ttft: its first, from arrival; "
          "viol: tpot over the SLO)")
    print(f"{'order':<9} {'tok/s':>7} {'tenant':<5} {'tok/s':>7} {'tpot p50':>8} {'tpot p99':>9} "
          f"{'ttft p50':>9} {'ttft p99':>9} {'viol':>11} {'done':>7} {'same':>5}")
    runs = {r["order"]: r for r in t["runs"]}
    for r in t["runs"]:
        for k, x in enumerate(r["tenants"]):
            v = f"{x['violations']} {100 * x['violation_frac']:.1f}%" if x.get("slo_ms") else "-"
            tot = f"{r['tokens_per_s']:.0f}" if k == 0 else ""
            print(f"{r['order'] if k == 0 else '':<9} {tot:>7} "
                  f"{x['tenant']:<5} {x['tokens_per_s']:>7.0f} {x['token_ms']['p50']:>8.2f} "
                  f"{x['token_ms']['p99']:>9.2f} {x['ttft_ms']['p50']:>9.1f} {x['ttft_ms']['p99']:>9.1f} {v:>11} "
                  f"{x['completed']:>3}/{x['requests']:<3} {str(r['identical']) if k == 0 else '':>5}")
    f, s, p = runs.get("fcfs"), runs.get("slo"), runs.get("priority")
    if f and s:
        fu, su = f["tenants"][0], s["tenants"][0]
        print(f"goal slo: interactive late tokens {su['violations']}, requests with one "
              f"{su['requests_violated']} (want 0) where fcfs has {100 * fu['violation_frac']:.1f}% "
              f"of tokens, {100 * fu['requests_violated'] / max(fu['requests'], 1):.1f}% of requests "
              f"(want > 10%); throughput "
              f"{s['tokens_per_s'] / f['tokens_per_s']:.3f} x fcfs (want >= 0.95)")
        tr = s.get("step_trace")
        if tr:
            # the steps that made interactive tokens late, against the model
            # (a token's latency is the gap before its step and the step)
            late = [i for i, n in enumerate(tr["late"]) if n > 0]
            over = [tr["gap_ms"][i] + tr["ms"][i] - tr["predicted_ms"][i] for i in range(len(tr["ms"]))]
            def row(name, ix):
                if not ix:
                    return
                q = lambda v: sorted(v)[len(v) // 2]
                print(f"slo steps {name:<6} n {len(ix):>4}: ms p50 {q([tr['ms'][i] for i in ix]):6.2f} "
                      f"predicted {q([tr['predicted_ms'][i] for i in ix]):6.2f} over-run p50 "
                      f"{q([over[i] for i in ix]):6.2f} max {max(over[i] for i in ix):6.2f}; rows p50 "
                      f"{q([tr['rows'][i] for i in ix])}, reads p50 {q([tr['kv'][i] for i in ix])}, "
                      f"gap max {max(tr['gap_ms'][i] for i in ix):.2f}, margin p50 {q([tr['margin_ms'][i] for i in ix]):.2f}")
            row("all", list(range(len(tr["ms"]))))
            row("late", late)
    for w in t.get("sweep", []):
        fw, sw = w["fcfs"], w["slo"]
        print(f"goal slo (headroom {w['headroom']:g}, slo {w['slo_ms']:.2f} ms = {w['scale']:g} x, "
              f"load {w.get('load', 1):g}): "
              f"interactive late tokens {sw['late']}, requests with one {sw['requests_late']} (want 0) "
              f"where fcfs has {100 * fw['late_frac']:.1f}% of tokens, "
              f"{100 * fw['requests_late'] / max(fw['requests'], 1):.1f}% of requests (want > 10%); "
              f"throughput {w['throughput_x_fcfs']:.3f} x fcfs (want >= 0.95); same={sw['identical']}")
    if f and p:
        k = "token_all_ms" if "token_all_ms" in f["tenants"][0] else "token_ms"
        fp, pp = f["tenants"][0][k]["p99"], p["tenants"][0][k]["p99"]
        print(f"goal priority: interactive p99 of every token (the first from its add) {fp:.1f} ms (fcfs) / "
              f"{pp:.1f} ms (priority) = {fp / max(pp, 1e-9):.2f}x (want >= 2)")
if h or d:
    print(f"memory pressure: prompt {(h or {}).get('prompt_len', '?')}, {(h or {}).get('new', '?')} new tokens")
    print(f"{'who':<13} {'batch':>6} {'done':>11} {'tok/s':>8} {'peak GB':>8} {'note'}")
    for x in (h or {}).get("batches", []):
        ok = "error" not in x
        print(f"{'transformers':<13} {x['batch']:>6} {(str(x['batch']) + '/' + str(x['batch'])) if ok else 'failed':>11} "
              f"{x.get('tokens_per_s', float('nan')):>8.0f} {x.get('peak_reserved_bytes', 0) / 1e9:>8.1f} "
              f"{'' if ok else x['error'][:60]}")
    for x in (d or {}).get("runs", []):
        print(f"{'djinn':<13} {x['batch']:>6} {str(x['completed']) + '/' + str(x['batch']):>11} "
              f"{x['tokens_per_s']:>8.0f} {x['device_peak_bytes'] / 1e9:>8.1f} "
              f"failed {x['failed']}, most {x['max_batch']} a step, KV peak {x['kv_peak_bytes'] / 1e9:.1f} GB, same={x['identical']}")
    if h and d:
        best = max([x["batch"] for x in d["runs"] if x["failed"] == 0 and x["completed"] == x["batch"]] or [0])
        print(f"goal: djinn completes {best} with no failed request, transformers at most "
              f"{h['largest_ok']}: {best / max(h['largest_ok'], 1):.2f}x (want >= 2)")
PY
