from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from gateway import service
from gateway.api import docs_router, mount_docs_assets, proxy_router, token_router
from gateway.paths import RefuseAmbiguousPaths
from gateway.proxy import UpstreamProxy
from gateway.ratelimit import InFlightLimiter, RateLimiter
from gateway.service import OpenApiMerger
from gateway.settings import GatewaySettings


def create_gateway_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def upstream_clients(app: FastAPI) -> AsyncIterator[None]:
        proxy = UpstreamProxy(settings)
        control = httpx.AsyncClient(timeout=httpx.Timeout(5.0))  # readiness and docs only
        app.state.proxy = proxy
        app.state.control_client = control
        app.state.openapi_merger = OpenApiMerger(settings, control)
        try:
            yield
        finally:
            await proxy.close()
            await control.aclose()

    async def upstreams_ready(app: FastAPI) -> dict[str, Any]:
        return await service.upstream_readiness(settings, app.state.control_client)

    routers = [docs_router(), proxy_router(settings)]
    if settings.dev_token_endpoint:  # refused in production by the settings
        routers.insert(0, token_router())
    app = create_app(
        settings,
        routers,
        title="Amana gateway",
        description="Routing, authentication, rate limits and one OpenAPI for every service.",
        uses_database=False,
        extra_lifespan=upstream_clients,
        readiness=upstreams_ready,
        builtin_docs=False,
        limit_bodies=False,
    )
    mount_docs_assets(app)
    # Innermost, so its refusals carry the request id: the last check before routing.
    app.user_middleware.append(Middleware(RefuseAmbiguousPaths))
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.in_flight = InFlightLimiter(settings.max_concurrent_per_client)
    app.state.clients = settings.clients or (
        service.development_clients() if settings.environment == "development" else []
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
            expose_headers=["Location", "ETag", "X-Request-Id", "Retry-After"],
        )
    return app


ENTRY = ServiceEntry(
    name="gateway", settings=GatewaySettings, app=create_gateway_app, components=None
)
