from collections.abc import AsyncIterator

import pytest

from amana_common.db import Database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import service_fixtures
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings

from .kafka_setup import SERVICE_DIR, worker_surroundings

database_url, database, settings, client = service_fixtures(
    "analytics", SERVICE_DIR, AnalyticsSettings, create_analytics_app
)


@pytest.fixture
async def worker(
    request: pytest.FixtureRequest, migrated_database: MigratedDatabase, kafka_bootstrap: str
) -> AsyncIterator[tuple[AnalyticsSettings, Database]]:
    """The surroundings, with a database named after the test module."""
    purpose = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    async with worker_surroundings(migrated_database, kafka_bootstrap, purpose) as found:
        yield found
