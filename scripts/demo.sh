#!/usr/bin/env bash
# The main job end to end, with no account: builds the tool and the simulator,
# starts the simulator's demo fleet on loopback, and runs the tool against it.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/sim-env.sh --scenario demo

# Shows the command as typed, continued with ' \' to fit 80 columns, then
# runs it.
run() {
  local line='$ balena-release-update' word
  echo
  for word in "$@"; do
    if (( ${#line} + ${#word} + 3 > 80 )); then
      printf '%s \\\n' "$line"
      line="    $word"
    else
      line+=" $word"
    fi
  done
  printf '%s\n' "$line"
  "$bin/balena-release-update" "$@"
}

echo "simulator (demo fleet gh_demo/kiosk-fleet):"
echo "  API $BALENARC_API_URL"
echo "  delta server $BALENARC_DELTA_URL"
echo "  registry $(sim_field registry_url)"
run --fleet gh_demo/kiosk-fleet --output table
run --from-release 900813 --to-release 900835 --wait --timeout 2m --output table
# The JSON for scripts, named by a commit prefix; its summary keys only
# (the whole document has lines wider than a terminal).
echo
echo '$ balena-release-update --from-release 84d3d8 --to-release 900835 \'
echo "    | grep -E '^  \"(overall_status|estimated_[a-z_]+)\"'"
"$bin/balena-release-update" --from-release 84d3d8 --to-release 900835 |
  grep -E '^  "(overall_status|estimated_[a-z_]+)"'
