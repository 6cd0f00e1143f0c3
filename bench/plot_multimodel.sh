#!/usr/bin/env bash
# plot_multimodel.sh - the latency CDF of issue 12's switching experiment: one
# step curve per system (djinn at each budget, the PyTorch baselines), from
# the djinn.multimodel/1 JSONs that lua/exp/multimodel.lua and
# bench/multimodel_torch.py write (bench/multimodel.sh puts them in OUT_DIR).
#
# usage: bench/plot_multimodel.sh RESULT.json... PLOT_DIR
#
# Writes PLOT_DIR/multimodel-cdf.png and .svg (total request latency, log
# scale, completed requests only; a system whose requests failed or were
# never run ends below 1) and multimodel-cdf.dat, the points plotted.
# Needs gnuplot (apt-get install gnuplot-nox) and python3 (to read the JSON).
set -euo pipefail
usage="usage: bench/plot_multimodel.sh RESULT.json... PLOT_DIR"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "plot_multimodel: gnuplot not found (apt-get install -y gnuplot-nox)" >&2; exit 2; }
py=${PYTHON:-python3}
outdir=${!#}
jsons=("${@:1:$#-1}")
mkdir -p "$outdir"
dat=$outdir/multimodel-cdf.dat

# one gnuplot data block per system: "ms fraction", a step function over all
# requests of the trace (failed ones never reach the curve)
"$py" - "$dat" "${jsons[@]}" <<'PY' >"$outdir/multimodel-cdf.titles"
import json, sys
dat, paths = sys.argv[1], sys.argv[2:]
blocks = []
for p in paths:
    try:
        with open(p) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"plot_multimodel: {p}: {e}")
    if r.get("schema") != "djinn.multimodel/1" or not isinstance(r.get("requests"), list):
        sys.exit(f"plot_multimodel: {p}: not a djinn.multimodel/1 result")
    n = int(r.get("config", {}).get("requests") or len(r["requests"]))
    ms = sorted(q["total_ms"] for q in r["requests"] if q.get("ok"))
    if not ms:
        print(f"plot_multimodel: {p}: no completed request, left out", file=sys.stderr)
        continue
    s = r.get("summary") or {}
    name = str(r.get("system", p)).replace('"', "'")
    p50 = s.get("p50_ms")
    title = f"{name} (P50 {p50:.0f} ms, {len(ms)}/{n})" if p50 else f"{name} ({len(ms)}/{n})"
    pts = [(ms[0], 0.0)] + [(x, (i + 1) / n) for i, x in enumerate(ms)]
    blocks.append((title, pts))
if not blocks:
    sys.exit("plot_multimodel: nothing to plot")
with open(dat, "w") as f:
    for title, pts in blocks:
        f.write(f"# {title}\n")
        for x, y in pts:
            f.write(f"{x:.3f} {y:.6f}\n")
        f.write("\n\n")
for title, _ in blocks:
    print(title)
PY

plot_cmd="plot"
i=0
while IFS= read -r title; do
	[ $i -gt 0 ] && plot_cmd="$plot_cmd,"
	plot_cmd="$plot_cmd '$dat' index $i using 1:2 with steps lw 2 title \"$title\""
	i=$((i + 1))
done <"$outdir/multimodel-cdf.titles"
rm -f "$outdir/multimodel-cdf.titles"

common="set logscale x 10; set grid xtics mxtics ytics; set yrange [0:1.02];
set xlabel 'total request latency (ms, switch + prompt + greedy tokens)';
set ylabel 'fraction of requests'; set key bottom right box opaque;
set title 'Several models on one GPU: request latency CDF'"
png_term="pngcairo size 1100,700 font 'sans,11'"
gnuplot -e "set terminal $png_term" -e "" >/dev/null 2>&1 || png_term="png size 1100,700"
gnuplot <<EOF
set terminal $png_term
set output '$outdir/multimodel-cdf.png'
$common
$plot_cmd
set terminal svg size 1100,700 dynamic font 'sans,11'
set output '$outdir/multimodel-cdf.svg'
replot
EOF
echo "plot_multimodel: $outdir/multimodel-cdf.png, $outdir/multimodel-cdf.svg ($i systems)"
