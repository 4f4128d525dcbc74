#!/usr/bin/env bash
# Runs once when the timescale/timescaledb container initialises its data directory:
# the same roles and database as deploy/timescaledb.sh creates.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U postgres -d postgres \
  -v owner_pw="$WATTSTREAM_DB_OWNER_PASSWORD" -v app_pw="$WATTSTREAM_DB_APP_PASSWORD" \
  -v api_pw="$WATTSTREAM_DB_API_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE wattstream_owner LOGIN CREATEDB PASSWORD %L', :'owner_pw') \gexec
SELECT format('CREATE ROLE wattstream_app LOGIN PASSWORD %L', :'app_pw') \gexec
SELECT format('CREATE ROLE wattstream_api LOGIN PASSWORD %L', :'api_pw') \gexec
GRANT pg_signal_backend TO wattstream_owner;
\c template1
CREATE EXTENSION IF NOT EXISTS timescaledb;
\c postgres
CREATE DATABASE wattstream OWNER wattstream_owner;
SQL
