"""The services under test, one at a time, each served on loopback against its own database."""

from collections.abc import AsyncIterator, Iterator

import pytest

from amana_common.catalog import load_catalog
from amana_common.testing.contract import Served, contract_database_urls, served_service
from amana_common.testing.plugin import MigratedDatabase


@pytest.fixture(scope="session")
async def database_urls(migrated_database: MigratedDatabase) -> AsyncIterator[dict[str, str]]:
    async for urls in contract_database_urls(migrated_database):
        yield urls


@pytest.fixture(params=load_catalog().names())
def served(
    request: pytest.FixtureRequest, database_urls: dict[str, str], kafka_bootstrap: str
) -> Iterator[Served]:
    with served_service(request.param, database_urls, kafka_bootstrap) as service:
        yield service
