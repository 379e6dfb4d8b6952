#!/usr/bin/env bash
# A throwaway local PostgreSQL cluster for development and tests (no Docker).
#
#   deploy/local/pg.sh start|stop|status|url
#
# Environment:
#   AMANA_LOCAL_DIR      state directory (default: <repo>/.local); data in $AMANA_LOCAL_DIR/pg
#   AMANA_PG_PORT        TCP port on 127.0.0.1 (default: 55432)
#   AMANA_DATABASE_URL   use this server instead: start/stop only create the databases on it
#   AMANA_PG_BINDIR      directory holding initdb/pg_ctl (default: found automatically)
#   AMANA_PYTHON         python that has amana_common, to read the databases from the catalog
#
# The superuser is `amana` / `amana` (scram-sha-256 over TCP on loopback only). The cluster is
# tuned for speed, not durability (fsync=off): never keep anything you care about in it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${AMANA_LOCAL_DIR:-$REPO_ROOT/.local}"
PORT="${AMANA_PG_PORT:-55432}"
PG_USER=amana
PG_PASSWORD=amana
PYTHON="${AMANA_PYTHON:-$REPO_ROOT/.venv/bin/python}"
URL="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PORT/postgres"

log() { echo "pg.sh: $*" >&2; }
die() { echo "pg.sh: error: $*" >&2; exit 1; }

mkdir -p "$LOCAL_DIR"
LOCAL_DIR="$(cd "$LOCAL_DIR" && pwd -P)"

# ---------------------------------------------------------------- binaries
find_bindir() {
  local d
  if [[ -n "${AMANA_PG_BINDIR:-}" ]]; then echo "$AMANA_PG_BINDIR"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  fi
  # Newest version first.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  done
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

find_psql() {
  if [[ -n "${BINDIR:-}" && -x "$BINDIR/psql" ]]; then echo "$BINDIR/psql"; return 0; fi
  command -v psql 2>/dev/null
}

# ---------------------------------------------------------------- running as the postgres user
# PostgreSQL refuses to run as root: as root, everything server-side runs as `postgres`.
if [[ "$(id -u)" == 0 ]]; then
  RUN_AS=postgres
  as_pg() { runuser -u "$RUN_AS" -- "$@"; }
else
  RUN_AS="$(id -un)"
  as_pg() { "$@"; }
fi

ensure_pg_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u postgres >/dev/null 2>&1 && return 0
  log "creating system user 'postgres'"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

# Can the server user reach (traverse into) $1?
pg_can_reach() { as_pg test -x "$1" -a -r "$1"; }

# As root, let the postgres user traverse to $1 by adding o+x to the parents that lack it.
open_path_for_pg() {
  local target="$1" p
  [[ "$(id -u)" == 0 ]] || return 0
  p="$target"
  while [[ "$p" != "/" ]]; do
    p="$(dirname "$p")"
    if ! as_pg test -x "$p"; then
      chmod o+x "$p" 2>/dev/null || return 1
    fi
  done
  as_pg test -x "$(dirname "$target")"
}

# Chooses BASE (holding pg/ and pg-run/): $LOCAL_DIR when the server user can get there,
# else a private directory under /tmp (for example when the repo lives on a path that cannot
# be opened up). The unix socket path must also stay under ~100 bytes.
choose_base() {
  local fallback
  fallback="${TMPDIR:-/tmp}/amana-pg-$(printf '%s' "$LOCAL_DIR" | sha1sum | cut -c1-12)"
  BASE="$LOCAL_DIR"
  if [[ -f "$fallback/pg/PG_VERSION" && ! -f "$LOCAL_DIR/pg/PG_VERSION" ]]; then
    BASE="$fallback"
  elif [[ "$(id -u)" == 0 ]] && ! open_path_for_pg "$LOCAL_DIR/pg" ; then
    log "the '$RUN_AS' user cannot reach $LOCAL_DIR; keeping the cluster in $fallback"
    BASE="$fallback"
  elif (( ${#LOCAL_DIR} + 30 > 100 )); then
    log "$LOCAL_DIR is too long for a unix socket path; keeping the cluster in $fallback"
    BASE="$fallback"
  fi
  DATA="$BASE/pg"
  SOCK="$BASE/pg-run"
  LOGFILE="$BASE/pg.log"
}

# Without side effects (for status/stop): where an existing cluster lives.
locate_base() {
  local fallback
  fallback="${TMPDIR:-/tmp}/amana-pg-$(printf '%s' "$LOCAL_DIR" | sha1sum | cut -c1-12)"
  BASE="$LOCAL_DIR"
  if [[ ! -f "$LOCAL_DIR/pg/PG_VERSION" && -f "$fallback/pg/PG_VERSION" ]]; then BASE="$fallback"; fi
  DATA="$BASE/pg"
  SOCK="$BASE/pg-run"
  LOGFILE="$BASE/pg.log"
}

# ---------------------------------------------------------------- cluster
is_running() {
  [[ -f "$DATA/PG_VERSION" ]] || return 1
  as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

init_cluster() {
  local pwfile
  log "initdb in $DATA"
  mkdir -p "$DATA" "$SOCK"
  chmod 700 "$DATA"
  if [[ "$(id -u)" == 0 ]]; then chown "$RUN_AS": "$DATA" "$SOCK"; fi
  # the log file is written by the server user
  touch "$LOGFILE"
  if [[ "$(id -u)" == 0 ]]; then chown "$RUN_AS": "$LOGFILE"; fi
  pwfile="$(mktemp)"
  printf '%s\n' "$PG_PASSWORD" >"$pwfile"
  chmod 644 "$pwfile"
  if ! as_pg "$BINDIR/initdb" -D "$DATA" --username="$PG_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
      --no-instructions >"$BASE/initdb.log" 2>&1; then
    # Older initdb without C.UTF-8 support: retry with the C locale.
    rm -rf "${DATA:?}"/*
    if ! as_pg "$BINDIR/initdb" -D "$DATA" --username="$PG_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C \
        >"$BASE/initdb.log" 2>&1; then
      rm -f "$pwfile"
      cat "$BASE/initdb.log" >&2
      die "initdb failed"
    fi
  fi
  rm -f "$pwfile"
  cat >"$DATA/pg_hba.conf" <<'EOF'
# Throwaway local cluster: unix socket for the server user, password over loopback TCP only.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
EOF
  cat >>"$DATA/postgresql.conf" <<'EOF'

# ---- amana: a throwaway dev/test cluster, tuned for speed, not durability ----
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 1GB
checkpoint_timeout = 30min
autovacuum_naptime = 10s
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_min_messages = warning
log_min_duration_statement = -1
EOF
  if [[ "$(id -u)" == 0 ]]; then chown "$RUN_AS": "$DATA/pg_hba.conf" "$DATA/postgresql.conf"; fi
}

psql_url() { PGCONNECT_TIMEOUT=10 "$PSQL" "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }

# Strips a SQLAlchemy driver suffix (postgresql+asyncpg://) so psql accepts the URL.
plain_url() { sed -E 's#^postgres(ql)?\+[a-z0-9_]+://#postgresql://#' <<<"$1"; }

# The database of every service that has one, from services/catalog.toml.
read_databases() {
  [[ -x "$PYTHON" ]] || { log "$PYTHON not found: run 'make sync' (or set AMANA_PYTHON)"; return 1; }
  local names
  names="$("$PYTHON" -m amana_common.catalog databases)" \
    || { log "cannot read the service catalog (services/catalog.toml)"; return 1; }
  DATABASES=()
  [[ -z "$names" ]] || mapfile -t DATABASES <<<"$names"
}

create_databases() {
  local url="$1" db have
  read_databases || return 1
  PSQL="$(find_psql)" || { log "psql not found: cannot create ${DATABASES[*]}"; return 1; }
  for db in "${DATABASES[@]}"; do
    have="$(psql_url "$url" -tA -c "select 1 from pg_database where datname = '$db'")"
    if [[ "$have" != 1 ]]; then
      psql_url "$url" -c "create database \"$db\"" >/dev/null
      log "created database $db"
    fi
  done
}

start() {
  if [[ -n "${AMANA_DATABASE_URL:-}" ]]; then
    log "using the external server in AMANA_DATABASE_URL (no local cluster started)"
    if ! create_databases "$(plain_url "$AMANA_DATABASE_URL")"; then
      log "warning: could not create the databases on the external server"
    fi
    return 0
  fi
  BINDIR="$(find_bindir)" || die "PostgreSQL server binaries (initdb, pg_ctl) not found: install them (apt-get install -y postgresql) or set AMANA_PG_BINDIR"
  ensure_pg_user
  choose_base
  mkdir -p "$BASE"
  if [[ "$(id -u)" == 0 && "$BASE" != "$LOCAL_DIR" ]]; then chown "$RUN_AS": "$BASE"; chmod 700 "$BASE"; fi
  if is_running; then
    log "already running on 127.0.0.1:$(running_port) (data: $DATA)"
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      die "127.0.0.1:$PORT is taken by another process (another cluster?): set AMANA_PG_PORT"
    fi
    [[ -f "$DATA/PG_VERSION" ]] || init_cluster
    mkdir -p "$SOCK"
    touch "$LOGFILE"
    if [[ "$(id -u)" == 0 ]]; then chown "$RUN_AS": "$SOCK" "$LOGFILE"; fi
    chmod 700 "$SOCK"
    if ! pg_can_reach "$DATA"; then die "the '$RUN_AS' user cannot reach $DATA"; fi
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
        -o "-p $PORT -k $SOCK" start >/dev/null 9>&-; then
      tail -n 30 "$LOGFILE" >&2 || true
      die "PostgreSQL did not start on 127.0.0.1:$PORT (log: $LOGFILE)"
    fi
    log "started on 127.0.0.1:$PORT (data: $DATA)"
  fi
  create_databases "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$(running_port)/postgres" \
    || die "could not create the databases"
}

# The port the running cluster listens on (line 4 of postmaster.pid), else $PORT.
running_port() {
  local p
  p="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
  echo "${p:-$PORT}"
}

stop() {
  if [[ -n "${AMANA_DATABASE_URL:-}" ]]; then
    log "using the external server in AMANA_DATABASE_URL (nothing to stop)"
    return 0
  fi
  BINDIR="$(find_bindir)" || { log "PostgreSQL binaries not found: nothing to stop"; return 0; }
  locate_base
  if is_running; then
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    log "stopped (data kept in $DATA)"
  else
    log "not running"
  fi
}

status() {
  if [[ -n "${AMANA_DATABASE_URL:-}" ]]; then
    echo "external: $AMANA_DATABASE_URL"
    return 0
  fi
  BINDIR="$(find_bindir)" || die "PostgreSQL binaries not found"
  locate_base
  if is_running; then
    echo "running: postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$(running_port)/postgres (data: $DATA)"
  else
    echo "stopped (data: $DATA)"
    return 3
  fi
}

# One start/stop at a time per state directory (parallel test workers call start too). The
# server must not inherit the lock's descriptor (9>&- above), or it would hold the lock forever.
with_lock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCAL_DIR/.pg.lock"
    flock -w 120 9 || die "timed out waiting for $LOCAL_DIR/.pg.lock"
  fi
  "$@"
}

case "${1:-}" in
  start) with_lock start ;;
  stop) with_lock stop ;;
  status) status ;;
  url) if [[ -n "${AMANA_DATABASE_URL:-}" ]]; then echo "$AMANA_DATABASE_URL"; else echo "$URL"; fi ;;
  *) echo "usage: $0 {start|stop|status|url}" >&2; exit 2 ;;
esac
