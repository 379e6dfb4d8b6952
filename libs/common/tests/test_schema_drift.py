"""The drift check reports what the migrations and the models disagree on: CHECK constraints,
defaults and indexes, and the shared infrastructure tables. Each test builds a scratch database
with the registry's real migrations and then makes it drift."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import create_async_engine

from amana_common.tables import outbox
from amana_common.testing.databases import migrated_test_database
from amana_common.testing.schema import schema_differences
from registry.models import Base

REGISTRY_DIR = Path(__file__).resolve().parents[3] / "services" / "registry"


@pytest.fixture
async def scratch_url(postgres_server_url: str) -> AsyncIterator[str]:
    yield await migrated_test_database(postgres_server_url, "registry", REGISTRY_DIR, "drift")


async def drift(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def test_the_migrated_scratch_database_has_no_drift(scratch_url: str) -> None:
    assert await schema_differences(scratch_url, Base.metadata) == []


async def test_a_check_constraint_that_differs_is_reported(scratch_url: str) -> None:
    await drift(
        scratch_url,
        "ALTER TABLE households DROP CONSTRAINT ck_households_status",
        "ALTER TABLE households ADD CONSTRAINT ck_households_status "
        "CHECK (status IN ('active', 'under_review', 'suspended'))",
    )

    differences = await schema_differences(scratch_url, Base.metadata)

    assert [d[:3] for d in differences] == [("check differs", "households", "ck_households_status")]
    found = differences[0][3]
    assert isinstance(found, dict) and "exited" in found["models"]
    assert "exited" not in found["database"]


async def test_a_missing_or_unmodelled_check_constraint_is_reported(scratch_url: str) -> None:
    await drift(
        scratch_url,
        "ALTER TABLE households DROP CONSTRAINT ck_households_status",
        "ALTER TABLE members ADD CONSTRAINT ck_members_position CHECK (position >= 0)",
    )

    differences = await schema_differences(scratch_url, Base.metadata)

    assert [d[:3] for d in differences] == [
        ("check not in the database", "households", "ck_households_status"),
        ("check not in the models", "members", "ck_members_position"),
    ]


async def test_drift_of_the_infrastructure_tables_is_reported(scratch_url: str) -> None:
    await drift(
        scratch_url,
        "ALTER TABLE outbox ALTER COLUMN attempts DROP DEFAULT",
        "ALTER TABLE idempotency_keys ALTER COLUMN request_hash TYPE varchar(32)",
        "DROP INDEX ix_idempotency_keys_created_at",
    )

    differences = await schema_differences(scratch_url, Base.metadata)

    assert sorted(d[:3] for d in differences) == [
        ("add_index", "idempotency_keys", "ix_idempotency_keys_created_at"),
        ("default not in the database", "outbox", "attempts"),
        ("index not in the database", "idempotency_keys", "ix_idempotency_keys_created_at"),
        ("modify_type", "idempotency_keys", "request_hash"),
    ]


async def test_a_change_to_the_infrastructure_tables_without_a_migration_is_reported(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migrations build the infrastructure tables from frozen DDL, not from
    `amana_common.tables`: were they built from it, this change would go unnoticed."""
    monkeypatch.setattr(outbox.c.last_error, "type", String(50))
    url = await migrated_test_database(postgres_server_url, "registry", REGISTRY_DIR, "drift")

    differences = await schema_differences(url, Base.metadata)

    assert [d[:3] for d in differences] == [("modify_type", "outbox", "last_error")]
