"""Infrastructure tables every service database has: outbox, processed events, idempotency keys.

They are Core tables on their own metadata; each service's migrations build them with the
functions of `amana_common.migrations` (`create_infrastructure_tables()`, then each change
since, such as `park_outbox_rows()`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from amana_common.db import new_metadata

INFRA_METADATA = new_metadata()

outbox = Table(
    "outbox",
    INFRA_METADATA,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("parked_at", DateTime(timezone=True)),
)

# A parked row blocks its key: the relay skips every row of a (topic, key) that has one.
Index(
    "ix_outbox_parked_keys",
    outbox.c.topic,
    outbox.c.key,
    postgresql_where=outbox.c.parked_at.is_not(None),
)

processed_events = Table(
    "processed_events",
    INFRA_METADATA,
    Column("consumer", String(100), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)

Index("ix_processed_events_processed_at", processed_events.c.processed_at)

idempotency_keys = Table(
    "idempotency_keys",
    INFRA_METADATA,
    Column("scope", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer),
    Column("response_headers", JSONB),
    Column("response_body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("scope", "key"),
)

Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
