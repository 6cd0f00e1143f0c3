#!/usr/bin/env bash
# What armed breakpoints whose conditions never hold cost a 256-token CPU run:
# builds bench/bp_overhead.c against BUILD_DIR/libdjinn.a and runs it (median
# of RUNS runs per configuration, interleaved; prints times and ratios).
# A benchmark, not a test.
#
# usage: bench/bp_overhead.sh [BUILD_DIR] [RUNS]     (defaults: build, 11)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
runs=${2:-11}
lib=$build/libdjinn.a
[ -f "$lib" ] || { echo "bp_overhead.sh: no $lib (make BUILD=$build first)" >&2; exit 2; }
cuda_libs=
if nm "$lib" 2>/dev/null | grep -q ' T djn_backend_cuda_new'; then
	cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
	cuda_libs="-L$cuda_home/lib64 -Wl,-rpath,$cuda_home/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++"
fi
lua_cflags=$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
lua_libs=$(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
bin=$build/bench/bp_overhead
mkdir -p "$build/bench"
# shellcheck disable=SC2086
cc -std=c11 -O2 -g -pthread -I"$root/include" -I"$root/src" $lua_cflags -D_GNU_SOURCE \
	"$root/bench/bp_overhead.c" "$lib" $cuda_libs $lua_libs -lcjson -lreadline -lm -lpthread -o "$bin"
cd "$root"
"$bin" models/stories260K.bin models/tok512.bin "$runs"
