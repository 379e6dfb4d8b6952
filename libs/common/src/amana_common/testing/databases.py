"""Test databases: created fresh per test session, migrated with the service's real Alembic
migrations. Most tests run inside a transaction that is rolled back at their end
(`rolled_back_database`); tests of atomicity and concurrency use a database whose sessions
really commit (`committing_database`, emptied with `truncate_all`), where `slowed_writes` and
`failing_commits` make the interleavings and failures they need happen for certain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from amana_common.db import Database
from amana_common.migrations import upgrade_to_head
from amana_common.tables import INFRA_METADATA, outbox
from amana_contracts.envelope import CloudEvent


def async_url(server_url: str, database: str) -> str:
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


async def recreate_database(server_url: str, name: str) -> None:
    engine = create_async_engine(async_url(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def migrated_test_database(
    server_url: str, service: str, service_dir: Path, purpose: str = "test"
) -> str:
    """Creates `amana_<service>_<purpose>` afresh, runs the real migrations; answers its URL."""
    name = f"amana_{service}_{purpose}"
    await recreate_database(server_url, name)
    url = async_url(server_url, name)
    # Alembic's env.py runs its own event loop; keep it off the test loop.
    await asyncio.to_thread(upgrade_to_head, service_dir, url)
    return url


@asynccontextmanager
async def rolled_back_database(url: str) -> AsyncIterator[Database]:
    """A Database whose sessions all join one outer transaction, rolled back at the end.

    A session's commit() only releases a savepoint, so code that commits at the edge behaves as
    in production while the test leaves nothing behind.
    """
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            outer = await connection.begin()
            sessionmaker = async_sessionmaker(
                bind=connection,
                expire_on_commit=False,
                join_transaction_mode="create_savepoint",
                class_=AsyncSession,
            )
            try:
                yield Database(engine, sessionmaker)
            finally:
                await outer.rollback()
    finally:
        await engine.dispose()


@asynccontextmanager
async def committing_database(url: str) -> AsyncIterator[Database]:
    """A real Database that commits, for tests where another process or task reads the rows
    (the outbox relay, consumers). Callers clean up what they wrote."""
    engine = create_async_engine(url, pool_size=5, max_overflow=5)
    try:
        yield Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()


async def clear_service_tables(database: Database, models: MetaData) -> None:
    """Empties a service's tables (its models' and the infrastructure's), for tests that commit."""
    tables = [*models.tables, *INFRA_METADATA.tables]
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))


async def truncate_all(database: Database) -> None:
    """Empties every table of the database but Alembic's version table."""
    async with database.sessionmaker() as session, session.begin():
        tables = (
            await session.scalars(
                text(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
                )
            )
        ).all()
        if tables:
            await session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


async def _execute(database: Database, *statements: str) -> None:
    async with database.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


@asynccontextmanager
async def slowed_writes(
    database: Database, table: str, seconds: float, operation: str = "INSERT OR UPDATE"
) -> AsyncIterator[None]:
    """Each write of `table` sleeps `seconds` inside its transaction while the block runs, so
    that a concurrent request certainly arrives while the first one's transaction is open."""
    trigger = f"amana_test_slow_{table}"
    await _execute(
        database,
        f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NEW; END $$",
        f"CREATE TRIGGER {trigger} BEFORE {operation} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {trigger}()",
    )
    try:
        yield
    finally:
        await _execute(database, f"DROP FUNCTION {trigger}() CASCADE")


@asynccontextmanager
async def failing_commits(database: Database, table: str) -> AsyncIterator[None]:
    """Every transaction that inserted into `table` fails at COMMIT while the block runs (a
    deferred constraint trigger), as a serialization or deferred-constraint failure would."""
    trigger = f"amana_test_fail_{table}"
    await _execute(
        database,
        f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused at commit by a test' USING ERRCODE = '23514'; END $$",
        f"CREATE CONSTRAINT TRIGGER {trigger} AFTER INSERT ON {table} "
        f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {trigger}()",
    )
    try:
        yield
    finally:
        await _execute(database, f"DROP FUNCTION {trigger}() CASCADE")


async def row_count(database: Database, table: Any) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def outbox_events(database: Database) -> list[CloudEvent]:
    """The events waiting in the outbox, in the order they were written."""
    async with database.sessionmaker() as session:
        payloads = (
            await session.scalars(select(outbox.c.payload).order_by(outbox.c.position))
        ).all()
    return [CloudEvent.model_validate_json(payload) for payload in payloads]
