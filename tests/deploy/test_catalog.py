"""services/catalog.toml is the one source: the files generated from it are up to date, and
what reads it (the gateway, topic creation, the local scripts) and the services' own code agree
with it."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from amana_common.catalog import CatalogService, entry_disagreements, repository_root
from amana_common.catalog_files import generated_files
from amana_common.topics import amana_topics
from amana_contracts.catalog import EVENTS
from gateway.settings import local_routes

from .conftest import CATALOG

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATED = generated_files(CATALOG, REPO_ROOT)


def test_the_catalog_is_the_checkouts() -> None:
    assert repository_root() == REPO_ROOT


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_generated_file_matches_the_catalog(path: Path) -> None:
    assert path.read_text() == GENERATED[path], (
        f"{path.relative_to(REPO_ROOT)} is stale: run `make catalog`"
    )


def test_every_service_folder_is_in_the_catalog() -> None:
    folders = {p.parent.name for p in (REPO_ROOT / "services").glob("*/pyproject.toml")}
    assert folders == set(CATALOG.names())


def test_every_service_agrees_with_the_catalog() -> None:
    """Name, env prefix, port, database and worker of each service's ENTRY and settings."""
    assert entry_disagreements(CATALOG) == []


def test_topics_are_the_catalogs() -> None:
    published = CATALOG.published_topics()
    assert {"registry.events", "provider.events"} <= set(published)
    assert sorted(amana_topics()) == sorted(published + [f"{t}.dlq" for t in published])


def test_the_services_that_publish_are_those_with_event_contracts() -> None:
    """Contracts may come before their service; a service publishes when it has contracts."""
    for service in CATALOG.services:
        assert bool(service.publishes) == (service.name in EVENTS), service.name


def test_gateway_default_routes_are_the_catalogs_on_loopback() -> None:
    expected = {
        route.prefix: (service.name, f"http://127.0.0.1:{service.port}", route.upstream_prefix)
        for service in CATALOG.routed()
        for route in service.routes
    }
    assert {
        route.prefix: (route.service, route.upstream, route.upstream_prefix)
        for route in local_routes()
    } == expected


def test_adding_a_service_needs_no_edit_of_the_root_pyproject() -> None:
    """The services are workspace members by glob and installed with --all-packages."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "services/*" in root["tool"]["uv"]["workspace"]["members"]
    named = set(root["project"]["dependencies"]) | set(root["tool"]["uv"]["sources"])
    assert not named & {f"amana-{service.slug}" for service in CATALOG.services}
    assert "services/*/src" in root["tool"]["ruff"]["src"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "--all-packages" in makefile
    assert "amana_common.catalog" in makefile


def test_the_image_holds_the_catalog() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "COPY services /app/services" in dockerfile
    assert "AMANA_CATALOG=/app/services/catalog.toml" in dockerfile
    assert "--all-packages" in dockerfile


def test_local_scripts_run_the_catalogs_services(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "local" / "services.sh"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("AMANA_SERVICES", "AMANA_CATALOG")},
            "AMANA_LOCAL_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name}: stopped" for name in CATALOG.names()]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"outbound": {"worker": [443]}}, "no worker"),
        ({"outbound": {"api": []}}, "TCP ports"),
        ({"worker": True, "database": True, "outbound": {"cron": [443]}}, "outbound"),
        ({"secret_env": {"secrets_key": "required"}}, "setting name"),
        ({"secret_env": {"SECRETS_KEY": "maybe"}}, "secret_env"),
    ],
)
def test_the_catalog_refuses_outbound_ports_and_secret_settings_that_cannot_apply(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CatalogService.model_validate({"name": "payments", "port": 8123, **entry})


def test_a_services_secret_settings_are_keys_of_the_deployments_secret() -> None:
    service = CatalogService(name="psp_sandbox", port=8190, secret_env={"API_KEY": "optional"})
    assert service.secret_key("API_KEY") == "psp-sandbox-api-key"
