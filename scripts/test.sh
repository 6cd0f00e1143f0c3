#!/usr/bin/env bash
# The test command (`make test`, called by .ci/run): installs what is missing,
# fetches the test models, builds, and runs every suite - unit (Criterion),
# golden, shell transcripts, Lua - then again under AddressSanitizer + UBSan,
# then the fuzz targets for a bounded time.  Exits non-zero if anything fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${JOBS:-2}
status=0
step() { printf '\n== %s\n' "$*"; }
run() { "$@" || status=1; }

scripts/install-deps.sh || exit 1
scripts/models.sh || exit 1

suites() { # BUILD_DIR
	local b=$1
	step "unit tests ($b)"
	run scripts/run-tests.sh "$b" "$b"/tests/test-*
	step "golden tests ($b)"
	run tests/golden/run.sh "$b"
	if [ -x tests/shell/run.sh ]; then
		step "shell transcripts ($b)"
		run tests/shell/run.sh "$b"
	fi
	if [ -x tests/lua/run.sh ]; then
		step "lua tests ($b)"
		run tests/lua/run.sh "$b"
	fi
	if [ -x tests/server/run.sh ]; then
		step "server: djinn serve and target remote ($b)"
		run tests/server/run.sh "$b"
	fi
}

step "build (release)"
make -s -j"$jobs" BUILD=build all test-unit-bins || exit 1
suites build
if [ -x tests/shell/interactive.sh ]; then
	step "interactive shell (tmux)"
	run tests/shell/interactive.sh build
fi

step "build (AddressSanitizer + UBSan, CPU only)"
make -s -j"$jobs" BUILD=build/asan CUDA=0 SAN=1 OPT=-O1 all test-unit-bins || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
suites build/asan
unset ASAN_OPTIONS UBSAN_OPTIONS

step "fuzz (${FUZZ_SECONDS:-20} s per target)"
run scripts/fuzz.sh

if [ $status -eq 0 ]; then printf '\nall tests passed\n'; else printf '\nSOME TESTS FAILED\n'; fi
exit $status
