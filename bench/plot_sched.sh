#!/usr/bin/env bash
# plot_sched.sh - the scheduler's plots from sched_gpu.sh's JSON, with gnuplot
# (installed from Debian's packages when missing): the token-latency CDF of
# each policy at the largest agent count, the density (agents within the SLO)
# per policy, and batch size against tokens/s (djinn, transformers, batch 1
# times B).  PNG and SVG of each.
# usage: bench/plot_sched.sh RESULTS_DIR OUT_DIR   (RESULTS_DIR holds agents.json, batch.json, hf_batch.json)
set -euo pipefail
. "$(dirname "$0")/plot_common.sh" "$@"
python3 - "$res" "$tmp" <<'PY'
import json, os, sys
res, tmp = sys.argv[1:]
def load(n):
    p = os.path.join(res, n)
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else None
a, b, h = load("agents.json"), load("batch.json"), load("hf_batch.json")
with open(f"{tmp}/cdf.gp", "w") as g:
    if a:
        top = max(r["n_agents"] for r in a["runs"])
        names = []
        for r in a["runs"]:
            if r["n_agents"] != top or not r.get("token_cdf"):
                continue
            fn = f"cdf-{r['policy']}.dat"
            with open(f"{tmp}/{fn}", "w") as f:
                for x, q in r["token_cdf"]:
                    f.write(f"{x} {q}\n")
            names.append((fn, r["policy"]))
        g.write(f'set title "token latency, {top} agents ({a["model"]["name"]})"\n')
        g.write('set xlabel "ms from ready to token"; set ylabel "fraction of tokens"; set logscale x; set key bottom right\n')
        if a.get("slo_ms"):
            g.write(f'set arrow from {a["slo_ms"]}, graph 0 to {a["slo_ms"]}, graph 1 nohead dt 2\n')
        g.write("plot " + ", ".join(f'"{fn}" using 1:2 with lines lw 2 title "{p}"' for fn, p in names) + "\n")
with open(f"{tmp}/density.gp", "w") as g:
    if a:
        with open(f"{tmp}/density.dat", "w") as f:
            for i, (p, n) in enumerate(a["density"].items()):
                f.write(f'{i} "{p}" {n}\n')
        g.write(f'set title "agents completed within the SLO (P99 token latency <= {a.get("slo_ms") or 0:.1f} ms)"\n')
        g.write('set style fill solid 0.6; set boxwidth 0.6; set yrange [0:*]; set ylabel "agents"; unset key\n')
        g.write('plot "density.dat" using 1:3:xtic(2) with boxes\n')
with open(f"{tmp}/batch.gp", "w") as g:
    if b:
        base = next((x["tokens_per_s"] for x in b["batches"] if x["batch"] == 1), None)
        with open(f"{tmp}/batch.dat", "w") as f:
            hf = {x["batch"]: x.get("tokens_per_s") for x in (h or {}).get("batches", [])}
            for x in b["batches"]:
                roof = x["batch"] * 1e3 / x["roofline_ms_per_step"]
                f.write(f'{x["batch"]} {x["tokens_per_s"]} {hf.get(x["batch"]) or "NaN"} {roof} {(base or 0) * x["batch"]}\n')
        g.write(f'set title "batched decode, {b["model"]} on {b["device"]}"\n')
        g.write('set xlabel "batch (sessions)"; set ylabel "tokens/s"; set logscale xy; set key top left\n')
        g.write(f'plot "batch.dat" using 1:2 with linespoints lw 2 title "djinn", '
                f'"" using 1:3 with linespoints lw 2 title "transformers (static cache, compiled)", '
                f'"" using 1:4 with lines dt 2 title "HBM roofline (djinn: weights + f32 KV)", "" using 1:5 with lines dt 3 title "batch 1 x B"\n')
PY
render sched cdf density batch
