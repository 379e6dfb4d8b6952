"""Shared by the deployment tests: what the services make of a rendered environment.

The environment a deployment gives a container is loaded into that service's own settings
class, so configuration the service cannot read (a list in the wrong format, a bad route)
fails here rather than when the container starts. The services are those of the catalog.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from amana_common.catalog import load_catalog, service_entry
from amana_common.settings import ServiceSettings

ENSURE_HELM = Path(__file__).resolve().parents[2] / "deploy" / "tools" / "ensure-helm.sh"
CATALOG = load_catalog()
# Every service a deployment runs; the tests check that both deployments run exactly these.
SETTINGS: dict[str, Callable[[], ServiceSettings]] = {
    service.name: service_entry(service.name).settings for service in CATALOG.services
}
SERVICES_WITH_DATABASE = {service.name for service in CATALOG.with_database()}

LoadSettings = Callable[[str, Mapping[str, str]], ServiceSettings]


def env_prefix(service: str) -> str:
    """The prefix of a service by its name, or by its name in a deployment (`psp-sandbox`)."""
    return CATALOG.service(service.replace("-", "_")).prefix


@pytest.fixture
def load_settings(monkeypatch: pytest.MonkeyPatch) -> LoadSettings:
    """`load_settings("gateway", environment)`: the service's settings from exactly that
    environment (the test process's own AMANA_* and <PREFIX>* variables are removed)."""

    def load(service: str, environment: Mapping[str, str]) -> ServiceSettings:
        for name in list(os.environ):
            if name.startswith(("AMANA_", env_prefix(service))):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return SETTINGS[service]()

    return load


@pytest.fixture(scope="session")
def helm() -> str:
    result = subprocess.run(
        ["bash", str(ENSURE_HELM)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot obtain helm via {ENSURE_HELM}:\n{result.stderr}")
    path = result.stdout.strip()
    assert Path(path).is_file(), f"ensure-helm.sh printed {path!r}, which is not a file"
    return path
