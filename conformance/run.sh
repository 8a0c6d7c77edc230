#!/usr/bin/env bash
# Conformance: the published npm tool @balena/release-update 0.1.0, unmodified,
# run against the simulator (`balena-sim --scenario demo`) in its three modes.
# Checks the exit code, stdout byte for byte, the [DEBUG]/ERROR lines on stderr
# and the simulator's request journal. See README.md.
#
# usage: conformance/run.sh
#   BALENA_SIM_BIN=<path>   use this simulator binary instead of building one
#   KEEP_WORK=1             keep the throw-away directory (logs, outputs, journals)
set -euo pipefail

CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$CONF_DIR")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOL_BIN=$CONF_DIR/node_modules/@balena/release-update/bin/balena-release-update.js

# The demo pair (crates/balena-sim/README.md, "The demo fleet"): RELEASE_1 →
# RELEASE_2, where `api` is new, `main` changed (with only a failed delta),
# `worker` keeps its image id and `proxy` gets a new id with the same content
# hash. README.md explains how the expected outputs follow from the data.
FROM_ID=900813
TO_ID=900835
# PREFIX_1 also matches the failed release 900850; only RELEASE_1 succeeded.
FROM_COMMIT=84d3d8
TO_COMMIT=b2cf2db7a4e6

passed=0
failed=0
pass() {
	echo "PASS $*"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL $*"
	failed=$((failed + 1))
}
# Echoes a checker's PASS/FAIL lines and counts them.
count_lines() {
	local line
	while IFS= read -r line; do
		echo "$line"
		case $line in
		PASS*) passed=$((passed + 1)) ;;
		FAIL*) failed=$((failed + 1)) ;;
		esac
	done
}
now_ms() { node -e 'process.stdout.write(String(Date.now()))'; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/balena-conformance.XXXXXX")
SIM_PID=
SIM_EXIT=
TOOL_PID=
# Stops the simulator; returns 1 (and says why) when it had already exited.
stop_sim() {
	[[ -n $SIM_PID ]] || return 0
	if ! kill -0 "$SIM_PID" 2>/dev/null; then
		local status=0
		wait "$SIM_PID" 2>/dev/null || status=$?
		SIM_PID=
		SIM_EXIT="exited early with status $status"
		if ((status > 128)); then SIM_EXIT+=" (signal $((status - 128)))"; fi
		return 1
	fi
	kill -TERM "$SIM_PID" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$SIM_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SIM_PID" 2>/dev/null || true
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
}
cleanup() {
	[[ -z $TOOL_PID ]] || kill -TERM "$TOOL_PID" 2>/dev/null || true
	stop_sim || true
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
# Make INT/TERM go through the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the npm tool -------------------------------------------------------

# balena-sdk 22.4.9 needs Node ^20.12.0 || >= 22.0.0.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 && a < 22 || a === 20 && b < 12 ? 1 : 0)'; then
	echo "FAIL Node $(node --version) is too old for balena-sdk 22.4.9 (needs ^20.12.0 || >= 22.0.0)"
	exit 1
fi

installed_ok() {
	# The pinned versions are installed and nothing changed since.
	[[ -f $CONF_DIR/node_modules/.package-lock.json ]] || return 1
	[[ $CONF_DIR/node_modules/.package-lock.json -nt $CONF_DIR/package.json ]] || return 1
	if [[ -f $CONF_DIR/package-lock.json ]]; then
		[[ $CONF_DIR/node_modules/.package-lock.json -nt $CONF_DIR/package-lock.json ]] || return 1
	fi
	(cd "$CONF_DIR" && node -e '
		const tool = require.resolve("@balena/release-update/package.json");
		const sdk = require.resolve("balena-sdk/package.json", { paths: [require("path").dirname(tool)] });
		process.exit(require(tool).version === "0.1.0" && require(sdk).version === "22.4.9" ? 0 : 1);
	') 2>/dev/null
}
if installed_ok; then
	echo "npm tool: already installed"
else
	echo "npm tool: installing"
	npm_cmd=install
	[[ -f $CONF_DIR/package-lock.json ]] && npm_cmd=ci
	if ! (cd "$CONF_DIR" && npm "$npm_cmd" --no-audit --no-fund --loglevel=error); then
		fail "npm $npm_cmd in conformance/"
		echo "$passed passed, $failed failed"
		exit 1
	fi
fi

# --- 2. the simulator ------------------------------------------------------

if [[ -n ${BALENA_SIM_BIN:-} ]]; then
	SIM_BIN=$BALENA_SIM_BIN
else
	echo "simulator: cargo build -p balena-sim"
	if ! (cd "$ROOT" && cargo build --quiet -p balena-sim --bin balena-sim); then
		fail "cargo build -p balena-sim"
		echo "$passed passed, $failed failed"
		exit 1
	fi
	SIM_BIN=$TARGET_DIR/debug/balena-sim
fi

# Starts a fresh simulator; sets API_URL, DELTA_URL, TOKEN.
start_sim() {
	local dir=$1
	"$SIM_BIN" --scenario demo >"$dir/sim.out" 2>"$dir/sim.err" </dev/null &
	SIM_PID=$!
	# It prints one JSON line once it is ready.
	for _ in $(seq 300); do
		[[ -s $dir/sim.out ]] && [[ $(tail -c1 "$dir/sim.out" | od -An -c | tr -d ' ') == '\n' ]] && break
		kill -0 "$SIM_PID" 2>/dev/null || break
		sleep 0.1
	done
	local ready
	ready=$(head -n1 "$dir/sim.out")
	if ! node -e 'const r = JSON.parse(process.argv[1]); if (!r.api_url || !r.delta_url || !r.token) process.exit(1)' "$ready" 2>/dev/null; then
		echo "simulator did not report ready; stdout: $ready" >&2
		sed 's/^/  sim stderr: /' "$dir/sim.err" >&2
		return 1
	fi
	API_URL=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).api_url)' "$ready")
	DELTA_URL=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).delta_url)' "$ready")
	TOKEN=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).token)' "$ready")
}

# The journal of both servers, from the simulator's control endpoint.
fetch_journal() {
	node -e 'fetch(process.argv[1]).then(async (r) => {
		if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
		process.stdout.write(await r.text());
	}).catch((e) => { console.error(`journal: ${e.message}`); process.exit(1); })' "$API_URL/__sim/journal" >"$1"
}

# --- 3. the three modes ----------------------------------------------------

# run_mode <mode> <expected stdout/stderr name> <tool args…>
run_mode() {
	local mode=$1
	shift
	local dir=$WORK/$mode
	mkdir -p "$dir/home" "$dir/data"
	echo "--- $mode: balena-release-update $*"
	if ! start_sim "$dir"; then
		fail "$mode: simulator started"
		stop_sim || true
		return
	fi
	printf '%s' "$TOKEN" >"$dir/data/token"

	local start end rc=0
	start=$(now_ms)
	# In the background, so INT/TERM interrupt `wait` and reach the trap.
	(cd "$dir/home" && exec env -i PATH="$PATH" HOME="$dir/home" \
		BALENARC_DATA_DIRECTORY="$dir/data" BALENARC_DELTA_URL="$DELTA_URL" \
		SIM_API_URL="$API_URL" NO_PROXY=127.0.0.1,localhost \
		node -r "$CONF_DIR/preload.js" "$TOOL_BIN" "$@" \
		>"$dir/stdout" 2>"$dir/stderr" </dev/null) &
	TOOL_PID=$!
	wait "$TOOL_PID" || rc=$?
	TOOL_PID=
	end=$(now_ms)
	local secs
	secs=$(node -e 'process.stdout.write(((process.argv[2] - process.argv[1]) / 1000).toFixed(1))' "$start" "$end")

	if [[ $rc == 0 ]]; then
		pass "$mode: exit code 0 (${secs} s)"
	else
		fail "$mode: exit code $rc, expected 0 (${secs} s)"
		sed 's/^/     stderr: /' "$dir/stderr" | tail -n 20
	fi

	local expected=$CONF_DIR/expected/$mode.json note=
	if [[ -f $CONF_DIR/expected/$mode-delta-rows.json ]]; then
		# New delta rows are numbered in arrival order; see delta-rows.js.
		node "$CONF_DIR/delta-rows.js" "$expected" "$CONF_DIR/expected/$mode-delta-rows.json" "$dir/stdout" \
			>"$dir/expected.json" 2>"$dir/delta-rows.txt" || true
		expected=$dir/expected.json
		note=" (new delta rows: $(head -n1 "$dir/delta-rows.txt"))"
	fi
	if diff -u "$expected" "$dir/stdout" >"$dir/stdout.diff"; then
		pass "$mode: stdout matches expected/$mode.json$note"
	else
		fail "$mode: stdout differs from expected/$mode.json$note"
		sed 's/^/     /' "$dir/stdout.diff"
	fi

	# Node may add its own warnings; only the tool's lines are compared.
	grep -E '^(\[DEBUG\]|ERROR:)' "$dir/stderr" >"$dir/stderr.tool" || true
	if diff -u "$CONF_DIR/expected/$mode.stderr" "$dir/stderr.tool" >"$dir/stderr.diff"; then
		pass "$mode: [DEBUG]/ERROR lines on stderr match expected/$mode.stderr"
	else
		fail "$mode: stderr differs from expected/$mode.stderr"
		sed 's/^/     /' "$dir/stderr.diff"
	fi

	if fetch_journal "$dir/journal.json"; then
		local from=$FROM_ID to=$TO_ID
		if [[ $mode == wait ]]; then
			from=$FROM_COMMIT
			to=$TO_COMMIT
		fi
		count_lines < <(node "$CONF_DIR/check-journal.js" "$mode" "$dir/journal.json" \
			"$CONF_DIR/expected/plain.json" "$from" "$to" "$start" "$end" || echo "FAIL $mode: journal checker crashed")
	else
		fail "$mode: journal fetched from the simulator"
	fi
	if stop_sim; then
		pass "$mode: simulator stayed up for the whole run"
	else
		fail "$mode: simulator stayed up for the whole run: it $SIM_EXIT"
		sed 's/^/     sim stderr: /' "$dir/sim.err" | tail -n 20
	fi
}

# Each mode gets a fresh simulator, so round 1 always starts without deltas.
run_mode plain --from-release "$FROM_ID" --to-release "$TO_ID"
run_mode prepare --prepare --from-release "$FROM_ID" --to-release "$TO_ID"
# Commit prefixes here: round 1 resolves them, later rounds use the ids.
run_mode wait --wait --timeout 120 --from-release "$FROM_COMMIT" --to-release "$TO_COMMIT"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
