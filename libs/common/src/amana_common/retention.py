"""Prunes what the infrastructure tables need only for a while, on a schedule in the worker.

- `processed_events` older than their retention: a redelivery comes within minutes, and a
  replay from a topic's beginning finds only what the topic still holds, so the retention
  must be at least the topics' (Kafka's default is 7 days, as is ours).
- `idempotency_keys` older than theirs: each holds a response body, which is personal data.

Deletes go in bounded batches so that no lock is held long; one replica prunes at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import Column, CursorResult, Table, delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amana_common.inbox import describe
from amana_common.tables import idempotency_keys, processed_events
from amana_common.tracing import traced_job
from amana_common.worker import wait_or_stop

log = logging.getLogger("amana.retention")

PRUNED = Counter("amana_rows_pruned_total", "Rows deleted past their retention", ["table"])

PRUNE_LOCK_KEY = 0x616D616E6170  # "amanap"
BATCH = 5_000


@dataclass(frozen=True)
class Retention:
    processed_events: timedelta = timedelta(days=7)
    idempotency_keys: timedelta = timedelta(days=7)
    interval_s: float = 3600


class RetentionPruner:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], retention: Retention
    ) -> None:
        self.sessionmaker = sessionmaker
        self.retention = retention

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                with traced_job("retention.prune"):
                    await self.prune_once()
            except Exception as error:
                log.warning("pruning failed, trying again later: %s", describe(error))
            await wait_or_stop(stop, self.retention.interval_s)

    async def prune_once(self, now: datetime | None = None) -> dict[str, int]:
        """Deletes every row past its retention; answers how many per table."""
        now = now or datetime.now(UTC)
        targets = (
            (
                processed_events,
                processed_events.c.processed_at,
                now - self.retention.processed_events,
            ),
            (
                idempotency_keys,
                idempotency_keys.c.created_at,
                now - self.retention.idempotency_keys,
            ),
        )
        return {
            table.name: await self._prune(table, column, cutoff)
            for table, column, cutoff in targets
        }

    async def _prune(self, table: Table, column: Column[Any], cutoff: datetime) -> int:
        total = 0
        while True:
            async with self.sessionmaker() as session, session.begin():
                if not await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PRUNE_LOCK_KEY}
                ):
                    return total  # another replica is pruning
                deleted = await _delete_batch(session, table, column, cutoff)
            total += deleted
            PRUNED.labels(table.name).inc(deleted)
            if deleted < BATCH:
                return total


async def _delete_batch(
    session: AsyncSession, table: Table, column: Column[Any], cutoff: datetime
) -> int:
    key = tuple_(*table.primary_key.columns)
    expired = select(*table.primary_key.columns).where(column < cutoff).limit(BATCH)
    result = cast(CursorResult[Any], await session.execute(delete(table).where(key.in_(expired))))
    return int(result.rowcount or 0)
