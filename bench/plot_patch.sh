#!/usr/bin/env bash
# plot_patch.sh - a heatmap of an activation-patching table (patch ... --save
# FILE.csv: a header of positions and their tokens, then a row a layer) with
# gnuplot (installed from Debian's packages when missing): rows layers,
# columns positions, colour the normalised effect.  PNG and SVG.
# usage: bench/plot_patch.sh FILE.csv OUT_DIR   (writes OUT_DIR/NAME.png and NAME.svg)
set -euo pipefail
csv=${1:?usage: bench/plot_patch.sh FILE.csv OUT_DIR}
out=${2:?usage: bench/plot_patch.sh FILE.csv OUT_DIR}
[ -r "$csv" ] || { echo "plot_patch.sh: cannot read '$csv'" >&2; exit 1; }
mkdir -p "$out"
command -v gnuplot >/dev/null 2>&1 || {
	[ "$(id -u)" -eq 0 ] || { echo "plot_patch.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
	apt-get install -y gnuplot-nox >/dev/null || { apt-get update >/dev/null && apt-get install -y gnuplot-nox >/dev/null; }
}
name=$(basename "$csv" .csv)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the matrix as whitespace-separated numbers, and tic labels from the header
python3 - "$csv" "$tmp" <<'PY'
import csv, sys
src, tmp = sys.argv[1:]
rows = list(csv.reader(open(src, newline="")))
if len(rows) < 2 or len(rows[0]) < 2:
    sys.exit("plot_patch.sh: %s holds no table (patch ... --save FILE.csv writes one)" % src)
head, body = rows[0][1:], rows[1:]
with open(f"{tmp}/m.dat", "w") as f:
    for r in body:
        f.write(" ".join(r[1:]) + "\n")
def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
with open(f"{tmp}/tics.gp", "w") as g:
    g.write("set xtics (" + ", ".join(f"{q(h)} {i}" for i, h in enumerate(head)) + ") rotate by -45\n")
    g.write("set ytics (" + ", ".join(f"{q(r[0])} {i}" for i, r in enumerate(body)) + ")\n")
    g.write(f"set xrange [-0.5:{len(head) - 0.5}]; set yrange [-0.5:{len(body) - 0.5}]\n")
PY
for fmt in png svg; do
	case $fmt in
	png) term='pngcairo size 900,600 noenhanced' ;;
	svg) term='svg size 900,600 noenhanced' ;;
	esac
	gnuplot <<GP 2>/dev/null || gnuplot <<GP2
set terminal $term
set output "$out/$name.$fmt"
set title "activation patching: (patched - corrupted) / (clean - corrupted)"
set xlabel "position"; set ylabel "layer"
set palette defined (-1 "blue", 0 "white", 1 "red"); set cbrange [-1:1]
load "$tmp/tics.gp"
plot "$tmp/m.dat" matrix with image notitle
GP
set terminal ${term/pngcairo/png}
set output "$out/$name.$fmt"
set title "activation patching: (patched - corrupted) / (clean - corrupted)"
set xlabel "position"; set ylabel "layer"
set palette defined (-1 "blue", 0 "white", 1 "red"); set cbrange [-1:1]
load "$tmp/tics.gp"
plot "$tmp/m.dat" matrix with image notitle
GP2
done
echo "$out/$name.png $out/$name.svg"
