"""The fixtures every service's tests need, declared once.

A service's tests/conftest.py is then:

    database_url, database, settings, client = service_fixtures(
        "provider", SERVICE_DIR, ProviderSettings, create_provider_app
    )

giving `database_url` (a migrated `amana_<service>_test`), `database` (rolled back after each
test), `settings` (pointing at them and at the test broker) and `client` (HTTP, in-process).

A rolled-back database joins every session to one connection through savepoints: it cannot
show that a request's writes are atomic, nor how two requests interleave. Tests that claim
either add

    committed_database, committed_client = committing_fixtures(
        "provider", SERVICE_DIR, ProviderSettings, create_provider_app
    )

giving `committed_database` (a migrated `amana_<service>_committed` whose sessions commit for
real, each on its own connection, emptied before each test) and `committed_client` (HTTP,
in-process, on it; run requests concurrently with `asyncio.gather`, each gets its own session).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from amana_common.auth import Role, issue_token
from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import service_client
from amana_common.testing.databases import (
    committing_database,
    rolled_back_database,
    truncate_all,
)
from amana_common.testing.plugin import MigratedDatabase

S = TypeVar("S", bound=ServiceSettings)

TEST_BODY_LIMIT = 64 * 1024


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as wrappers)."""

    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif (original := getattr(route, "original_router", None)) is not None:
                yield from walk(original.routes)

    return list(walk(app.routes))


def bearer(
    settings: ServiceSettings, *roles: Role | str, provider_id: UUID | None = None
) -> dict[str, str]:
    """An Authorization header with a token for `roles`, as the gateway would issue it."""
    token = issue_token(settings, f"test-{'-'.join(roles)}", roles, provider_id=provider_id)
    return {"Authorization": f"Bearer {token}"}


def service_fixtures(
    service: str,
    service_dir: Path,
    settings_class: Callable[..., S],
    app_factory: Callable[[S], FastAPI],
) -> tuple[Any, Any, Any, Any]:
    @pytest.fixture(scope="session", name="database_url")
    async def database_url(migrated_database: MigratedDatabase) -> str:
        return await migrated_database(service, service_dir)

    @pytest.fixture(name="database")
    async def database(database_url: str) -> AsyncIterator[Database]:
        async with rolled_back_database(database_url) as rolled_back:
            yield rolled_back

    @pytest.fixture(name="settings")
    def settings(database_url: str, kafka_bootstrap: str) -> S:
        return settings_class(
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            environment="test",
            max_body_bytes=TEST_BODY_LIMIT,
        )

    @pytest.fixture(name="client")
    async def client(settings: S, database: Database) -> AsyncIterator[httpx.AsyncClient]:
        """Authenticated as an admin; pass `headers=bearer(settings, role)` to act as another."""
        async with service_client(app_factory(settings), database) as http:
            http.headers.update(bearer(settings, Role.admin))
            yield http

    return database_url, database, settings, client


def committing_fixtures(
    service: str,
    service_dir: Path,
    settings_class: Callable[..., S],
    app_factory: Callable[[S], FastAPI],
) -> tuple[Any, Any]:
    @pytest.fixture(name="committed_database")
    async def committed_database(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
        url = await migrated_database(service, service_dir, "committed")
        async with committing_database(url) as database:
            await truncate_all(database)
            yield database

    @pytest.fixture(name="committed_client")
    async def committed_client(
        committed_database: Database, kafka_bootstrap: str
    ) -> AsyncIterator[httpx.AsyncClient]:
        """Authenticated as an admin, like `client`."""
        settings = settings_class(
            database_url=committed_database.engine.url.render_as_string(hide_password=False),
            kafka_bootstrap=kafka_bootstrap,
            environment="test",
            max_body_bytes=TEST_BODY_LIMIT,
        )
        async with service_client(app_factory(settings), committed_database) as http:
            http.headers.update(bearer(settings, Role.admin))
            yield http

    return committed_database, committed_client
