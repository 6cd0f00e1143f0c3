#!/usr/bin/env bash
# multimodel.sh - issue 12's switching experiment on one GPU, from a bundle
# (scripts/bundle.sh): three synthetic f16 models of real shapes (djinn
# mkmodel: llama-2-7b, mistral-7b, phi-2; about 31 GiB together) share one
# VRAM pool; a seeded Zipf trace of sequential requests (prompt + NEW greedy
# tokens) runs through lua/exp/multimodel.lua at each budget, and the same
# trace through the PyTorch baselines (bench/multimodel_torch.py: pinned
# state dict -> .to("cuda") per switch, pageable .to("cuda"), cold
# from_pretrained from the safetensors), each bounded by `timeout`.  The
# pinned host-to-device bandwidth is measured first (torch, 1 GiB copies)
# and given to every run, which reports its misses as a share of it.
#
# usage: (from the bundle) bench/multimodel.sh OUT_DIR [MODELS_DIR]
#
# MODELS_DIR (default /tmp/djinn-multimodel) gets one directory per shape,
# made when it has no config.json (seed i for the i-th shape; about a minute
# for the three).  Writes OUT_DIR/djinn-BUDGET.json, torch-MODE.json, their
# logs and summary.json, and prints the table last; `bench/plot_multimodel.sh
# OUT_DIR/*.json PLOT_DIR` draws the latency CDFs (where gnuplot is).
#
# Environment: SHAPES ("llama-2-7b mistral-7b phi-2"), BUDGETS ("20G 25G 32G
# 40G"), TORCH_TRACE (the budget whose JSON the baselines replay: 25G, else
# the first), REQUESTS (30), NEW (32), SEED (1), ZIPF_S (1.0), DEVICE (cuda),
# TORCH_MODES ("pinned pageable cold"), TORCH_BUDGET_GIB (0: one model on
# the GPU at a time), TORCH_TIMEOUT (s per baseline, 100), DJINN_TIMEOUT (s
# per budget, 150), SKIP_TORCH=1, PYTHON (python3), DJINN (a command to run
# djinn, default ./run.sh djinn).  A step that fails is logged and the
# others still run; the exit status is 1 when any djinn run did not complete
# 30/30 with identical tokens.
set -uo pipefail
usage="usage: bench/multimodel.sh OUT_DIR [MODELS_DIR]"
out=${1:?$usage}
mdir=${2:-/tmp/djinn-multimodel}
py=${PYTHON:-python3}
read -r -a shapes <<<"${SHAPES:-llama-2-7b mistral-7b phi-2}"
read -r -a budgets <<<"${BUDGETS:-20G 25G 32G 40G}"
read -r -a modes <<<"${TORCH_MODES:-pinned pageable cold}"
requests=${REQUESTS:-30}
new=${NEW:-32}
seed=${SEED:-1}
zipf_s=${ZIPF_S:-1.0}
device=${DEVICE:-cuda}
torch_to=${TORCH_TIMEOUT:-100}
djinn_to=${DJINN_TIMEOUT:-150}
read -r -a djinn <<<"${DJINN:-./run.sh djinn}"
t_start=$(date +%s)
say() { printf '== [%3ds] %s\n' $(($(date +%s) - t_start)) "$*" >&2; }

[ ${#shapes[@]} -ge 1 ] && [ ${#budgets[@]} -ge 1 ] || { echo "multimodel: no SHAPES or BUDGETS" >&2; exit 2; }
mkdir -p "$out" "$mdir" || exit 2
if [ "$device" = cuda ]; then
	command -v nvidia-smi >/dev/null || { echo "multimodel: nvidia-smi not found: is this the GPU machine?" >&2; exit 2; }
fi

# --- the models -----------------------------------------------------------------------------
models=()
i=0
for s in "${shapes[@]}"; do
	i=$((i + 1))
	d=$mdir/$s
	for m in ${models[@]+"${models[@]}"}; do [ "$m" = "$d" ] && d=$mdir/$s-$i; done
	models+=("$d")
	[ -f "$d/config.json" ] && continue
	avail=$(df -Pk "$mdir" | awk 'NR == 2 { print int($4 / 1048576) }')
	say "making $s (f16, seed $i) in $d ($avail GiB free)"
	"${djinn[@]}" mkmodel --shape "$s" --dtype f16 --seed "$i" --force "$d" >"$out/mkmodel-$i.log" 2>&1 ||
		{ tail -5 "$out/mkmodel-$i.log" >&2; echo "multimodel: mkmodel $s failed" >&2; exit 1; }
done

# --- pinned host-to-device bandwidth ---------------------------------------------------------
h2d=
if [ "$device" = cuda ]; then
	h2d=$("$py" - 2>"$out/h2d.log" <<'PY'
import statistics, torch
n = 1 << 30
h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
d = torch.empty(n, dtype=torch.uint8, device="cuda")
for _ in range(3):
    d.copy_(h, non_blocking=True)
torch.cuda.synchronize()
ts = []
for _ in range(10):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); d.copy_(h, non_blocking=True); b.record(); b.synchronize()
    ts.append(a.elapsed_time(b) / 1e3)
print(f"{n / statistics.median(ts) / 1e9:.3f}")
PY
) || { tail -3 "$out/h2d.log" >&2; h2d=; }
	say "pinned H2D: ${h2d:-not measured} GB/s"
fi
h2d_arg=()
[ -n "$h2d" ] && h2d_arg=(--h2d-gbps "$h2d")

# --- djinn at every budget (the first run makes the reference of each model alone) ----------
status=0
refs=()
for b in "${budgets[@]}"; do
	say "djinn, budget $b"
	j=$out/djinn-$b.json
	rm -f "$j"
	timeout "$djinn_to" "${djinn[@]}" lua/exp/multimodel.lua "${models[@]}" --vram-budget "$b" \
		--device "$device" --requests "$requests" --n "$new" --seed "$seed" --zipf-s "$zipf_s" \
		--label "djinn-$b" ${h2d_arg[@]+"${h2d_arg[@]}"} ${refs[@]+"${refs[@]}"} --out "$j" \
		>"$out/djinn-$b.log" 2>&1
	rc=$?
	tail -1 "$out/djinn-$b.log" >&2
	[ $rc -eq 0 ] || { status=1; echo "multimodel: djinn at $b: exit $rc (see $out/djinn-$b.log)" >&2; }
	[ ${#refs[@]} -eq 0 ] && [ -f "$j" ] && refs=(--refs "$j")
done

# --- the baselines, on the trace of one budget ------------------------------------------------
trace_json=$out/djinn-${TORCH_TRACE:-25G}.json
[ -f "$trace_json" ] || trace_json=$out/djinn-${budgets[0]}.json
if [ "${SKIP_TORCH:-0}" != 1 ] && [ "$device" = cuda ]; then
	if [ ! -f "$trace_json" ]; then
		echo "multimodel: no djinn result to take the trace from: baselines skipped" >&2
	else
		for mode in "${modes[@]}"; do
			say "torch $mode (at most $torch_to s)"
			timeout "$torch_to" "$py" bench/multimodel_torch.py "$trace_json" --mode "$mode" \
				--budget-gib "${TORCH_BUDGET_GIB:-0}" ${h2d_arg[@]+"${h2d_arg[@]}"} \
				--out "$out/torch-$mode.json" >"$out/torch-$mode.log" 2>&1
			rc=$?
			grep -a '^multimodel_torch: torch-' "$out/torch-$mode.log" | tail -1 >&2
			[ $rc -eq 124 ] && echo "multimodel: torch $mode: cut at $torch_to s (what it did is kept)" >&2
		done
	fi
fi

# --- the table ------------------------------------------------------------------------------------
say "done"
"$py" - "$out" "${budgets[@]}" <<'PY'
import json, os, sys
out, budgets = sys.argv[1], sys.argv[2:]
def load(name):
    p = os.path.join(out, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def f(x, fmt="%.1f"):
    return "-" if x is None else fmt % x
rows = [(f"djinn {b}", load(f"djinn-{b}.json")) for b in budgets]
torch = [(f"torch-{m}", load(f"torch-{m}.json")) for m in ("pinned", "pageable", "cold")]
h2d = None
print(f"{'system':<16} {'P50 ms':>8} {'P99 ms':>8} {'mean ms':>8} {'switch p50':>10} "
      f"{'hit/part/miss':>13} {'miss GB/s':>9} {'% H2D':>6} {'done/failed':>11} {'identical':>9}")
summary = {"h2d_gbps": None, "systems": {}}
for name, r in rows + torch:
    if r is None or r.get("summary") is None:
        print(f"{name:<16} (no result)")
        continue
    s = r["summary"]
    h2d = h2d or s.get("h2d_gbps")
    sw = (s.get("switch_ms") or {}).get("p50")
    frac = s.get("miss_bw_frac")
    print(f"{name:<16} {f(s['p50_ms']):>8} {f(s['p99_ms']):>8} {f(s['mean_ms']):>8} {f(sw):>10} "
          f"{'%d/%d/%d' % (s['hit'], s['partial'], s['miss']):>13} {f(s['miss_gbps'], '%.2f'):>9} "
          f"{f(frac * 100 if frac is not None else None, '%.1f'):>6} "
          f"{'%d/%d' % (s['completed'], s['failed']):>11} {s['tokens_identical']:>9}")
    summary["systems"][name] = {k: s.get(k) for k in (
        "p50_ms", "p99_ms", "mean_ms", "hit", "partial", "miss", "miss_gbps", "miss_bw_frac",
        "completed", "failed", "tokens_identical")}
summary["h2d_gbps"] = h2d
# where djinn's switch time goes: the switches that copied, summed.  bound:
# their bytes at the pinned H2D bandwidth measured above; other: the rest
# (queuing the copies, evictions, gaps between copies, the call itself)
print(f"\nswitches that copied, summed (pinned H2D {f(h2d, '%.2f')} GB/s, measured first in this run)")
print(f"{'system':<16} {'GB':>7} {'copies':>6} {'evicted':>7} {'switch ms':>9} {'queue ms':>8} "
      f"{'wait ms':>8} {'bound ms':>8} {'other ms':>8} {'miss GB/s':>9} {'H2D GB/s':>8} {'% H2D':>6}")
for name, r in rows:
    s = r["summary"] if r and r.get("summary") else None
    b = s.get("switch_breakdown") if s else None
    if not b or not s.get("copied_bytes"):
        print(f"{name:<16} (no switch copied)")
        continue
    frac = s.get("miss_bw_frac")
    print(f"{name:<16} {s['copied_bytes'] / 1e9:>7.2f} {b['copies']:>6} {b['evicted']:>7} "
          f"{f(s.get('copied_ms')):>9} {f(b['queue_ms']):>8} {f(b['wait_ms']):>8} "
          f"{f(b.get('bound_ms')):>8} {f(b.get('other_ms')):>8} {f(s['miss_gbps'], '%.2f'):>9} "
          f"{f(h2d, '%.2f'):>8} {f(frac * 100 if frac is not None else None, '%.1f'):>6}")
    summary["systems"][name]["switch_breakdown"] = b
tp = dict(torch).get("torch-pinned")
tps = tp["summary"] if tp and tp.get("summary") else None
print(f"\npinned H2D {f(h2d, '%.2f')} GB/s; goal: djinn P50 >= 3x below torch-pinned, P99 no worse, "
      "misses >= 90% of H2D, 30/30 complete, tokens identical")
for name, r in rows:
    if r is None or r.get("summary") is None or tps is None or not r["summary"].get("p50_ms"):
        continue
    s = r["summary"]
    ratio = tps["p50_ms"] / s["p50_ms"] if tps.get("p50_ms") else None
    p99 = (s["p99_ms"] / tps["p99_ms"]) if tps.get("p99_ms") else None
    summary["systems"][name]["p50_ratio_torch_pinned"] = ratio
    summary["systems"][name]["p99_over_torch_pinned"] = p99
    frac = s.get("miss_bw_frac")
    print(f"{name:<16} P50 torch-pinned/djinn {f(ratio, '%.2f')}x; P99 djinn/torch-pinned "
          f"{f(p99, '%.2f')} ({'no worse' if p99 is not None and p99 <= 1 else 'WORSE'}); "
          f"misses {f(frac * 100 if frac is not None else None, '%.1f')}% of H2D "
          f"({'>= 90%' if frac is not None and frac >= 0.9 else 'BELOW 90%' if frac is not None else '-'}); "
          f"{s['completed']}/{s['completed'] + s['failed']} complete, "
          f"{'tokens identical' if s.get('tokens_identical_all') else 'TOKENS DIFFER'}")
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=1)
PY
exit $status
