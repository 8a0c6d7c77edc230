# Sourced by scripts that run the tool against the simulator: builds both
# binaries (release), starts `balena-sim "$@"` on loopback, points the
# tool's settings at it in a throw-away HOME, and stops it on exit.
# Sets $bin (the release binaries' directory) and $scratch.

echo "building balena-release-update and the simulator balena-sim (release;" \
  "the first build takes a few minutes)..." >&2
cargo build --release --quiet --locked -p balena-release-update -p balena-sim
bin="${CARGO_TARGET_DIR:-target}/release"

scratch=$(mktemp -d)
sim_out="$scratch/sim.json"
"$bin/balena-sim" "$@" >"$sim_out" &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT

for _ in $(seq 100); do [ -s "$sim_out" ] && break; sleep 0.05; done
[ -s "$sim_out" ] || { echo "the simulator did not start" >&2; exit 1; }
sim_field() { sed -E "s/.*\"$1\":\"([^\"]*)\".*/\1/" "$sim_out"; }

# A throw-away home, so no real balena settings or token are read or used.
export HOME="$scratch/home" && mkdir -p "$HOME"
export BALENARC_API_URL=$(sim_field api_url) BALENARC_DELTA_URL=$(sim_field delta_url)
export BALENA_RELEASE_UPDATE_TOKEN=$(sim_field token)
# The demo's images live at registry2.balena-cloud.com; the simulator serves
# that registry's manifests on loopback, so exact download sizes need nothing
# else installed.
export BALENA_RELEASE_UPDATE_REGISTRY_MAP="registry2.balena-cloud.com=$(sim_field registry_url)"
export NO_PROXY="127.0.0.1,localhost"
