#!/usr/bin/env bash
# Runs the CLI's process tests (those that spawn the binary, signal it and
# read its output while it runs) several times with two busy CPU loops
# beside them, as on a loaded 2-core CI machine. Every run must pass.
# Usage: scripts/process-tests-under-load.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
modules=(watch:: signals:: stops:: faults:: screens:: live_terminal:: write_failures:: progress::)

cargo test --locked --test it --no-run -q
busy=()
stop_busy() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; }
trap stop_busy EXIT
for _ in 1 2; do
  timeout 3600 sha256sum /dev/zero >/dev/null &
  busy+=($!)
done
log=$(mktemp)
for run in $(seq "$runs"); do
  echo "-- run $run of $runs, two CPU loops beside it"
  if ! cargo test --locked -q --test it -- "${modules[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "process tests failed on run $run of $runs" >&2
    exit 1
  fi
  grep -E '^test result' "$log"
done
rm -f "$log"
