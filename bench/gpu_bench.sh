#!/usr/bin/env bash
# gpu_bench.sh - djinn beside transformers on one model directory and GPU:
# greedy agreement, decode ms/token, TTFT, and the HBM roofline.
#
# usage: bench/gpu_bench.sh BUNDLE_OR_BUILD_DIR MODEL_DIR
#
# BUNDLE_OR_BUILD_DIR holds the djinn binary (DIR/djinn or DIR/bin/djinn).
# A MODEL_DIR with no config.json is first made with `djinn mkmodel --shape
# $SHAPE --dtype f16 --seed 0` (SHAPE defaults to llama-2-7b: 13.5 GB).
# Environment: PYTHON (python3), PROMPT_LEN (512), NEW (128), RUNS (3 djinn
# speed runs, median), SKIP_COMPILED=1 (no torch.compile paths), KEEP=1 (keep
# the work directory).  Writes bench/results/<device>-<date>.json and prints
# a table.  A step that fails is recorded and the others still run.
set -uo pipefail
usage="usage: bench/gpu_bench.sh BUNDLE_OR_BUILD_DIR MODEL_DIR"
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?$usage}
model=${2:?$usage}
py=${PYTHON:-python3}
prompt_len=${PROMPT_LEN:-512}
new=${NEW:-128}
runs=${RUNS:-3}

djinn=
for d in "$dir/djinn" "$dir/bin/djinn"; do
	[ -x "$d" ] && [ ! -d "$d" ] && { djinn=$d; break; }
done
[ -n "$djinn" ] || { echo "gpu_bench: no djinn binary in '$dir' (looked for djinn, bin/djinn)" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "gpu_bench: nvidia-smi not found: is this the GPU machine?" >&2; exit 2; }

if [ ! -f "$model/config.json" ]; then
	echo "== making ${SHAPE:-llama-2-7b} in $model" >&2
	"$djinn" mkmodel --shape "${SHAPE:-llama-2-7b}" --dtype f16 --seed 0 "$model" || exit 1
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
slug=$(printf '%s' "$gpu" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/-/g; s/^-//; s/-$//')
stamp=$(date +%Y-%m-%d-%H%M)
out="$here/results/$slug-$stamp.json"
work=$(mktemp -d "${TMPDIR:-/tmp}/djinn-bench.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work directory: $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

step() { printf '\n== %s\n' "$*" >&2; }

# djinn generate with the timing line on; RUN stem, then generate's arguments
djinn_gen() {
	local stem=$1; shift
	DJINN_TIMING=1 "$djinn" generate "$model" --device cuda -t 0 "$@" \
		>"$work/$stem.out" 2>"$work/$stem.err"
	echo $? >"$work/$stem.rc"
	tail -n 2 "$work/$stem.err" >&2
}

step "transformers reference: 64-token prompt, 32 greedy tokens ($gpu)"
"$py" "$here/hf_reference.py" "$model" --prompt-len 64 --steps 32 --out "$work/hf_reference.json"

step "djinn: the same prompt, 32 greedy tokens"
if ref_prompt=$("$py" "$here/bench_report.py" prompt "$model" 64); then
	djinn_gen djinn_ref -n 32 -p "$ref_prompt"
fi

step "djinn: $prompt_len-token prompt, $new new tokens, $runs runs"
if speed_prompt=$("$py" "$here/bench_report.py" prompt "$model" "$prompt_len"); then
	for i in $(seq 1 "$runs"); do
		djinn_gen "djinn_speed.$i" -n "$new" -p "$speed_prompt"
	done
fi

step "transformers: eager and compiled (this compiles for a few minutes)"
skip=()
[ "${SKIP_COMPILED:-0}" = 1 ] && skip=(--skip-compiled)
"$py" "$here/hf_speed.py" "$model" --prompt-len "$prompt_len" --new "$new" "${skip[@]}" \
	--out "$work/hf_speed.json" >/dev/null

step "results"
"$py" "$here/bench_report.py" merge --work "$work" --model "$model" --out "$out"
