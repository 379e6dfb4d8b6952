from fastapi import FastAPI

from amana_common.app import create_app
from registry.api import router
from registry.settings import RegistrySettings


def create_registry_app(settings: RegistrySettings | None = None) -> FastAPI:
    return create_app(
        settings or RegistrySettings(),
        [router],
        title="Amana registry",
        description="Beneficiary households, their members and identifiers.",
    )
