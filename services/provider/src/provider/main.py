from fastapi import FastAPI

from amana_common.app import create_app
from provider.api import directory, pay_points, providers
from provider.settings import ProviderSettings


def create_provider_app(settings: ProviderSettings | None = None) -> FastAPI:
    return create_app(
        settings or ProviderSettings(),
        [providers, pay_points, directory],
        title="Amana provider",
        description="Payment service providers, their mechanisms, pay points and delivery.",
    )
