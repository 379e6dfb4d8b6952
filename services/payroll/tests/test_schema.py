"""The Alembic migrations build exactly the tables the models describe."""

from amana_common.testing.schema import schema_differences
from payroll.models import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert await schema_differences(database_url, Base.metadata) == []
