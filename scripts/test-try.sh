#!/usr/bin/env bash
# Checks scripts/try.sh as a new user meets it: in its setting the first
# `hint:` the tool prints and the README's "Use" examples run as written
# (exit 0); `-c` and a script on stdin give their exit code back; the
# simulator is gone once it returns. Prints one line per check.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
check() {
  if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}

# The README's "Use" examples: the commands of the first sh block after
# "## Use", one per line.
awk '/^## Use/ {use = 1} use && /^```sh/ {block = 1; next}
     block && /^```/ {exit} block && /^balena-release-update / {print}' \
  README.md >"$scratch/examples"
check "the README has at least 4 examples under Use" \
  '[ "$(wc -l <"$scratch/examples")" -ge 4 ]'

# One session: a describe's hint, then each example (--watch for 5 s, then
# SIGTERM, which ends it with exit 0).
cat >"$scratch/session" <<'SESSION'
set -u
echo "api $BALENARC_API_URL" >"$OUT/api"
balena-release-update --fleet gh_demo/kiosk-fleet --output table >/dev/null 2>"$OUT/describe.err"
echo "describe $?" >>"$OUT/codes"
hint=$(sed -n 's/^ *hint: .*, run: \(balena-release-update .*\)$/\1/p' "$OUT/describe.err" | head -n 1)
echo "$hint" >"$OUT/hint"
eval "$hint" >/dev/null 2>>"$OUT/err"
echo "hint $?" >>"$OUT/codes"
while IFS= read -r example; do
  case "$example" in
    *--watch*) eval "timeout --preserve-status -s TERM 5 $example" >/dev/null 2>>"$OUT/err" ;;
    *) eval "$example" >/dev/null 2>>"$OUT/err" ;;
  esac
  echo "example $? $example" >>"$OUT/codes"
done <"$OUT/examples"
SESSION
status=0
OUT=$scratch scripts/try.sh -c "bash $scratch/session" >"$scratch/out" 2>&1 || status=$?
check "the session exits 0 (was $status)" '[ "$status" = 0 ]'
check "the describe ends with a hint naming a command" '[ -s "$scratch/hint" ]'
check "the describe exits 0" 'grep -qx "describe 0" "$scratch/codes"'
check "the hint runs as written: $(cat "$scratch/hint" 2>/dev/null)" 'grep -qx "hint 0" "$scratch/codes"'
while IFS= read -r example; do
  check "runs as written: $example" 'grep -qxF "example 0 $example" "$scratch/codes"'
done <"$scratch/examples"
api=$(sed -n 's/^api //p' "$scratch/api")
check "the simulator is stopped after the shell ends ($api)" \
  '! curl -s -m 2 -o /dev/null "$api"'

status=0
scripts/try.sh -c 'exit 7' >/dev/null 2>&1 || status=$?
check "-c gives the command's exit code back (7, was $status)" '[ "$status" = 7 ]'
status=0
echo 'balena-release-update --version >/dev/null && exit 5' | scripts/try.sh >/dev/null 2>&1 || status=$?
check "a script on stdin runs and gives its exit code back (5, was $status)" '[ "$status" = 5 ]'

if [ "$failures" -gt 0 ]; then
  echo "--- output of scripts/try.sh"; cat "$scratch/out"; cat "$scratch/err" 2>/dev/null || true
  echo "$failures check(s) failed"; exit 1
fi
echo "all checks passed"
