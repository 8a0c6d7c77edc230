#!/usr/bin/env bash
# The main job end to end, with no account: builds the tool and the simulator,
# starts the simulator's demo fleet on loopback, and runs the tool against it.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/sim-env.sh --scenario demo

run() {
  printf '\n$ balena-release-update %s\n' "$*"
  "$bin/balena-release-update" "$@"
}

echo "simulator: API $BALENARC_API_URL, delta server $BALENARC_DELTA_URL, registry $(sim_field registry_url) (demo fleet gh_demo/kiosk-fleet)"
run --fleet gh_demo/kiosk-fleet --output table
run --from-release 900813 --to-release 900835 --wait --timeout 2m --output table
run --from-release 84d3d8 --to-release 900835
