#!/usr/bin/env bash
# The real-engine stage: balena-release-update against the real pinejs engine
# (@balena/pinejs on PostgreSQL) serving a balena v7 model subset, seeded from
# balena-sim's own scenarios, compared with the same runs against balena-sim.
# See README.md.
#
# usage: conformance/pinejs/run.sh
#   BALENA_CLI_BIN=<path> BALENA_SIM_BIN=<path>   use these binaries instead of building
#   KEEP_WORK=1    keep the scratch directories (outputs, server logs)
#   VERBOSE=1      print each CLI run's duration
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() {
	echo "FAIL $*"
	echo "0 passed, 1 failed"
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pinejs-stage.XXXXXX")
PG_DIR=
PG_BIN=
PIDS=()
as_pg_user() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u "$PG_USER" -- "$@"
	else
		"$@"
	fi
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]]; then
		as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "scratch directories kept: $WORK ${PG_DIR}" >&2
	else
		rm -rf "$WORK"
		[[ -z $PG_DIR ]] || rm -rf "$PG_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the stage needs --------------------------------------------------

find_pg_bin() {
	local dir
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[[ -x $dir/initdb && -x $dir/pg_ctl ]] && { echo "$dir"; return 0; }
	done
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		dirname "$(command -v initdb)"
		return 0
	fi
	return 1
}
if ! PG_BIN=$(find_pg_bin); then
	if [[ $(id -u) != 0 ]]; then
		die "PostgreSQL is not installed: run 'apt-get install postgresql' as root"
	fi
	say "installing PostgreSQL (apt-get install postgresql)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
	PG_BIN=$(find_pg_bin) || die "PostgreSQL installed, but no initdb/pg_ctl found"
fi
PG_USER=
if [[ $(id -u) == 0 ]]; then
	# PostgreSQL refuses to run as root.
	PG_USER=nobody
	id "$PG_USER" >/dev/null 2>&1 || die "no user '$PG_USER' to run PostgreSQL as"
fi

node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	die "Node $(node --version) is too old: pinejs 24 needs Node 20 or later (it declares 22, Node 20 works)"

installed_ok() {
	local marker=$HERE/node_modules/.package-lock.json
	[[ -f $marker && $marker -nt $HERE/package.json && $marker -nt $HERE/package-lock.json ]] &&
		(cd "$HERE" && node -e 'process.exit(require("@balena/pinejs/package.json").version === "24.2.14" ? 0 : 1)') 2>/dev/null
}
if installed_ok; then
	say "pinejs: already installed"
else
	say "pinejs: npm ci"
	# The optional dependencies (S3 uploads, MySQL, native bcrypt) are not used.
	(cd "$HERE" && npm ci --omit=optional --no-audit --no-fund --loglevel=error 2>&1 | grep -v EBADENGINE) || true
	installed_ok || die "npm ci in conformance/pinejs did not install @balena/pinejs 24.2.14"
fi

if [[ -n ${BALENA_CLI_BIN:-} && -n ${BALENA_SIM_BIN:-} ]]; then
	CLI_BIN=$BALENA_CLI_BIN
	SIM_BIN=$BALENA_SIM_BIN
else
	say "cargo build --release -p balena-release-update -p balena-sim"
	(cd "$ROOT" && cargo build --release --quiet -p balena-release-update -p balena-sim) ||
		die "cargo build --release -p balena-release-update -p balena-sim"
	CLI_BIN=$TARGET_DIR/release/balena-release-update
	SIM_BIN=$TARGET_DIR/release/balena-sim
fi

# --- servers ---------------------------------------------------------------

# Waits until $1 has a whole first line, or the process $2 exits.
wait_line() {
	local file=$1 pid=$2 tries=$3
	for _ in $(seq "$tries"); do
		[[ -s $file ]] && [[ $(head -n1 "$file" | wc -l) == 1 ]] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
json_field() { node -e 'process.stdout.write(String(JSON.parse(process.argv[1])[process.argv[2]]))' "$1" "$2"; }

SCENARIO_NAMES=$(cd "$HERE" && node -e 'import("./cases.js").then((m) => console.log(Object.keys(m.SCENARIOS).join(" ")))')
declare -A SIM_API SIM_DELTA TOKEN
for name in $SCENARIO_NAMES; do
	scenario=$(cd "$HERE" && node -e 'import("./cases.js").then((m) => console.log(m.SCENARIOS[process.argv[1]].sim_scenario))' "$name")
	"$SIM_BIN" --scenario "$scenario" >"$WORK/sim-$name.out" 2>"$WORK/sim-$name.err" </dev/null &
	PIDS+=($!)
	wait_line "$WORK/sim-$name.out" $! 300 || {
		sed 's/^/  sim: /' "$WORK/sim-$name.err"
		die "balena-sim --scenario $scenario did not start"
	}
	ready=$(head -n1 "$WORK/sim-$name.out")
	SIM_API[$name]=$(json_field "$ready" api_url)
	SIM_DELTA[$name]=$(json_field "$ready" delta_url)
	TOKEN[$name]=$(json_field "$ready" token)
	# The same rows, with the same ids, for pinejs.
	printf '%s' "${TOKEN[$name]}" | node "$HERE/rows.js" "${SIM_API[$name]}" - >"$WORK/rows-$name.json" ||
		die "reading the rows of scenario $name from balena-sim"
	say "balena-sim --scenario $scenario: ${SIM_API[$name]}"
done

say "PostgreSQL: initdb ($PG_BIN)"
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pinejs-stage-pg.XXXXXX")
[[ -z $PG_USER ]] || chown "$PG_USER" "$PG_DIR"
free_ports() { node "$HERE/free-ports.js" "$1"; }
read -r -a ports <<<"$(free_ports 5)"
PG_PORT=${ports[0]}
as_pg_user "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$WORK/initdb.log" 2>&1 ||
	{ tail -n 20 "$WORK/initdb.log"; die "initdb"; }
# A throw-away cluster: no durability needed.
as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
	-o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
	start >/dev/null || { tail -n 20 "$PG_DIR/postgres.log"; die "pg_ctl start"; }
say "PostgreSQL on 127.0.0.1:$PG_PORT"

declare -A PINE
mkdir -p "$HERE/node_modules/.cache"
i=1
for name in $SCENARIO_NAMES; do
	for variant in cloud openbalena; do
		db="${name}_$variant"
		"$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $db" ||
			die "CREATE DATABASE $db"
		port=${ports[$i]}
		i=$((i + 1))
		(cd "$WORK" && exec env DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db" \
			PINEJS_CACHE_FILE="$HERE/node_modules/.cache/pinejs-$db.json" \
			node "$HERE/server.js" --port "$port" --variant "$variant" --rows "$WORK/rows-$name.json" \
			--token "${TOKEN[$name]}" >"$WORK/pine-$db.out" 2>"$WORK/pine-$db.err" </dev/null) &
		PIDS+=($!)
		PINE[$db]=$!
	done
done
for db in "${!PINE[@]}"; do
	wait_line "$WORK/pine-$db.out" "${PINE[$db]}" 1800 || {
		tail -n 30 "$WORK/pine-$db.err" | sed 's/^/  pinejs: /'
		die "pinejs ($db) did not start"
	}
	say "pinejs $db: $(json_field "$(head -n1 "$WORK/pine-$db.out")" api_url)"
done

# --- the checks ------------------------------------------------------------

{
	echo "{\"cli\": \"$CLI_BIN\", \"work\": \"$WORK\", \"scenarios\": ["
	sep=
	for name in $SCENARIO_NAMES; do
		cloud=$(json_field "$(head -n1 "$WORK/pine-${name}_cloud.out")" api_url)
		ob=$(json_field "$(head -n1 "$WORK/pine-${name}_openbalena.out")" api_url)
		echo "$sep{\"name\": \"$name\", \"token\": \"${TOKEN[$name]}\", \"sim_api\": \"${SIM_API[$name]}\","
		echo " \"sim_delta\": \"${SIM_DELTA[$name]}\", \"pine_cloud\": \"$cloud\", \"pine_openbalena\": \"$ob\"}"
		sep=,
	done
	echo "]}"
} >"$WORK/config.json"

say "checks"
# In the background, so that INT/TERM interrupt `wait` and reach the trap.
node "$HERE/check.js" "$WORK/config.json" &
PIDS+=($!)
wait $!
