#!/usr/bin/env bash
# Tests of the npm packages as a user gets them: installs the two tarballs
# of target/npm/ (scripts/pack-npm.sh; built first when missing) into a
# fresh global prefix and a fresh project, then runs the `*.test.mjs` files
# here with Node's test runner against balena-sim's demo:
#
#   readme.test.mjs       the npm tool's README example, deep-equal to what
#                         @balena/release-update 0.1.0 returns (differences applied)
#   typescript.test.mjs   tsc --noEmit --strict on example.ts (every export)
#   command.test.mjs      the global command against the Rust binary
#   api.test.mjs          --output json equality, fleets, client, errors, AbortSignal
#   concurrency.test.mjs  1,000 concurrent getUpdateInfo calls, RSS reported
#
# Needs the npm tool installed by conformance/ (installed here when missing)
# and npm/test's devDependencies (typescript, @types/node).
#   KEEP_WORK=1  keep the prefix and project directory
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"

shopt -s nullglob
tarballs=("$target_dir"/npm/balena-release-update-*.tgz)
if [[ ${#tarballs[@]} -ne 2 ]]; then
	bash "$root/scripts/pack-npm.sh"
	tarballs=("$target_dir"/npm/balena-release-update-*.tgz)
fi
[[ ${#tarballs[@]} -eq 2 ]] || { echo "npm tests: expected 2 tarballs in $target_dir/npm" >&2; exit 1; }

# The simulator and the Rust binary the command is compared with.
(cd "$root" && cargo build --locked --quiet -p balena-sim --bin balena-sim)
export BALENA_SIM_BIN=${BALENA_SIM_BIN:-$target_dir/debug/balena-sim}
export BRU_CLI_BIN=$target_dir/release/balena-release-update
[[ -x $BRU_CLI_BIN ]] || (cd "$root" && cargo build --locked --release --quiet -p balena-release-update)

# The npm tool, as conformance/ installs it; the TypeScript compiler.
if ! (cd "$root/conformance" && node -e 'require.resolve("@balena/release-update/package.json")') 2>/dev/null; then
	(cd "$root/conformance" && npm ci --no-audit --no-fund --loglevel=error)
fi
export BRU_CONFORMANCE_DIR=$root/conformance
if [[ ! -d $here/node_modules/typescript ]]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bru-npm-tests.XXXXXX")
cleanup() {
	if [[ ${KEEP_WORK:-} == 1 ]]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A fresh global prefix and a fresh project, installed offline: the
# tarballs need nothing from a registry.
export BRU_PREFIX=$work/prefix
echo "npm tests: npm install --global --offline --prefix $BRU_PREFIX ${tarballs[*]##*/}"
npm install --global --offline --no-audit --no-fund --loglevel=error --prefix "$BRU_PREFIX" "${tarballs[@]}"
echo "npm tests: installed size $(du -sh "$BRU_PREFIX" | cut -f1) ($BRU_PREFIX)"
project=$work/project
mkdir -p "$project"
(cd "$project" && npm init -y >/dev/null && npm pkg set type=module >/dev/null &&
	npm install --offline --no-audit --no-fund --loglevel=error "${tarballs[@]}")
cp "$here"/*.test.mjs "$here"/helpers.mjs "$here"/readme-example.mjs "$here"/example.ts "$here"/tsconfig.json "$project/"
ln -s "$here/node_modules/@types" "$project/node_modules/@types"
export BRU_TYPESCRIPT_DIR=$here/node_modules/typescript

cd "$project"
node --test --test-reporter=spec --test-concurrency=2 ./*.test.mjs
