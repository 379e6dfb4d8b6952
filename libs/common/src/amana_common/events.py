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
    return {
        "event_id": event.id,
        "topic": topic_for(event.service),
        "key": event.subject,
        "event_type": event.type,
        "payload": event.model_dump_json().encode(),
    }


async def publish(session: AsyncSession, *payloads: EventData) -> list[CloudEvent]:
    """Adds events to the outbox; they reach Kafka only if the caller's transaction commits."""
    events = [build_event(p) for p in payloads]
    if events:
        await session.execute(insert(outbox), [outbox_row(e) for e in events])
    return events
