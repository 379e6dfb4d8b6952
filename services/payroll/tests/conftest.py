from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from amana_common.db import Database
from amana_common.testing.databases import clear_service_tables, committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import service_fixtures
from payroll.main import create_payroll_app
from payroll.models import Base
from payroll.settings import PayrollSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]
ATTRIBUTES: dict[str, Any] = {"pmt_score": "number", "housing": "string", "orphan": "boolean"}


def payroll_settings(**values: Any) -> PayrollSettings:
    return PayrollSettings(**({"eligibility_attributes": ATTRIBUTES} | values))


database_url, database, settings, client = service_fixtures(
    "payroll", SERVICE_DIR, payroll_settings, create_payroll_app
)


@pytest.fixture(scope="session")
async def committing_url(migrated_database: MigratedDatabase) -> str:
    """A payroll database of its own whose sessions really commit (concurrency tests)."""
    return await migrated_database("payroll", SERVICE_DIR, "committing")


@pytest.fixture
async def committed(committing_url: str) -> AsyncIterator[Database]:
    async with committing_database(committing_url) as database:
        await clear_service_tables(database, Base.metadata)
        yield database
