"""Processed events and idempotency keys (which hold response bodies: personal data) are
deleted once past their retention, in batches, by every service's worker."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from amana_common.db import Database
from amana_common.outbox import OutboxRelay
from amana_common.retention import BATCH, Retention, RetentionPruner
from amana_common.settings import ServiceSettings
from amana_common.tables import idempotency_keys, processed_events
from amana_common.testing.databases import committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.worker import infrastructure_components

REGISTRY_DIR = Path(__file__).resolve().parents[3] / "services" / "registry"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def database(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
    url = await migrated_database("registry", REGISTRY_DIR, purpose="retention")
    async with committing_database(url) as database:
        async with database.sessionmaker() as session, session.begin():
            await session.execute(text("TRUNCATE processed_events, idempotency_keys"))
        yield database


async def add_processed(database: Database, count: int, age: timedelta) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO processed_events (consumer, event_id, event_type, processed_at) "
                "SELECT 'projection', gen_random_uuid(), 'amana.provider.ProviderUpdated.v1', "
                ":at FROM generate_series(1, :count)"
            ),
            {"at": NOW - age, "count": count},
        )


async def add_keys(database: Database, count: int, age: timedelta) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, "
                "response_body, created_at) SELECT 'registrar:POST:/households', "
                "gen_random_uuid()::text, 'h', 201, convert_to('{\"given_name\": \"Amina\"}', "
                "'UTF8'), :at FROM generate_series(1, :count)"
            ),
            {"at": NOW - age, "count": count},
        )


async def count(database: Database, table: object) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_rows_past_their_retention_are_deleted_and_the_rest_kept(database: Database) -> None:
    await add_processed(database, BATCH + 3, timedelta(days=8))
    await add_processed(database, 4, timedelta(days=6))
    await add_keys(database, 5, timedelta(hours=25))
    await add_keys(database, 2, timedelta(hours=23))
    pruner = RetentionPruner(
        database.sessionmaker,
        Retention(processed_events=timedelta(days=7), idempotency_keys=timedelta(days=1)),
    )

    pruned = await pruner.prune_once(now=NOW)

    assert pruned == {"processed_events": BATCH + 3, "idempotency_keys": 5}
    assert await count(database, processed_events) == 4
    assert await count(database, idempotency_keys) == 2
    assert await pruner.prune_once(now=NOW) == {"processed_events": 0, "idempotency_keys": 0}


async def test_every_worker_runs_the_relay_and_the_pruner_with_the_settings_retention(
    database: Database,
) -> None:
    settings = ServiceSettings(
        environment="test",
        service_name="registry",
        processed_events_retention_days=10,
        idempotency_keys_retention_days=2,
    )

    relay, pruner = infrastructure_components(settings, database)

    assert isinstance(relay, OutboxRelay)
    assert isinstance(pruner, RetentionPruner)
    assert pruner.retention == Retention(
        processed_events=timedelta(days=10), idempotency_keys=timedelta(days=2), interval_s=3600
    )
