from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.service import bearer, committing_fixtures, service_fixtures
from psp_sandbox.main import create_psp_sandbox_app
from psp_sandbox.settings import SandboxSettings

from .harness import Sandbox, sandbox_running
from .support import fast_settings

SERVICE_DIR = Path(__file__).resolve().parents[1]

database_url, database, settings, client = service_fixtures(
    "psp_sandbox", SERVICE_DIR, SandboxSettings, create_psp_sandbox_app
)


committed_database, committed_client = committing_fixtures(
    "psp_sandbox", SERVICE_DIR, SandboxSettings, create_psp_sandbox_app
)


@pytest.fixture
def committing_url(committed_database: Database) -> str:
    """The URL of the database whose sessions commit: the worker's transactions are real."""
    return committed_database.engine.url.render_as_string(hide_password=False)


@pytest.fixture
async def live_client(
    committing_url: str, committed_database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app on the committing database that takes batches of thousands."""
    app_settings = fast_settings(committing_url)
    async with service_client(create_psp_sandbox_app(app_settings), committed_database) as http:
        http.headers.update(bearer(app_settings, Role.admin))
        yield http


@pytest.fixture
async def sandbox(
    live_client: httpx.AsyncClient, committed_database: Database, committing_url: str
) -> AsyncIterator[Sandbox]:
    """A sandbox on the committing database, its worker running, posting to a receiver."""
    async with sandbox_running(live_client, committed_database, committing_url) as running:
        yield running
