"""The inbox side of a consumer: parse a message, record it as processed in the handler's own
transaction, and tell by its cause what a failure means.

- temporary (the database or network is unavailable: connection loss, SQLSTATE classes 08,
  40, 53, 57, 25006 read-only, 55P03 lock timeout, pool timeouts): retried without limit;
- contract (the payload breaks its contract: a pydantic `ValidationError`, `PoisonMessage`):
  the message goes to `<topic>.dlq`;
- blocking (anything else, a bug or a state the handler does not expect): the partition
  waits, and an alert is raised, rather than skipping the message.

Reasons name the error's class and SQLSTATE, never its message: a database error's message
can quote the row it refused.
"""

from __future__ import annotations

import socket
import traceback
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import String, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import sqlstate
from amana_common.tables import processed_events
from amana_contracts.envelope import CloudEvent

DLQ_REASON = "amana-dlq-reason"
DLQ_CONSUMER = "amana-dlq-consumer"
DLQ_SOURCE = "amana-dlq-source"
REASON_LENGTH = 1000

TEMPORARY_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
TEMPORARY_SQLSTATES = frozenset({"25006", "55P03"})


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be applied (it goes to the DLQ). Its
    message becomes the DLQ reason: say what is wrong, without personal data."""


class Unparseable(Exception):
    """The message is not a CloudEvent."""


class Failure(StrEnum):
    temporary = "temporary"
    contract = "contract"
    blocking = "blocking"


def parse_event(raw: bytes | None) -> CloudEvent:
    if raw is None:
        raise Unparseable("empty message value")
    try:
        return CloudEvent.model_validate_json(raw)
    except ValidationError as error:
        raise Unparseable(f"not a valid CloudEvent: {summarise(error)}") from error


def summarise(error: ValidationError) -> str:
    """Where the payload breaks its model and how, without the values it carried."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()
    ]
    return "; ".join(parts[:5])


async def record_first_delivery(session: AsyncSession, consumer: str, event: CloudEvent) -> bool:
    """Records `(consumer, event id)` in the caller's transaction; False when it was already
    there (the event was applied before: a redelivery or a replay)."""
    first_time = await session.scalar(
        insert(processed_events)
        .values(consumer=consumer, event_id=event.id, event_type=event.type)
        .on_conflict_do_nothing()
        .returning(processed_events.c.event_id)
    )
    return first_time is not None


async def record_first_deliveries(
    session: AsyncSession, consumer: str, events: list[CloudEvent]
) -> set[UUID]:
    """`record_first_delivery` for many events in one statement; answers the ids seen for the
    first time (an id twice in `events` counts once). The ids and types travel as two arrays,
    so the statement is the same, and prepared once, whatever the number of events."""
    rows = {event.id: event.type for event in events}
    ids = bindparam("event_ids", list(rows), ARRAY(PgUUID(as_uuid=True)))
    types = bindparam("event_types", list(rows.values()), ARRAY(String()))
    first = await session.scalars(
        insert(processed_events)
        .from_select(
            ["consumer", "event_id", "event_type"],
            select(literal(consumer, String()), func.unnest(ids), func.unnest(types)),
        )
        .on_conflict_do_nothing()
        .returning(processed_events.c.event_id)
    )
    return set(first.all())


def classify(error: BaseException) -> Failure:
    if isinstance(error, (PoisonMessage, ValidationError)):
        return Failure.contract
    if is_temporary(error):
        return Failure.temporary
    return Failure.blocking


def is_temporary(error: BaseException) -> bool:
    code = sqlstate(error)
    if code is not None:
        return code[:2] in TEMPORARY_SQLSTATE_CLASSES or code in TEMPORARY_SQLSTATES
    return any(_is_connection_trouble(cause) for cause in _causes(error))


def _is_connection_trouble(error: BaseException) -> bool:
    """Lost or refused connections, timeouts, an exhausted pool; not a file a handler misses
    (asyncio reports a refused connect as a bare OSError)."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated
    return (
        isinstance(error, (ConnectionError, TimeoutError, socket.gaierror, PoolTimeout))
        or type(error) is OSError
    )


def describe(error: BaseException) -> str:
    """The reason recorded in DLQ headers and logs: the error's class, its SQLSTATE for a
    database error, where it was raised otherwise; the message only for contract failures."""
    name = type(error).__name__
    if isinstance(error, ValidationError):
        return f"{name}: {summarise(error)}"
    if isinstance(error, PoisonMessage):
        return f"{name}: {error}"
    if (code := sqlstate(error)) is not None:
        return f"{name} (SQLSTATE {code})"
    if isinstance(error, DBAPIError) and error.orig is not None:
        return f"{name} ({type(error.orig).__name__})"
    return f"{name} at {_origin(error)}"


def dead_letter_headers(record: Any, consumer: str, reason: str) -> list[tuple[str, bytes]]:
    return [
        *list(record.headers or ()),
        (DLQ_REASON, reason[:REASON_LENGTH].encode()),
        (DLQ_CONSUMER, consumer.encode()),
        (DLQ_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _origin(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"
