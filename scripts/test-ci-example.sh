#!/usr/bin/env bash
# Runs examples/ci/prepare-release.sh, the script the CI examples call,
# against the simulator's demo fleet: within the budget it exits 0 with the
# report in the summary file; over it, 3 with the report still written; and
# both example pipelines still call it. Prints one line per check.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds finish 50 times faster than in real time.
source scripts/sim-env.sh --scenario demo --clock scaled:50
export BALENA_RELEASE_UPDATE="$bin/balena-release-update" FLEET=gh_demo/kiosk-fleet
unset GITHUB_STEP_SUMMARY
failures=0
check() {
  if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}

for pipeline in examples/ci/github-actions.yml examples/ci/gitlab-ci.yml; do
  check "$pipeline runs ci/prepare-release.sh" "grep -q 'bash ci/prepare-release.sh' $pipeline"
  if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    check "$pipeline is YAML" "python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' $pipeline"
  fi
done

summary="$scratch/summary.md"
status=0
SUMMARY_FILE=$summary MAX_DOWNLOAD=2GB WAIT_TIMEOUT=2m \
  bash examples/ci/prepare-release.sh >"$scratch/out.md" 2>"$scratch/err" || status=$?
check "within the budget: exit 0 (was $status)" '[ "$status" = 0 ]'
check "the summary has the fleet's table" "grep -q '^| From release | To | Devices' $summary"
check "every transition is ready" "! grep -q pending $summary"
check "stdout repeats the summary" "cmp -s $summary $scratch/out.md"

status=0
SUMMARY_FILE=$summary MAX_DOWNLOAD=1MB WAIT_TIMEOUT=2m \
  bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
check "over the budget: exit 3 (was $status)" '[ "$status" = 3 ]'
check "the ERROR line names the budget" "grep -q '^ERROR: .*1MB\\|^ERROR: .*1.00 MB' $scratch/err"
check "the summary is appended, not replaced" "[ \$(grep -c '^## fleet' $summary) = 2 ]"

status=0
( unset FLEET; bash examples/ci/prepare-release.sh ) >/dev/null 2>"$scratch/err" || status=$?
check "no FLEET: an error naming it" "[ $status != 0 ] && grep -q FLEET $scratch/err"

[ "$failures" = 0 ] || { echo "$failures checks failed"; cat "$scratch/err"; exit 1; }
