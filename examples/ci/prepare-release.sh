#!/usr/bin/env bash
# After a deploy: prepare every transition of a fleet to the new release,
# wait for its deltas, write a Markdown summary and apply a download budget.
# The GitHub Actions workflow and the GitLab CI job beside this file run it;
# `scripts/test-ci-example.sh` runs it against the simulator.
#
# Settings, from the environment:
#   FLEET          the fleet: `org/slug` or its id (required)
#   RELEASE        the new release: its id or commit (default: the fleet's
#                  target release)
#   WAIT_TIMEOUT   how long to wait for the deltas (default: 30m)
#   MAX_DOWNLOAD   the most one device may download, e.g. `200MB` (optional)
#   SUMMARY_FILE   where the Markdown summary is appended (default:
#                  $GITHUB_STEP_SUMMARY on GitHub, else release-update.md)
#   BALENA_RELEASE_UPDATE_TOKEN  a balenaCloud API key (keep it a secret)
#   BALENA_RELEASE_UPDATE        the binary (default: balena-release-update)
#
# Exit status, the tool's own: 0 every delta ready and within the budget,
# 1 an error, 2 deltas still building at the timeout, 3 over the budget.
set -uo pipefail

: "${FLEET:?set FLEET to the slug (org/name) or id of the fleet}"
tool=${BALENA_RELEASE_UPDATE:-balena-release-update}
summary=${SUMMARY_FILE:-${GITHUB_STEP_SUMMARY:-release-update.md}}

args=(--fleet "$FLEET" --wait --timeout "${WAIT_TIMEOUT:-30m}" --output markdown)
if [ -n "${RELEASE:-}" ]; then args+=(--to-release "$RELEASE"); fi
if [ -n "${MAX_DOWNLOAD:-}" ]; then args+=(--max-download "$MAX_DOWNLOAD"); fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$tool" "${args[@]}" >"$report"
status=$?
# The report is written whatever the outcome: a timeout or a budget
# overrun still shows where each transition stands.
cat "$report" >>"$summary"
cat "$report"
exit "$status"
