#!/usr/bin/env bash
# pending_gpu.sh - what waits for a GPU run, in one call from a bundle
# (scripts/gpu-bundle-dev.sh), most important first: the batch-invariant
# mode's GPU tests (invtests: no 7B, a minute or two), the tenants experiment
# (the slo run's step trace against the model; slo at other headrooms, SLOs and
# loads in the same run: TENANTS_SWEEP="H:X[:L] ..."; the margin's A/B with
# TENANTS_AB=1; memory pressure with TENANTS_MEM=1; TENANTS_ORDERS:
# fcfs,priority,slo), the invariant mode's agents with and without it
# (invariant), the skinny GEMM against cuBLAS (bench/skinny_gemm.cu), its A/B
# in the decode (skinnyab: DJN_SKINNY=1), the agent density; on request the
# GPU tests (tests), the multi-model budget sweep (multimodel), the remote
# reads (shm and socket) and the fused ops' A/B. Each part has its own time
# limit and appends its result lines to OUT_DIR/summary.txt as it ends, so a
# call cut short keeps what it did (the parts run in the order of PARTS); logs
# and JSON go under OUT_DIR/<part>. Under 10 minutes a call: PARTS="invtests
# tenants" (the 7B mkmodel included), then PARTS="invariant skinny skinnyab",
# then PARTS=density. With MODEL_DIR the 7B parts use that model (e.g.
# /tmp/djinn-multimodel/llama-2-7b, which the multimodel part makes: no second
# mkmodel). Everything is packed into OUT_DIR.tgz after each part (and each
# tenants run); with PACK=1 the parts work in a temporary folder and OUT_DIR
# holds only summary.txt (a device call brings back a few dozen files, and one
# cut short by its limit still brings back both).
# usage: (from the bundle) bench/pending_gpu.sh OUT_DIR [MODEL_DIR]
set -uo pipefail
out=${1:?usage: bench/pending_gpu.sh OUT_DIR [MODEL_DIR]}
dest=$out
if [ "${PACK:-0}" = 1 ]; then
	mkdir -p "$dest"
	out=$(mktemp -d)/$(basename "$dest")
fi
m=${2:-/tmp/djinn-llama-2-7b}
parts=${PARTS:-invtests tenants invariant skinny skinnyab density}
mkdir -p "$out"
sum=$out/summary.txt
note() { printf '%s\n' "$*" | tee -a "$sum"; }

note "gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
# the 7B model, made once, for the parts that use it
need7b() {
	[ -f "$m/config.json" ] || ./run.sh djinn mkmodel --shape llama-2-7b --dtype f16 --seed 0 "$m" >&2
}

part_tests() {
	for t in gpu-test-cuda-batch gpu-test-cuda-model; do
		timeout 120 ./run.sh "bin/tests/$t" >"$out/$t.log" 2>&1
		note "$t: $(grep -E 'Synthesis' "$out/$t.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
	done
	# CUDA_TESTS picks (the kept memory's users first)
	for t in ${CUDA_TESTS:-test-tenants test-sched test-multimodel test-exec test-ringbuf test-record \
		test-lens test-pattern test-patch test-hf-fixtures}; do
		DJINN_TEST_DEVICE=cuda timeout 120 ./run.sh "bin/tests/$t" >"$out/$t.log" 2>&1
		note "$t (cuda): $(grep -E 'Synthesis' "$out/$t.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
	done
}

part_tenants() {
	need7b || { note "tenants: could not make the 7B model"; return; }
	# memory pressure (transformers and djinn) with TENANTS_MEM=1
	local mem=
	[ "${TENANTS_MEM:-0}" = 1 ] || mem="SKIP_HF=1 SKIP_DJINN=1"
	# the sweep (slo again at HEADROOM, SCALE times the calibrated base SLO
	# and LOAD, fcfs's run at the load read at each) in the same process:
	# one model load, one calibration
	local sweep
	sweep=$(echo "${TENANTS_SWEEP:-0.5:2 0.6:2 0.8:2.5 0.6:3 0.8:1}" | tr ' ' ',')
	env SKIP_TESTS=1 SKIP_PLOTS=1 $mem HF_BATCHES=${HF_BATCHES:-128,256} TENANTS_TIMEOUT=460 \
		TENANT_ARGS="--orders ${TENANTS_ORDERS:-fcfs,priority,slo} --sweep $sweep" timeout 480 \
		bench/tenants.sh "$out/tenants" "$m" >"$out/tenants.txt" 2>&1
	grep -E '^(goal|slo steps)' "$out/tenants.txt" | sed 's/^/tenants: /' | tee -a "$sum"
	pack
	# the slo row cap's margin against none (TENANTS_AB=1), at the first run's SLO
	if [ "${TENANTS_AB:-0}" = 1 ]; then
		local slo
		slo=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calibration"]["slo_ms"])' \
			"$out/tenants/tenants.json" 2>/dev/null) || { note "tenants: no SLO from the first run"; return; }
		DJN_SLO_MARGIN=0 SKIP_TESTS=1 SKIP_PLOTS=1 SKIP_HF=1 SKIP_DJINN=1 \
			TENANT_ARGS="--orders fcfs,slo --slo-ms $slo" timeout 200 \
			bench/tenants.sh "$out/tenants-nomargin" "$m" >"$out/tenants-nomargin.txt" 2>&1
		grep -E '^goal' "$out/tenants-nomargin.txt" | sed 's/^/tenants (DJN_SLO_MARGIN=0): /' |
			tee -a "$sum"
	fi
}

part_remote() {
	need7b || { note "remote: could not make the 7B model"; return; }
	timeout 200 bench/remote_gpu.sh "$out/remote" "$m" >"$out/remote.txt" 2>&1
	grep -E '^tensor' "$out/remote.txt" | sed 's/^/remote: /' | tee -a "$sum"
	if [ "${REMOTE_STAGED:-1}" = 1 ]; then
		DJINN_SERVE_SHM_STAGE=1 timeout 200 bench/remote_gpu.sh "$out/remote-stage" "$m" \
			>"$out/remote-stage.txt" 2>&1
		grep -E '^tensor' "$out/remote-stage.txt" | sed 's/^/remote (staged): /' | tee -a "$sum"
	fi
}

part_fuse() {
	need7b || { note "fuse: could not make the 7B model"; return; }
	TESTS=0 OLD=0 AB_ENV='DJN_BATCH_FUSE=0' timeout 300 bench/f16kv_ab.sh "$out/fuse" "$m" \
		>"$out/fuse.txt" 2>&1
	tail -8 "$out/fuse.txt" | sed 's/^/fuse: /' | tee -a "$sum"
}

part_skinnyab() {
	need7b || { note "skinnyab: could not make the 7B model"; return; }
	TESTS=0 OLD=0 AB_ENV='DJN_SKINNY=1' timeout 300 bench/f16kv_ab.sh "$out/skinnyab" "$m" \
		>"$out/skinnyab.txt" 2>&1
	tail -8 "$out/skinnyab.txt" | sed 's/^/skinnyab: /' | tee -a "$sum"
}

part_density() {
	need7b || { note "density: could not make the 7B model"; return; }
	AGENTS=${AGENTS:-1,4,8,12,16,24,32} KV_LIMIT=${KV_LIMIT:-512M} AGENTS_TIMEOUT=600 \
		bench/agent_density.sh "$out/density" "$m" >"$out/density.txt" 2>&1
	grep -E '^agents: SLO' "$out/density.txt" | tee -a "$sum"
}

# The batch-invariant mode (DJN_SKINNY=1: the skinny GEMM, attention split
# by a row's own length, a batch of one through the batch path, at most 64
# rows a step): invtests runs its GPU tests (no 7B: a minute or two);
# invariant runs 16 agents (policy signal, the density run's trace) without
# and with it (do their tokens equal their run alone, and at what cost in
# tokens/s?), then test-sched on CUDA in it.
part_invtests() {
	local f
	for f in 'invariant/*' 'skinny/*'; do
		DJN_SKINNY=1 timeout 120 ./run.sh bin/tests/gpu-test-cuda-batch --filter "$f" \
			>"$out/inv-batch-${f%%/*}.log" 2>&1
		note "gpu-test-cuda-batch $f (DJN_SKINNY=1): $(grep -E 'Synthesis' \
			"$out/inv-batch-${f%%/*}.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
	done
	timeout 120 ./run.sh bin/tests/gpu-test-cuda-model --filter 'cuda_batch/invariant*' \
		>"$out/inv-model.log" 2>&1
	note "gpu-test-cuda-model (invariant): $(grep -E 'Synthesis' "$out/inv-model.log" |
		sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
	grep -E 'differ|Assertion' "$out/inv-model.log" | head -5 | tee -a "$sum"
}

part_invariant() {
	need7b || { note "invariant: could not make the 7B model"; return; }
	local k
	for k in 0 1; do
		DJN_SKINNY=$k timeout 200 ./run.sh djinn lua/exp/agents.lua "$m" --device cuda \
			--policies signal --agents "${INV_AGENTS:-16}" --kv-limit 1G --rate 20 --steps 3 \
			--think 32 --tool-s 1.0 --tool-tokens 8 --prompt 64 --check "${INV_CHECK:-8}" \
			--budget 64 --kv-dtype f16 --out "$out/inv-agents-$k.json" \
			2>"$out/inv-agents-$k.log"
		grep -E '^agents: signal' "$out/inv-agents-$k.log" | sed "s/^/invariant DJN_SKINNY=$k: /" |
			tee -a "$sum"
		pack
	done
	DJN_SKINNY=1 DJINN_TEST_DEVICE=cuda timeout 120 ./run.sh bin/tests/test-sched \
		>"$out/inv-sched.log" 2>&1
	note "test-sched (cuda, DJN_SKINNY=1): $(grep -E 'Synthesis' "$out/inv-sched.log" |
		sed 's/\x1b\[[0-9;]*m//g' | tail -1)"
}

part_skinny() {
	timeout 120 ./run.sh bin/bench/skinny_gemm --json "$out/skinny.json" >"$out/skinny.txt" 2>&1
	tail -30 "$out/skinny.txt" | sed 's/^/skinny: /' | tee -a "$sum"
}

part_multimodel() {
	timeout 600 bench/multimodel.sh "$out/multimodel" >"$out/multimodel.txt" 2>&1
	tail -6 "$out/multimodel.txt" | sed 's/^/multimodel: /' | tee -a "$sum"
}

# everything in one archive beside OUT_DIR, the summary in it
pack() {
	tar -czf "$dest.tgz.part" -C "$(dirname "$out")" "$(basename "$out")" &&
		mv "$dest.tgz.part" "$dest.tgz"
	[ "$out" = "$dest" ] || cp "$sum" "$dest/summary.txt"
}
for p in $parts; do
	if declare -F "part_$p" >/dev/null; then "part_$p"; else note "$p: no such part"; fi
	pack
done
note "done"
pack
