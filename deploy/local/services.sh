#!/usr/bin/env bash
# Runs every Amana service locally (API + worker in one process each) against the local or
# external PostgreSQL and Kafka.
#
#   deploy/local/services.sh start|stop|status
#
# Logs go to $AMANA_LOCAL_DIR/logs/<service>.log (structured JSON), pids to .../run/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${AMANA_LOCAL_DIR:-$REPO_ROOT/.local}"
PYTHON="${AMANA_PYTHON:-$REPO_ROOT/.venv/bin/python}"
LOGS="$LOCAL_DIR/logs"
RUN="$LOCAL_DIR/run"

log() { echo "services.sh: $*" >&2; }
die() { echo "services.sh: error: $*" >&2; exit 1; }

# service:port, in start order: from services/catalog.toml unless AMANA_SERVICES says otherwise.
[[ -x "$PYTHON" ]] || die "$PYTHON not found: run 'make sync' (or set AMANA_PYTHON)"
if [[ -n "${AMANA_SERVICES:-}" ]]; then
  read -r -a SERVICES <<<"$AMANA_SERVICES"
else
  ORDER="$("$PYTHON" -m amana_common.catalog start-order)" \
    || die "cannot read the service catalog (services/catalog.toml)"
  mapfile -t SERVICES <<<"$ORDER"
fi

is_running() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# The one JWT secret of the local stack: random, generated once, kept in .local/ (never in the
# repository: the services refuse every secret that was ever committed).
jwt_secret() {
  local file="$LOCAL_DIR/jwt-secret"
  if [[ ! -s "$file" ]]; then
    (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$file")
  fi
  cat "$file"
}

# What `make run` gives every service (amana_common.settings reads AMANA_ENVIRONMENT and
# AMANA_JWT_SECRET when a service has no <PREFIX> value of its own): development, the local
# secret, and the gateway's development token endpoint with the published <role>-dev clients.
development_environment() {
  export AMANA_ENVIRONMENT=development GATEWAY_DEV_TOKEN_ENDPOINT=true
  # Where pg.sh and kafka.sh serve (AMANA_PG_PORT and AMANA_KAFKA_PORT move them): without
  # this the services would connect to the default ports, another checkout's cluster.
  AMANA_DATABASE_URL="$("$REPO_ROOT/deploy/local/pg.sh" url)"
  AMANA_KAFKA_BOOTSTRAP="$("$REPO_ROOT/deploy/local/kafka.sh" bootstrap)"
  export AMANA_DATABASE_URL AMANA_KAFKA_BOOTSTRAP
  AMANA_JWT_SECRET="$(jwt_secret)"
  export AMANA_JWT_SECRET
  # The PSP sandbox (http://127.0.0.1:8190) is a provider's API here: the provider service
  # accepts it as a delivery URL and disbursement calls it (`make demo` pays through it).
  local hosts=127.0.0.1 ports=443,8190
  export PROVIDER_ALLOWED_API_HOSTS="${PROVIDER_ALLOWED_API_HOSTS:-$hosts}"
  export PROVIDER_ALLOWED_API_PORTS="${PROVIDER_ALLOWED_API_PORTS:-$ports}"
  export DISBURSEMENT_ALLOWED_API_HOSTS="${DISBURSEMENT_ALLOWED_API_HOSTS:-$hosts}"
  export DISBURSEMENT_ALLOWED_API_PORTS="${DISBURSEMENT_ALLOWED_API_PORTS:-$ports}"
  # Programme rules may name the registry's default eligibility attributes, and a due cycle is
  # generated within 10 s of being due rather than a minute.
  export PAYROLL_ELIGIBILITY_ATTRIBUTES="${PAYROLL_ELIGIBILITY_ATTRIBUTES:-$(default_attributes)}"
  export PAYROLL_SCHEDULER_INTERVAL_S="${PAYROLL_SCHEDULER_INTERVAL_S:-10}"
}

# {"pmt_score": "number", ...}: the types of the registry's default attribute schema.
default_attributes() {
  "$PYTHON" - "$REPO_ROOT/services/registry/src/registry/reference/attributes.schema.json" <<'PY'
import json, sys
properties = json.load(open(sys.argv[1]))["properties"]
print(json.dumps({name: spec["type"] for name, spec in properties.items()}))
PY
}

wait_healthy() {
  local name="$1" port="$2" i
  for ((i = 0; i < 60; i++)); do
    if "$PYTHON" - "$port" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
PY
    is_running "$name" || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    sleep 0.5
  done
  die "$name did not answer on port $port within 30 s (log: $LOGS/$name.log)"
}

start() {
  mkdir -p "$LOGS" "$RUN"
  development_environment
  local entry name port
  for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    port="${entry##*:}"
    if is_running "$name"; then
      log "$name already running (pid $(cat "$RUN/$name.pid"))"
      continue
    fi
    "$PYTHON" -m "$name" migrate >>"$LOGS/$name.log" 2>&1 \
      || { tail -n 30 "$LOGS/$name.log" >&2; die "$name migrations failed"; }
    nohup "$PYTHON" -m "$name" all --port "$port" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    wait_healthy "$name" "$port"
    log "$name on http://127.0.0.1:$port (docs: /docs, log: $LOGS/$name.log)"
  done
}

stop() {
  local entry name pid i
  for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    if ! is_running "$name"; then rm -f "$RUN/$name.pid"; continue; fi
    pid="$(cat "$RUN/$name.pid")"
    kill "$pid"
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
    log "$name stopped"
  done
}

status() {
  local entry name
  for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    if is_running "$name"; then echo "$name: running on port ${entry##*:}"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
