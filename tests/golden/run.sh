#!/usr/bin/env bash
# Golden tests: djinn generate against llama2.c's reference output, and the
# bad-input contract of the CLI (one clear message, non-zero exit, no crash).
# usage: tests/golden/run.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
djinn="$build/djinn"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 n=0

ok()   { n=$((n + 1)); printf '  ok   %s\n' "$1"; }
bad()  { n=$((n + 1)); fails=$((fails + 1)); printf '  FAIL %s\n' "$1"; [ -n "${2:-}" ] && printf '       %s\n' "$2"; }

same() { # name expected-file command...
	local name=$1 want=$2; shift 2
	if "$@" >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/out" "$want"; then
		ok "$name"
	else
		bad "$name" "$(head -c 300 "$tmp/err"; diff <(head -c 400 "$want") <(head -c 400 "$tmp/out") | head -5)"
	fi
}

fails_with() { # name regex command...
	local name=$1 re=$2; shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -Eq -- "$re" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -le 2 ]; then
		ok "$name"
	else
		bad "$name" "rc=$rc stderr: $(head -c 300 "$tmp/err")"
	fi
}

ref=models/stories260K.greedy.txt
echo "golden:"
same "stories260K.bin greedy 256 tokens == llama2.c run.c" "$ref" \
	"$djinn" generate models/stories260K.bin -z models/tok512.bin -t 0 -n 256 --device cpu
same "stories260K.gguf greedy 256 tokens == llama2.c run.c" "$ref" \
	"$djinn" generate models/stories260K.gguf -t 0 -n 256 --device cpu
# run.c -n 64 -i "Once upon a time": BOS + 4 prompt tokens, 60 generated:
# the story's first line, then "Lily" (SOURCES.md)
{ head -n 1 "$ref"; printf 'Lily\n'; } >"$tmp/prompted"
same "prompted greedy == run.c -n 64 -i 'Once upon a time'" "$tmp/prompted" \
	"$djinn" generate models/stories260K.bin -z models/tok512.bin -t 0 -n 60 -p "Once upon a time" --device cpu
same "threads do not change the tokens" "$ref" \
	"$djinn" generate models/stories260K.bin -z models/tok512.bin -t 0 -n 256 --threads 1 --device cpu

# seeded sampling is reproducible
"$djinn" generate models/stories260K.gguf -t 0.8 --seed 42 -n 64 --device cpu >"$tmp/s1" 2>/dev/null
"$djinn" generate models/stories260K.gguf -t 0.8 --seed 42 -n 64 --device cpu >"$tmp/s2" 2>/dev/null
"$djinn" generate models/stories260K.gguf -t 0.8 --seed 43 -n 64 --device cpu >"$tmp/s3" 2>/dev/null
if cmp -s "$tmp/s1" "$tmp/s2" && ! cmp -s "$tmp/s1" "$tmp/s3" && [ -s "$tmp/s1" ]; then
	ok "seeded sampling: same seed same text, other seed other text"
else
	bad "seeded sampling reproducibility"
fi

echo "bad input:"
fails_with "missing model file" "nope.bin: no such file" \
	"$djinn" generate "$tmp/nope.bin" -z models/tok512.bin -n 4
head -c 300000 models/stories260K.bin >"$tmp/trunc.bin"
fails_with "truncated llama2.c checkpoint" "trunc.bin: truncated: wo needs 81920 bytes at offset 296220, file has 300000" \
	"$djinn" generate "$tmp/trunc.bin" -z models/tok512.bin -n 4
head -c 3000 models/tok512.bin >"$tmp/tok.bin"
fails_with "truncated tokenizer" "tok.bin" \
	"$djinn" generate models/stories260K.bin -z "$tmp/tok.bin" -n 4
printf 'GGUF\x07\x00\x00\x00' >"$tmp/v7.gguf"; head -c 64 /dev/zero >>"$tmp/v7.gguf"
fails_with "gguf unsupported version" "v7.gguf.*version" "$djinn" generate "$tmp/v7.gguf" -n 4
printf 'GGUX\x03\x00\x00\x00' >"$tmp/magic.gguf"; head -c 64 /dev/zero >>"$tmp/magic.gguf"
fails_with "gguf bad magic" "magic.gguf.*magic" "$djinn" generate "$tmp/magic.gguf" -n 4
long=$(for i in $(seq 1 700); do printf 'Once upon a time '; done)
fails_with "prompt longer than the context" "prompt has [0-9]+ tokens, the context holds 512" \
	"$djinn" generate models/stories260K.bin -z models/tok512.bin -n 4 -p "$long" --device cpu
fails_with "unknown device" "device 'tpu'" \
	"$djinn" generate models/stories260K.bin -z models/tok512.bin -n 4 --device tpu
fails_with "unknown format" "unknown model format" \
	"$djinn" generate models/manifest.tsv -n 4
fails_with "a tokenizer given as the model" "tok512.bin: this is not a model: it is a llama2.c tokenizer" \
	"$djinn" generate models/tok512.bin -n 4
# a .bin finds tok512.bin beside it; -n past the context warns as run and start do
"$djinn" generate models/stories260K.bin -t 0 -n 600 -p "Once upon a time" --device cpu >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && [ -s "$tmp/out" ] &&
   grep -q '^warning: -n 600 is past the context: 512 tokens, 5 of them the prompt; the run stops after 507$' "$tmp/err"; then
	ok "tok512.bin beside the model; -n past the context warns"
else
	bad "tok512.bin beside the model; -n past the context warns" "$(head -c 300 "$tmp/err")"
fi

printf '%d/%d golden tests passed\n' $((n - fails)) "$n"
[ "$fails" -eq 0 ]
