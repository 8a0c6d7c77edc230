#!/usr/bin/env bash
# Runs the property tests (release and fleet argument parsers, API answer
# decoding, balenarc parsing) with many more cases than `cargo test` uses,
# each set under a time limit so that a hang fails instead of stalling CI.
#
#   scripts/fuzz-smoke.sh            # 2,000 cases per property, 180 s per set
#   PROPTEST_CASES=20000 FUZZ_SMOKE_SECONDS=900 scripts/fuzz-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
limit="${FUZZ_SMOKE_SECONDS:-180}"

# Build first, so that compilation does not count against the limit.
cargo test --locked -q -p balena-release --test it --no-run
cargo test --locked -q -p balena-release-update --bin balena-release-update --no-run

run() {
  printf '== %s (%s cases, at most %ss)\n' "$*" "$PROPTEST_CASES" "$limit"
  timeout --signal=INT "$limit" "$@"
}
run cargo test --locked -q -p balena-release --test it -- props::
run cargo test --locked -q -p balena-release-update --bin balena-release-update -- settings::proptests
