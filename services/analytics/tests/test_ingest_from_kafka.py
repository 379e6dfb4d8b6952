"""The worker's consumer on the real broker, in batch mode: valid events are applied, a
message that is not a CloudEvent or whose data breaks its contract goes to the DLQ with its
reason, an event of an unknown type is counted and skipped, and the rest is applied."""

from __future__ import annotations

import json
from uuid import uuid4

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from amana_common.db import Database
from amana_common.inbox import DLQ_REASON
from amana_common.kafka import KafkaConnection, reliable_producer
from amana_common.testing.clients import TopicReader, eventually, running
from amana_contracts.envelope import CloudEvent, dead_letter_topic, topic_for
from analytics.models import PaymentFact
from analytics.settings import AnalyticsSettings
from analytics.worker import ingest_consumer

from .factories import Cycle, Line, settled
from .scenario import at

DISBURSEMENT = topic_for("disbursement")


async def test_bad_messages_go_to_the_dlq_and_the_rest_is_applied(
    worker: tuple[AnalyticsSettings, Database], kafka_bootstrap: str
) -> None:
    settings, database = worker
    # A cycle of its own: the topics keep other tests' events, and a payment is never settled
    # twice with different figures.
    cycle, one, two = Cycle("PROG-K", 11), Line("k1", "KE-001-0001"), Line("k2", "KE-001-0002")
    first, second = settled(cycle, one, at(5, 10))[1], settled(cycle, two, at(6, 10))[1]
    broken = first.model_copy(update={"id": uuid4(), "data": {**first.data, "amount_minor": -5}})
    unknown = first.model_copy(
        update={"id": uuid4(), "type": "amana.disbursement.PaymentTeleported.v1"}
    )
    key = first.subject.encode()
    # Unique to this run: a new group reads the other runs' garbage again, to the DLQ too.
    garbage = f"this is not a CloudEvent ({uuid4()})".encode()
    messages = [
        (key, first.model_dump_json().encode()),
        (key, garbage),
        (key, broken.model_dump_json().encode()),
        (key, unknown.model_dump_json().encode()),
        (second.subject.encode(), second.model_dump_json().encode()),
    ]
    skipped_before = _count(settings.consumer_name, "skipped")
    async with TopicReader(kafka_bootstrap, dead_letter_topic(DISBURSEMENT)) as dlq:
        producer = reliable_producer(KafkaConnection(kafka_bootstrap), "analytics-test")
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(DISBURSEMENT, value=value, key=key)
        finally:
            await producer.stop()
        async with running(ingest_consumer(settings, database)):
            await eventually(lambda: _both_applied(database, cycle), timeout_s=60)
            records = await dlq.read_until(
                lambda rs: sum(1 for r in rs if _mine(r.value, garbage, broken)) >= 2, timeout_s=60
            )
    assert await _both_applied(database, cycle)
    reasons = [
        dict(r.headers)[DLQ_REASON].decode() for r in records if _mine(r.value, garbage, broken)
    ]
    assert any("not a valid CloudEvent" in reason for reason in reasons)
    assert any("amount_minor" in reason for reason in reasons)
    # The topic keeps other runs' events too: at least this run's unknown one was skipped.
    assert _count(settings.consumer_name, "skipped") >= skipped_before + 1


def _mine(value: bytes | None, garbage: bytes, broken: CloudEvent) -> bool:
    if value == garbage:
        return True
    try:
        return bool(json.loads(value or b"{}").get("id") == str(broken.id))
    except ValueError:
        return False


async def _both_applied(database: Database, cycle: Cycle) -> bool:
    async with database.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(PaymentFact.cycle_id == cycle.cycle_id)
        )
    return count == 2


def _count(consumer: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "amana_consumer_events_total", {"consumer": consumer, "outcome": outcome}
    )
    return value or 0.0
