#!/usr/bin/env bash
# ring_bench.sh - the ring buffer's measurements (issue 5) on one GPU: djinn
# streaming a model larger than its VRAM budget, against Hugging Face
# Accelerate offloading the same directory, and the PCIe bound.
#
# usage: bench/ring_bench.sh BUNDLE_OR_BUILD_DIR [MODEL_DIR]
#
# MODEL_DIR (default /tmp/djinn-llama-2-13b) is made first when it has no
# config.json: `djinn mkmodel --shape llama-2-13b --dtype f16 --seed 1`.
# For each budget (18 GiB, 1/6 of the weights, 1/2 of the weights) and each
# ring mode (sync: copies on the compute stream, the host waiting; K = 1, 2,
# 3, 4 slots ordered by events), `djinn generate --vram-budget B
# --ring-slots K` with DJINN_TIMING=1 gives TTFT for a PROMPT_LEN-token
# prompt, decode ms/token over NEW tokens, the plan (bytes streamed per
# token), and the pinned host-to-device bandwidth measured in the same
# process; the PCIe bound is streamed bytes per token / that bandwidth.
# The fully resident model gives the resident prefill time (TTFT bound =
# streamed bytes / bandwidth + resident TTFT).  A 2048-token session is
# swapped out and in through the shell (--json) for the KV swap bandwidth.
# bench/ring_accelerate.py runs transformers + accelerate with device_map
# "auto" and max_memory={0: budget, "cpu": ...} on the same prompt.
#
# Environment: PYTHON (python3), DJINN (a command to run djinn instead of
# DIR/djinn, e.g. "./run.sh djinn" in a bundle), PROMPT_LEN (512), NEW (32),
# HF_NEW (8), BUDGETS ("18G sixth half"), MODES ("sync 1 2 3 4"),
# SKIP_HF=1, SKIP_SWAP=1, KEEP=1 (keep the work directory).
# Writes bench/results/ring-<device>.json and prints a table.  A step that
# fails is recorded and the others still run.
set -uo pipefail
usage="usage: bench/ring_bench.sh BUNDLE_OR_BUILD_DIR [MODEL_DIR]"
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?$usage}
model=${2:-/tmp/djinn-llama-2-13b}
py=${PYTHON:-python3}
prompt_len=${PROMPT_LEN:-512}
new=${NEW:-32}
hf_new=${HF_NEW:-8}
budgets=${BUDGETS:-18G sixth half}
modes=${MODES:-sync 1 2 3 4}

if [ -n "${DJINN:-}" ]; then
	read -r -a djinn <<<"$DJINN"
else
	djinn=()
	for d in "$dir/djinn" "$dir/bin/djinn"; do
		[ -x "$d" ] && [ ! -d "$d" ] && { djinn=("$d"); break; }
	done
	[ ${#djinn[@]} -gt 0 ] || { echo "ring_bench: no djinn binary in '$dir'" >&2; exit 2; }
fi
command -v nvidia-smi >/dev/null || { echo "ring_bench: nvidia-smi not found: is this the GPU machine?" >&2; exit 2; }

if [ ! -f "$model/config.json" ]; then
	echo "== making llama-2-13b (f16, seed 1) in $model" >&2
	"${djinn[@]}" mkmodel --shape llama-2-13b --dtype f16 --seed 1 "$model" || exit 1
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
slug=$(printf '%s' "$gpu" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/-/g; s/^-//; s/-$//')
out="$here/results/ring-$slug.json"
work=$(mktemp -d "${TMPDIR:-/tmp}/djinn-ring.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work directory: $work" >&2; else trap 'rm -rf "$work"' EXIT; fi
step() { printf '\n== %s\n' "$*" >&2; }

# weight bytes (the safetensors total), and the budgets in bytes
weights=$("$py" "$here/ring_report.py" weights "$model") || exit 1
budget_bytes() {
	case $1 in
	sixth) echo $((weights / 6)) ;;
	half) echo $((weights / 2)) ;;
	*[Kk]) echo $(( ${1%?} << 10 )) ;;
	*[Mm]) echo $(( ${1%?} << 20 )) ;;
	*[Gg]) echo $(( ${1%?} << 30 )) ;;
	*[Tt]) echo $(( ${1%?} << 40 )) ;;
	*) echo "$1" ;;
	esac
}
prompt=$("$py" "$here/bench_report.py" prompt "$model" "$prompt_len") || exit 1
printf '%s' "$prompt" >"$work/prompt.txt"

# djinn generate with the timing line on: STEM, then generate's arguments
djinn_gen() {
	local stem=$1; shift
	DJINN_TIMING=1 "${djinn[@]}" generate "$model" --device cuda -t 0 -n "$new" -p "$prompt" "$@" \
		>"$work/$stem.out" 2>"$work/$stem.err"
	echo $? >"$work/$stem.rc"
	echo "$*" >"$work/$stem.args"
	tail -n 1 "$work/$stem.err" >&2
}

step "djinn, fully resident ($gpu): the resident prefill time"
djinn_gen resident

for b in $budgets; do
	bb=$(budget_bytes "$b")
	for k in $modes; do
		step "djinn, budget $b ($bb bytes), ring slots $k"
		djinn_gen "ring.$b.$k" --vram-budget "$bb" --ring-slots "$k"
	done
done

if [ "${SKIP_SWAP:-0}" != 1 ]; then
	step "djinn: KV swap of a 2048-token session (shell, --json)"
	"$py" "$here/ring_report.py" swapcmds "$model" 2048 >"$work/swap.cmd" &&
		"${djinn[@]}" -batch --json -x "$work/swap.cmd" >"$work/swap.json" 2>"$work/swap.err"
	echo $? >"$work/swap.rc"
	tail -n 3 "$work/swap.err" >&2
fi

if [ "${SKIP_HF:-0}" != 1 ]; then
	hb=()
	for b in $budgets; do hb+=("$(budget_bytes "$b")"); done
	step "transformers + accelerate: device_map=auto, max_memory={0: budget} (slow)"
	"$py" "$here/ring_accelerate.py" "$model" --budgets "${hb[@]}" --prompt-len "$prompt_len" \
		--new "$hf_new" --out "$work/accelerate.json" >"$work/accelerate.log" 2>&1
	echo $? >"$work/accelerate.rc"
	tail -n 5 "$work/accelerate.log" >&2
fi

step "results"
"$py" "$here/ring_report.py" merge --work "$work" --model "$model" --gpu "$gpu" \
	--budgets "$budgets" --modes "$modes" --weights "$weights" --out "$out"
