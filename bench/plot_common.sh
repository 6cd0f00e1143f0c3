# plot_common.sh - sourced by the plot scripts that read RESULTS_DIR OUT_DIR:
# checks the two arguments, makes OUT_DIR (absolute in $out), installs gnuplot
# from Debian's packages when missing (as root), and makes $tmp, removed on exit.
# Defines render (below).
# usage (from a script): . "$(dirname "$0")/plot_common.sh" "$@"   sets res, out, tmp
plot_name=$(basename "$0")
res=${1:?usage: bench/$plot_name RESULTS_DIR OUT_DIR}
out=${2:?usage: bench/$plot_name RESULTS_DIR OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v gnuplot >/dev/null 2>&1 || {
	[ "$(id -u)" -eq 0 ] || { echo "$plot_name: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
	apt-get install -y gnuplot-nox >/dev/null || { apt-get update >/dev/null && apt-get install -y gnuplot-nox >/dev/null; }
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# render PREFIX NAME...: each $tmp/NAME.gp that the script wrote (an empty or
# missing one is skipped) as $out/PREFIX-NAME.png and .svg (plain png where
# gnuplot has no cairo); then lists what was made.
render() {
	local prefix=$1 p t term
	shift
	for p in "$@"; do
		[ -s "$tmp/$p.gp" ] || continue
		for t in png svg; do
			case $t in png) term='pngcairo size 900,600' ;; svg) term='svg size 900,600' ;; esac
			(cd "$tmp" && gnuplot -e "set terminal $term; set output '$out/$prefix-$p.$t'" "$p.gp") ||
				{ [ $t = png ] && (cd "$tmp" && gnuplot -e "set terminal png size 900,600; set output '$out/$prefix-$p.$t'" "$p.gp"); }
		done
	done
	ls "$out/$prefix"-* 2>/dev/null
}
