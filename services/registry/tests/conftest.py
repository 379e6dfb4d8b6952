from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.databases import rolled_back_database
from amana_common.testing.plugin import MigratedDatabase
from registry.main import create_registry_app
from registry.settings import RegistrySettings

SERVICE_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
async def registry_database_url(migrated_database: MigratedDatabase) -> str:
    return await migrated_database("registry", SERVICE_DIR)


@pytest.fixture
async def database(registry_database_url: str) -> AsyncIterator[Database]:
    async with rolled_back_database(registry_database_url) as database:
        yield database


@pytest.fixture
def settings(registry_database_url: str, kafka_bootstrap: str) -> RegistrySettings:
    return RegistrySettings(
        database_url=registry_database_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
async def client(
    settings: RegistrySettings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(create_registry_app(settings), database) as client:
        yield client


def household(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "location_code": "KE-047-0101",
        "phone": "+254700000001",
        "members": [
            {
                "given_name": "Amina",
                "family_name": "Otieno",
                "sex": "female",
                "date_of_birth": "1984-03-02",
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": "12345678"}],
            },
            {
                "given_name": "Baraka",
                "family_name": "Otieno",
                "sex": "male",
                "date_of_birth": "2015-07-19",
                "relationship": "child",
                "disability": True,
            },
        ],
    }
    body.update(overrides)
    return body
