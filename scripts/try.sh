#!/usr/bin/env bash
# Try the tool with no account: builds it (release), starts the simulator's
# demo fleet on loopback and opens a shell in which `balena-release-update`
# is on PATH and its settings point at the simulator, so that the README's
# "Use" examples and every `hint:` the tool prints run as written. The
# simulator stops when that shell ends.
#
#   scripts/try.sh                  an interactive shell (bash)
#   scripts/try.sh -c 'COMMAND'     runs COMMAND in that setting, exits with its code
#   scripts/try.sh < commands.sh    stdin not a terminal: runs it as a script
set -euo pipefail
cd "$(dirname "$0")/.."

command=
case "${1:-}" in
  -c)
    [ $# -eq 2 ] || { echo "usage: scripts/try.sh [-c 'COMMAND']" >&2; exit 1; }
    command=$2 ;;
  -h | --help)
    sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
  '') ;;
  *) echo "usage: scripts/try.sh [-c 'COMMAND']" >&2; exit 1 ;;
esac

source scripts/sim-env.sh --scenario demo
PATH="$(cd "$bin" && pwd):$PATH"
export PATH

status=0
if [ -n "$command" ]; then
  bash -c "$command" || status=$?
elif [ ! -t 0 ]; then
  bash -s || status=$?
else
  rc="$scratch/bashrc"
  cat >"$rc" <<'RC'
PS1='(balena-sim demo) \W\$ '
RC
  cat <<INTRO
The simulator's demo fleet gh_demo/kiosk-fleet runs on loopback:
  API $BALENARC_API_URL, delta server $BALENARC_DELTA_URL
balena-release-update is on PATH and points at it; try:
  balena-release-update --fleet gh_demo/kiosk-fleet --output table
  balena-release-update --from-release 900813 --to-release 900835 --wait
The README's "Use" examples and every printed hint: run as written here.
Type exit (or Ctrl-D) to leave; the simulator stops then.
INTRO
  bash --rcfile "$rc" -i || status=$?
fi
exit "$status"
