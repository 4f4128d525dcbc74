#!/usr/bin/env bash
# Creates the virtualenv with exactly the locked dependencies (requirements.lock) and wattstream
# itself in editable mode. uv (pinned) does the installing: it is fast and its cache
# ($WATTSTREAM_CACHE/uv) makes reruns take seconds.
SERVICE=install
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="${1:-.venv}"
UV_VERSION=0.13.9
TOOLS="$WATTSTREAM_CACHE/tools"
export UV_CACHE_DIR="$WATTSTREAM_CACHE/uv"

if [[ ! -x $TOOLS/bin/uv ]] || [[ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  say "installing uv $UV_VERSION"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "uv==$UV_VERSION"
fi
[[ -x $VENV/bin/python ]] || "$TOOLS/bin/uv" venv -q --python python3.11 "$VENV"
"$TOOLS/bin/uv" pip sync -q --python "$VENV/bin/python" requirements.lock
"$TOOLS/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .
say "$VENV ready ($("$VENV/bin/python" --version))"

# ECharts for the dashboard, from the npm registry, vendored into the API's static files so the
# dashboard works offline. The tarball is cached; its checksum is npm's published integrity.
ECHARTS_VERSION=5.6.0
VENDOR=api/static/vendor
if [[ ! -f $VENDOR/echarts-$ECHARTS_VERSION.min.js ]]; then
  NPM_DIR="$WATTSTREAM_CACHE/npm"
  mkdir -p "$NPM_DIR" "$VENDOR"
  if [[ ! -f $NPM_DIR/echarts-$ECHARTS_VERSION.tgz ]]; then
    say "fetching echarts $ECHARTS_VERSION from the npm registry"
    (cd "$NPM_DIR" && npm pack "echarts@$ECHARTS_VERSION" --silent >/dev/null) || die "npm pack echarts failed"
  fi
  tar -xzf "$NPM_DIR/echarts-$ECHARTS_VERSION.tgz" -C "$NPM_DIR" package/dist/echarts.min.js
  rm -f "$VENDOR"/echarts-*.min.js
  mv "$NPM_DIR/package/dist/echarts.min.js" "$VENDOR/echarts-$ECHARTS_VERSION.min.js"
  say "vendored echarts $ECHARTS_VERSION into $VENDOR"
fi
