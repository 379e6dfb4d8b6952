"""Shared by the deployment tests: what the services make of a rendered environment.

The environment a deployment gives a container is loaded into that service's own settings
class, so configuration the service cannot read (a list in the wrong format, a bad route)
fails here rather than when the container starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import pytest

from amana_common.settings import ServiceSettings
from gateway.settings import GatewaySettings
from provider.settings import ProviderSettings
from registry.settings import RegistrySettings

# Every service a deployment runs; the tests check that both deployments run exactly these.
SETTINGS: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "provider": ProviderSettings,
    "gateway": GatewaySettings,
}
SERVICES_WITH_DATABASE = {name for name, cls in SETTINGS.items() if cls.has_database}

LoadSettings = Callable[[str, Mapping[str, str]], ServiceSettings]


def env_prefix(service: str) -> str:
    return f"{service.upper().replace('-', '_')}_"


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
