"""A worker's surroundings for tests on the real broker: every topic it reads (with its DLQ),
an empty database of its own that commits, and a consumer group no other test uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

from sqlalchemy import text

from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.testing.databases import committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.topics import ensure_topics
from amana_contracts.catalog import EVENTS
from amana_contracts.envelope import dead_letter_topic, topic_for
from analytics.models import REPORTING_TABLES
from analytics.settings import AnalyticsSettings

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
