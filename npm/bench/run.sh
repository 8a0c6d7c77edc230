#!/usr/bin/env bash
# Benchmark of the npm package `balena-release-update` against the npm
# tool's library (`@balena/release-update` 0.1.0), side by side in one run,
# with latency injected on every request of balena-sim (bench.mjs says what
# is measured). Installs the two tarballs of $CARGO_TARGET_DIR/npm/
# (scripts/pack-npm.sh; built first when missing) into a fresh global prefix
# and the npm tool (conformance/'s package.json and lockfile) into a fresh
# directory, takes `du -s` of each, then runs bench.mjs, which prints a
# section and writes it into BENCHMARKS.md between
# <!-- npm:start --> and <!-- npm:end -->.
#
# usage: npm/bench/run.sh [--no-write] [--runs N] [--cold-runs N] [--services 10,50] [--latency-ms 50]
#   CARGO_TARGET_DIR     where the tarballs and the release balena-sim are (default: target/)
#   BALENA_SIM_BIN=path  use this simulator (default: $CARGO_TARGET_DIR/release/balena-sim, built when missing)
#   KEEP_WORK=1          keep the prefixes and results.json
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

write=1
pass=()
while (($#)); do
	case $1 in
	--no-write) write=0 ;;
	--runs | --cold-runs | --services | --latency-ms)
		[[ $# -ge 2 ]] || { echo "npm bench: $1 needs a value" >&2; exit 2; }
		pass+=("$1" "$2")
		shift
		;;
	-h | --help)
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*) echo "npm bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

started=$SECONDS
shopt -s nullglob
tarballs=("$target_dir"/npm/balena-release-update-*.tgz)
if [[ ${#tarballs[@]} -ne 2 ]]; then
	bash "$root/scripts/pack-npm.sh"
	tarballs=("$target_dir"/npm/balena-release-update-*.tgz)
fi
[[ ${#tarballs[@]} -eq 2 ]] || { echo "npm bench: expected 2 tarballs in $target_dir/npm" >&2; exit 1; }

export BALENA_SIM_BIN=${BALENA_SIM_BIN:-$target_dir/release/balena-sim}
if [[ ! -x $BALENA_SIM_BIN ]]; then
	(cd "$root" && cargo build --release --locked --quiet -p balena-sim --bin balena-sim)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bru-npm-bench.XXXXXX")
cleanup() {
	if [[ ${KEEP_WORK:-} == 1 ]]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Ours: the tarballs into a fresh global prefix, offline (they need nothing
# from a registry), as npm/test/run.sh installs them.
ours_prefix=$work/ours
echo "npm bench: npm install --global --offline --prefix $ours_prefix ${tarballs[*]##*/}" >&2
npm install --global --offline --no-audit --no-fund --loglevel=error --prefix "$ours_prefix" "${tarballs[@]}" >&2
# The npm tool: conformance/'s pinned install (@balena/release-update 0.1.0,
# balena-sdk 22.4.9) into a fresh directory.
theirs_dir=$work/theirs
mkdir -p "$theirs_dir"
cp "$root/conformance/package.json" "$root/conformance/package-lock.json" "$theirs_dir/"
echo "npm bench: npm ci (conformance/'s lockfile) in $theirs_dir" >&2
(cd "$theirs_dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2)

size() { du -sk "$1" | awk '{ printf "%.1f MB (%d KiB)", $1 / 1024, $1 }'; }
export BRU_BENCH_OURS=$ours_prefix/lib/node_modules/balena-release-update
export BRU_BENCH_THEIRS=$theirs_dir
BRU_BENCH_OURS_SIZE=$(size "$ours_prefix")
BRU_BENCH_THEIRS_SIZE=$(size "$theirs_dir")
export BRU_BENCH_OURS_SIZE BRU_BENCH_THEIRS_SIZE
BRU_BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# (BENCHMARKS.md and bench/README.md aside: this writes the one, names itself in the other)
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' ':!bench/README.md' 2>/dev/null) ]]; then
	BRU_BENCH_COMMIT+=" (with uncommitted changes)"
fi
export BRU_BENCH_COMMIT
echo "npm bench: installed: ours $BRU_BENCH_OURS_SIZE, the npm tool $BRU_BENCH_THEIRS_SIZE" >&2

args=("${pass[@]}" --results "$work/results.json")
((write)) && args+=(--write "$root/BENCHMARKS.md")
# Its own working directory, so that no settings file of the caller's is read.
(cd "$work" && node "$here/bench.mjs" "${args[@]}")
echo "npm bench: done in $((SECONDS - started)) s" >&2
