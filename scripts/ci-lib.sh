# shellcheck shell=bash disable=SC2154  # (pids: defined by the sourcing script)
# Shell helpers shared by the CI stage scripts (sourced, not run). The sourcing script defines
# show_logs (what to print when it fails) and keeps the PIDs it started in the array `pids`.

log() { printf '\n=== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# fail MESSAGE: the script's logs first, then MESSAGE as the last line (what CI shows at the end).
fail() {
    show_logs >&2 || true
    echo "${0##*/}: FAILED: $*" >&2
    exit 1
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds; false after SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# stop_pids: TERM every PID in `pids`, then KILL those still there after 10 s.
stop_pids() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        wait_for 10 not_running "$pid" || kill -9 "$pid" 2>/dev/null || true
    done
}

not_running() { ! kill -0 "$1" 2>/dev/null; }

# output_has PATTERN COMMAND...: whether COMMAND's output (stdout and stderr) matches PATTERN (grep).
# The output is read to its end first: `COMMAND | grep -q` under pipefail fails whenever COMMAND
# writes after grep has found its line and left (SIGPIPE).
output_has() {
    local pattern=$1 output
    shift
    output=$("$@" 2>&1) || true
    grep -q -- "$pattern" <<<"$output"
}
