#!/usr/bin/env bash
# Provision a PostgreSQL server for the test suite on a Debian machine (run as root).
#
# Idempotent: installs the Debian `postgresql` package only if no server binary exists,
# (re)uses the packaged cluster, starts it if down, creates the test role and database.
# stdout carries only `export ...` lines so CI can do: eval "$(bash .ci/postgres.sh)".
# Everything else goes to stderr.
set -euo pipefail

ROLE="${STAMPS_TEST_PG_ROLE:-stamps_test}"
PASSWORD="${STAMPS_TEST_PG_PASSWORD:-stamps_test}"
DATABASE="${STAMPS_TEST_PG_DB:-stamps_test}"
# A second login for the purge tests' "same database under another user" case: no rights of its own
# (each test grants it what it needs in its throwaway database), so the test role needs no CREATEROLE.
ALIAS_ROLE="${STAMPS_TEST_PG_ALIAS_ROLE:-stamps_test_alias}"
ALIAS_PASSWORD="${STAMPS_TEST_PG_ALIAS_PASSWORD:-stamps_test_alias}"

log() { echo "[postgres.sh] $*" >&2; }

find_bindir() {
  # Highest installed major version wins; `sort -V` handles 9.6 < 15 < 16.
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$d" && -x "$d/postgres" ]]; then echo "$d"; fi
}

if [[ "$(id -u)" -ne 0 ]]; then
  log "must run as root (installs packages and manages the cluster as the postgres user)"
  exit 1
fi

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
  log "no PostgreSQL server found; installing from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # policy-rc.d may forbid starting services inside containers; we start the cluster ourselves below.
  apt-get install -y -qq postgresql >&2
  BINDIR="$(find_bindir)"
  if [[ -z "$BINDIR" ]]; then
    log "postgresql installed but no server binary under /usr/lib/postgresql/*/bin"
    exit 1
  fi
fi
VERSION="$(basename "$(dirname "$BINDIR")")"
log "using PostgreSQL $VERSION ($BINDIR)"

# The Debian package creates cluster "main"; recreate it only if someone removed it.
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
  log "creating cluster $VERSION/main"
  pg_createcluster "$VERSION" main >&2
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $3}')"
STATUS="$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}')"
if [[ "$STATUS" != online* ]]; then
  log "starting cluster $VERSION/main on port $PORT"
  pg_ctlcluster "$VERSION" main start >&2
fi

for _ in $(seq 1 60); do
  if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then break; fi
  sleep 0.5
done
if ! "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "server on port $PORT did not become ready"
  exit 1
fi

psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@"; }

# CREATEDB: the tests create and drop throwaway source/target databases per test.
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE \"$ROLE\" LOGIN CREATEDB PASSWORD '$PASSWORD'" >&2
else
  psql_admin -c "ALTER ROLE \"$ROLE\" LOGIN CREATEDB PASSWORD '$PASSWORD'" >&2
fi
# Test data is disposable: skip waiting for WAL flushes, for this role only (cluster stays durable).
psql_admin -c "ALTER ROLE \"$ROLE\" SET synchronous_commit = off" >&2
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]]; then
  log "creating database $DATABASE"
  psql_admin -c "CREATE DATABASE \"$DATABASE\" OWNER \"$ROLE\"" >&2
fi

if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ALIAS_ROLE'")" != "1" ]]; then
  log "creating role $ALIAS_ROLE"
  psql_admin -c "CREATE ROLE \"$ALIAS_ROLE\" LOGIN PASSWORD '$ALIAS_PASSWORD'" >&2
else
  psql_admin -c "ALTER ROLE \"$ALIAS_ROLE\" LOGIN NOCREATEDB NOCREATEROLE PASSWORD '$ALIAS_PASSWORD'" >&2
fi
# Membership lets the test role end the second login's sessions before dropping a test database.
psql_admin -c "GRANT \"$ALIAS_ROLE\" TO \"$ROLE\"" >&2

URL="postgresql+psycopg2://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
ALIAS_URL="postgresql+psycopg2://$ALIAS_ROLE:$ALIAS_PASSWORD@127.0.0.1:$PORT/$DATABASE"
# Prove the URL works over TCP with password auth before handing it out.
if ! PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DATABASE" -tAc "SELECT 1" >/dev/null; then
  log "cannot log in as $ROLE over TCP on port $PORT"
  exit 1
fi
if ! PGPASSWORD="$ALIAS_PASSWORD" psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ALIAS_ROLE" -d "$DATABASE" -tAc "SELECT 1" >/dev/null; then
  log "cannot log in as $ALIAS_ROLE over TCP on port $PORT"
  exit 1
fi
log "ready: $ROLE@127.0.0.1:$PORT/$DATABASE (second login: $ALIAS_ROLE)"
echo "export STAMPS_TEST_PG_URL=$URL"
echo "export STAMPS_TEST_PG_ALIAS_URL=$ALIAS_URL"
