# Shell helpers the stages that start real servers share (engine/run.sh,
# registry/run.sh): sourced, not run.

now_ms() { date +%s%3N; }
T0=$(now_ms)
lap_start=$T0
# lap WHAT: the time since the previous lap, on one indented line.
lap() {
	local t
	t=$(now_ms)
	printf '  [%s: %d ms]\n' "$1" $((t - lap_start))
	lap_start=$t
}

# stop PID [SECONDS]: SIGTERM, then SIGKILL once SECONDS (default 5) have
# passed; nothing for an empty PID.
stop() {
	local pid=$1 seconds=${2:-5}
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq $((seconds * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# await_line PID FILE: waits up to 5 s for the server PID to write its first
# line (its URL or port) to FILE; fails at once when PID ends first.
await_line() {
	local pid=$1 file=$2
	for _ in $(seq 100); do
		[[ -s $file ]] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	[[ -s $file ]]
}
