"""The idempotent consumer over a real broker: duplicates applied once, poison to the DLQ."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import Database
from amana_common.inbox import DLQ_REASON, IdempotentConsumer, PoisonMessage
from amana_common.testing.clients import TopicReader, eventually, running
from amana_common.topics import ensure_topics
from amana_contracts.envelope import CloudEvent, dead_letter_topic


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    """A topic (and its DLQ) of this test's own, so no other consumer or test interferes."""
    name = f"it-{uuid4().hex[:12]}.events"
    await ensure_topics(kafka_bootstrap, [name, dead_letter_topic(name)], partitions=3)
    return name


@pytest.fixture
async def applied_table(registry_db: Database) -> AsyncIterator[str]:
    async with registry_db.sessionmaker() as session, session.begin():
        await session.execute(
            text("CREATE TABLE IF NOT EXISTS it_applied (event_id uuid NOT NULL, subject text)")
        )
        await session.execute(text("TRUNCATE it_applied"))
    yield "it_applied"


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def event(subject: str, event_id: UUID | None = None) -> CloudEvent:
    return CloudEvent(
        id=event_id or uuid4(),
        source="amana/registry",
        type="amana.registry.HouseholdEnrolled.v1",
        time=datetime.now(UTC),
        subject=subject,
        data={"note": "test"},
    )


async def record_application(session: AsyncSession, received: CloudEvent) -> None:
    if received.subject == "poison":
        raise PoisonMessage("this household can never be applied")
    await session.execute(
        text("INSERT INTO it_applied (event_id, subject) VALUES (:id, :subject)"),
        {"id": received.id, "subject": received.subject},
    )


def consumer(
    name: str, registry_db: Database, kafka_bootstrap: str, topic: str, group: str | None = None
) -> IdempotentConsumer:
    return IdempotentConsumer(
        name,
        registry_db.sessionmaker,
        kafka_bootstrap,
        {"amana.registry.HouseholdEnrolled.v1": record_application},
        [topic],
        group_id=group,
    )


async def applications(database: Database) -> dict[str, int]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT subject, count(*) FROM it_applied GROUP BY subject")
        )
        return {subject: int(n) for subject, n in rows.all()}


async def send(producer: AIOKafkaProducer, topic: str, value: bytes, key: str) -> None:
    await producer.send_and_wait(topic, value=value, key=key.encode())


async def test_an_event_received_twice_is_applied_once_and_a_replay_changes_nothing(
    registry_db: Database,
    kafka_bootstrap: str,
    topic: str,
    applied_table: str,
    producer: AIOKafkaProducer,
) -> None:
    duplicated = event("household-1")
    for value in (duplicated, duplicated, event("household-2"), event("household-3")):
        await send(producer, topic, value.model_dump_json().encode(), value.subject)
    name = f"it-consumer-{uuid4().hex[:8]}"

    async with running(consumer(name, registry_db, kafka_bootstrap, topic)):
        await eventually(lambda: _count_is(registry_db, 3), timeout_s=30)
    expected = {"household-1": 1, "household-2": 1, "household-3": 1}
    assert await applications(registry_db) == expected

    # Replaying the whole topic from the beginning (a new group, same consumer) changes nothing.
    replay = consumer(name, registry_db, kafka_bootstrap, topic, group=f"{name}-replay")
    async with running(replay):
        await eventually(lambda: _group_caught_up(kafka_bootstrap, f"{name}-replay", topic, 4))
    assert await applications(registry_db) == expected


async def test_a_malformed_message_goes_to_the_dlq_and_the_next_one_is_processed(
    registry_db: Database,
    kafka_bootstrap: str,
    topic: str,
    applied_table: str,
    producer: AIOKafkaProducer,
) -> None:
    # One key, so all three land on one partition, in this order.
    await send(producer, topic, b'{"this is": "not a cloudevent"', "k")
    await send(producer, topic, event("poison").model_dump_json().encode(), "k")
    await send(producer, topic, event("household-after").model_dump_json().encode(), "k")

    dlq_reader = TopicReader(kafka_bootstrap, dead_letter_topic(topic), from_beginning=True)
    worker = running(consumer("it-dlq", registry_db, kafka_bootstrap, topic))
    async with dlq_reader as dlq, worker:
        await eventually(lambda: _count_is(registry_db, 1), timeout_s=30)
        dead = await dlq.read_until(lambda records: len(records) >= 2)

    assert await applications(registry_db) == {"household-after": 1}
    assert dead[0].value == b'{"this is": "not a cloudevent"'
    reasons = [dict(r.headers)[DLQ_REASON].decode() for r in dead]
    assert "not a valid CloudEvent" in reasons[0]
    assert "PoisonMessage" in reasons[1] and "can never be applied" in reasons[1]
    assert dict(dead[0].headers)["amana-dlq-source"].decode().startswith(f"{topic}/")


async def _count_is(database: Database, expected: int) -> bool:
    return sum((await applications(database)).values()) >= expected


async def _group_caught_up(bootstrap: str, group: str, topic: str, total: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed: int = sum(o.offset for tp, o in offsets.items() if tp.topic == topic)
    return committed >= total
