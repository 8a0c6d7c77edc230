#!/usr/bin/env bash
# The main job end to end, with no account: builds the tool and the simulator,
# starts the simulator's demo fleet on loopback, and runs the tool against it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p balena-release-update -p balena-sim
bin="${CARGO_TARGET_DIR:-target}/release"

scratch=$(mktemp -d)
sim_out="$scratch/sim.json"
"$bin/balena-sim" --scenario demo >"$sim_out" &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT

for _ in $(seq 100); do [ -s "$sim_out" ] && break; sleep 0.05; done
[ -s "$sim_out" ] || { echo "the simulator did not start" >&2; exit 1; }
field() { sed -E "s/.*\"$1\":\"([^\"]*)\".*/\1/" "$sim_out"; }

# A throw-away home, so no real balena settings or token are read or used.
export HOME="$scratch/home" && mkdir -p "$HOME"
export BALENARC_API_URL=$(field api_url) BALENARC_DELTA_URL=$(field delta_url)
export BALENA_RELEASE_UPDATE_TOKEN=$(field token)
# The demo's images live at registry2.balena-cloud.com; the simulator serves
# that registry's manifests on loopback, so exact download sizes need nothing
# else installed.
export BALENA_RELEASE_UPDATE_REGISTRY_MAP="registry2.balena-cloud.com=$(field registry_url)"
export NO_PROXY="127.0.0.1,localhost"

run() {
  printf '\n$ balena-release-update %s\n' "$*"
  "$bin/balena-release-update" "$@"
}

echo "simulator: API $BALENARC_API_URL, delta server $BALENARC_DELTA_URL, registry $(field registry_url) (demo fleet gh_demo/kiosk-fleet)"
run --fleet gh_demo/kiosk-fleet --output table
run --from-release 900813 --to-release 900835 --wait --timeout 2m --output table
run --from-release 84d3d8 --to-release 900835
