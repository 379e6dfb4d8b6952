"""Drift check: the Alembic migrations build exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from amana_common.tables import INFRA_METADATA


async def schema_differences(database_url: str, models: MetaData) -> list[object]:
    """What autogenerate would change in the migrated database to match `models` (and the
    infrastructure tables every service has); empty when they agree."""
    expected = MetaData()
    for table in [*models.tables.values(), *INFRA_METADATA.tables.values()]:
        table.to_metadata(expected)

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, expected))

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
