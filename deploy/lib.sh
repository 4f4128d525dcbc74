# Shared by the deploy scripts: where things live, and small helpers.
# Everything downloaded or built is cached under $WATTSTREAM_CACHE (default ~/.cache/wattstream);
# service state (data, logs, pid files) lives under $WATTSTREAM_CACHE/run.
set -euo pipefail

WATTSTREAM_CACHE="${WATTSTREAM_CACHE:-$HOME/.cache/wattstream}"
RUN_DIR="$WATTSTREAM_CACHE/run"
LOG_DIR="$RUN_DIR/logs"
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$RUN_DIR" "$LOG_DIR"

say() { printf '[%s] %s\n' "${SERVICE:-deploy}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# wait_for_port HOST PORT SECONDS: true once something accepts TCP connections there
wait_for_port() {
  local host=$1 port=$2 deadline=$((SECONDS + $3))
  while (( SECONDS < deadline )); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_alive FILE: true when FILE names a running process
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# with_lock NAME CMD...: serialise provisioning between concurrent runs
with_lock() {
  local name=$1; shift
  exec {lock_fd}>"$WATTSTREAM_CACHE/.$name.lock"
  flock "$lock_fd"
  "$@"
  flock -u "$lock_fd"
}
