#!/usr/bin/env bash
# The real-registry stage: pushes real blobs and manifests to Debian's
# docker-registry (Distribution 2.8) on loopback, describes the same images to
# balena-sim in a scenario file, checks that both registries serve them alike,
# then runs the CLI against the simulator's API with the registry host mapped
# once to each registry and compares the download sizes. See README.md.
#
# usage: conformance/registry/run.sh
#   KEEP_WORK=1   keep the throw-away directory (fixture, logs, outputs) and print its path
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
REGISTRY_HOST=registry2.balena-cloud.com
MAP_VAR=BALENA_RELEASE_UPDATE_REGISTRY_MAP
export PYTHONDONTWRITEBYTECODE=1

now_ms() { date +%s%3N; }
T0=$(now_ms)
lap_start=$T0
lap() {
	local t
	t=$(now_ms)
	printf '  [%s: %d ms]\n' "$1" $((t - lap_start))
	lap_start=$t
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/balena-registry-stage.XXXXXX")
REG_PID=
SIM_PID=
stop() {
	local pid=$1
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	stop "$SIM_PID"
	stop "$REG_PID"
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the registry binary and the tool -------------------------------------
if ! command -v docker-registry >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing Debian's docker-registry"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; }
	else
		echo "FAIL docker-registry is not installed: run 'apt-get install -y docker-registry' (Debian's Distribution 2.8) as root" >&2
		exit 1
	fi
fi
echo "registry: $(docker-registry --version)"
lap "registry package"

(cd "$ROOT" && cargo build --release --locked --quiet -p balena-release-update -p balena-sim)
lap "cargo build --release"

if (cd "$HERE" && python3 -m unittest test_compare) >"$WORK/self-test.log" 2>&1; then
	echo "PASS the comparison's own tests: $(grep -E '^Ran ' "$WORK/self-test.log")"
else
	cat "$WORK/self-test.log"
	echo "FAIL the comparison's own tests (above)"
	exit 1
fi
lap "comparison self-test"

# --- 2. the fixture, pushed to a real registry -------------------------------
python3 "$HERE/stage.py" write "$WORK/fixture"
lap "fixture written"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up() { curl -fsS --noproxy '*' -o /dev/null --max-time 2 "$1/v2/" 2>/dev/null; }

REG_URL=
for attempt in 1 2 3 4 5; do
	port=$(free_port)
	mkdir -p "$WORK/registry-data"
	cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: 127.0.0.1:$port
  secret: registry-stage-upload-secret
EOF
	docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do
		up "http://127.0.0.1:$port" && break
		kill -0 "$REG_PID" 2>/dev/null || break
		sleep 0.1
	done
	if up "http://127.0.0.1:$port"; then
		REG_URL="http://127.0.0.1:$port"
		break
	fi
	echo "the registry did not start on port $port (attempt $attempt):" >&2
	tail -n 5 "$WORK/registry.log" >&2
	stop "$REG_PID"
	REG_PID=
done
[[ -n $REG_URL ]] || {
	echo "FAIL the registry did not start (log above)" >&2
	exit 1
}
echo "registry listening at $REG_URL (pid $REG_PID)"
lap "registry started"

python3 "$HERE/stage.py" push "$WORK/fixture" "$REG_URL"
lap "pushed"
python3 "$HERE/stage.py" check-real "$WORK/fixture" "$REG_URL"
lap "real registry read back"

# --- 3. the simulator with the same images -----------------------------------
"$BIN/balena-sim" --scenario "$WORK/fixture/scenario.json" >"$WORK/sim.line" 2>"$WORK/sim.log" &
SIM_PID=$!
for _ in $(seq 100); do
	[[ -s $WORK/sim.line ]] && break
	kill -0 "$SIM_PID" 2>/dev/null || break
	sleep 0.05
done
[[ -s $WORK/sim.line ]] || {
	echo "FAIL the simulator did not start:" >&2
	cat "$WORK/sim.log" >&2
	exit 1
}
SIM_LINE=$(head -n 1 "$WORK/sim.line")
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$SIM_LINE" "$1"; }
API_URL=$(field api_url)
DELTA_URL=$(field delta_url)
SIM_REGISTRY_URL=$(field registry_url)
SIM_TOKEN=$(field token)
echo "simulator: API $API_URL, registry $SIM_REGISTRY_URL"
lap "simulator started"

python3 "$HERE/stage.py" check-sim "$WORK/fixture" "$SIM_LINE"
lap "simulator read back"

# --- 4. the CLI against each registry ----------------------------------------
sim_manifest_requests() {
	curl -fsS --noproxy '*' "$SIM_REGISTRY_URL/__sim/counters" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["registry"].get("manifests", 0))'
}
real_manifest_requests() { grep -cE '"(GET|HEAD) /v2/[^ ]*/manifests/' "$WORK/registry.log" || true; }

mkdir -p "$WORK/out" "$WORK/home" "$WORK/cwd"
run_case() {
	local case=$1 registry=$2 map_url=$3
	shift 3
	local stem="$WORK/out/$case.$registry" code=0 real_before
	curl -fsS --noproxy '*' -X DELETE -o /dev/null "$SIM_REGISTRY_URL/__sim/journal"
	real_before=$(real_manifest_requests)
	(cd "$WORK/cwd" && env -i PATH="$PATH" HOME="$WORK/home" CI=1 NO_COLOR=1 \
		NO_PROXY="127.0.0.1,localhost" \
		BALENARC_API_URL="$API_URL" BALENARC_DELTA_URL="$DELTA_URL" \
		BALENA_RELEASE_UPDATE_TOKEN="$SIM_TOKEN" \
		"$MAP_VAR=$REGISTRY_HOST=$map_url" \
		timeout 120 "$BIN/balena-release-update" -v "$@") >"$stem.json" 2>"$stem.stderr" || code=$?
	echo "$code" >"$stem.exit"
	echo "sim=$(sim_manifest_requests) real=$(($(real_manifest_requests) - real_before))" >"$stem.requests"
	printf '  %-14s %-4s exit %s, %s\n' "$case" "$registry" "$code" "$(cat "$stem.requests")"
}
# The cases and their arguments are defined once, in compare.py.
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	run_case "$case" sim "$SIM_REGISTRY_URL" "${argv[@]}"
	run_case "$case" real "$REG_URL" "${argv[@]}"
done < <(cd "$HERE" && python3 -c 'import compare
for name, argv in compare.CASES.items(): print(name, " ".join(argv), sep="\t")')
lap "CLI runs"

# --- 5. the comparison -------------------------------------------------------
status=0
(cd "$HERE" && python3 compare.py "$WORK/out") || status=$?
lap "comparison"
printf 'registry stage: %d ms in all\n' $(($(now_ms) - T0))
exit "$status"
