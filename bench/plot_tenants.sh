#!/usr/bin/env bash
# plot_tenants.sh - the tenants issue's plots from tenants.sh's JSON, with
# gnuplot (installed from Debian's packages when missing): the interactive
# tenant's token-latency CDF under each order (the SLO dashed), P99 token
# latency per tenant and order, the sweep's late tokens of fcfs and slo
# against the SLO and, at its points of other loads, against the load (slo's
# throughput beside them), and memory pressure (tokens/s and peak device
# memory against batch size, djinn beside transformers).  PNG and SVG of each.
# usage: bench/plot_tenants.sh RESULTS_DIR OUT_DIR
#   (RESULTS_DIR holds tenants.json, hf_mempressure.json, mempressure.json)
set -euo pipefail
. "$(dirname "$0")/plot_common.sh" "$@"
python3 - "$res" "$tmp" <<'PY'
import json, os, sys
res, tmp = sys.argv[1:]
def load(n):
    p = os.path.join(res, n)
    try:
        return json.load(open(p)) if os.path.getsize(p) else None
    except (OSError, ValueError):
        return None
t, h, d = load("tenants.json"), load("hf_mempressure.json"), load("mempressure.json")
with open(f"{tmp}/cdf.gp", "w") as g:
    if t:
        names = []
        for r in t["runs"]:
            u = r["tenants"][0]
            if not u.get("token_cdf"):
                continue
            fn = f"cdf-{r['order']}.dat"
            with open(f"{tmp}/{fn}", "w") as f:
                for x, q in u["token_cdf"]:
                    f.write(f"{max(x, 1e-3)} {q}\n")
            names.append((fn, r["order"]))
        slo = t["calibration"]["slo_ms"]
        g.write(f'set title "interactive tenant: token latency ({t["model"]["name"]}, {t["model"]["device"]})"\n')
        g.write('set xlabel "ms since its previous token (or since it was handed to the scheduler)"\n')
        g.write('set ylabel "fraction of tokens"; set logscale x; set key bottom right\n')
        g.write(f'set arrow from {slo}, graph 0 to {slo}, graph 1 nohead dt 2\n')
        g.write(f'set label "SLO {slo:.1f} ms" at {slo}, graph 0.05 offset 1,0\n')
        if names:
            g.write("plot " + ", ".join(f'"{fn}" using 1:2 with lines lw 2 title "{o}"'
                                        for fn, o in names) + "\n")
with open(f"{tmp}/p99.gp", "w") as g:
    if t:
        tenants = [x["tenant"] for x in t["runs"][0]["tenants"]]
        with open(f"{tmp}/p99.dat", "w") as f:
            f.write("order " + " ".join(tenants) + "\n")
            for r in t["runs"]:
                f.write(r["order"] + " " + " ".join(f'{max(x["token_ms"]["p99"], 1e-3)}'
                                                    for x in r["tenants"]) + "\n")
        g.write('set title "P99 token latency per tenant and order"\n')
        g.write('set style data histogram; set style histogram cluster gap 1; set style fill solid 0.6\n')
        g.write('set ylabel "ms"; set logscale y; set yrange [0.1:*]; set key top left\n')
        g.write("plot " + ", ".join(f'"p99.dat" using {i + 2}:xtic(1) title columnheader({i + 2})'
                                    for i in range(len(tenants))) + "\n")
# late interactive tokens of fcfs and slo against x (the SLO, or the load),
# slo's throughput over fcfs on the right axis, each point labelled
def late_plot(name, points, x, label, title, xlabel, style):
    with open(f"{tmp}/{name}.gp", "w") as g:
        if not points:
            return
        with open(f"{tmp}/{name}.dat", "w") as f:
            for w in points:
                f.write(f'{x(w)} {100 * w["fcfs"]["late_frac"]} {100 * w["slo"]["late_frac"]} '
                        f'{w["throughput_x_fcfs"]} {label(w)}\n')
        g.write(f'set title "interactive tokens late against {title}"\n')
        g.write('set offsets graph 0.08, graph 0.08, 0, 0\n')
        top = max([12] + [1.1 * 100 * w["fcfs"]["late_frac"] for w in points])
        g.write(f'set xlabel "{xlabel}"; set ylabel "late tokens (%)"; set yrange [0:{top:.1f}]\n')
        g.write('set y2label "slo throughput / fcfs"; set y2range [0:1.2]; set y2tics; set ytics nomirror\n')
        g.write('set key center right; set arrow from graph 0, first 10 to graph 1, first 10 nohead dt 2\n')
        g.write('set arrow from graph 0, second 0.95 to graph 1, second 0.95 nohead dt 3\n')
        g.write(f'plot "{name}.dat" using 1:2 with {style} pt 5 title "fcfs late", '
                f'"{name}.dat" using 1:3 with {style} pt 7 title "slo late", '
                f'"{name}.dat" using 1:4:5 with labels point pt 9 offset 0,1 '
                'axes x1y2 title "slo throughput x fcfs"\n')
sweep = (t or {}).get("sweep", [])
# the points on the first runs' trace (load 1), x the SLO
late_plot("sweep", sorted((w for w in sweep if w.get("load", 1) == 1),
                          key=lambda w: (w["slo_ms"], w["headroom"])),
          lambda w: w["slo_ms"], lambda w: f'h{w["headroom"]:g}',
          "the SLO (h: headroom of the slo order)", "SLO (ms)", "linespoints lw 2")
# the points at other loads (their own trace and fcfs run), x the load
late_plot("load", sorted((w for w in sweep if w.get("load", 1) != 1),
                         key=lambda w: (w["scale"], w["headroom"], w["load"])),
          lambda w: w["load"], lambda w: f'h{w["headroom"]:g}/x{w["scale"]:g}',
          "the load (h: headroom, x: SLO scale)", "load (x the steady arrival rates)", "points")
for name, col, ylabel in (("mem-tps", "tps", "tokens/s (prefill included)"),
                          ("mem-peak", "peak", "peak device memory (GB)")):
    with open(f"{tmp}/{name}.gp", "w") as g:
        if not (h or d):
            continue
        with open(f"{tmp}/{name}-hf.dat", "w") as f:
            for x in (h or {}).get("batches", []):
                if "error" in x and not x["error"].startswith("oom"):
                    continue
                v = x.get("tokens_per_s") if col == "tps" else x.get("peak_reserved_bytes", 0) / 1e9
                f.write(f'{x["batch"]} {v if v is not None and "error" not in x else "NaN"}\n')
        with open(f"{tmp}/{name}-oom.dat", "w") as f:
            for x in (h or {}).get("batches", []):
                if x.get("error", "").startswith("oom"):
                    f.write(f'{x["batch"]} {x.get("peak_reserved_bytes", 0) / 1e9 if col == "peak" else 0}\n')
        with open(f"{tmp}/{name}-dj.dat", "w") as f:
            for x in (d or {}).get("runs", []):
                v = x["tokens_per_s"] if col == "tps" else x["device_peak_bytes"] / 1e9
                f.write(f'{x["batch"]} {v}\n')
        g.write(f'set title "memory pressure: {ylabel} against batch"\n')
        g.write(f'set xlabel "requests at once (batch)"; set ylabel "{ylabel}"; set yrange [0:*]; set key top left\n')
        g.write(f'plot "{name}-dj.dat" using 1:2 with linespoints lw 2 pt 7 title "djinn (all completed)", '
                f'"{name}-hf.dat" using 1:2 with linespoints lw 2 pt 5 title "transformers generate", '
                f'"{name}-oom.dat" using 1:2 with points pt 2 ps 3 lw 3 title "transformers: out of memory"\n')
PY
render tenants cdf p99 sweep load mem-tps mem-peak
