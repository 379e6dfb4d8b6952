"""Adding a service, proved on a copy of the repository: `make service NAME=sample PORT=...`
(the catalog's `new` command), the catalog entry given its routes and topics, `make catalog`,
`uv lock`.

Then: the files touched outside services/sample/ are the catalog entry, uv.lock and the
generated files, nothing else; and every catalog-driven piece picks the service up, the skeleton
included (its own tests pass, and deploy/local/services.sh migrates and runs it against the
real PostgreSQL and Kafka).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from amana_common.catalog import main as catalog_main
from amana_common.testing.clients import free_port
from amana_common.topics import amana_topics
from gateway.settings import local_routes

REPO_ROOT = Path(__file__).resolve().parents[2]
JWKS_URL = "https://idp.example.org/certs"
NAME, PORT = "sample", 8199
# What the edited catalog entry says beyond the skeleton's defaults.
ENTRY = """[services.sample]
description = "a throwaway service"
port = 8199
database = true
worker = true
publishes = ["sample.events"]
consumes = ["registry.events"]
routes = [
  { prefix = "/samples", upstream_prefix = "/samples", timeout_s = 5 },
  { prefix = "/sample-hooks", public_paths = ["^/providers/[^/]+$"] },
]

"""
# Outside services/sample/: the entry, what `make catalog` generates, and uv.lock, which
# `uv lock` gives the new workspace member.
EXPECTED_OUTSIDE = {
    "services/catalog.toml",
    "uv.lock",
    "docker-compose.yml",
    "deploy/compose/postgres-init.sql",
    "deploy/compose/dev.env",
    "deploy/helm/amana/values.yaml",
}
COPY_IGNORES = shutil.ignore_patterns(".git", ".venv", ".local", "__pycache__", ".*_cache")


@dataclass
class Added:
    root: Path
    changed: set[str]
    catalog: Path

    def env(self, **extra: str) -> dict[str, str]:
        """An environment in which the copy's catalog is the catalog and `sample` imports."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AMANA_", "SAMPLE_"))}
        return (
            base
            | {
                "AMANA_CATALOG": str(self.catalog),
                "PYTHONPATH": str(self.root / "services" / NAME / "src"),
                "AMANA_LOCAL_DIR": str(self.root / ".local"),
                "AMANA_PYTHON": sys.executable,
            }
            | extra
        )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: int = 120) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def uv_command() -> list[str]:
    """uv as the Makefile finds it: on the PATH, else the module pip installed."""
    uv = shutil.which("uv")
    return [uv] if uv else ["python3", "-m", "uv"]


def catalog_command(added: Added, *args: str) -> str:
    command = [sys.executable, "-m", "amana_common.catalog", "--catalog", str(added.catalog)]
    return run([*command, *args], added.env(), added.root)


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> Added:
    root = tmp_path_factory.mktemp("checkout") / "amana"
    shutil.copytree(REPO_ROOT, root, ignore=COPY_IGNORES)
    before = snapshot(root)
    catalog = root / "services" / "catalog.toml"
    copy = Added(root, set(), catalog)
    catalog_command(copy, "new", NAME, "--port", str(PORT), "--description", "a throwaway one")
    text = catalog.read_text()
    start = text.index(f"[services.{NAME}]")
    end = text.index("[services.", start + 1)
    catalog.write_text(text[:start] + ENTRY + text[end:])
    catalog_command(copy, "generate")
    run([*uv_command(), "lock", "--offline", "--quiet"], copy.env(), root)
    after = snapshot(root)
    copy.changed = {p for p in after.keys() | before.keys() if before.get(p) != after.get(p)}
    return copy


def test_only_the_catalog_and_generated_files_change_outside_the_service(added: Added) -> None:
    outside = {path for path in added.changed if not path.startswith(f"services/{NAME}/")}
    assert outside == EXPECTED_OUTSIDE
    assert f"services/{NAME}/src/{NAME}/main.py" in added.changed
    assert 'name = "amana-sample"' in (added.root / "uv.lock").read_text()


def test_the_catalog_check_passes_with_the_new_service(added: Added) -> None:
    """Generated files up to date; ENTRY and settings agree with the entry."""
    catalog_command(added, "check")


def test_what_reads_the_catalog_finds_the_service(
    added: Added, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMANA_CATALOG", str(added.catalog))

    def answer(command: str) -> list[str]:
        assert catalog_main([command]) == 0
        return capsys.readouterr().out.split()

    assert answer("start-order")[-2:] == [f"{NAME}:{PORT}", "gateway:8000"]
    assert "amana_sample" in answer("databases")
    assert NAME in answer("mypy-packages")
    assert {"sample.events", "sample.events.dlq"} <= set(amana_topics())
    routes = {route.prefix: route for route in local_routes()}
    assert routes["/samples"].model_dump() | {"max_body_bytes": 0} == {
        "prefix": "/samples",
        "service": NAME,
        "upstream": f"http://127.0.0.1:{PORT}",
        "upstream_prefix": "/samples",
        "timeout_s": 5,
        "max_body_bytes": 0,
        "public_paths": [],
    }
    assert routes["/sample-hooks"].public_paths == ["^/providers/[^/]+$"]
    status = run(
        ["bash", str(added.root / "deploy" / "local" / "services.sh"), "status"],
        added.env(),
        added.root,
    )
    assert "sample: stopped" in status.splitlines()


def test_compose_runs_and_routes_to_the_service(added: Added) -> None:
    compose = yaml.safe_load((added.root / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    for role in ("migrate", "api", "worker"):
        assert services[f"{NAME}-{role}"]["command"] == [NAME, role]
    environment = services[f"{NAME}-api"]["environment"]
    assert environment["SAMPLE_PORT"] == "8000"
    assert environment["SAMPLE_KAFKA_SECURITY_PROTOCOL"].startswith("${AMANA_KAFKA_")
    depends = services[f"{NAME}-api"]["depends_on"]
    assert depends[f"{NAME}-migrate"]["condition"] == "service_completed_successfully"
    gateway = services["gateway-api"]
    routes = {r["prefix"]: r for r in json.loads(gateway["environment"]["GATEWAY_ROUTES"])}
    assert routes["/samples"]["upstream"] == "http://sample-api:8000"
    assert routes["/sample-hooks"]["public_paths"] == ["^/providers/[^/]+$"]
    assert NAME in json.loads(gateway["environment"]["GATEWAY_ACTIVE_SERVICES"])
    assert gateway["depends_on"]["sample-api"]["condition"] == "service_healthy"
    init = (added.root / "deploy" / "compose" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE amana_sample;" in init
    dev_env = (added.root / "deploy" / "compose" / "dev.env").read_text()
    assert "SAMPLE_DATABASE_URL=" in dev_env
    assert "SAMPLE_JWT_SECRET=${AMANA_JWT_SECRET}" in dev_env


def test_the_helm_chart_deploys_and_routes_to_the_service(added: Added, helm: str) -> None:
    chart = added.root / "deploy" / "helm" / "amana"
    # The chart renders only with a way to verify tokens: an example identity provider.
    given = ["--set", f"global.jwksUrl={JWKS_URL}", "--set", "secrets.existingSecret=amana"]
    rendered = run([helm, "template", "amana", str(chart), *given], added.env(), added.root)
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {
        ("Deployment", "amana-sample-api"),
        ("Deployment", "amana-sample-worker"),
        ("Service", "amana-sample-api"),
        ("Job", "amana-sample-migrate"),
        ("ConfigMap", "amana-sample"),
    } <= names
    gateway = next(
        doc
        for doc in docs
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "amana-gateway"
    )
    routes = {r["prefix"]: r for r in json.loads(gateway["data"]["GATEWAY_ROUTES"])}
    assert routes["/samples"]["upstream"] == "http://amana-sample-api:8000"
    assert routes["/samples"]["timeout_s"] == 5
    assert routes["/sample-hooks"]["public_paths"] == ["^/providers/[^/]+$"]
    run([helm, "lint", "--strict", str(chart), *given], added.env(), added.root)


@pytest.fixture
def sample_databases(postgres_server_url: str) -> Any:
    yield
    with psycopg.connect(postgres_server_url, autocommit=True) as connection:
        for database in ("amana_sample", "amana_sample_test"):
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_skeleton_passes_its_own_tests(
    added: Added, postgres_server_url: str, kafka_bootstrap: str, sample_databases: None
) -> None:
    env = added.env(AMANA_DATABASE_URL=postgres_server_url, AMANA_KAFKA_BOOTSTRAP=kafka_bootstrap)
    tests = added.root / "services" / NAME / "tests"
    output = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        env,
        added.root,
        timeout=300,
    )
    assert "2 passed" in output


def test_make_run_creates_its_database_migrates_and_serves_it(
    added: Added, postgres_server_url: str, kafka_bootstrap: str, sample_databases: None
) -> None:
    local = added.root / "deploy" / "local"
    port = free_port()
    env = added.env(
        AMANA_DATABASE_URL=postgres_server_url,
        AMANA_KAFKA_BOOTSTRAP=kafka_bootstrap,
        AMANA_SERVICES=f"{NAME}:{port}",
        SAMPLE_ENVIRONMENT="test",
        SAMPLE_JWT_SECRET="adding-a-service-test-secret-" + "x" * 16,
    )
    run(["bash", str(local / "pg.sh"), "start"], env, added.root)
    with psycopg.connect(postgres_server_url) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = 'amana_sample'")
        assert found.fetchone() is not None, "pg.sh did not create the catalog's database"
    try:
        run(["bash", str(local / "services.sh"), "start"], env, added.root, timeout=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert json.loads(answer.read())["status"] == "ready"
    finally:
        run(["bash", str(local / "services.sh"), "stop"], env, added.root)
    sample_url = make_url(postgres_server_url).set(database="amana_sample")
    with psycopg.connect(sample_url.render_as_string(hide_password=False)) as connection:
        tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"outbox", "processed_events", "idempotency_keys", "alembic_version"} <= tables
