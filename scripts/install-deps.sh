#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing Djinn needs, when any is missing.
#
# usage: scripts/install-deps.sh
#
# Silent when everything is installed. Otherwise runs apt-get update once and installs what is
# missing, which needs root: as another user it names the missing packages and fails.
set -euo pipefail

prog=install-deps.sh
pkgs=(
	build-essential pkg-config
	liblua5.4-dev lua5.4
	libcjson-dev libcriterion-dev libreadline-dev
	clang libclang-rt-14-dev
	tmux python3 curl
	gnuplot-nox
)

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

command -v dpkg-query >/dev/null 2>&1 || {
	printf '%s: no dpkg-query: this script installs Debian packages; install by hand: %s\n' \
		"$prog" "${pkgs[*]}" >&2
	exit 1
}

missing=()
for p in "${pkgs[@]}"; do
	installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	printf '%s: missing packages: %s\n' "$prog" "${missing[*]}" >&2
	printf '%s: run as root, or: sudo apt-get install %s\n' "$prog" "${missing[*]}" >&2
	exit 1
fi

printf '%s: installing %s\n' "$prog" "${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
