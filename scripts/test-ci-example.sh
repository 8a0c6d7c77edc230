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
SUMMARY_FILE=$summary bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
check "a summary file already there: exit 1 (was $status), left alone" \
  "[ $status = 1 ] && grep -q 'already there' $scratch/err && cmp -s $summary $scratch/out.md"

# GitHub's summary file (the path the runner gives) is appended to.
github="$scratch/step-summary.md"
: >"$github"
for budget in 2GB 1MB; do
  status=0
  GITHUB_STEP_SUMMARY=$github SUMMARY_FILE=ignored.md MAX_DOWNLOAD=$budget WAIT_TIMEOUT=2m \
    bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
done
check "over the budget: exit 3 (was $status)" '[ "$status" = 3 ]'
check "the ERROR line names the budget" "grep -q '^ERROR: .*1MB\\|^ERROR: .*1.00 MB' $scratch/err"
check "GITHUB_STEP_SUMMARY is appended to, not replaced" "[ \$(grep -c '^## fleet' $github) = 2 ]"
check "SUMMARY_FILE is not used beside it" "[ ! -e ignored.md ]"

# Never through a symbolic link: the file it points to stays as it was.
echo "someone else's file" >"$scratch/target"
ln -s "$scratch/target" "$scratch/link.md"
for variable in SUMMARY_FILE GITHUB_STEP_SUMMARY; do
  status=0
  env "$variable=$scratch/link.md" bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
  check "$variable a symbolic link: exit 1 (was $status), its target untouched" \
    "[ $status = 1 ] && grep -q 'symbolic link' $scratch/err && [ \"\$(cat $scratch/target)\" = \"someone else's file\" ]"
done
ln -s "$scratch/nowhere.md" "$scratch/dangling.md"
status=0
SUMMARY_FILE=$scratch/dangling.md bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
check "a dangling symbolic link: exit 1 (was $status), nothing created" \
  "[ $status = 1 ] && [ ! -e $scratch/nowhere.md ]"

# Never to a file of the checkout.
checkout="$scratch/checkout"
mkdir -p "$checkout"
git -C "$checkout" init -q
echo "# Committed notes" >"$checkout/release-update.md"
git -C "$checkout" add release-update.md
for variable in SUMMARY_FILE GITHUB_STEP_SUMMARY; do
  status=0
  (cd "$checkout" && env "$variable=release-update.md" bash "$OLDPWD/examples/ci/prepare-release.sh") \
    >/dev/null 2>"$scratch/err" || status=$?
  check "$variable a file of the checkout: exit 1 (was $status), left alone" \
    "[ $status = 1 ] && grep -q 'file of the checkout' $scratch/err && [ \"\$(cat $checkout/release-update.md)\" = '# Committed notes' ]"
done

# A summary that cannot be written fails the step.
mkdir -p "$scratch/read-only"
chmod 0555 "$scratch/read-only"
status=0
SUMMARY_FILE=$scratch/read-only/summary.md MAX_DOWNLOAD=2GB WAIT_TIMEOUT=2m \
  bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
if [ "$(id -u)" = 0 ]; then
  # root writes anywhere: a directory in the file's place instead.
  mkdir -p "$scratch/a-directory.md"
  status=0
  GITHUB_STEP_SUMMARY=$scratch/a-directory.md MAX_DOWNLOAD=2GB WAIT_TIMEOUT=2m \
    bash examples/ci/prepare-release.sh >/dev/null 2>"$scratch/err" || status=$?
fi
check "an unwritable summary: exit 1 (was $status)" \
  "[ $status = 1 ] && grep -q 'cannot write the summary' $scratch/err"

# The examples: pinned installs, least privilege, variables through env:,
# the systemd unit reads a credential file without a shell.
gh=examples/ci/github-actions.yml gl=examples/ci/gitlab-ci.yml unit=examples/balena-release-update-watch.service
check "installs are pinned to a tag, with the lock file" \
  "[ \$(grep -c 'cargo install --locked --git .* --tag ' $gh $gl | awk -F: '{s+=\$2} END {print s}') = 2 ]"
check "the GitHub workflow grants nothing by default" "grep -q '^permissions: {}' $gh"
check "no \${{ }} inside a GitHub run:" "! grep -E '^\\s*(- )?run:.*\\$\\{\\{' $gh"
check "the unit reads the token as a credential file" \
  "grep -q '^LoadCredential=token:' $unit && grep -q '^Environment=BALENARC_DATA_DIRECTORY=%d' $unit"
check "the unit starts no shell and sets no token variable" \
  "! grep -Eq '^ExecStart=.*(/sh|bash)|BALENA_RELEASE_UPDATE_TOKEN|BALENA_TOKEN' $unit"

status=0
( unset FLEET; bash examples/ci/prepare-release.sh ) >/dev/null 2>"$scratch/err" || status=$?
check "no FLEET: an error naming it" "[ $status != 0 ] && grep -q FLEET $scratch/err"

[ "$failures" = 0 ] || { echo "$failures checks failed"; cat "$scratch/err"; exit 1; }
