#!/usr/bin/env bash
# The real-registry stage: pushes real blobs and manifests to Debian's
# docker-registry (Distribution 2.8) on loopback, describes the same images to
# balena-sim in a scenario file, checks that both registries serve them alike,
# then runs the CLI against the simulator's API with the registry host mapped
# once to each registry and compares the download sizes; then runs it again
# against a second docker-registry with `auth: token`, behind token_auth.py's
# front (the token realm, standing in for the balena API) and proxy. See
# README.md.
#
# usage: conformance/registry/run.sh
#   KEEP_WORK=1   keep the throw-away directory (fixture, logs, outputs) and print its path
#   SKIP_BUILD=1  use the binaries already in ${CARGO_TARGET_DIR:-target}/release
#
# Every check is counted; the last line is `N passed, M failed`, and the exit
# code is non-zero when M > 0. A failed prerequisite (the fixture, a server
# that does not start, a registry that does not hold what was pushed) stops
# the stage there; the comparisons of CLI runs do not.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
REGISTRY_HOST=registry2.balena-cloud.com
MAP_VAR=BALENA_RELEASE_UPDATE_REGISTRY_MAP
export PYTHONDONTWRITEBYTECODE=1

# shellcheck source=../stage.sh
source "$HERE/../stage.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/balena-registry-stage.XXXXXX")
REG_PID=
SIM_PID=
FRONT_PID=
TREG_PID=
PROXY_PID=
HOSTILE_PID=
PASSED=0
FAILED=0

# tally STATUS FILE: adds the checks a step reported in FILE (its lines
# `… N checks passed, M failed`); a step that reported none counts as one
# check, passed when STATUS is 0.
tally() {
	local status=$1 file=$2 p f found=0 before=$FAILED
	while read -r p f; do
		PASSED=$((PASSED + p))
		FAILED=$((FAILED + f))
		found=1
	done < <(sed -nE 's/.* ([0-9]+) checks passed, ([0-9]+) failed.*/\1 \2/p' "$file")
	if [[ $found == 0 ]]; then
		if [[ $status == 0 ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
	elif [[ $status != 0 && $FAILED == "$before" ]]; then
		FAILED=$((FAILED + 1))
	fi
}
# step fatal|continue CMD…: runs CMD, shows and tallies its output; `fatal`
# ends the stage when it fails.
step() {
	local fatal=$1 status=0 out
	shift
	out=$(mktemp "$WORK/step.XXXXXX")
	"$@" >"$out" 2>&1 || status=$?
	cat "$out"
	tally "$status" "$out"
	if [[ $status != 0 && $fatal == fatal ]]; then
		exit 1
	fi
	return 0
}
# fail WHAT…: one failed check, stated.
fail() {
	echo "FAIL $*"
	FAILED=$((FAILED + 1))
}

cleanup() {
	local status=$?
	stop "$HOSTILE_PID"
	stop "$PROXY_PID"
	stop "$TREG_PID"
	stop "$FRONT_PID"
	stop "$SIM_PID"
	stop "$REG_PID"
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	# An exit with no failed check counted (a signal, an unexpected error)
	# is a failure all the same.
	if [[ $status != 0 && $FAILED == 0 ]]; then
		FAILED=1
	fi
	echo "$PASSED passed, $FAILED failed"
	if [[ $FAILED != 0 && $status == 0 ]]; then
		exit 1
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the packages and the tool --------------------------------------------
need() {
	local command=$1 package=$2
	command -v "$command" >/dev/null && return 0
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing Debian's $package"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; }
	else
		fail "$command is not installed: run 'apt-get install -y $package' as root"
		exit 1
	fi
}
need docker-registry docker-registry # Distribution 2.8
need openssl openssl
echo "registry: $(docker-registry --version); $(openssl version)"
lap "packages"

if [[ ${SKIP_BUILD:-} == 1 ]]; then
	[[ -x $BIN/balena-release-update && -x $BIN/balena-sim ]] || {
		fail "SKIP_BUILD=1, but $BIN has no balena-release-update and balena-sim"
		exit 1
	}
	echo "SKIP_BUILD=1: the binaries in $BIN as they are"
else
	(cd "$ROOT" && cargo build --release --locked --quiet -p balena-release-update -p balena-sim) || {
		fail "cargo build --release"
		exit 1
	}
fi
lap "cargo build --release"

self_test() {
	local n
	if (cd "$HERE" && python3 -m unittest test_compare test_token_auth) >"$WORK/self-test.log" 2>&1; then
		n=$(sed -nE 's/^Ran ([0-9]+) tests?.*/\1/p' "$WORK/self-test.log")
		echo "PASS the comparison's own tests: $n checks passed, 0 failed"
	else
		cat "$WORK/self-test.log"
		echo "FAIL the comparison's own tests (above)"
		return 1
	fi
}
step fatal self_test
lap "comparison self-test"

# --- 2. the fixture, pushed to a real registry -------------------------------
step fatal python3 "$HERE/stage.py" write "$WORK/fixture"
lap "fixture written"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# answers URL CODE: whether URL/v2/ answers CODE.
answers() { [[ $(curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 2 "$1/v2/" 2>/dev/null) == "$2" ]]; }

# start_registry PIDVAR URLVAR NAME CODE AUTH_YAML: docker-registry on a free
# port (up to five tried), over the one storage directory, ready once /v2/
# answers CODE.
start_registry() {
	local pidvar=$1 urlvar=$2 name=$3 code=$4 auth=$5 port pid
	mkdir -p "$WORK/registry-data"
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$WORK/$name.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: 127.0.0.1:$port
  secret: registry-stage-upload-secret
$auth
EOF
		docker-registry serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
		pid=$!
		printf -v "$pidvar" '%s' "$pid"
		for _ in $(seq 100); do
			answers "http://127.0.0.1:$port" "$code" && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if answers "http://127.0.0.1:$port" "$code"; then
			printf -v "$urlvar" '%s' "http://127.0.0.1:$port"
			return 0
		fi
		echo "the $name did not start on port $port (attempt $attempt):" >&2
		tail -n 5 "$WORK/$name.log" >&2
		stop "$pid"
		printf -v "$pidvar" '%s' ""
	done
	return 1
}

REG_URL=
start_registry REG_PID REG_URL registry 200 "" || {
	fail "the registry did not start (log above)"
	exit 1
}
echo "registry listening at $REG_URL (pid $REG_PID)"
lap "registry started"

step fatal python3 "$HERE/stage.py" push "$WORK/fixture" "$REG_URL"
lap "pushed"
step fatal python3 "$HERE/stage.py" check-real "$WORK/fixture" "$REG_URL"
lap "real registry read back"

# --- 3. the simulator with the same images -----------------------------------
start_sim() {
	"$BIN/balena-sim" --scenario "$1" >"$WORK/sim.line" 2>"$WORK/sim.log" &
	SIM_PID=$!
	await_line "$SIM_PID" "$WORK/sim.line"
}
SAME_BYTES=--same-bytes
if ! start_sim "$WORK/fixture/scenario.json"; then
	stop "$SIM_PID"
	SIM_PID=
	if grep -q 'unknown field `manifest`' "$WORK/sim.log"; then
		# A simulator from before the scenario's `manifest` field serves
		# manifests of its own, whose lengths and config sizes differ.
		fail "the simulator does not know the scenario's \`manifest\` field; it runs without it, so its figures cannot be the real registry's"
		SAME_BYTES=
		start_sim "$WORK/fixture/scenario-without-manifests.json" || true
	fi
fi
[[ -s $WORK/sim.line ]] || {
	cat "$WORK/sim.log" >&2
	fail "the simulator did not start (above)"
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

step fatal python3 "$HERE/stage.py" check-sim "$WORK/fixture" "$SIM_LINE" $SAME_BYTES
lap "simulator read back"

# --- 4. the CLI against each registry ----------------------------------------
sim_manifest_requests() {
	curl -fsS --noproxy '*' "$SIM_REGISTRY_URL/__sim/counters" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["registry"].get("manifests", 0))'
}
real_manifest_requests() { grep -cE '"(GET|HEAD) /v2/[^ ]*/manifests/' "$WORK/registry.log" || true; }

mkdir -p "$WORK/out" "$WORK/home" "$WORK/cwd"
# cli STEM API_URL MAP_URL ARGS…: one run of the CLI; its stdout, stderr and
# exit code in STEM.json, STEM.stderr and STEM.exit.
cli() {
	local stem=$1 api=$2 map_url=$3 code=0
	shift 3
	(cd "$WORK/cwd" && env -i PATH="$PATH" HOME="$WORK/home" CI=1 NO_COLOR=1 \
		NO_PROXY="127.0.0.1,localhost" \
		BALENARC_API_URL="$api" BALENARC_DELTA_URL="$DELTA_URL" \
		BALENA_RELEASE_UPDATE_TOKEN="$SIM_TOKEN" \
		"$MAP_VAR=$REGISTRY_HOST=$map_url" \
		timeout 120 "$BIN/balena-release-update" -v "$@") >"$stem.json" 2>"$stem.stderr" || code=$?
	echo "$code" >"$stem.exit"
}
run_case() {
	local case=$1 registry=$2 map_url=$3
	shift 3
	local stem="$WORK/out/$case.$registry" real_before
	curl -fsS --noproxy '*' -X DELETE -o /dev/null "$SIM_REGISTRY_URL/__sim/journal"
	real_before=$(real_manifest_requests)
	cli "$stem" "$API_URL" "$map_url" "$@"
	echo "sim=$(sim_manifest_requests) real=$(($(real_manifest_requests) - real_before))" >"$stem.requests"
	printf '  %-14s %-4s exit %s, %s\n' "$case" "$registry" "$(cat "$stem.exit")" "$(cat "$stem.requests")"
}
# cases PYTHON_EXPR: `name<TAB>arguments` lines; the cases and their
# arguments are defined once, in compare.py and token_auth.py.
cases() { (cd "$HERE" && python3 -c "import compare, token_auth
for name, argv in $1: print(name, ' '.join(argv), sep='\t')"); }
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	run_case "$case" sim "$SIM_REGISTRY_URL" "${argv[@]}"
	run_case "$case" real "$REG_URL" "${argv[@]}"
done < <(cases 'compare.CASES.items()')
lap "CLI runs"

# --- 5. the comparison -------------------------------------------------------
compare_outputs() { (cd "$HERE" && python3 compare.py "$WORK/out"); }
step continue compare_outputs
lap "comparison"

# --- 6. the token-auth registry, its realm and its proxies --------------------
step fatal python3 "$HERE/token_auth.py" keys "$WORK/keys"

# start_py PIDVAR LINEFILE CMD…: a server of token_auth.py, which prints one
# JSON line with its URL once it listens.
start_py() {
	local pidvar=$1 line=$2 pid
	shift 2
	"$@" >"$line" 2>"$line.log" &
	pid=$!
	printf -v "$pidvar" '%s' "$pid"
	await_line "$pid" "$line" && return 0
	cat "$line.log" >&2
	return 1
}
url_of() { python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$1"; }

start_py FRONT_PID "$WORK/front.line" python3 "$HERE/token_auth.py" front "$WORK/keys" "$API_URL" "$SIM_TOKEN" "$WORK/front.jsonl" || {
	fail "the front did not start (above)"
	exit 1
}
FRONT_URL=$(url_of "$WORK/front.line")

TREG_URL=
start_registry TREG_PID TREG_URL token-registry 401 "auth:
  token:
    realm: $FRONT_URL/auth/v1/token
    service: $REGISTRY_HOST
    issuer: registry-stage-front
    rootcertbundle: $WORK/keys/cert.pem" || {
	fail "the token-auth registry did not start (log above)"
	exit 1
}
start_py PROXY_PID "$WORK/proxy.line" python3 "$HERE/token_auth.py" proxy "$TREG_URL" "$WORK/proxy.jsonl" || {
	fail "the proxy did not start (above)"
	exit 1
}
PROXY_URL=$(url_of "$WORK/proxy.line")
start_py HOSTILE_PID "$WORK/hostile.line" python3 "$HERE/token_auth.py" proxy "$TREG_URL" "$WORK/hostile.jsonl" --hostile || {
	fail "the hostile proxy did not start (above)"
	exit 1
}
HOSTILE_URL=$(url_of "$WORK/hostile.line")
echo "token auth: front $FRONT_URL, registry $TREG_URL, proxy $PROXY_URL, hostile proxy $HOSTILE_URL"
lap "token-auth servers started"

step fatal python3 "$HERE/token_auth.py" selfcheck "$WORK/keys" "$WORK/fixture" "$FRONT_URL" "$PROXY_URL" "$TREG_URL" "$SIM_TOKEN"
lap "token-auth registry read back"

lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
# token_case STEM PROXY_URL PROXY_LOG ARGS…: a CLI run with the front as its
# API and the registry host mapped to a proxy; the front's and the proxy's
# records of the run go to STEM.tokens.jsonl and STEM.proxy.jsonl.
token_case() {
	local stem=$1 proxy=$2 log=$3 f0 p0 t0
	shift 3
	f0=$(lines "$WORK/front.jsonl")
	p0=$(lines "$log")
	t0=$(now_ms)
	cli "$stem" "$FRONT_URL" "$proxy" "$@"
	tail -n +"$((f0 + 1))" "$WORK/front.jsonl" >"$stem.tokens.jsonl" 2>/dev/null || true
	tail -n +"$((p0 + 1))" "$log" >"$stem.proxy.jsonl" 2>/dev/null || true
	printf '  %-22s exit %s, %d token request(s), %d registry request(s), %d ms\n' "$(basename "$stem")" \
		"$(cat "$stem.exit")" "$(lines "$stem.tokens.jsonl")" "$(lines "$stem.proxy.jsonl")" $(($(now_ms) - t0))
}
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	token_case "$WORK/out/$case.token" "$PROXY_URL" "$WORK/proxy.jsonl" "${argv[@]}"
done < <(cases 'compare.CASES.items()')
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	token_case "$WORK/out/$case.hostile" "$HOSTILE_URL" "$WORK/hostile.jsonl" "${argv[@]}"
done < <(cases '((n, compare.CASES[n]) for n in token_auth.HOSTILE_CASES)')
# Last: it has the simulator build a delta, which later runs would see.
while IFS=$'\t' read -r case args; do
	read -ra argv <<<"$args"
	token_case "$WORK/out/$case" "$PROXY_URL" "$WORK/proxy.jsonl" "${argv[@]}"
done < <(cases '[("renewal", token_auth.RENEWAL_ARGS)]')
curl -fsS --noproxy '*' -H "Authorization: Bearer $SIM_TOKEN" -o "$WORK/out/renewal.deltas.json" \
	"$API_URL/v7/delta?\$select=id,status,is_stored_at__location" || true
lap "CLI runs, token auth"

step continue python3 "$HERE/token_auth.py" check "$WORK/fixture" "$WORK/out" "$SIM_TOKEN"
lap "token-auth checks"
printf 'registry stage: %d ms in all\n' $(($(now_ms) - T0))
