#!/usr/bin/env bash
# plot-patch.sh BUILD_DIR - bench/plot_patch.sh runs on the CSV of patch
# ... --save (stories260K, CPU) and writes a PNG and an SVG heatmap.
set -euo pipefail
build=${1:?usage: tests/shell/plot-patch.sh BUILD_DIR}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/djinn" -batch -ex 'load models/stories260K.bin --tokenizer models/tok512.bin' \
	-ex "patch \"Once upon a time\" \"Once in a time\" --tokens , \" there\" --save $tmp/p.csv" >/dev/null
[ "$(head -1 "$tmp/p.csv")" = 'layer,"0 <s>","1 Once","2  upon","3  a","4  time"' ] ||
	{ echo "plot-patch: unexpected CSV header: $(head -1 "$tmp/p.csv")" >&2; exit 1; }
bench/plot_patch.sh "$tmp/p.csv" "$tmp/out" >/dev/null
[ "$(head -c 8 "$tmp/out/p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
	{ echo "plot-patch: p.png is not a PNG" >&2; exit 1; }
grep -q '<svg' "$tmp/out/p.svg" || { echo "plot-patch: p.svg is not an SVG" >&2; exit 1; }
if bench/plot_patch.sh "$tmp/none.csv" "$tmp/out" 2>/dev/null; then
	echo "plot-patch: a missing CSV was accepted" >&2; exit 1
fi
echo "ok   plot-patch (PNG and SVG)"
