#!/usr/bin/env bash
# Transcript tests for the djinn shell: every tests/shell/NAME.cmd runs as
#     djinn -batch [ARGS] -x tests/shell/NAME.cmd      (stdout and stderr together)
# and must print exactly tests/shell/NAME.out and exit with the expected status.
# Header comments in a .cmd set them:   # expect-exit: 1     # args: --json
# and `# filter: SED-EXPR` edits what varies by machine (thread counts) first.
# The commands run in a scratch directory holding links to models/ and tests/,
# and npy/ with the .npy files of make-npy.py; files a test writes land there.
#
# Also checked: the token-accuracy equivalences (run vs continue through a
# breakpoint at every layer, vs step and next all the way), and that
# docs/commands.md is what `djinn --help-commands-md` prints.
#
# usage: tests/shell/run.sh BUILD_DIR [--update] [NAME...]
#   --update  rewrite the .out files from what djinn prints now (review the diff!)
set -u

prog=tests/shell/run.sh
[ $# -ge 1 ] || { echo "usage: $prog BUILD_DIR [--update] [NAME...]" >&2; exit 2; }
build=$1
shift
update=0
if [ "${1:-}" = --update ]; then
	update=1
	shift
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
djinn=$(cd "$build" 2>/dev/null && pwd)/djinn
[ -x "$djinn" ] || { echo "$prog: no djinn in '$build' (build it first)" >&2; exit 2; }
for f in stories260K.bin tok512.bin stories260K.gguf; do
	[ -f "$root/models/$f" ] || { echo "$prog: models/$f is missing (make models)" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/djinn-shell.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ln -s "$root/models" "$tmp/models"
ln -s "$root/tests" "$tmp/tests"
python3 "$root/tests/shell/make-npy.py" "$tmp/npy" || exit 2

pass=0
fail=0
failed=()

ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf 'FAIL %s\n' "$1"; }

# --- transcripts --------------------------------------------------------
if [ $# -gt 0 ]; then
	names=("$@")
else
	names=()
	for c in "$root"/tests/shell/*.cmd; do
		n=${c##*/}
		names+=("${n%.cmd}")
	done
fi

for name in "${names[@]}"; do
	cmd=$root/tests/shell/$name.cmd
	exp=$root/tests/shell/$name.out
	[ -f "$cmd" ] || { bad "$name (no $name.cmd)"; continue; }
	want_rc=$(sed -n 's/^# expect-exit: *\([0-9]*\).*/\1/p' "$cmd" | head -n1)
	want_rc=${want_rc:-0}
	args=$(sed -n 's/^# args: *//p' "$cmd" | head -n1)
	filter=$(sed -n 's/^# filter: *//p' "$cmd" | head -n1)
	got=$tmp/$name.got
	# shellcheck disable=SC2086
	(cd "$tmp" && HOME=$tmp timeout 120 "$djinn" -batch $args -x "tests/shell/$name.cmd" \
		>"$got.raw" 2>&1)
	rc=$?
	sed -e "${filter:-}" "$got.raw" >"$got"
	if [ $update = 1 ]; then
		cp "$got" "$exp"
	fi
	if [ ! -f "$exp" ]; then
		bad "$name (no $name.out; run with --update to create it)"
	elif ! diff -u "$exp" "$got" >"$tmp/$name.diff"; then
		bad "$name (output differs)"
		head -n 40 "$tmp/$name.diff"
	elif [ "$rc" != "$want_rc" ]; then
		bad "$name (exit status $rc, expected $want_rc)"
	else
		ok "$name"
	fi
done

# --- token accuracy: four ways through the same greedy run ----------------
if [ $# -eq 0 ]; then
	load=(-ex "load models/stories260K.bin --tokenizer models/tok512.bin")
	text() { # ARGS...: djinn's commands, then print only the final text
		(cd "$tmp" && "$djinn" -batch "${load[@]}" "$@" -ex "echo @@TEXT@@\n" \
			-ex "info text" 2>&1) | sed -n '/^@@TEXT@@$/,$p'
	}
	P='"Once upon a time" -n 256'
	text -ex "run $P" >"$tmp/acc-run"
	text -ex "break L0.resid_post" -ex "break L1.resid_post" -ex "break L2.resid_post" \
		-ex "break L3.resid_post" -ex "break L4.resid_post" -ex "start $P" \
		-ex "commands 1-5" -ex "silent" -ex "continue" -ex "end" -ex "continue" \
		>"$tmp/acc-continue"
	text -ex "start $P" -ex "step 100000" >"$tmp/acc-step"
	text -ex "start $P" -ex "next 100000" >"$tmp/acc-next"
	text -ex "start $P" -ex "finish" -ex "until 40" -ex "advance L3.q" -ex "next 7" \
		-ex "step 13" -ex "continue" >"$tmp/acc-mixed"
	if [ "$(wc -l <"$tmp/acc-run")" -lt 3 ]; then
		bad "accuracy (no text from a plain run)"
	else
		# the reference: llama2.c's greedy output for this prompt
		if head -c 500 "$root/models/stories260K.greedy.txt" | cmp -s - <(sed 1d "$tmp/acc-run" | head -c 500); then
			ok "accuracy: run matches llama2.c's greedy text"
		else
			bad "accuracy: run differs from models/stories260K.greedy.txt"
		fi
		for m in continue step next mixed; do
			if cmp -s "$tmp/acc-run" "$tmp/acc-$m"; then
				ok "accuracy: $m gives the same 256 tokens as run"
			else
				bad "accuracy: $m differs from run"
				diff "$tmp/acc-run" "$tmp/acc-$m" | head -n 10
			fi
		done
	fi

	# --- the sessions the docs show are what djinn prints -----------------
	# session WANT GOT: replay the "(djinn) CMD" lines of WANT (its first
	# line the shell's command line) through djinn, the output into GOT
	session() {
		local ex=() c
		while IFS= read -r c; do
			[ "$c" = quit ] && continue
			ex+=(-ex "echo (djinn) $c\\n" -ex "$c")
		done < <(sed -n 's/^(djinn) //p' "$1")
		{
			head -n 1 "$1"
			(cd "$tmp" && "$djinn" -batch models/stories260K.bin -z models/tok512.bin "${ex[@]}" 2>&1)
			echo "(djinn) quit"
		} >"$2"
		[ ${#ex[@]} -gt 10 ]
	}
	md=$root/docs/commands.md
	sed -n '/^## An example session/,/^## Commands/p' "$md" |
		sed -n '/^```$/,/^```$/p' | sed '1d;$d' >"$tmp/example.want"
	if session "$tmp/example.want" "$tmp/example.got" &&
	   diff -u "$tmp/example.want" "$tmp/example.got" >"$tmp/example.diff"; then
		ok "docs/commands.md: the example session prints what it shows"
	else
		bad "docs/commands.md: the example session differs from djinn's output"
		head -n 20 "$tmp/example.diff"
	fi
	# docs/walkthrough.md: its ```session blocks, one session read in order
	awk '/^```session$/ { on = 1; next } /^```$/ { on = 0 } on' \
		"$root/docs/walkthrough.md" >"$tmp/walk.want"
	if session "$tmp/walk.want" "$tmp/walk.got" &&
	   diff -u "$tmp/walk.want" "$tmp/walk.got" >"$tmp/walk.diff"; then
		ok "docs/walkthrough.md: the session prints what it shows"
	else
		bad "docs/walkthrough.md: the session differs from djinn's output"
		head -n 20 "$tmp/walk.diff"
	fi

	# --- the patching heatmap (bench/plot_patch.sh needs gnuplot) --------
	if command -v gnuplot >/dev/null; then
		if out=$("$root"/tests/shell/plot-patch.sh "$(dirname "$djinn")" 2>&1); then
			ok "plot-patch (PNG and SVG)"
		else
			bad "plot-patch: $out"
		fi
	else
		printf 'skip plot-patch (no gnuplot: scripts/install-deps.sh installs it)\n'
	fi

	# --- docs/commands.md is generated from the command table ----------
	if "$djinn" --help-commands-md | diff -u "$root/docs/commands.md" - >"$tmp/docs.diff"; then
		ok "docs/commands.md matches djinn --help-commands-md"
	else
		bad "docs/commands.md is stale (djinn --help-commands-md > docs/commands.md)"
		head -n 20 "$tmp/docs.diff"
	fi
fi

printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ] || { printf 'failed: %s\n' "${failed[*]}"; exit 1; }
