#!/usr/bin/env bash
# Builds the release binaries, then runs the benchmark harness (bench/harness.py).
#   bench/run.sh            full run; writes BENCHMARKS.md (about 13 minutes, the criterion benchmarks first)
#   bench/run.sh --smoke    one iteration, small counts; writes bench/out/BENCHMARKS.smoke.md
# Other options: bench/run.sh --help. The npm tool must be installed by conformance/run.sh first.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo build --release --quiet -p balena-release-update -p balena-sim
exec python3 bench/harness.py "$@"
