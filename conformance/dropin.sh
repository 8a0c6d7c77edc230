#!/usr/bin/env bash
# The drop-in check: this tool's JSON against the npm tool's
# @balena/release-update 0.1.0 for every demo transition, plain, with
# `--prepare` and with `--wait --timeout`, once the README's deliberate
# differences (differences.js) are applied. See README.md, "The drop-in check".
#
# usage: conformance/dropin.sh
#   BALENA_SIM_BIN=<path> BALENA_RELEASE_UPDATE_BIN=<path>   use these binaries
#                           instead of building them (both or neither)
#   DROPIN_JOBS=N           runs at a time (default 6)
#   KEEP_WORK=1             keep the throw-away directory (every run's output)
set -euo pipefail

CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$CONF_DIR")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# balena-sdk 22.4.9 needs Node ^20.12.0 || >= 22.0.0.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 && a < 22 || a === 20 && b < 12 ? 1 : 0)'; then
	echo "FAIL Node $(node --version) is too old for balena-sdk 22.4.9 (needs ^20.12.0 || >= 22.0.0)"
	exit 1
fi

# The pinned npm tool, installed as conformance/run.sh installs it.
if ! (cd "$CONF_DIR" && node -e 'process.exit(require("@balena/release-update/package.json").version === "0.1.0" ? 0 : 1)') 2>/dev/null; then
	echo "npm tool: installing"
	(cd "$CONF_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [[ -n ${BALENA_SIM_BIN:-} || -n ${BALENA_RELEASE_UPDATE_BIN:-} ]]; then
	: "${BALENA_SIM_BIN:?set both BALENA_SIM_BIN and BALENA_RELEASE_UPDATE_BIN, or neither}"
	: "${BALENA_RELEASE_UPDATE_BIN:?set both BALENA_SIM_BIN and BALENA_RELEASE_UPDATE_BIN, or neither}"
else
	echo "binaries: cargo build --release -p balena-release-update -p balena-sim"
	(cd "$ROOT" && cargo build --release --quiet -p balena-release-update -p balena-sim)
	export BALENA_SIM_BIN=$TARGET_DIR/release/balena-sim
	export BALENA_RELEASE_UPDATE_BIN=$TARGET_DIR/release/balena-release-update
fi

echo "differences.js: node --test"
node --test --test-reporter=dot "$CONF_DIR/differences.test.js"

node "$CONF_DIR/dropin.js"
