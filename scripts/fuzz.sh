#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan) and run each for a bounded
# time over its seed corpus.  usage: scripts/fuzz.sh [SECONDS_EACH]
set -euo pipefail
secs=${1:-${FUZZ_SECONDS:-20}}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=build/fuzz
make -s BUILD=$build CC=clang CUDA=0 FUZZ=1 OPT=-O1 -j2 fuzz-bins >/dev/null
fails=0
for bin in "$build"/fuzz/fuzz-*; do
	name=${bin##*/fuzz-}
	seeds=tests/fixtures/fuzz/$name
	work=$(mktemp -d)
	[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
	if (cd "$work" && "$root/$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 \
		-rss_limit_mb=2048 . >"$work/log" 2>&1); then
		printf '  ok   fuzz-%-14s %s\n' "$name" "$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$work/log" | head -1)"
	else
		fails=$((fails + 1))
		printf '  FAIL fuzz-%s\n' "$name"
		tail -40 "$work/log"
		mkdir -p build/fuzz-crashes && cp "$work"/crash-* "$work"/leak-* build/fuzz-crashes/ 2>/dev/null || true
	fi
	rm -rf "$work"
done
[ "$fails" -eq 0 ]
