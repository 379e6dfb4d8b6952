from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from provider.api import directory, pay_points, providers
from provider.settings import ProviderSettings
from provider.worker import worker_components


def create_provider_app(settings: ProviderSettings | None = None) -> FastAPI:
    return create_app(
        settings or ProviderSettings(),
        [providers, pay_points, directory],
        title="Amana provider",
        description="Payment service providers, their mechanisms, pay points and delivery.",
    )


ENTRY = ServiceEntry(
    name="provider",
    settings=ProviderSettings,
    app=create_provider_app,
    components=worker_components,
)
