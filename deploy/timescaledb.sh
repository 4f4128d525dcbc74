#!/usr/bin/env bash
# PostgreSQL 17 + TimescaleDB (Apache-licensed build) from Debian trixie packages, in a
# debootstrap'd root under the cache, started with chroot and bound to 127.0.0.1 only.
#
#   deploy/timescaledb.sh provision   build the cached root (once; ~1 min, ~800 MB)
#   deploy/timescaledb.sh start       provision if needed, initdb once, start, create roles
#   deploy/timescaledb.sh stop        fast shutdown
#   deploy/timescaledb.sh status      exit 0 when accepting connections
#   deploy/timescaledb.sh logs        follow the server log
#   deploy/timescaledb.sh psql ARGS   psql as the superuser, inside the root
#
# Settings (environment): WATTSTREAM_CACHE, WATTSTREAM_PG_PORT (55432), WATTSTREAM_PG_DATABASE
# (wattstream), WATTSTREAM_DB_OWNER_PASSWORD, WATTSTREAM_DB_APP_PASSWORD, WATTSTREAM_DB_API_PASSWORD,
# WATTSTREAM_DEBIAN_MIRROR (http://deb.debian.org/debian).
SERVICE=timescaledb
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${WATTSTREAM_PG_PORT:-55432}"
PG_DATABASE="${WATTSTREAM_PG_DATABASE:-wattstream}"
OWNER_PASSWORD="${WATTSTREAM_DB_OWNER_PASSWORD:-wattstream-owner-dev}"
APP_PASSWORD="${WATTSTREAM_DB_APP_PASSWORD:-wattstream-app-dev}"
API_PASSWORD="${WATTSTREAM_DB_API_PASSWORD:-wattstream-api-dev}"
MIRROR="${WATTSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_VERSION=1   # bump when the package set below changes
ROOT="$WATTSTREAM_CACHE/trixie-pg17-ts-v$ROOTFS_VERSION"
PGBIN=/usr/lib/postgresql/17/bin
PGDATA=/var/lib/wattstream/pgdata      # inside ROOT
PGLOG=/var/lib/wattstream/postgres.log # inside ROOT

provision_root() {
  [[ -f $ROOT/.wattstream-ready ]] && return 0
  command -v debootstrap >/dev/null || {
    say "installing debootstrap (host package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local tmp="$ROOT.partial"
  rm -rf "$tmp"
  say "debootstrap trixie into $tmp (first run only, about a minute)"
  debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$LOG_DIR/timescaledb-provision.log" 2>&1 \
    || die "debootstrap failed; see $LOG_DIR/timescaledb-provision.log"
  # No daemons may start inside the chroot during install, and no default cluster is wanted.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod +x "$tmp/usr/sbin/policy-rc.d"
  mkdir -p "$tmp/etc/postgresql-common"
  echo 'create_main_cluster = false' >"$tmp/etc/postgresql-common/createcluster.conf"
  say "installing postgresql-17 and postgresql-17-timescaledb in the root"
  mount -t proc proc "$tmp/proc"
  if ! chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
      'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-17 postgresql-17-timescaledb && apt-get clean' \
      >>"$LOG_DIR/timescaledb-provision.log" 2>&1; then
    umount "$tmp/proc"
    die "package install failed; see $LOG_DIR/timescaledb-provision.log"
  fi
  umount "$tmp/proc"
  touch "$tmp/.wattstream-ready"
  mv "$tmp" "$ROOT"
  say "root ready at $ROOT"
}

as_postgres() {  # run a command inside the root as the postgres user
  local uid gid
  uid=$(awk -F: '$1=="postgres"{print $3}' "$ROOT/etc/passwd")
  gid=$(awk -F: '$1=="postgres"{print $4}' "$ROOT/etc/passwd")
  chroot --userspec="$uid:$gid" "$ROOT" /usr/bin/env HOME=/var/lib/postgresql LANG=C.UTF-8 "$@"
}

init_cluster() {
  [[ -f $ROOT$PGDATA/PG_VERSION ]] && return 0
  say "initdb (once)"
  mkdir -p "$ROOT/var/lib/wattstream"
  chown "$(awk -F: '$1=="postgres"{print $3":"$4}' "$ROOT/etc/passwd")" "$ROOT/var/lib/wattstream"
  as_postgres "$PGBIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >>"$LOG_DIR/timescaledb-provision.log"
  cat >>"$ROOT$PGDATA/postgresql.conf" <<CONF

# --- wattstream ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '/var/run/postgresql'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
# durability stays on: the exactly-once effect depends on committed offsets surviving a crash
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
shared_buffers = 1GB
work_mem = 16MB
maintenance_work_mem = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
# the chroot has no /dev/shm mount
dynamic_shared_memory_type = mmap
max_locks_per_transaction = 256
timezone = 'UTC'
log_timezone = 'UTC'
CONF
}

server_running() { port_open 127.0.0.1 "$PG_PORT"; }

start() {
  with_lock timescaledb provision_root
  with_lock timescaledb init_cluster
  if server_running; then say "already running on 127.0.0.1:$PG_PORT"; else
    mkdir -p "$ROOT/var/run/postgresql"
    chown "$(awk -F: '$1=="postgres"{print $3":"$4}' "$ROOT/etc/passwd")" "$ROOT/var/run/postgresql"
    local tries=0
    until as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 start >/dev/null; do
      # the port can still be held for a minute by connections that were closing (e.g. after a
      # load test used thousands of ephemeral ports): that frees itself, so wait and retry
      if (( ++tries < 12 )) && tail -5 "$ROOT$PGLOG" | grep -q "Address already in use"; then
        say "127.0.0.1:$PG_PORT is still held; retrying in 5 s ($tries/11)"
        sleep 5
        continue
      fi
      tail -20 "$ROOT$PGLOG" >&2
      die "postgres did not start"
    done
    ln -sfn "$ROOT$PGLOG" "$LOG_DIR/timescaledb.log"
    say "started on 127.0.0.1:$PG_PORT (log: $LOG_DIR/timescaledb.log)"
  fi
  bootstrap_roles
}

psql_super() { as_postgres "$PGBIN/../bin/psql" -h /var/run/postgresql -p "$PG_PORT" -X -q -v ON_ERROR_STOP=1 "$@"; }

bootstrap_roles() {
  # The owner role owns the schema and runs migrations; the app role (ingest) only reads and
  # writes rows; the API role reads, writes only certificates and keys, and is subject to
  # row-level security by tenant. timescaledb is created in template1 so every database
  # (tests make their own) has it without superuser rights.
  psql_super -d postgres -v owner_pw="$OWNER_PASSWORD" -v app_pw="$APP_PASSWORD" -v api_pw="$API_PASSWORD" \
    -v db="$PG_DATABASE" <<'SQL'
SELECT format('CREATE ROLE wattstream_owner LOGIN CREATEDB PASSWORD %L', :'owner_pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wattstream_owner') \gexec
SELECT format('CREATE ROLE wattstream_app LOGIN PASSWORD %L', :'app_pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wattstream_app') \gexec
SELECT format('CREATE ROLE wattstream_api LOGIN PASSWORD %L', :'api_pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wattstream_api') \gexec
SELECT format('ALTER ROLE wattstream_owner PASSWORD %L', :'owner_pw') \gexec
SELECT format('ALTER ROLE wattstream_app PASSWORD %L', :'app_pw') \gexec
SELECT format('ALTER ROLE wattstream_api PASSWORD %L', :'api_pw') \gexec
-- the owner may end the app role's sessions (dropping a test database, maintenance)
GRANT pg_signal_backend TO wattstream_owner;
\c template1
CREATE EXTENSION IF NOT EXISTS timescaledb;
\c postgres
SELECT format('CREATE DATABASE %I OWNER wattstream_owner', :'db')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

stop() {
  if [[ -f $ROOT$PGDATA/postmaster.pid ]] && server_running; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

status() {
  if server_running; then say "running on 127.0.0.1:$PG_PORT"; else say "not running"; return 3; fi
}

case "${1:-}" in
  provision) with_lock timescaledb provision_root; with_lock timescaledb init_cluster ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  logs) exec tail -F "$LOG_DIR/timescaledb.log" ;;
  psql) shift; psql_super "$@" ;;
  *) echo "usage: $0 {provision|start|stop|restart|status|logs|psql}" >&2; exit 2 ;;
esac
