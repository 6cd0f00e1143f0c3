#!/usr/bin/env bash
# The shell at a real terminal: djinn runs in a tmux pane (a pseudo-terminal);
# we type with send-keys and read the screen with capture-pane.  Checks the
# prompt, Tab completion of a command and of a site, Ctrl-C at the prompt,
# an empty line repeating `step`, Ctrl-C during a long run (paused, `bt`
# works, `continue` resumes), history in $HOME/.djinn_history, Ctrl-D, and
# gdb's questions: `delete` and `undisplay` with no argument, `quit` with a
# paused run or checkpoints (unless `set confirm off`).
#
# usage: tests/shell/interactive.sh BUILD_DIR
set -u

prog=tests/shell/interactive.sh
[ $# -eq 1 ] || { echo "usage: $prog BUILD_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
djinn=$(cd "$1" 2>/dev/null && pwd)/djinn
[ -x "$djinn" ] || { echo "$prog: no djinn in '$1'" >&2; exit 2; }
command -v tmux >/dev/null || { echo "$prog: tmux is not installed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/djinn-tty.XXXXXX")
sock=djinn-test-$$
t() { tmux -L "$sock" "$@"; }
cleanup() {
	t kill-server 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

fail=0
pass=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() {
	fail=$((fail + 1))
	printf 'FAIL %s\n' "$1"
	screen | tail -n 15 | sed 's/^/     | /'
}

screen() { t capture-pane -p -t djinn -S -1000 2>/dev/null; }
count() { screen | grep -cF -- "$1"; }
# wait until PATTERN has been seen N times on the screen (default: once more
# than when we started waiting is the caller's business: pass N)
wait_n() {
	local pat=$1 n=$2 tries=${3:-100}
	for ((i = 0; i < tries; i++)); do
		[ "$(count "$pat")" -ge "$n" ] && return 0
		sleep 0.1
	done
	return 1
}
# the last line with the cursor, trailing blanks dropped
last_line() { screen | sed 's/[[:space:]]*$//' | grep -v '^$' | tail -n 1; }
# type: each argument is literal text, or one of Enter Tab C-c C-d
keys() {
	for k in "$@"; do
		case $k in
		Enter | Tab | C-c | C-d) t send-keys -t djinn "$k" ;;
		*) t send-keys -t djinn -l "$k" ;;
		esac
	done
}

t new-session -d -s djinn -x 160 -y 50 \
	"cd '$root' && HOME='$tmp' '$djinn' -q models/stories260K.bin -z models/tok512.bin; echo '[djinn exited]'; sleep 30"

# --- the prompt ----------------------------------------------------------
if wait_n "(djinn)" 1 && wait_n "Loaded stories260K.bin" 1; then
	ok "the prompt appears after the model loads"
else
	bad "the prompt appears after the model loads"
	exit 1
fi

# --- Tab completes a command, then a subcommand ---------------------------
keys "inf" Tab
sleep 0.3
if last_line | grep -q '^(djinn) info$'; then
	ok "Tab completes 'inf' to 'info'"
else
	bad "Tab completes 'inf' to 'info'"
fi
keys "mo" Tab Enter
if wait_n "Arch:       llama, 5 layers" 1; then
	ok "Tab completes 'info mo' to 'info model', which runs"
else
	bad "Tab completes 'info mo' to 'info model', which runs"
fi

# --- Tab completes a site name --------------------------------------------
keys "break L3.resid_p" Tab
sleep 0.3
if last_line | grep -q '^(djinn) break L3.resid_post$'; then
	ok "Tab completes a site name"
else
	bad "Tab completes a site name"
fi
keys Enter
wait_n "Breakpoint 1 at L3.resid_post" 1 || bad "break after completion"

# --- delete and undisplay ask first, as in gdb ------------------------------
keys "delete" Enter
if wait_n "Delete all breakpoints? (y or n)" 1; then
	ok "delete with no argument asks"
else
	bad "delete with no argument asks"
fi
keys "maybe" Enter
wait_n "Please answer y or n." 1 || bad "delete: an answer that is not y or n asks again"
keys "n" Enter "info breakpoints" Enter
if wait_n "1       breakpoint     keep y   L3.resid_post" 1; then
	ok "delete answered n keeps the breakpoints"
else
	bad "delete answered n keeps the breakpoints"
fi
keys "delete" Enter
wait_n "Delete all breakpoints? (y or n)" 3
keys "y" Enter "info breakpoints" Enter
if wait_n "No breakpoints or watchpoints." 1; then
	ok "delete answered y deletes them"
else
	bad "delete answered y deletes them"
fi
keys "display embed" Enter "undisplay" Enter
wait_n "Delete all auto-display expressions? (y or n)" 1 || bad "undisplay asks"
keys "y" Enter "info display" Enter
if wait_n "There are no auto-display expressions now." 1; then
	ok "undisplay with no argument asks, and y deletes the displays"
else
	bad "undisplay with no argument asks, and y deletes the displays"
fi
keys "set confirm off" Enter "display embed" Enter "undisplay" Enter "info display" Enter
if wait_n "There are no auto-display expressions now." 2 &&
	[ "$(count 'Delete all auto-display expressions? (y or n)')" -eq 1 ]; then
	ok "set confirm off: undisplay does not ask"
else
	bad "set confirm off: undisplay does not ask"
fi
keys "set confirm on" Enter

# --- Ctrl-C at the prompt clears the line ---------------------------------
keys "garbage that must not run"
sleep 0.2
keys C-c
sleep 0.3
keys "echo line-was-cleared\\n" Enter
if wait_n "line-was-cleared" 2 && [ "$(count 'Undefined command: "garbage"')" -eq 0 ]; then
	ok "Ctrl-C at the prompt drops the line"
else
	bad "Ctrl-C at the prompt drops the line"
fi

# --- an empty line repeats step -----------------------------------------
keys 'start "Once upon a time" -n 0' Enter
wait_n "Started: before embed" 1
keys "step" Enter
wait_n "embed at pos 0..4" 2
keys Enter
if wait_n "L0.attn_norm at pos 0..4" 1; then
	ok "an empty line repeats step"
else
	bad "an empty line repeats step"
fi

# --- Ctrl-C during a long run leaves it paused and resumable ---------------
# an endless run: at token 60, go back to the checkpoint and continue
keys "checkpoint" Enter
wait_n "Checkpoint 1 at" 1
keys "break token 60" Enter
wait_n "Breakpoint 2 at token 60" 1
keys "commands 2" Enter
keys "silent" Enter "restore 1" Enter "continue" Enter "end" Enter
sleep 0.3
keys "continue" Enter
sleep 2
keys C-c
if wait_n "Program received signal SIGINT, Interrupt." 1 50 || wait_n "Restored checkpoint 1" 1 1; then
	ok "Ctrl-C stops a running generation"
else
	bad "Ctrl-C stops a running generation"
fi
sleep 0.3
keys "bt" Enter
if wait_n "#2  pos " 1 && wait_n "text so far:" 1; then
	ok "bt works after Ctrl-C"
else
	bad "bt works after Ctrl-C"
fi
keys "quit" Enter
if wait_n "A debugging session is active." 1 && wait_n "Session main, paused at" 1 &&
	wait_n "Quit anyway? (y or n)" 1; then
	ok "quit with a paused run asks"
else
	bad "quit with a paused run asks"
fi
keys "n" Enter
if wait_n "Not confirmed." 1; then
	ok "quit answered n stays"
else
	bad "quit answered n stays"
fi
keys "delete" Enter
wait_n "Delete all breakpoints? (y or n)" 4
keys "y" Enter
keys "continue" Enter
if wait_n "[Run finished:" 1 100; then
	ok "continue resumes after Ctrl-C and the run finishes"
else
	bad "continue resumes after Ctrl-C and the run finishes"
fi
keys "info sessions" Enter
wait_n "main             finished" 1 || bad "the session is intact after Ctrl-C"

# --- Ctrl-D quits (asking, for the checkpoint), and history is kept -------
keys C-d
if wait_n "Session main's 1 checkpoint will be lost." 1 && wait_n "Quit anyway? (y or n)" 2; then
	ok "Ctrl-D with a checkpoint asks"
else
	bad "Ctrl-D with a checkpoint asks"
fi
keys "y" Enter
if wait_n "[djinn exited]" 1; then
	ok "Ctrl-D quits"
else
	bad "Ctrl-D quits"
fi
if grep -qx "info model" "$tmp/.djinn_history" 2>/dev/null &&
	grep -qx "bt" "$tmp/.djinn_history"; then
	ok "history is saved in \$HOME/.djinn_history"
else
	bad "history is saved in \$HOME/.djinn_history"
fi

printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
