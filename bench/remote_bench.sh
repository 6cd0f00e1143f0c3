#!/usr/bin/env bash
# Remote vs local (loopback): a 256-token generation, a breakpoint-heavy
# session (stop and read at every layer), an inspect round trip, tensor
# bandwidth (through shared memory, and through the socket by a second
# client, beside memcpy and a raw loopback socket for the same bytes); with
# the phase breakdown of the remote requests.
# usage: bench/remote_bench.sh OUT.json [MODEL [TOKENIZER]]
#   default model: models/stories260K.bin + models/tok512.bin (CPU check);
#   on the GPU machine e.g. models/SmolLM2-135M-Instruct.Q4_1.gguf (a model
#   with dim 4096 makes the inspect read 4096 floats).  DJINN=path/to/djinn.
set -euo pipefail
out=${1:?usage: bench/remote_bench.sh OUT.json [MODEL [TOKENIZER]]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
model=${2:-models/stories260K.bin}
tok=${3:-}
[ -z "${2:-}" ] && tok=models/tok512.bin
djinn=${DJINN:-}
for c in "$root/bin/djinn" "$root/build/djinn"; do [ -z "$djinn" ] && [ -x "$c" ] && djinn=$c; done
[ -x "$djinn" ] || { echo "remote_bench: no djinn (set DJINN=)" >&2; exit 2; }
tmp=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT
targs=(); [ -n "$tok" ] && targs=(--tokenizer "$tok")
"$djinn" serve --listen 127.0.0.1:0 --port-file "$tmp/port" "$model" "${targs[@]}" >"$tmp/serve.log" 2>&1 &
srv=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { cat "$tmp/serve.log"; exit 1; }
addr=127.0.0.1:$(cat "$tmp/port")
nb=${NET_BOUND:-}
for c in "$root/bin/bench/net_bound" "$root/build/bench/net_bound"; do [ -z "$nb" ] && [ -x "$c" ] && nb=$c; done
[ -n "$nb" ] || echo "remote_bench: no net_bound (make bench-bins): the bounds are left out" >&2
"$djinn" "$here/remote_bench.lua" local "$model" "${tok:--}" "$addr" "$tmp/local.json"
NET_BOUND=$nb "$djinn" "$here/remote_bench.lua" remote "$model" "${tok:--}" "$addr" "$tmp/remote.json"
python3 - "$tmp/local.json" "$tmp/remote.json" "$out" "$model" <<'PY'
import json, sys
l, r = (json.load(open(p)) for p in sys.argv[1:3])
res = {"model": sys.argv[4], "local": l, "remote": r,
       "gen_overhead_pct": 100 * (r["gen_us"] / l["gen_us"] - 1),
       "bp_overhead_pct": 100 * (r["bp_us"] / l["bp_us"] - 1),
       "goals": {"gen_within_pct": 3, "inspect_rtt_us": 100, "bandwidth_gbps": 5}}
print("phases per request, breakpoint session (us):")
for k in ("serialize_us", "send_us", "queue_us", "exec_us", "result_us", "receive_us", "total_us"):
    print("  %-14s %8.1f" % (k[:-3], r["bp_phases_mean"].get(k, 0)))
print()
print("%-34s %11s %11s  %s" % ("", "local", "remote", "goal / bound (same run)"))
print("%-34s %9.1fms %9.1fms  <=3%%: %+.1f%%" % ("generate %d tokens" % r.get("gen_tokens", 256), l["gen_us"]/1e3, r["gen_us"]/1e3, res["gen_overhead_pct"]))
print("%-34s %9.1fms %9.1fms  %+.1f%% (%d stops)" % ("break + read at every layer", l["bp_us"]/1e3, r["bp_us"]/1e3, res["bp_overhead_pct"], r["bp_stops"]))
print("%-34s %11s %9.1fus  <100 us" % ("inspect round trip (%d floats)" % r["inspect_floats"], "", r["inspect_us"]))
print("%-34s %11s %9.1fus" % ("ping round trip", "", r["ping_us"]))
tensor = "tensor %s, %.3g MB" % (r.get("bw_site", ""), r["bw_bytes"] / 1e6)
print("%-34s %7.2fGB/s %7.2fGB/s  >=5 GB/s; memcpy %.2f GB/s, raw loopback socket %.2f GB/s" % (
    tensor + (", shm" if r.get("shm") else ", socket"), l.get("bw_gbps", 0), r["bw_gbps"],
    r.get("memcpy_gbps", 0), r.get("socket_gbps", 0)))
if "bw_sock_gbps" in r:
    print("%-34s %11s %7.2fGB/s  (DJINN_NO_SHM: the protocol on the socket)" % (
        tensor + ", socket", "", r["bw_sock_gbps"]))
json.dump(res, open(sys.argv[3], "w"), indent=1)
PY
