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
cargo test --locked -q -p balena-session --lib --no-run

# Runs the tests of one target whose names contain FILTER; fails when none
# does, so that a renamed module cannot turn this step into a silent pass.
#   run FILTER CARGO-TEST-ARGS...
run() {
  local filter="$1"
  shift
  local list count
  list="$(cargo test --locked -q "$@" -- "$filter" --list)"
  count="$(grep -c ': test$' <<<"$list" || true)"
  if [ "$count" -eq 0 ]; then
    printf 'fuzz-smoke: no test name contains `%s` in `cargo test %s`\n' "$filter" "$*" >&2
    exit 1
  fi
  printf '== %s, %s: %s tests (%s cases, at most %ss)\n' \
    "$*" "$filter" "$count" "$PROPTEST_CASES" "$limit"
  timeout --signal=INT "$limit" cargo test --locked -q "$@" -- "$filter"
}
run props:: -p balena-release --test it
run settings::proptests -p balena-session --lib
