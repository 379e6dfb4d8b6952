"""Over the real broker: an approved payroll's chunks read back from `payroll.events` and
reassembled, and the projections fed from `registry.events`, `provider.events` and
`disbursement.events` (failed payments, for carry-over) unchanged by a replay of those topics
from the beginning."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.events import MAX_EVENT_BYTES, build_event
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, eventually, running
from amana_common.topics import amana_topics, ensure_topics
from amana_contracts.base import EventData
from amana_contracts.disbursement import PaymentFailedV1
from amana_contracts.envelope import CloudEvent
from amana_contracts.payroll import MAX_LINES_PER_CHUNK, PayrollApprovedV1
from amana_contracts.provider import ProviderSuspendedV1
from amana_contracts.registry import HouseholdStatusChangedV1, HouseholdUpdatedV1
from payroll import repository, service
from payroll.models import CarryOver, HouseholdProjection
from payroll.worker import Generator, projections

from .conftest import ATTRIBUTES, payroll_settings
from .factories import household, project, provider
from .test_worker import active_programme

ADULT = (date(1980, 3, 1), "female", False)
CHILD = (date(2020, 6, 1), "male", False)
LINES = 2_345  # three chunks: 1,000 + 1,000 + 345


@pytest.fixture
async def topics(kafka_bootstrap: str) -> None:
    await ensure_topics(KafkaConnection(kafka_bootstrap), amana_topics())


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


async def approved_payroll(database: Database) -> UUID:
    await project(
        database,
        provider(),
        *(household(f"H{n:010d}", "KE-047-0101", [ADULT, CHILD]) for n in range(LINES)),
    )
    programme_id = await active_programme(database, "CT-KAFKA", budget_per_cycle_minor=10**12)
    async with database.sessionmaker() as session, session.begin():
        payroll = await service.trigger_payroll(session, programme_id, 1, "manager-1")
    assert await Generator(database, payroll_settings()).generate_next()
    async with database.sessionmaker() as session, session.begin():
        await service.approve_payroll(session, payroll.id, "checker-1")
    return payroll.id


async def test_payroll_approved_chunks_reach_kafka_and_reassemble_into_the_payroll(
    committed_database: Database, kafka_bootstrap: str, topics: None
) -> None:
    payroll_id = await approved_payroll(committed_database)
    key = str(payroll_id).encode()
    relay = OutboxRelay(
        "payroll", committed_database.sessionmaker, KafkaConnection(kafka_bootstrap)
    )

    async with TopicReader(kafka_bootstrap, "payroll.events") as reader, running(relay):
        records = await reader.read_until(
            lambda rs: sum(1 for r in rs if r.key == key and b"PayrollApproved" in r.value) == 3,
            timeout_s=60,
        )

    mine = [r for r in records if r.key == key]
    assert len({r.partition for r in mine}) == 1, "one key, one partition, in order"
    events = [CloudEvent.model_validate_json(r.value) for r in mine]
    assert [e.name for e in events] == ["PayrollGenerated", *["PayrollApproved"] * 3]
    chunks = [PayrollApprovedV1.model_validate(e.data) for e in events[1:]]
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    assert [len(c.lines) for c in chunks] == [MAX_LINES_PER_CHUNK, MAX_LINES_PER_CHUNK, 345]
    assert {c.chunk_count for c in chunks} == {3}
    assert {(c.line_count, c.total_amount_minor) for c in chunks} == {(LINES, LINES * 350_000)}
    assert all(len(r.value) <= MAX_EVENT_BYTES for r in mine)
    assert len({e.id for e in events}) == len(events)
    lines = [line for chunk in chunks for line in chunk.lines]
    assert len({line.line_id for line in lines}) == LINES
    assert sum(line.amount_minor for line in lines) == chunks[0].total_amount_minor
    assert [line.line_id for line in lines] == sorted(line.line_id for line in lines)
    async with committed_database.sessionmaker() as session:
        stored = await repository.list_lines(
            session, payroll_id, limit=5, after=None, location_code=None, provider_id=None
        )
    first = lines[0]
    assert (first.line_id, first.household_number, first.recipient.given_name) == (
        stored[0].line_id,
        stored[0].household_number,
        stored[0].recipient_given_name,
    )
    assert first.account is not None and first.account.kind == "msisdn"


async def send(producer: AIOKafkaProducer, topic: str, *payloads: EventData) -> None:
    for payload in payloads:
        event = build_event(payload)
        await producer.send_and_wait(
            topic, value=event.model_dump_json().encode(), key=event.subject.encode()
        )


COLUMNS = [column.name for column in HouseholdProjection.__table__.columns]


def snapshot_rows(rows: list[HouseholdProjection]) -> list[dict[str, Any]]:
    return sorted(
        ({c: getattr(row, c) for c in COLUMNS} | {"projected_at": None} for row in rows),
        key=lambda r: str(r["household_id"]),
    )


async def projected(database: Database, ids: Sequence[UUID]) -> list[HouseholdProjection]:
    async with database.sessionmaker() as session:
        statement = select(HouseholdProjection).where(HouseholdProjection.household_id.in_(ids))
        return list((await session.scalars(statement)).all())


async def test_projections_replayed_from_the_beginning_do_not_change(
    committed_database: Database,
    kafka_bootstrap: str,
    topics: None,
    producer: AIOKafkaProducer,
) -> None:
    ids = [uuid7() for _ in range(3)]
    enrolled = [
        household(f"H{n:010d}", "KE-047-0101", [ADULT, CHILD], household_id=i)
        for n, i in enumerate(ids)
    ]
    moved = HouseholdUpdatedV1.model_validate(
        enrolled[0].model_dump() | {"location_code": "KE-001-0002", "version": 2}
    )
    exited = HouseholdStatusChangedV1.model_validate(
        enrolled[1].model_dump() | {"status": "exited", "previous_status": "active", "version": 2}
    )
    stale = HouseholdUpdatedV1.model_validate(enrolled[0].model_dump() | {"size": 9})  # v1 again
    psp = provider(provider_id=uuid4())
    suspended = ProviderSuspendedV1(
        provider_id=psp.provider_id,
        code=psp.code,
        reason="Float exhausted",
        changed_at=psp.updated_at,
        version=2,
    )
    await send(producer, "registry.events", *enrolled, moved, exited, stale)
    await send(producer, "provider.events", psp, suspended)
    failures = [payment_failed(enrolled[n].household_id, retryable=n == 0) for n in range(2)]
    await send(producer, "disbursement.events", *failures, failures[0])  # the first sent twice
    settings = payroll_settings(kafka_bootstrap=kafka_bootstrap)
    first = projections(settings, committed_database, f"payroll-test-{uuid4().hex[:8]}")

    async def applied() -> bool:
        rows = await projected(committed_database, ids)
        return len(rows) == 3 and all(r.version == 2 for r in rows if r.household_id != ids[2])

    async with running(first):
        await eventually(applied, timeout_s=60)
        await eventually(lambda: provider_status(committed_database, psp.provider_id), 30)
        await eventually(lambda: carried_over(committed_database, failures), timeout_s=30)
    before = snapshot_rows(await projected(committed_database, ids))
    assert {r["location_code"] for r in before} == {"KE-001-0002", "KE-047-0101"}
    assert sorted(r["status"] for r in before) == ["active", "active", "exited"]
    assert next(r for r in before if r["household_id"] == ids[0])["size"] == 2  # stale ignored

    # Another consumer group replays both topics from the beginning: versions guard the rows.
    replay = projections(settings, committed_database, f"payroll-replay-{uuid4().hex[:8]}")
    async with running(replay):
        await asyncio.sleep(0)
        await eventually(lambda: consumed_to_end(committed_database, replay), timeout_s=120)
    assert snapshot_rows(await projected(committed_database, ids)) == before
    assert await provider_status(committed_database, psp.provider_id) == "suspended"
    # Only the retryable failure waits to be carried over, once.
    assert await carried_over(committed_database, failures) == [failures[0].payment_id]


def payment_failed(household_id: UUID, *, retryable: bool) -> PaymentFailedV1:
    return PaymentFailedV1.model_validate(
        {
            "payment_id": uuid7(),
            "payment_number": "PAY-0000000001",
            "payroll_id": uuid7(),
            "payroll_line_id": uuid7(),
            "programme_id": uuid7(),
            "cycle_id": uuid7(),
            "household_id": household_id,
            "provider_id": uuid7(),
            "mechanism": "mobile_money",
            "location_code": "KE-047-0101",
            "recipient_sex": "female",
            "recipient_age_band": "35-59",
            "currency": "KES",
            "amount_minor": 350_000,
            "outcome": "failed",
            "reason_code": "AC04" if retryable else "MD07",
            "retryable": retryable,
            "failed_at": datetime(2026, 1, 15, tzinfo=UTC),
        }
    )


async def carried_over(database: Database, failures: Sequence[PaymentFailedV1]) -> list[UUID]:
    async with database.sessionmaker() as session:
        statement = select(CarryOver.payment_id).where(
            CarryOver.payment_id.in_([f.payment_id for f in failures])
        )
        return list((await session.scalars(statement)).all())


async def provider_status(database: Database, provider_id: UUID) -> str | None:
    async with database.sessionmaker() as session:
        return await session.scalar(
            select(repository.providers.c.status).where(
                repository.providers.c.provider_id == provider_id
            )
        )


async def consumed_to_end(database: Database, consumer: Any) -> bool:
    """The replaying consumer has recorded every event the first one did."""
    from amana_common.tables import processed_events

    async with database.sessionmaker() as session:
        names = (
            await session.execute(select(processed_events.c.consumer, processed_events.c.event_id))
        ).all()
    by_consumer: dict[str, set[UUID]] = {}
    for name, event_id in names:
        by_consumer.setdefault(name, set()).add(event_id)
    replayed = by_consumer.get(consumer.name, set())
    others = [ids for name, ids in by_consumer.items() if name != consumer.name]
    return bool(others) and all(ids <= replayed for ids in others)


async def test_lines_too_wide_for_1000_a_chunk_make_smaller_chunks_under_the_limit(
    database: Database,
) -> None:
    long_name = "Wanjiru-" * 50  # 400 characters: 1,000 such lines exceed an event
    await project(
        database,
        provider(),
        *(
            household(f"H{n:010d}", "KE-047-0101", [ADULT, CHILD], family_name=long_name)
            for n in range(1_300)
        ),
    )
    programme_id = await active_programme(database, "CT-WIDE", budget_per_cycle_minor=10**12)
    async with database.sessionmaker() as session, session.begin():
        payroll = await service.trigger_payroll(session, programme_id, 1, "manager-1")
    async with database.sessionmaker() as session, session.begin():
        claimed = await repository.claim_generating(session)
        assert claimed is not None

        async def progress(phase: str, done: int, total: int) -> None:
            return None

        await service.generate_payroll(session, claimed, ATTRIBUTES, 100_000, progress)
    async with database.sessionmaker() as session, session.begin():
        await service.approve_payroll(session, payroll.id, "checker-1")

    async with database.sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(outbox.c.payload)
                .where(outbox.c.event_type == PayrollApprovedV1.cloudevent_type())
                .order_by(outbox.c.position)
            )
        ).all()
    chunks = [
        PayrollApprovedV1.model_validate(CloudEvent.model_validate_json(p).data) for p in payloads
    ]
    assert {c.chunk_count for c in chunks} == {len(chunks)}
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert all(len(p) <= MAX_EVENT_BYTES for p in payloads)
    assert max(len(c.lines) for c in chunks) < 1_000, "smaller chunks than the first attempt"
    assert sum(len(c.lines) for c in chunks) == 1_300
    assert {line.recipient.family_name for c in chunks for line in c.lines} == {long_name}
