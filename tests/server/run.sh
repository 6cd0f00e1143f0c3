#!/usr/bin/env bash
# Tests of `djinn serve` and the remote target, on loopback, CPU only:
#  - shell transcripts (tests/shell/NAME.cmd) re-run through `target remote`
#    print exactly NAME.out (the first line, target remote's own, dropped);
#  - the protocol (proto.py): two clients, isolation, hang-ups mid-frame and
#    mid-run with reattach, malformed / oversized / slowloris clients, the
#    access token, the reaper;
#  - Lua's djinn.connect (test_remote.lua), tensors through shared memory
#    and (DJINN_NO_SHM=1) the socket;
#  - the shared-memory path's checks and hang-ups (shm.py).
# Every server listens on an ephemeral port and is killed at the end.
# usage: tests/server/run.sh BUILD_DIR
set -u
prog=tests/server/run.sh
[ $# -ge 1 ] || { echo "usage: $prog BUILD_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
djinn=$(cd "$1" 2>/dev/null && pwd)/djinn
[ -x "$djinn" ] || { echo "$prog: no djinn in '$1' (build it first)" >&2; exit 2; }

# transcripts that load the way the server serves (no --dtype, --kv-limit),
# and use no Lua or files: breakpoints, print, steer, checkpoints, sessions,
# JSON, and the interpretability commands (lens, patterns, patch, record)
transcripts="basics checkpoint conditions display errors gguf json misc sessions steer steer-pos
	accuracy aliases attn-pattern cond-exprs confirm lens patch print-rows record sites stream tokens
	value-arith"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/djinn-server.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
ln -s "$root/models" "$tmp/models"
ln -s "$root/tests" "$tmp/tests"
python3 "$root/tests/shell/make-npy.py" "$tmp/npy" || exit 2

pass=0
fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$1"; }

# serve NAME [env...] -- [serve options]: starts a server, sets port_NAME
serve() {
	local name=$1
	shift
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	(cd "$tmp" && exec env "${envs[@]}" "$djinn" serve --listen 127.0.0.1:0 \
		--port-file "$tmp/$name.port" "$@" models/stories260K.bin \
		--tokenizer models/tok512.bin models/stories260K.gguf >"$tmp/$name.log" 2>&1) &
	pids+=($!)
	for _ in $(seq 100); do
		[ -s "$tmp/$name.port" ] && break
		sleep 0.1
	done
	[ -s "$tmp/$name.port" ] || { echo "$prog: server $name did not start:"; cat "$tmp/$name.log"; exit 1; }
	printf -v "port_$name" '%s' "$(cat "$tmp/$name.port")"
}

# main: big tensors are read in pieces of 16 KiB (the path a 1 MiB+ read takes)
serve main DJINN_SERVE_READ_PIECE=16384 -- --read-timeout 1 --reap-after 2
serve slow DJINN_SERVE_WRITE_DELAY_US=3000 --
echo "s3cret-token-for-tests" >"$tmp/token"
serve tok -- --token-file "$tmp/token"

# --- transcripts through target remote -----------------------------------
for name in $transcripts; do
	cmd=$root/tests/shell/$name.cmd
	want_rc=$(sed -n 's/^# expect-exit: *\([0-9]*\).*/\1/p' "$cmd" | head -n1)
	args=$(sed -n 's/^# args: *//p' "$cmd" | head -n1)
	filter=$(sed -n 's/^# filter: *//p' "$cmd" | head -n1)
	# shellcheck disable=SC2086
	(cd "$tmp" && HOME=$tmp timeout 60 "$djinn" -batch $args \
		-ex "target remote 127.0.0.1:$port_main" -x "tests/shell/$name.cmd" >"$tmp/$name.raw" 2>&1)
	rc=$?
	sed -e 1d -e "${filter:-}" "$tmp/$name.raw" >"$tmp/$name.got"
	if ! diff -u "$root/tests/shell/$name.out" "$tmp/$name.got" >"$tmp/$name.diff"; then
		bad "remote transcript $name (output differs)"
		head -n 30 "$tmp/$name.diff"
	elif [ "$rc" != "${want_rc:-0}" ]; then
		bad "remote transcript $name (exit status $rc, expected ${want_rc:-0})"
	else
		ok "remote transcript $name"
	fi
done

# djinn connect, and detach then reattach from the shell
out=$(cd "$tmp" && timeout 30 "$djinn" connect "127.0.0.1:$port_main" -batch \
	-ex "load models/stories260K.bin --tokenizer models/tok512.bin" \
	-ex "break L1.resid_post if pos == 5" -ex 'run "Once upon a time" -n 12' \
	-ex "info remote" -ex "detach" 2>&1)
tok=$(printf '%s\n' "$out" | sed -n 's/.*--resume \([0-9a-f]*\))$/\1/p')
if printf '%s\n' "$out" | grep -q '^  execute ' && [ -n "$tok" ]; then
	ok "djinn connect; info remote shows the phases; detach gives the token"
else
	bad "djinn connect / info remote / detach"
	printf '%s\n' "$out" | head -20
fi
out=$(cd "$tmp" && timeout 30 "$djinn" connect "127.0.0.1:$port_main" --resume "$tok" -batch \
	-ex "backtrace" -ex "continue" 2>&1)
if printf '%s\n' "$out" | grep -q '#0  L1.resid_post' &&
	printf '%s\n' "$out" | grep -q 'Run finished: 12 tokens'; then
	ok "target remote --resume takes the paused session back"
else
	bad "target remote --resume"
	printf '%s\n' "$out" | head -20
fi
if (cd "$tmp" && "$djinn" serve --listen 0.0.0.0:0 models/stories260K.bin 2>&1) |
	grep -q 'not a loopback address; listening there needs --token-file'; then
	ok "listening off loopback without a token is refused"
else
	bad "listening off loopback without a token is refused"
fi

# --- the protocol ------------------------------------------------------------
(cd "$tmp" && "$djinn" -batch -ex "load models/stories260K.bin --tokenizer models/tok512.bin" \
	-ex 'run "Once upon a time" -n 200' -ex 'echo @@TEXT@@\n' -ex "info text" 2>&1) |
	sed -n '/^@@TEXT@@$/,$p' | sed 1d >"$tmp/ref.txt"
(cd "$tmp" && timeout 60 python3 "$root/tests/server/proto.py" "$djinn" "$port_main" \
	"$port_slow" "$port_tok" "s3cret-token-for-tests" "$tmp/ref.txt") >"$tmp/proto.log" 2>&1
rc=$?
cat "$tmp/proto.log"
pass=$((pass + $(grep -c '^ok ' "$tmp/proto.log")))
fail=$((fail + $(grep -c '^FAIL ' "$tmp/proto.log")))
[ $rc -eq 0 ] || grep -q '^FAIL ' "$tmp/proto.log" || bad "proto.py exited with $rc"

# --- Lua -----------------------------------------------------------------------
# twice: tensors through shared memory (a client on this host), then with
# DJINN_NO_SHM=1 through the socket; both equal the local ones byte for byte
for via in shm socket; do
	what=$([ $via = shm ] && echo "shared memory" || echo "the socket")
	if (cd "$tmp" && TMPDIR=$tmp DJINN_NO_SHM=$([ $via = socket ] && echo 1) timeout 60 \
		"$djinn" "$root/tests/server/test_remote.lua" "127.0.0.1:$port_main" $via \
		>"$tmp/lua.log" 2>&1); then
		ok "lua: djinn.connect (tensors through $what)"
	else
		bad "lua: djinn.connect (tensors through $what)"
		tail -n 20 "$tmp/lua.log"
	fi
done

# --- shared memory: the server's checks, hang-ups, a forged server ---------------
(cd "$tmp" && TMPDIR=$tmp timeout 60 python3 "$root/tests/server/shm.py" "$djinn" "$port_main") \
	>"$tmp/shm.log" 2>&1
rc=$?
cat "$tmp/shm.log"
pass=$((pass + $(grep -c '^ok ' "$tmp/shm.log")))
fail=$((fail + $(grep -c '^FAIL ' "$tmp/shm.log")))
[ $rc -eq 0 ] || grep -q '^FAIL ' "$tmp/shm.log" || bad "shm.py exited with $rc"
out=$(cd "$tmp" && timeout 30 "$djinn" connect "127.0.0.1:$port_main" -batch -ex "info remote" 2>&1)
out2=$(cd "$tmp" && DJINN_NO_SHM=1 timeout 30 "$djinn" connect "127.0.0.1:$port_main" -batch \
	-ex "info remote" 2>&1)
if printf '%s\n' "$out" | grep -q '^Tensors through shared memory' &&
	printf '%s\n' "$out2" | grep -q '^Tensors through the socket$'; then
	ok "info remote says whether tensors come through shared memory"
else
	bad "info remote says whether tensors come through shared memory"
	printf '%s\n%s\n' "$out" "$out2" | head -20
fi

# a unix socket's client is on this host too: shared memory, and the same tensor
(cd "$tmp" && exec "$djinn" serve --unix "$tmp/djinn.sock" models/stories260K.bin \
	--tokenizer models/tok512.bin >"$tmp/unix.log" 2>&1) &
pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/djinn.sock" ] && break; sleep 0.1; done
cat >"$tmp/unix.lua" <<'LUA'
local r = assert(djinn.connect(arg[1]))
assert(r:shm(), "no shared memory over a unix socket")
assert(r:command("load models/stories260K.bin --tokenizer models/tok512.bin"))
assert(r:command("break L0.mlp_act")); r:command('start "Once upon a time" -n 1'); r:command("continue")
local m = assert(djinn.load("models/stories260K.bin", {tokenizer = "models/tok512.bin"}))
local s = m:session(); s:break_at("L0.mlp_act"); s:start("Once upon a time", {n = 1, eos = false}); s:continue()
assert(r:tensor("L0.mlp_act") == s:tensor("L0.mlp_act"), "the tensors differ")
print("unix ok")
LUA
if (cd "$tmp" && timeout 30 "$djinn" "$tmp/unix.lua" "unix:$tmp/djinn.sock" 2>&1) | grep -q '^unix ok$'; then
	ok "a client on a unix socket reads through shared memory"
else
	bad "a client on a unix socket reads through shared memory"
	(cd "$tmp" && timeout 30 "$djinn" "$tmp/unix.lua" "unix:$tmp/djinn.sock" 2>&1 | tail -5)
fi

# the servers are still up after all that
for n in main slow tok; do
	p=port_$n
	if (cd "$tmp" && timeout 10 "$djinn" connect "127.0.0.1:${!p}" --token-file "$tmp/token" \
		-batch -ex "echo up\\n" 2>/dev/null) | grep -q '^up$'; then
		ok "server $n is still up"
	else
		bad "server $n is still up"
	fi
done

printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
