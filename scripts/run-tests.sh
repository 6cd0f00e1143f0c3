#!/usr/bin/env bash
# Run Criterion test binaries; print one line each and fail if any fails.
# usage: scripts/run-tests.sh BUILD_DIR BIN...
set -uo pipefail
build=$1; shift
fails=0
for t in "$@"; do
	if out=$("$t" --jobs 2 2>&1); then
		printf '  ok   %-32s %s\n' "$(basename "$t")" "$(echo "$out" | grep -E '^\[====\] Synthesis' | sed 's/\x1b\[[0-9;]*m//g; s/^\[====\] //')"
	else
		fails=$((fails + 1))
		printf '  FAIL %s\n' "$(basename "$t")"
		echo "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep -Ev '^\[----\] +$' | tail -40
	fi
done
[ "$fails" -eq 0 ]
