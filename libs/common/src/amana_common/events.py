"""Builds CloudEvents for domain events and adds them to the outbox in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.observability import current_traceparent
from amana_common.tables import outbox
from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent, topic_for

# Kafka refuses messages over 1 MiB by default, and an event the relay cannot publish would
# hold up every event behind it in the outbox: an event that large is refused when written.
MAX_EVENT_BYTES = 768 * 1024


class EventTooLarge(ValueError):
    def __init__(self, event_type: str, size: int, limit: int) -> None:
        super().__init__(f"{event_type} would be {size} bytes, over the {limit} an event may take")
        self.size = size
        self.limit = limit


def build_event(data: EventData) -> CloudEvent:
    return CloudEvent(
        id=uuid7(),
        source=f"amana/{data.service}",
        type=data.cloudevent_type(),
        time=datetime.now(UTC),
        subject=data.subject(),
        traceparent=current_traceparent(),
        data=data.model_dump(mode="json"),
    )


def outbox_row(event: CloudEvent) -> dict[str, object]:
    payload = event.model_dump_json().encode()
    if len(payload) > MAX_EVENT_BYTES:
        raise EventTooLarge(event.type, len(payload), MAX_EVENT_BYTES)
    return {
        "event_id": event.id,
        "topic": topic_for(event.service),
        "key": event.subject,
        "event_type": event.type,
        "payload": payload,
    }


async def add_to_outbox(session: AsyncSession, *payloads: EventData) -> list[CloudEvent]:
    """Adds events to the outbox; they reach Kafka only if the caller's transaction commits.
    Raises EventTooLarge, before writing anything, for an event Kafka would refuse."""
    events = [build_event(p) for p in payloads]
    if events:
        await session.execute(insert(outbox), [outbox_row(e) for e in events])
    return events
