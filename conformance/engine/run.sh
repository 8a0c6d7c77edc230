#!/usr/bin/env bash
# The engine stage: a real Docker engine (Debian's docker.io 20.10) builds and
# pushes images to Debian's docker-registry, then pulls release transitions
# through a counting proxy; the bytes it fetched are compared with an
# independent model of the download rule and with the CLI's figures, read
# from the same registry through balena-sim's API. See README.md.
#
# usage: conformance/engine/run.sh      (as root: dockerd needs it)
#   KEEP_WORK=1   keep the throw-away directory (fixture, logs, outputs) and print its path
#   SKIP_BUILD=1  use the binaries already in ${CARGO_TARGET_DIR:-target}/release
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
REGISTRY_HOST=registry2.balena-cloud.com
MAP_VAR=BALENA_RELEASE_UPDATE_REGISTRY_MAP
export PYTHONDONTWRITEBYTECODE=1
# The Debian client matches the Debian daemon; another docker may come first on PATH.
export DOCKER=/usr/bin/docker

# shellcheck source=../stage.sh
source "$HERE/../stage.sh"

# Setup steps count as checks too; the report adds its own.
PASSED=0
FAILED=0
SUMMARY_DONE=
pass() {
	echo "PASS $*"
	PASSED=$((PASSED + 1))
}
fail() {
	echo "FAIL $*"
	FAILED=$((FAILED + 1))
	exit 1
}

# A short path: dockerd's and containerd's sockets live under it.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/engine-stage.XXXXXX")
export DOCKER_CONFIG=$WORK/docker-cli # the CLI's config, not root's
mkdir -p "$DOCKER_CONFIG"
REG_PID=
PROXY_PID=
SIM_PID=
DOCKERD_PID=
DOCKERD_DIR=
stop_dockerd() {
	[[ -n $DOCKERD_PID ]] || return 0
	stop "$DOCKERD_PID" 15
	DOCKERD_PID=
	# dockerd stops the containerd it started; should it have died first,
	# that containerd is stopped here, by the pid it wrote.
	local cpid
	cpid=$(cat "$DOCKERD_DIR/exec/containerd/containerd.pid" 2>/dev/null || true)
	if [[ -n $cpid ]] && kill -0 "$cpid" 2>/dev/null; then
		kill -TERM "$cpid" 2>/dev/null || true
		sleep 1
		kill -KILL "$cpid" 2>/dev/null || true
	fi
	rm -rf "$DOCKERD_DIR/data" "$DOCKERD_DIR/exec" 2>/dev/null || true
}
cleanup() {
	local code=$?
	stop "$SIM_PID"
	stop_dockerd
	stop "$PROXY_PID"
	stop "$REG_PID"
	if [[ -z $SUMMARY_DONE ]]; then
		# Stopped before the report: the closing line all the same.
		[[ $code == 0 ]] || [[ $FAILED -gt 0 ]] || FAILED=1
		echo "$PASSED passed, $FAILED failed"
	fi
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. packages and the tool ------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[[ -x $DOCKER ]] || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if ((${#missing[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing Debian's ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-registry >/dev/null; } ||
			fail "apt-get install docker.io docker-registry"
	else
		fail "missing ${missing[*]}: run 'apt-get install -y docker.io docker-registry' as root"
	fi
fi
[[ $(id -u) == 0 ]] || fail "dockerd needs root: run this stage as root"
echo "engine: $(dockerd --version); client: $($DOCKER --version); registry: $(docker-registry --version)"
lap "packages"

if [[ ${SKIP_BUILD:-} == 1 ]]; then
	[[ -x $BIN/balena-release-update && -x $BIN/balena-sim ]] || fail "SKIP_BUILD=1 but no binaries in $BIN"
	echo "using the binaries already in $BIN (SKIP_BUILD=1)"
else
	(cd "$ROOT" && cargo build --release --locked --quiet -p balena-release-update -p balena-sim) ||
		fail "cargo build --release"
	lap "cargo build --release"
fi

FIX=$WORK/fixture
python3 "$HERE/engine.py" write "$FIX"

# --- 2. the registry and the counting proxy ----------------------------------------
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
  delete:
    enabled: false
http:
  addr: 127.0.0.1:$port
  secret: engine-stage-upload-secret
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
[[ -n $REG_URL ]] || fail "the registry did not start (log above)"

python3 "$HERE/proxy.py" "$REG_URL" "$WORK/proxy.port" 2>"$WORK/proxy.log" &
PROXY_PID=$!
await_line "$PROXY_PID" "$WORK/proxy.port" || fail "the counting proxy did not start: $(cat "$WORK/proxy.log")"
PROXY_URL="http://127.0.0.1:$(cat "$WORK/proxy.port")"
up "$PROXY_URL" || fail "the counting proxy does not reach the registry"
pass "registry at $REG_URL (pid $REG_PID), counting proxy at $PROXY_URL (pid $PROXY_PID)"
lap "registry and proxy"

# --- 3. dockerd ----------------------------------------------------------------------
# Its own configuration, never /etc/docker/daemon.json, and its trust key
# here, not in /etc/docker/key.json (a setting of the file, not a flag, in 20.10).
printf '{"deprecated-key-path": "%s"}\n' "$WORK/key.json" >"$WORK/daemon.json"
start_dockerd() {
	DOCKERD_DIR=$WORK/d/$1
	mkdir -p "$DOCKERD_DIR"
	export DOCKER_HOST=unix://$DOCKERD_DIR/docker.sock
	dockerd \
		--config-file "$WORK/daemon.json" \
		--data-root "$DOCKERD_DIR/data" \
		--exec-root "$DOCKERD_DIR/exec" \
		--pidfile "$DOCKERD_DIR/docker.pid" \
		-H "$DOCKER_HOST" \
		--storage-driver vfs \
		--bridge none \
		--iptables=false \
		--ip6tables=false \
		--log-level warn \
		>"$DOCKERD_DIR.log" 2>&1 &
	DOCKERD_PID=$!
	for _ in $(seq 300); do
		$DOCKER version >/dev/null 2>&1 && return 0
		kill -0 "$DOCKERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$DOCKERD_DIR.log" >&2
	fail "dockerd ($1) did not start (its log above)"
}

start_dockerd build
insecure=$($DOCKER info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}')
[[ $insecure == *'"127.0.0.0/8"'* ]] || fail "loopback registries are not insecure-allowed by default: $insecure"
pass "dockerd $($DOCKER version --format '{{.Server.Version}}') up (vfs, no bridge, no iptables); 127.0.0.0/8 is an insecure registry by default"
lap "dockerd started"

python3 "$HERE/engine.py" build-push "$FIX" "$REG_URL" || fail "docker build and push"
stop_dockerd
lap "docker build + push"
python3 "$HERE/engine.py" push-deltas "$FIX" "$REG_URL" || fail "the delta images"
python3 "$HERE/engine.py" scenario "$FIX" || fail "the scenario"
lap "deltas and scenario"

# --- 4. the simulator and the CLI ---------------------------------------------------
"$BIN/balena-sim" --scenario "$FIX/scenario.json" >"$WORK/sim.line" 2>"$WORK/sim.log" &
SIM_PID=$!
await_line "$SIM_PID" "$WORK/sim.line" || fail "the simulator did not start: $(cat "$WORK/sim.log")"
SIM_LINE=$(head -n 1 "$WORK/sim.line")
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$SIM_LINE" "$1"; }
API_URL=$(field api_url)
DELTA_URL=$(field delta_url)
pass "balena-sim read the scenario (with release compositions): API $API_URL"
lap "simulator started"

mkdir -p "$FIX/tool" "$WORK/home/.balena" "$WORK/cwd"
python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import engine; print(engine.TOKEN)' "$HERE" >"$WORK/home/.balena/token"
chmod 600 "$WORK/home/.balena/token"
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	code=0
	(cd "$WORK/cwd" && env -i PATH="$PATH" HOME="$WORK/home" CI=1 NO_COLOR=1 \
		NO_PROXY="127.0.0.1,localhost" \
		BALENARC_API_URL="$API_URL" BALENARC_DELTA_URL="$DELTA_URL" \
		"$MAP_VAR=$REGISTRY_HOST=$REG_URL" \
		timeout 120 "$BIN/balena-release-update" "${argv[@]}" --output json -v) \
		>"$FIX/tool/$case.json" 2>"$FIX/tool/$case.stderr" || code=$?
	echo "$code" >"$FIX/tool/$case.exit"
	printf '  CLI %-22s exit %s, estimated_download_size %s\n' "$case" "$code" \
		"$(python3 -c 'import json, sys
try: print(json.load(open(sys.argv[1])).get("estimated_download_size"))
except Exception as e: print("(no JSON)")' "$FIX/tool/$case.json")"
done < <(python3 "$HERE/engine.py" cases "$FIX")
stop "$SIM_PID"
SIM_PID=
lap "CLI runs"

# --- 5. the engine, one fresh data root per case ------------------------------------
while IFS=$'\t' read -r case _; do
	start_dockerd "$case"
	python3 "$HERE/engine.py" case "$FIX" "$case" "$PROXY_URL" || fail "engine run of $case"
	stop_dockerd
done < <(python3 "$HERE/engine.py" cases "$FIX")
lap "engine pulls"

# --- 6. the report -------------------------------------------------------------------
status=0
python3 "$HERE/engine.py" report "$FIX" "$REG_URL" "$PROXY_URL" >"$WORK/report.out" || status=$?
cp "$FIX/table.md" "$WORK/table.md" 2>/dev/null || true
# The report's own closing line is folded into the stage's.
grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$WORK/report.out" || true
counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$WORK/report.out" | tail -n 1 || true)
if [[ -n $counts ]]; then
	read -r rp _ rf _ <<<"$counts"
	PASSED=$((PASSED + rp))
	FAILED=$((FAILED + rf))
else
	echo "FAIL the report stopped early (exit $status)"
	FAILED=$((FAILED + 1))
fi
lap "report"
printf 'engine stage: %d ms in all; table: %s\n' $(($(now_ms) - T0)) "$WORK/table.md"
SUMMARY_DONE=1
echo "$PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
