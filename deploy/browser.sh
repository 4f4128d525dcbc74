#!/usr/bin/env bash
# What the dashboard's browser tests need from Debian: Chromium, its driver, and a CJK font (the
# dashboard's labels are Chinese and English). install | status.
SERVICE=browser
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PACKAGES=(chromium chromium-driver fonts-wqy-microhei)

missing() { local p; for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done; }

case "${1:-}" in
  install)
    todo=($(missing))
    (( ${#todo[@]} == 0 )) && exit 0
    [[ $(id -u) -eq 0 ]] || die "missing ${todo[*]}; as root: apt-get install ${todo[*]}"
    say "installing ${todo[*]}"
    log="$LOG_DIR/browser-install.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${todo[@]}" >"$log" 2>&1 \
      || { apt-get update -q >>"$log" 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${todo[@]}" >>"$log" 2>&1; } \
      || die "apt-get install failed (log: $log)"
    ;;
  status) todo=($(missing)); (( ${#todo[@]} == 0 )) && say "ready" || { say "missing ${todo[*]}"; exit 1; } ;;
  *) echo "usage: $0 {install|status}" >&2; exit 2 ;;
esac
