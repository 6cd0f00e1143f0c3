#!/usr/bin/env bash
# gpu-bundle-dev.sh - a bundle for one call of the GPU machine while working on the CUDA backend:
# djinn, the GPU tests, test-exec, test-ringbuf, test-hf-fixtures, test-lens, test-pattern,
# test-patch, test-layout and test-record (run there with
# DJINN_TEST_DEVICE=cuda), the benchmark programs and bench/, the small test models; stripped,
# to stay under the 64 MiB a call carries.  usage: scripts/gpu-bundle-dev.sh [BUILD_DIR]   (then: carry bundle, run bench/gpu_check.sh)
set -euo pipefail
build=${1:-build/cuda}
make -s BUILD="$build" -j2 all test-unit-bins bench-bins
BUNDLE_MODELS="stories260K.bin tok512.bin stories260K.gguf stories260K.greedy.txt" \
	scripts/bundle.sh "$build"
cd bundle
mkdir -p bin/bench
cp ../"$build"/bench/gpu_debug_bench bin/bench/
cp ../"$build"/bench/attn_rows_bench bin/bench/
nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 ../bench/gemv_bench.cu -o bin/bench/gemv_bench
rm -rf bench
cp -r ../bench .
(cd bin/tests && for t in *; do case $t in gpu-*|test-exec|test-ringbuf|test-hf-fixtures|test-sched|test-tenants|test-batch-ops|test-multimodel|test-lens|test-pattern|test-patch|test-layout|test-record) ;; *) rm -f "$t" ;; esac; done)
strip bin/djinn bin/tests/* bin/bench/* 2>/dev/null || true
du -sh .
