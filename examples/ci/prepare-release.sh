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
#   SUMMARY_FILE   a new file for the Markdown summary, which this script
#                  creates (default: release-update.md); on GitHub the
#                  summary is appended to $GITHUB_STEP_SUMMARY instead
#
# The summary is never written through a symlink, to a file the checkout
# holds, or (SUMMARY_FILE) to a file that is already there; a summary that
# cannot be written fails the step (exit 1 unless the tool failed already).
#   BALENA_RELEASE_UPDATE_TOKEN  a balenaCloud API key (keep it a secret)
#   BALENA_RELEASE_UPDATE        the binary (default: balena-release-update)
#
# Exit status, the tool's own: 0 every delta ready and within the budget,
# 1 an error, 2 deltas still building at the timeout, 3 over the budget.
set -uo pipefail

: "${FLEET:?set FLEET to the slug (org/name) or id of the fleet}"
tool=${BALENA_RELEASE_UPDATE:-balena-release-update}
# The path the CI system gives is appended to; any other is created here.
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  summary=$GITHUB_STEP_SUMMARY append=1
else
  summary=${SUMMARY_FILE:-release-update.md} append=0
fi
refuse() { echo "ERROR: the summary file \`$summary\` $1; nothing was run" >&2; exit 1; }
[ -L "$summary" ] && refuse "is a symbolic link"
if command -v git >/dev/null && git ls-files --error-unmatch -- "$summary" >/dev/null 2>&1; then
  refuse "is a file of the checkout"
fi
[ "$append" = 0 ] && [ -e "$summary" ] && refuse "is already there (name a new file)"

args=(--fleet "$FLEET" --wait --timeout "${WAIT_TIMEOUT:-30m}" --output markdown)
if [ -n "${RELEASE:-}" ]; then args+=(--to-release "$RELEASE"); fi
if [ -n "${MAX_DOWNLOAD:-}" ]; then args+=(--max-download "$MAX_DOWNLOAD"); fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$tool" "${args[@]}" >"$report"
status=$?
# The report is written whatever the outcome: a timeout or a budget
# overrun still shows where each transition stands.
if [ "$append" = 1 ]; then
  written() { cat "$report" >>"$summary"; }
else
  # noclobber: created here, never through a link that appeared meanwhile.
  written() { (set -o noclobber; cat "$report" >"$summary"); }
fi
if ! written 2>/dev/null; then
  echo "ERROR: cannot write the summary to \`$summary\`" >&2
  [ "$status" = 0 ] && status=1
fi
cat "$report"
exit "$status"
