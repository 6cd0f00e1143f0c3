#!/usr/bin/env bash
# agent_density.sh - the agent density experiment alone, on a GPU machine from
# a bundle: lua/exp/agents.lua under every policy on the same seeded trace, at
# several agent counts, with the KV limit set so that not all agents fit at
# once (bench/sched_gpu.sh runs it with the batched-decode benchmark and the
# tests; its options, AGENTS=, KV_LIMIT=, TOOL_S=, BUDGET=, apply here too).
# usage: (from the bundle) bench/agent_density.sh OUT_DIR [MODEL_DIR]
exec env SKIP_TESTS=1 SKIP_BATCH=1 SKIP_HF=1 bash "$(dirname "$0")/sched_gpu.sh" "$@"
