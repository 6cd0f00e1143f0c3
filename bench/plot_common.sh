# plot_common.sh - sourced by the plot scripts that read RESULTS_DIR OUT_DIR:
# checks the two arguments, makes OUT_DIR (absolute in $out), installs gnuplot
# from Debian's packages when missing (as root), and makes $tmp, removed on exit.
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
