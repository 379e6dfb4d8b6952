from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.databases import clear_service_tables, committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import bearer, service_fixtures
from psp_sandbox.main import create_psp_sandbox_app
from psp_sandbox.models import Base
from psp_sandbox.settings import SandboxSettings

from .harness import Sandbox, sandbox_running
from .support import fast_settings

SERVICE_DIR = Path(__file__).resolve().parents[1]

database_url, database, settings, client = service_fixtures(
    "psp_sandbox", SERVICE_DIR, SandboxSettings, create_psp_sandbox_app
)


@pytest.fixture(scope="session")
async def committing_url(migrated_database: MigratedDatabase) -> str:
    """A sandbox database that really commits: the worker's transactions are real."""
    return await migrated_database("psp_sandbox", SERVICE_DIR, "committing")


@pytest.fixture
async def committed(committing_url: str) -> AsyncIterator[Database]:
    async with committing_database(committing_url) as db:
        await clear_service_tables(db, Base.metadata)
        yield db


@pytest.fixture
async def live_client(committing_url: str, committed: Database) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app on the committing database."""
    app_settings = fast_settings(committing_url)
    async with service_client(create_psp_sandbox_app(app_settings), committed) as http:
        http.headers.update(bearer(app_settings, Role.admin))
        yield http


@pytest.fixture
async def sandbox(
    live_client: httpx.AsyncClient, committed: Database, committing_url: str
) -> AsyncIterator[Sandbox]:
    """A sandbox on the committing database, its worker running, posting to a receiver."""
    async with sandbox_running(live_client, committed, committing_url) as running:
        yield running
