#!/usr/bin/env bash
# remote_gpu.sh - the remote issue's measurements on a GPU machine, from a
# bundle (make bundle): bench/remote_bench.sh on a Llama-2-7B-shaped f16
# model (djinn mkmodel; made if absent), loopback: remote vs local 256-token
# generation, a breakpoint at every layer with a read at each stop, the
# inspect round trip of a 4096-float tensor, and the bandwidth of a 6.9 MB
# tensor (a 420-token chunk's L0.resid_post) beside a plain memcpy and a raw
# loopback socket of the same bytes measured in the same run, and beside the
# local read.  The short table is printed last; the JSON goes to OUT_DIR.
# usage: (from the bundle) bench/remote_gpu.sh OUT_DIR [MODEL_DIR]
set -uo pipefail
out=${1:?usage: bench/remote_gpu.sh OUT_DIR [MODEL_DIR]}
m=${2:-/tmp/djinn-llama-2-7b}
mkdir -p "$out"
[ -f "$m/config.json" ] || ./run.sh djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" >&2 || exit 1
./run.sh bench/remote_bench.sh "$out/remote-7b.json" "$m" 2>&1 | tee "$out/remote-7b.log"
