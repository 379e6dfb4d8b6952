"""App factory: lifespan-owned database, health, readiness, metrics, problem+json, request ids,
and a server span per request when tracing is on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from amana_common.audit import AuditMiddleware
from amana_common.auth import TokenVerifier, public
from amana_common.db import service_database
from amana_common.errors import (
    UnexpectedErrorMiddleware,
    document_shared_problems,
    install_problem_handlers,
    problem_response,
)
from amana_common.kafka import kafka_connection, kafka_is_reachable
from amana_common.limits import BodySizeLimitMiddleware
from amana_common.observability import RequestContextMiddleware, configure_logging
from amana_common.outbox_admin import outbox_admin_router
from amana_common.settings import ServiceSettings
from amana_common.tracing import setup_tracing, trace_requests

log = logging.getLogger("amana.app")

READINESS_TIMEOUT_S = 3.0

ExtraLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
ReadinessCheck = Callable[[FastAPI], Awaitable[dict[str, Any]]]


def create_app(
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    *,
    title: str,
    description: str = "",
    uses_database: bool = True,
    extra_lifespan: ExtraLifespan | None = None,
    version: str = "0.1.0",
    readiness: ReadinessCheck | None = None,
    builtin_docs: bool = True,
    limit_bodies: bool = True,
    streamed_paths: tuple[str, ...] = (),
) -> FastAPI:
    """The app of every service. `readiness` adds checks to /readyz; `builtin_docs=False` and
        `limit_bodies=False` are for the gateway, which serves a merged OpenAPI and limits bodies
        per route while it streams them. `streamed_paths`: path prefixes whose routes read their
    body as a stream and bound it themselves (bulk uploads), exempt from the body limit."""
    configure_logging(settings.log_level)
    tracing = setup_tracing(settings)  # before the lifespan's engine: it is instrumented

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = service_database(settings) if uses_database else None
        app.state.database = database
        try:
            if extra_lifespan is not None:
                async with extra_lifespan(app):
                    yield
            else:
                yield
        finally:
            if database is not None:
                await database.dispose()

    docs_urls: dict[str, Any] = (
        {} if builtin_docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    )
    app = FastAPI(
        title=title, description=description, version=version, lifespan=lifespan, **docs_urls
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    install_problem_handlers(app)
    _document_shared_problems(app)
    if limit_bodies:
        app.add_middleware(
            BodySizeLimitMiddleware,
            max_bytes=settings.max_body_bytes,
            streamed_paths=streamed_paths,
        )
    app.add_middleware(UnexpectedErrorMiddleware)  # inside the request context: ids in 500s
    app.add_middleware(AuditMiddleware, service=settings.service_name)
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    app.include_router(health_router(uses_database, readiness))
    if uses_database:
        app.include_router(outbox_admin_router())
    for router in routers:
        app.include_router(router)
    if tracing is not None:
        trace_requests(app, tracing)
    return app


def _document_shared_problems(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_shared_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def health_router(uses_database: bool, readiness: ReadinessCheck | None) -> APIRouter:
    router = APIRouter(tags=["operations"], dependencies=[public("operations probes")])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: the database answers", response_model=None)
    async def readyz(request: Request) -> Response:
        checks = await readiness_checks(request.app, uses_database)
        if readiness is not None:
            checks.update(await readiness(request.app))
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failed = ", ".join(name for name, value in checks.items() if value != "ok")
        response = problem_response(503, "unavailable", f"not ready: {failed}")
        response.headers["Retry-After"] = "5"
        return response

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def kafka_readiness(app: FastAPI) -> dict[str, Any]:
    """A readiness check for what needs the broker to do its work (a worker), never for an
    API: its writes go to the outbox whatever the broker does."""
    settings: ServiceSettings = app.state.settings
    reachable = await kafka_is_reachable(kafka_connection(settings), READINESS_TIMEOUT_S)
    return {"kafka": "ok" if reachable else "unavailable"}


async def readiness_checks(app: FastAPI, uses_database: bool) -> dict[str, Any]:
    """The database only: a Kafka outage delays events (the outbox keeps them, relay lag is a
    metric) but must not take the API out of its load balancer."""
    checks: dict[str, Any] = {}
    if uses_database:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                async with app.state.database.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            log.warning("readiness: database check failed: %r", error)
            checks["database"] = "unavailable"
    return checks
