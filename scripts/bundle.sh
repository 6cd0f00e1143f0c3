#!/usr/bin/env bash
# Makes bundle/: djinn, its test binaries, the shared libraries a bare GPU machine lacks, the test
# models, and the scripts and data the tests read - a folder that runs where it is copied.
#
# usage: scripts/bundle.sh BUILD_DIR        (make bundle calls it with $(BUILD))
#
# The GPU machine has glibc 2.39, gcc, nvcc and cuBLAS 13, but no Lua, cJSON or Criterion: every
# library the binaries load is copied into bundle/lib except glibc's own, the compiler runtime
# and CUDA's (see `keep_system`).  Binaries find lib/ through their rpath (set with patchelf when
# it is installed, else through the bin/lib and bin/tests/lib links that the Makefile's
# '$ORIGIN/lib' rpath follows) and through bundle/run.sh, which also sets LD_LIBRARY_PATH.
#
# Models: every file of models/ up to BUNDLE_MODEL_MAX_MIB (default 40) goes into bundle/models;
# a larger one is cut into parts of that size under .bundle/parts/ (with its sha256), so that no
# one piece is too large to carry, and bundle/run.sh joins them on the GPU machine.
# BUNDLE_MODELS="a.gguf b.bin" limits the models to those names; BUNDLE_UNIT=0 leaves the unit
# test binaries out (about 5 MiB each), for a smaller bundle that runs only the GPU tests.
#
# Layout (mirrors the repository, so scripts that take BUILD_DIR work with BUILD_DIR=build):
#   bundle/bin/djinn  bundle/bin/tests/*  bundle/build -> bin  bundle/lib/  bundle/models/
#   bundle/scripts/  bundle/tests/  bundle/lua/  bundle/docs/  bundle/run.sh  bundle/MANIFEST
set -euo pipefail

prog=bundle.sh
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/bundle.sh BUILD_DIR"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${1%/}
[ -x "$build/djinn" ] || die "'$build/djinn' is missing: run 'make BUILD=$build' first"
max_mib=${BUNDLE_MODEL_MAX_MIB:-40}
case $max_mib in ''|*[!0-9]*|0) die "BUNDLE_MODEL_MAX_MIB must be a positive number of MiB" ;; esac

out=$root/bundle
parts=$root/.bundle/parts

# --- the test binaries: unit tests and GPU tests, built if missing ----------------------------
gpu_bins=()
for src in tests/gpu/test-*.c; do
	[ -e "$src" ] || continue
	b=${src#tests/gpu/}
	gpu_bins+=("$build/tests/gpu-${b%.c}")
done
unit=${BUNDLE_UNIT:-1}
unit_target=()
[ "$unit" = 0 ] || unit_target=(test-unit-bins)
make -s BUILD="$build" ${unit_target[@]+"${unit_target[@]}"} ${gpu_bins[@]+"${gpu_bins[@]}"} >/dev/null ||
	die "building the test binaries failed (make BUILD=$build ${unit_target[*]-} ${gpu_bins[*]-})"
# the benchmarks' binaries: bench/*.c through the Makefile, bench/*.cu with nvcc
make -s BUILD="$build" bench-bins >/dev/null || die "building the benchmarks failed (make BUILD=$build bench-bins)"

rm -rf "$out"
mkdir -p "$out/bin/tests" "$out/lib" "$out/models"
cp "$build/djinn" "$out/bin/"
for t in "$build"/tests/test-* "$build"/tests/gpu-*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	case $t in *.d|*.o) continue ;; esac
	case ${t##*/} in test-*) [ "$unit" = 0 ] && continue ;; esac
	cp "$t" "$out/bin/tests/"
done
ln -s bin "$out/build"
mkdir -p "$out/bin/bench"
for b in "$build"/bench/*; do
	[ -f "$b" ] && [ -x "$b" ] && cp "$b" "$out/bin/bench/"
done
if command -v nvcc >/dev/null 2>&1; then
	for cu in bench/*.cu; do
		[ -e "$cu" ] || continue
		n=${cu#bench/}
		[ -x "$out/bin/bench/${n%.cu}" ] && continue
		nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -Iinclude -Isrc "$cu" \
			-o "$out/bin/bench/${n%.cu}" -lcublas 2>/dev/null || printf '%s: %s did not build (left out)\n' "$prog" "$cu" >&2
	done
fi

# --- shared libraries ---------------------------------------------------------------------------
# Present on any Ubuntu 24.04 with the CUDA toolkit: glibc, the gcc runtime, zlib, ncurses'
# tinfo, and CUDA itself (cuBLAS is version-matched to the machine's driver: never copy it).
keep_system() {
	case $1 in
	linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*) return 0 ;;
	libresolv.so*|libutil.so*|libanl.so*|libgcc_s.so*|libstdc++.so*|libz.so*|libtinfo.so*) return 0 ;;
	libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnvidia*|libnvrtc*) return 0 ;;
	esac
	return 1
}

missing=()
while read -r name arrow path _; do
	[ "$arrow" = "=>" ] || continue
	keep_system "$name" && continue
	if [ "$path" = "not" ]; then
		missing+=("$name")
		continue
	fi
	[ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
done < <(ldd "$out/bin/djinn" "$out"/bin/tests/* "$out"/bin/bench/* 2>/dev/null | sort -u)
[ ${#missing[@]} -eq 0 ] || die "ldd cannot resolve here: ${missing[*]}"

if command -v patchelf >/dev/null 2>&1; then
	# keep the rest of the link-time rpath (CUDA's lib64), put the bundle's lib/ first;
	# '$ORIGIN' is for the loader, not the shell
	# shellcheck disable=SC2016
	relink() { # FILE LIBDIR
		local old
		old=$(patchelf --print-rpath "$1" | tr ':' '\n' | grep -v '^\$ORIGIN' | paste -sd: -)
		patchelf --set-rpath "$2${old:+:$old}" "$1"
	}
	# shellcheck disable=SC2016
	relink "$out/bin/djinn" '$ORIGIN/../lib'
	for t in "$out"/bin/tests/* "$out"/bin/bench/*; do relink "$t" '$ORIGIN/../../lib'; done
	for l in "$out"/lib/*; do patchelf --set-rpath '$ORIGIN' "$l" 2>/dev/null || true; done
	rpath=patchelf
else
	# the Makefile links with rpath $ORIGIN/lib: point bin/lib and bin/tests/lib at lib/
	ln -s ../lib "$out/bin/lib"
	ln -s ../../lib "$out/bin/tests/lib"
	ln -s ../../lib "$out/bin/bench/lib"
	rpath="links (no patchelf)"
fi

# --- scripts, test data, Lua, docs -------------------------------------------------------------
mkdir -p "$out/scripts" "$out/tests"
for s in run-tests.sh models.sh; do
	[ -f "scripts/$s" ] && cp "scripts/$s" "$out/scripts/"
done
for d in tests/fixtures tests/golden tests/shell tests/lua tests/server lua docs bench; do
	[ -d "$d" ] && mkdir -p "$out/$(dirname "$d")" && cp -R "$d" "$out/$d"
done
[ -f models/manifest.tsv ] && cp models/manifest.tsv "$out/models/"

# --- models ---------------------------------------------------------------------------------------
rm -rf "$parts"
want_model() {
	[ -z "${BUNDLE_MODELS:-}" ] && return 0
	local m
	for m in $BUNDLE_MODELS; do [ "$m" = "$1" ] && return 0; done
	return 1
}
split_models=()
for f in models/*; do
	[ -f "$f" ] || continue
	name=${f#models/}
	case $name in manifest.tsv|*.part.*) continue ;; esac
	want_model "$name" || continue
	bytes=$(wc -c <"$f" | tr -d ' ')
	if [ "$bytes" -le $((max_mib * 1024 * 1024)) ]; then
		cp "$f" "$out/models/"
	else
		mkdir -p "$parts"
		split -b "${max_mib}M" -d -a 2 "$f" "$parts/$name.part-"
		(cd models && sha256sum "$name") >"$parts/$name.sha256"
		split_models+=("$name")
	fi
done

# --- run.sh ---------------------------------------------------------------------------------------
cat >"$out/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs djinn or its tests from this bundle (made by scripts/bundle.sh; see docs/gpu.md).
#
# usage: ./run.sh test-gpu [CRITERION ARGS]   the GPU parity tests (bin/tests/gpu-*)
#        ./run.sh test-unit                   the unit tests (bin/tests/test-*)
#        ./run.sh check                       the GPU, and libraries no binary can find
#        ./run.sh djinn ARGS...               the debugger
#        ./run.sh COMMAND ARGS...             anything else, with the bundle's environment,
#                                             e.g. ./run.sh tests/golden/run.sh build
# Runs from the bundle's folder: relative paths (models/..., tests/...) are the bundle's.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

# libcublas.so.13: the toolkit's, else the one PyTorch's wheels carry
cuda_lib=""
for d in "${CUDA_HOME:-}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
	 /usr/lib/x86_64-linux-gnu; do
	if [ -e "$d/libcublas.so.13" ]; then cuda_lib=$d; break; fi
done
if [ -z "$cuda_lib" ] && command -v python3 >/dev/null 2>&1; then
	cuda_lib=$(python3 - 2>/dev/null <<'PY'
import glob, os, site
for s in site.getsitepackages():
    for p in glob.glob(os.path.join(s, "nvidia", "*", "lib", "libcublas.so.13")):
        print(os.path.dirname(p)); raise SystemExit
PY
)
fi
export LD_LIBRARY_PATH="$here/lib${cuda_lib:+:$cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/bin:$PATH"

# models that travelled in parts (.bundle/parts beside bundle/): join and check them once
pdir="$here/../.bundle/parts"
for sum in "$pdir"/*.sha256; do
	[ -f "$sum" ] || continue
	name=$(basename "$sum" .sha256)
	[ -f "models/$name" ] && continue
	if cat "$pdir/$name".part-* >"models/$name.tmp" 2>/dev/null &&
	   [ "$(sha256sum <"models/$name.tmp" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$sum")" ]; then
		mv "models/$name.tmp" "models/$name"
		printf 'run.sh: joined models/%s from its parts\n' "$name" >&2
	else
		rm -f "models/$name.tmp"
		printf 'run.sh: models/%s: parts missing or corrupt, not joined\n' "$name" >&2
	fi
done

case "${1:-}" in
test-gpu)
	shift
	fails=0
	for t in bin/tests/gpu-*; do
		[ -x "$t" ] || continue
		printf '== %s\n' "$t"
		"$t" --verbose "$@" || fails=$((fails + 1))
	done
	[ "$fails" -eq 0 ]
	;;
test-unit)
	shift
	scripts/run-tests.sh build bin/tests/test-*
	;;
check)
	command -v nvidia-smi >/dev/null && nvidia-smi -L
	printf 'libcublas.so.13: %s\n' "${cuda_lib:-not found}"
	if ldd bin/djinn bin/tests/* | grep 'not found'; then exit 1; fi
	echo "all libraries found"
	;;
djinn)
	shift
	exec bin/djinn "$@"
	;;
'')
	sed -n '3,10p' "$0"
	exit 2
	;;
*)
	exec "$@"
	;;
esac
EOF
chmod +x "$out/run.sh"

{
	printf 'djinn bundle, made %s on %s from %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -n)" "$build"
	printf 'rpath: %s\n' "$rpath"
	printf 'cuda: %s\n' "$(grep -ao 'release [0-9.]*' <<<"$(nvcc --version 2>/dev/null)" || echo none)"
	printf '\nbinaries:\n'; (cd "$out" && ls -1 bin/djinn bin/tests/*)
	printf '\nlibraries:\n'; (cd "$out" && ls -1 lib)
	printf '\nmodels:\n'; (cd "$out" && ls -1 models)
	for m in ${split_models[@]+"${split_models[@]}"}; do
		printf '%s (in parts: .bundle/parts/%s.part-*)\n' "$m" "$m"
	done
} >"$out/MANIFEST"

size=$(du -sm "$out" | cut -f1)
printf '%s: bundle/ is %s MiB (%d libraries, %s)\n' "$prog" "$size" "$(ls "$out/lib" | wc -l)" "$rpath"
for m in ${split_models[@]+"${split_models[@]}"}; do
	printf '%s: models/%s is over %s MiB: in parts under .bundle/parts/ (run.sh joins them)\n' \
		"$prog" "$m" "$max_mib"
done
[ "$size" -le 64 ] || printf '%s: note: bundle/ is over 64 MiB\n' "$prog"
