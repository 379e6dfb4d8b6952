"""Alembic wiring shared by every service: env.py is three lines, upgrades are one call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def create_infrastructure_tables() -> None:
    """Creates outbox, processed_events and idempotency_keys in a service's first migration.

    Frozen DDL, not `amana_common.tables`: a migration is history, so what it builds must not
    change when the tables module does. Change the infrastructure tables with a new function
    here that every service's next migration calls; the drift check
    (`amana_common.testing.schema`) fails until the migrations build what `tables` describes.
    """
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("position", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response_headers", JSONB),
        sa.Column("response_body", sa.LargeBinary),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def drop_infrastructure_tables() -> None:
    for table in ("idempotency_keys", "processed_events", "outbox"):
        op.drop_table(table)


def park_outbox_rows() -> None:
    """Infrastructure change 2 (every service's migration after its first calls it): outbox
    rows the relay sets aside (`parked_at`, and the index through which a parked row blocks
    its key), and `processed_events` pruned by age."""
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_outbox_parked_keys",
        "outbox",
        ["topic", "key"],
        postgresql_where=sa.text("parked_at IS NOT NULL"),
    )
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])


def unpark_outbox_rows() -> None:
    op.drop_index("ix_processed_events_processed_at", "processed_events")
    op.drop_index("ix_outbox_parked_keys", "outbox")
    op.drop_column("outbox", "parked_at")


def alembic_config(service_dir: Path, database_url: str) -> Config:
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(service_dir: Path, database_url: str) -> None:
    command.upgrade(alembic_config(service_dir, database_url), "head")


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "sqlalchemy.url is not set: run migrations with `python -m <service> migrate`"
        )
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_with(connection, target_metadata)
        return
    asyncio.run(_run_async(url, target_metadata))


def _run_with(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    async with engine.connect() as connection:
        await connection.run_sync(_run_with, target_metadata)
    await engine.dispose()
