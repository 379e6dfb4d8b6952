"""What `make run` (deploy/local/services.sh) gives the services it starts: the PostgreSQL and
Kafka that pg.sh and kafka.sh serve (moved by AMANA_PG_PORT and AMANA_KAFKA_PORT), and the
development settings that let the PSP sandbox be a provider's API.

The service here is a stand-in: `$AMANA_PYTHON -m probe migrate` records its environment and
`-m probe all --port P` serves /healthz; everything else runs the real Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from amana_common.testing.clients import free_port

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "deploy" / "local" / "services.sh"
STAND_IN = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m probe" ]]; then
  if [[ "$3" == migrate ]]; then env > "$PROBE_ENV"; exit 0; fi
  mkdir -p "$PROBE_DIR" && touch "$PROBE_DIR/healthz"
  exec {python} -m http.server --bind 127.0.0.1 --directory "$PROBE_DIR" "$5"
fi
exec {python} "$@"
"""
INHERITED = (
    "AMANA_DATABASE_URL",
    "AMANA_KAFKA_BOOTSTRAP",
    "PROVIDER_",
    "DISBURSEMENT_",
    "PAYROLL_",
)


def started_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """services.sh start then stop with the stand-in; answers the environment it was given."""
    python = tmp_path / "python"
    python.write_text(STAND_IN.format(python=sys.executable))
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED)}
    env |= {
        "AMANA_PYTHON": str(python),
        "AMANA_LOCAL_DIR": str(tmp_path / "local"),
        "AMANA_SERVICES": f"probe:{free_port()}",
        "PROBE_ENV": str(tmp_path / "probe.env"),
        "PROBE_DIR": str(tmp_path / "serve"),
        **extra,
    }
    try:
        subprocess.run(["bash", str(SERVICES_SH), "start"], env=env, check=True, timeout=60)
    finally:
        subprocess.run(["bash", str(SERVICES_SH), "stop"], env=env, check=True, timeout=60)
    lines = (tmp_path / "probe.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_the_services_use_the_cluster_and_broker_on_the_moved_ports(tmp_path: Path) -> None:
    given = started_environment(tmp_path, AMANA_PG_PORT="56999", AMANA_KAFKA_PORT="59998")
    assert given["AMANA_DATABASE_URL"] == "postgresql://amana:amana@127.0.0.1:56999/postgres"
    assert given["AMANA_KAFKA_BOOTSTRAP"] == "127.0.0.1:59998"


def test_an_external_server_and_broker_are_kept(tmp_path: Path) -> None:
    external = "postgresql://u:p@db.internal:5432/postgres"
    given = started_environment(
        tmp_path, AMANA_DATABASE_URL=external, AMANA_KAFKA_BOOTSTRAP="kafka-1.internal:9092"
    )
    assert given["AMANA_DATABASE_URL"] == external
    assert given["AMANA_KAFKA_BOOTSTRAP"] == "kafka-1.internal:9092"


def test_development_lets_the_psp_sandbox_be_a_providers_api(tmp_path: Path) -> None:
    given = started_environment(tmp_path, DISBURSEMENT_ALLOWED_API_PORTS="443,9443")
    assert given["PROVIDER_ALLOWED_API_HOSTS"] == "127.0.0.1"
    assert given["PROVIDER_ALLOWED_API_PORTS"] == "443,8190"
    assert given["DISBURSEMENT_ALLOWED_API_HOSTS"] == "127.0.0.1"
    assert given["DISBURSEMENT_ALLOWED_API_PORTS"] == "443,9443", "a value given is kept"
    attributes = json.loads(given["PAYROLL_ELIGIBILITY_ATTRIBUTES"])
    assert attributes["pmt_score"] == "number" and attributes["food_insecure"] == "boolean"
    assert given["PAYROLL_SCHEDULER_INTERVAL_S"] == "10"
