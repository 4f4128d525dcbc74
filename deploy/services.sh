#!/usr/bin/env bash
# Kafka and TimescaleDB together: start | stop | status.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
case "${1:-}" in
  start) bash "$here/timescaledb.sh" start; bash "$here/kafka.sh" start ;;
  stop) rc=0; bash "$here/kafka.sh" stop || rc=$?; bash "$here/timescaledb.sh" stop || rc=$?; exit $rc ;;
  status) rc=0; bash "$here/kafka.sh" status || rc=$?; bash "$here/timescaledb.sh" status || rc=$?; exit $rc ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
