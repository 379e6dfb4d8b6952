"""Test contracts on topics of their own, and what the consumer tests observe.

Each test gets a fresh probe service (`probe_<letters>`), hence fresh topics
`probe_<letters>.events` and `.dlq` and a fresh consumer group: no test sees another's
messages or offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import EventConsumer, Handler, event_consumer
from amana_common.db import Database
from amana_common.events import build_event
from amana_common.kafka import KafkaConnection
from amana_common.settings import ServiceSettings
from amana_common.topics import ensure_topics
from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent, dead_letter_topic, topic_for

APPLIED_TABLE = """
CREATE TABLE IF NOT EXISTS it_applied (
    event_id uuid NOT NULL, key text NOT NULL, n integer NOT NULL, worker text NOT NULL
)"""


class Note(EventData):
    """The payload of every probe event; each probe gives it a service of its own."""

    event_name = "Noted"

    key: str
    n: int

    def subject(self) -> str:
        return self.key


@dataclass(frozen=True)
class Probe:
    service: str
    noted: type[Note]  # amana.<service>.Noted.v1: what the consumer handles
    noted_v2: type[Note]  # the same name, a version the consumer does not know
    other: type[Note]  # a name the consumer does not know

    @property
    def topic(self) -> str:
        return topic_for(self.service)

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.topic)


def new_probe() -> Probe:
    name = "probe_" + "".join(random.choices(string.ascii_lowercase, k=12))

    class Noted(Note):
        service = name

    class NotedV2(Noted):
        event_version = 2

    class Other(Noted):
        event_name = "SomethingElse"

    return Probe(name, Noted, NotedV2, Other)


async def create_probe_topics(bootstrap: str, probe: Probe, partitions: int = 3) -> None:
    await ensure_topics(KafkaConnection(bootstrap), [probe.topic, probe.dlq], partitions)


@dataclass(frozen=True)
class Sent:
    event: CloudEvent
    partition: int
    offset: int


class ProbeProducer:
    def __init__(self, producer: AIOKafkaProducer, probe: Probe) -> None:
        self.producer = producer
        self.probe = probe

    async def send(self, payload: EventData) -> Sent:
        event = build_event(payload)
        return await self.send_event(event)

    async def send_event(self, event: CloudEvent) -> Sent:
        return await self.send_on(event, event.subject)

    async def send_on_key(self, payload: EventData, key: str) -> Sent:
        """`payload` as an event on Kafka key `key` (one key: one partition, in order)."""
        return await self.send_on(build_event(payload), key)

    async def send_on(self, event: CloudEvent, key: str) -> Sent:
        """`event` with another Kafka key than its subject (to put it on that key's partition)."""
        return await self.send_raw(event.model_dump_json().encode(), key, event)

    async def send_raw(self, value: bytes, key: str, event: Any = None) -> Sent:
        metadata = await self.producer.send_and_wait(
            self.probe.topic, value=value, key=key.encode()
        )
        return Sent(event, metadata.partition, metadata.offset)


@asynccontextmanager
async def probe_producer(bootstrap: str, probe: Probe) -> AsyncIterator[ProbeProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        yield ProbeProducer(producer, probe)
    finally:
        await producer.stop()


async def reset_applied(database: Database) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(APPLIED_TABLE))
        await session.execute(text("TRUNCATE it_applied"))


def recording(worker: str = "a") -> Handler[Any]:
    """A handler that records the event it applies in `it_applied`."""

    async def record(session: AsyncSession, payload: Any, event: CloudEvent) -> None:
        await session.execute(
            text("INSERT INTO it_applied VALUES (:id, :key, :n, :worker)"),
            {"id": event.id, "key": payload.key, "n": payload.n, "worker": worker},
        )

    return record


def failing_until(
    released: asyncio.Event,
    keys: set[str],
    error: Callable[[], Awaitable[None]],
    then: Handler[Any],
) -> Handler[Any]:
    """Raises `error()` for events of `keys` until `released` is set, then behaves as `then`."""

    async def handle(session: AsyncSession, payload: Any, event: CloudEvent) -> None:
        if payload.key in keys and not released.is_set():
            await error()
        await then(session, payload, event)

    return handle


async def applied(database: Database) -> list[tuple[str, str, int, str]]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT event_id::text, key, n, worker FROM it_applied ORDER BY n")
        )
        return [(str(a), str(b), int(c), str(d)) for a, b, c, d in rows.all()]


async def applied_ids(database: Database) -> list[str]:
    return [row[0] for row in await applied(database)]


def consumer_for(
    settings: ServiceSettings,
    database: Database,
    probe: Probe,
    handler: Handler[Any],
    name: str | None = None,
    **options: Any,
) -> EventConsumer:
    consumer = event_consumer(
        settings, database, name or f"{probe.service}-consumer", {probe.noted: handler}, **options
    )
    return cast(EventConsumer, consumer)


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def rewind_group(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """Commits offset 0 on every partition for `group` (stopped): a replay from the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.commit(dict.fromkeys(assigned, 0))
    finally:
        await consumer.stop()


async def records_on(bootstrap: str, topic: str, seconds: float) -> list[Any]:
    """Everything on `topic`, read from its beginning for `seconds`."""
    from amana_common.testing.clients import TopicReader

    async with TopicReader(bootstrap, topic, from_beginning=True) as reader:
        with contextlib.suppress(TimeoutError):
            await reader.read_until(lambda records: False, timeout_s=seconds)
        return list(reader.records)
