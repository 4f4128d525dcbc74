#!/usr/bin/env bash
# Prometheus from Debian's package, scraping wattstream on loopback: install | start | stop | status.
# Targets: the API on $WATTSTREAM_API_PORT (8000) and the ingest worker on
# $WATTSTREAM_INGEST_METRICS_PORT (9464); Prometheus itself on $WATTSTREAM_PROMETHEUS_PORT (19090).
SERVICE=prometheus
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT="${WATTSTREAM_PROMETHEUS_PORT:-19090}"
API_PORT="${WATTSTREAM_API_PORT:-8000}"
INGEST_PORT="${WATTSTREAM_INGEST_METRICS_PORT:-9464}"
DATA="$RUN_DIR/prometheus"
PID="$RUN_DIR/prometheus.pid"
CONFIG="$RUN_DIR/prometheus.yml"

install() {
  command -v prometheus >/dev/null && return 0
  [[ $(id -u) -eq 0 ]] || die "prometheus is not installed; as root: apt-get install prometheus"
  say "installing Debian's prometheus package"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >"$LOG_DIR/prometheus-install.log" 2>&1 \
    || { apt-get update -q >>"$LOG_DIR/prometheus-install.log" 2>&1 &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >>"$LOG_DIR/prometheus-install.log" 2>&1; } \
    || die "apt-get install prometheus failed (log: $LOG_DIR/prometheus-install.log)"
  # the package enables a system service on :9090; this script runs its own, on loopback
}

start() {
  install
  if pid_alive "$PID"; then say "running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; return 0; fi
  mkdir -p "$DATA"
  sed -e "s/host.docker.internal:8000/127.0.0.1:$API_PORT/" -e "s/host.docker.internal:9464/127.0.0.1:$INGEST_PORT/" \
    "$DEPLOY_DIR/prometheus/prometheus.yml" >"$CONFIG"
  cp "$DEPLOY_DIR/prometheus/alerts.yml" "$RUN_DIR/alerts.yml"
  prometheus --config.file="$CONFIG" --storage.tsdb.path="$DATA" --web.listen-address="127.0.0.1:$PORT" \
    >"$LOG_DIR/prometheus.log" 2>&1 &
  echo $! >"$PID"
  wait_for_port 127.0.0.1 "$PORT" 30 || die "did not start (log: $LOG_DIR/prometheus.log)"
  say "started on 127.0.0.1:$PORT scraping 127.0.0.1:$API_PORT and 127.0.0.1:$INGEST_PORT"
}

stop() {
  if pid_alive "$PID"; then kill "$(cat "$PID")"; for _ in $(seq 50); do pid_alive "$PID" || break; sleep 0.1; done; fi
  rm -f "$PID"
  say "stopped"
}

status() { if pid_alive "$PID"; then say "running on 127.0.0.1:$PORT"; else say "not running"; return 1; fi; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
