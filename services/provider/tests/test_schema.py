"""The Alembic migrations build exactly the tables the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from amana_common.tables import INFRA_METADATA
from provider.models import Base


def _differences(connection: Connection) -> list[object]:
    expected = MetaData()
    for table in [*Base.metadata.tables.values(), *INFRA_METADATA.tables.values()]:
        table.to_metadata(expected)
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, expected))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()

    assert differences == []
