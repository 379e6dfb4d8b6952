from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from registry.api import router
from registry.settings import RegistrySettings
from registry.worker import worker_components


def create_registry_app(settings: RegistrySettings | None = None) -> FastAPI:
    return create_app(
        settings or RegistrySettings(),
        [router],
        title="Amana registry",
        description="Beneficiary households, their members and identifiers.",
    )


ENTRY = ServiceEntry(
    name="registry",
    settings=RegistrySettings,
    app=create_registry_app,
    components=worker_components,
)
