from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.databases import committing_database, truncate_all
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import bearer
from registry.main import create_registry_app
from registry.settings import RegistrySettings

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
async def registry_url(migrated_database: MigratedDatabase) -> str:
    """A registry database that really commits, so the relay and consumers see the rows."""
    return await migrated_database("registry", REPO / "services" / "registry", "integration")


@pytest.fixture
async def registry_db(registry_url: str) -> AsyncIterator[Database]:
    async with committing_database(registry_url) as database:
        await truncate_all(database, "outbox", "processed_events", "idempotency_keys", "households")
        yield database


@pytest.fixture
async def registry_client(
    registry_url: str, registry_db: Database, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    async with service_client(create_registry_app(settings), registry_db) as client:
        client.headers.update(bearer(settings, Role.registrar))
        yield client


def household(location_code: str = "KE-047-0101") -> dict[str, object]:
    return {
        "location_code": location_code,
        "members": [
            {
                "given_name": "Wanjiku",
                "family_name": "Kamau",
                "sex": "female",
                "date_of_birth": "1979-11-30",
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": "27118043"}],
            },
            {
                "given_name": "Juma",
                "family_name": "Kamau",
                "sex": "male",
                "date_of_birth": "2012-02-14",
                "relationship": "child",
            },
        ],
    }
