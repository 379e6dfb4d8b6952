"""A worker's surroundings for tests on the real broker: every topic it reads (with its DLQ),
an empty database of its own that commits, and a consumer group no other test uses; events
published as the services publish them, and whether a group has read up to given ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from amana_common.db import Database
from amana_common.kafka import KafkaConnection, reliable_producer
from amana_common.testing.clients import eventually, running
from amana_common.testing.databases import committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.topics import ensure_topics
from amana_contracts.catalog import EVENTS
from amana_contracts.envelope import dead_letter_topic, topic_for
from analytics import rebuild
from analytics.models import REPORTING_TABLES
from analytics.settings import AnalyticsSettings
from analytics.worker import ingest_consumer

from .factories import Event

SERVICE_DIR = Path(__file__).resolve().parents[1]
TOPICS = [topic_for(service) for service in EVENTS]


@asynccontextmanager
async def worker_surroundings(
    migrated_database: MigratedDatabase, kafka_bootstrap: str, purpose: str
) -> AsyncIterator[tuple[AnalyticsSettings, Database]]:
    await ensure_topics(
        KafkaConnection(kafka_bootstrap), TOPICS + [dead_letter_topic(t) for t in TOPICS]
    )
    url = await migrated_database("analytics", SERVICE_DIR, purpose)
    settings = AnalyticsSettings(
        database_url=url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        consumer_name=f"analytics-{purpose}-test-{uuid4().hex[:8]}",
    )
    async with committing_database(url) as database:
        async with database.sessionmaker() as session, session.begin():
            await session.execute(text(f"TRUNCATE {', '.join(REPORTING_TABLES)}, processed_events"))
        yield settings, database


async def publish(bootstrap: str, events: Sequence[Event]) -> None:
    producer = reliable_producer(KafkaConnection(bootstrap), "analytics-test")
    await producer.start()
    try:
        for _, envelope in events:
            await producer.send_and_wait(
                topic_for(envelope.service),
                value=envelope.model_dump_json().encode(),
                key=envelope.subject.encode(),
            )
    finally:
        await producer.stop()


@asynccontextmanager
async def worker_caught_up(
    settings: AnalyticsSettings, database: Database, bootstrap: str, events: Sequence[Event]
) -> AsyncIterator[None]:
    """Publishes `events`, then runs the worker's consumer until its group has read every topic
    up to its end; it runs until the block ends."""
    await publish(bootstrap, events)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ends = await topic_ends(admin, bootstrap)
        async with running(ingest_consumer(settings, database)):
            await eventually(lambda: caught_up(admin, settings.consumer_name, ends), timeout_s=120)
            yield
    finally:
        await admin.close()


async def topic_ends(
    admin: AIOKafkaAdminClient, bootstrap: str, topics: Sequence[str] = TOPICS
) -> dict[Any, int]:
    partitions = await rebuild.topic_partitions(admin, list(topics))
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        probe.assign(partitions)
        return dict(await probe.end_offsets(partitions))
    finally:
        await probe.stop()


async def caught_up(admin: AIOKafkaAdminClient, group: str, ends: dict[Any, int]) -> bool:
    done = await rebuild.committed(admin, group, list(ends))
    return all(done.get(tp, -1) >= end for tp, end in ends.items() if end > 0)
