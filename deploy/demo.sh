#!/usr/bin/env bash
# `make demo`: start the services (provisioned and cached on first use), run the whole system
# with `wattstream up` until Ctrl-C, then stop the services this script started.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$here/../.venv}"
started=()
bash "$here/timescaledb.sh" status >/dev/null 2>&1 || started+=(timescaledb)
bash "$here/kafka.sh" status >/dev/null 2>&1 || started+=(kafka)
cleanup() {
  for svc in "${started[@]}"; do bash "$here/$svc.sh" stop || true; done
}
trap cleanup EXIT
bash "$here/services.sh" start
# the real samples beside the clone (shared/data), replayed next to the simulated city
data="$here/../../shared/data"
if [[ -d $data ]]; then set -- --data-dir "$data" "$@"; fi
"$VENV/bin/wattstream" up "$@"
