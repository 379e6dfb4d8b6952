"""Outbox relay: publishes outbox rows to Kafka, deleting them only after the broker acked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amana_common.kafka import CONTENT_TYPE_HEADER, reliable_producer
from amana_common.tables import outbox

log = logging.getLogger("amana.outbox")

PUBLISHED = Counter("amana_outbox_published_total", "Events published from the outbox", ["service"])
PUBLISH_FAILURES = Counter(
    "amana_outbox_publish_failures_total", "Failed outbox publish attempts", ["service"]
)
LAG_SECONDS = Gauge(
    "amana_outbox_lag_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
PENDING = Gauge("amana_outbox_pending", "Unpublished outbox rows at the last claim", ["service"])

# One relay publishes at a time per database: SKIP LOCKED alone would let two relays publish
# events of the same key out of order. The others wait as hot standbys.
RELAY_LOCK_KEY = 0x616D616E61  # "amana"


class OutboxRelay:
    def __init__(
        self,
        service: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        bootstrap: str,
        batch_size: int = 500,
        poll_interval_s: float = 0.05,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self._producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.poll_interval_s
        try:
            while not stop.is_set():
                try:
                    published = await self.relay_once()
                    backoff = self.poll_interval_s
                    if published < self.batch_size:
                        await _wait(stop, self.poll_interval_s)
                except Exception as error:
                    PUBLISH_FAILURES.labels(self.service).inc()
                    log.warning("outbox publish failed, retrying in %.2fs: %r", backoff, error)
                    await self._reset_producer()
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            await self._reset_producer()

    async def relay_once(self) -> int:
        """Claims one batch, publishes it and deletes it; answers how many were published."""
        async with self.sessionmaker() as session, session.begin():
            if not await _take_relay_lock(session):
                return 0
            rows = await _claim(session, self.batch_size)
            self._observe_lag(rows)
            if not rows:
                return 0
            await self._publish(rows)
            await session.execute(
                delete(outbox).where(outbox.c.position.in_([r.position for r in rows]))
            )
        PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def _publish(self, rows: list[Any]) -> None:
        producer = await self._ensure_producer()
        futures = [
            await producer.send(
                row.topic, value=row.payload, key=row.key.encode(), headers=[CONTENT_TYPE_HEADER]
            )
            for row in rows
        ]
        await asyncio.gather(*futures)

    def _observe_lag(self, rows: list[Any]) -> None:
        """The batch is claimed in position order, so its first row is the oldest waiting."""
        PENDING.labels(self.service).set(len(rows))
        lag = (datetime.now(UTC) - rows[0].created_at).total_seconds() if rows else 0
        LAG_SECONDS.labels(self.service).set(lag)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = reliable_producer(self.bootstrap, f"{self.service}-outbox-relay")
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as error:
                log.debug("producer stop failed: %r", error)


async def _take_relay_lock(session: AsyncSession) -> bool:
    result = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
    )
    return bool(result)


async def _claim(session: AsyncSession, limit: int) -> list[Any]:
    statement = (
        select(
            outbox.c.position, outbox.c.topic, outbox.c.key, outbox.c.payload, outbox.c.created_at
        )
        .order_by(outbox.c.position)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).all())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
