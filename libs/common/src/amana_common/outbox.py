"""Outbox relay: publishes outbox rows to Kafka, deleting them only after the broker acked.

Per key, rows are published in position order. A row the broker keeps refusing (its topic is
missing, it is too large, an ACL forbids it) has its `attempts` and `last_error` recorded and,
after `max_attempts`, is parked: set aside with every later row of its key, while the other
keys keep flowing. An admin lists parked rows and sends them back (`outbox_admin.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amana_common.inbox import describe
from amana_common.kafka import CONTENT_TYPE_HEADER, KafkaConnection, reliable_producer
from amana_common.tables import outbox
from amana_common.tracing import mark_failed, publish_span
from amana_common.worker import wait_or_stop

log = logging.getLogger("amana.outbox")

PUBLISHED = Counter("amana_outbox_published_total", "Events published from the outbox", ["service"])
PUBLISH_FAILURES = Counter(
    "amana_outbox_publish_failures_total",
    "Relay rounds in which the broker refused or did not answer",
    ["service"],
)
PARKED_TOTAL = Counter(
    "amana_outbox_rows_parked_total", "Outbox rows set aside after repeated failures", ["service"]
)
LAG_SECONDS = Gauge(
    "amana_outbox_lag_seconds",
    "Age of the oldest outbox row the relay can publish (not parked, not behind a parked row)",
    ["service"],
)
PENDING = Gauge("amana_outbox_pending", "Outbox rows waiting, parked ones excluded", ["service"])
PARKED = Gauge("amana_outbox_parked", "Outbox rows set aside, waiting for an admin", ["service"])

# One relay publishes at a time per database: SKIP LOCKED alone would let two relays publish
# events of the same key out of order. The others wait as hot standbys.
RELAY_LOCK_KEY = 0x616D616E61  # "amana"
LAST_ERROR_LENGTH = 500

# Refusals that concern the row itself, whatever happens to the others.
_ROW_ERRORS = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    InvalidTopicError,
)


@dataclass(frozen=True)
class RelayLimits:
    batch_size: int = 500
    batch_max_bytes: int = 4 * 1_048_576
    max_attempts: int = 5
    publish_timeout_s: float = 10
    poll_interval_s: float = 0.05
    max_backoff_s: float = 5.0
    metrics_interval_s: float = 5.0


@dataclass
class RelayStats:
    """What this relay instance did (the Prometheus metrics add up every instance)."""

    published: int = 0
    failed_rounds: int = 0
    parked: int = 0


@dataclass(frozen=True)
class ClaimedRow:
    position: int
    topic: str
    key: str
    size: int
    attempts: int


@dataclass
class Publication:
    published: list[int] = field(default_factory=list)
    failed: dict[int, BaseException] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundResult:
    published: int
    claimed: int
    failed: int


@dataclass(frozen=True)
class OutboxState:
    pending: int
    parked: int
    oldest_publishable: datetime | None


class OutboxRelay:
    def __init__(
        self,
        service: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        connection: KafkaConnection,
        limits: RelayLimits | None = None,
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.connection = connection
        self.limits = limits or RelayLimits()
        self.stats = RelayStats()
        self._producer: AIOKafkaProducer | None = None
        self._observed_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.limits.poll_interval_s
        try:
            while not stop.is_set():
                await self._observe_when_due()
                try:
                    result = await self.relay_once()
                except Exception as error:
                    self._count_failed_round(error)
                    await self._reset_producer()
                    result = RoundResult(published=0, claimed=0, failed=1)
                if result.failed:
                    await wait_or_stop(stop, backoff)
                    backoff = min(backoff * 2, self.limits.max_backoff_s)
                    continue
                backoff = self.limits.poll_interval_s
                if result.claimed < self.limits.batch_size:
                    await wait_or_stop(stop, self.limits.poll_interval_s)
        finally:
            await self._reset_producer()

    async def relay_once(self) -> RoundResult:
        """Claims one batch, publishes it, deletes what the broker acknowledged and records the
        failures of the rest, in one transaction."""
        async with self.sessionmaker() as session, session.begin():
            if not await _take_relay_lock(session):
                return RoundResult(published=0, claimed=0, failed=0)
            rows = _within_bytes(
                await _claim(session, self.limits.batch_size), self.limits.batch_max_bytes
            )
            if not rows:
                return RoundResult(published=0, claimed=0, failed=0)
            payloads = await _payloads(session, [row.position for row in rows])
            publication = await self._publish(rows, payloads)
            if publication.published:
                await session.execute(delete(outbox).where(_position_in(publication.published)))
            if publication.failed:
                await self._record_failures(session, rows, publication)
        self.stats.published += len(publication.published)
        PUBLISHED.labels(self.service).inc(len(publication.published))
        if publication.failed:
            self._count_failed_round(next(iter(publication.failed.values())))
            if not publication.published:
                await self._reset_producer()
        return RoundResult(len(publication.published), len(rows), len(publication.failed))

    async def _publish(self, rows: list[ClaimedRow], payloads: dict[int, bytes]) -> Publication:
        """Sends in waves of one row per key, so that a refused row stops the later rows of its
        key before they are sent: per-key order holds whatever the broker refuses."""
        producer = await self._ensure_producer()
        queues: dict[tuple[str, str], deque[ClaimedRow]] = {}
        for row in rows:
            queues.setdefault((row.topic, row.key), deque()).append(row)
        publication = Publication()
        while queues:
            wave = [queue.popleft() for queue in queues.values()]
            errors = await asyncio.gather(*(_send(producer, row, payloads) for row in wave))
            for row, error in zip(wave, errors, strict=True):
                if error is None:
                    publication.published.append(row.position)
                else:
                    publication.failed[row.position] = error
                    queues.pop((row.topic, row.key))
            queues = {key: queue for key, queue in queues.items() if queue}
        return publication

    async def _record_failures(
        self, session: AsyncSession, rows: list[ClaimedRow], publication: Publication
    ) -> None:
        """A failure counts against its row when the row itself was refused, or when the broker
        took other rows meanwhile (a missing topic); never during an outage."""
        broker_answered = bool(publication.published)
        counted = {
            position: _describe(error)[:LAST_ERROR_LENGTH]
            for position, error in publication.failed.items()
            if _counts_against_row(error, broker_answered)
        }
        if not counted:
            return
        statement = (
            update(outbox)
            .where(outbox.c.position == bindparam("b_position"))
            .values(
                attempts=outbox.c.attempts + 1,
                last_error=bindparam("b_error"),
                parked_at=case(
                    (outbox.c.attempts + 1 >= self.limits.max_attempts, func.now()), else_=None
                ),
            )
        )
        await session.execute(
            statement, [{"b_position": p, "b_error": e} for p, e in counted.items()]
        )
        for row in rows:
            if row.position in counted and row.attempts + 1 >= self.limits.max_attempts:
                self._log_parked(row, counted[row.position])

    def _log_parked(self, row: ClaimedRow, reason: str) -> None:
        self.stats.parked += 1
        PARKED_TOTAL.labels(self.service).inc()
        log.error(
            "outbox row %s (topic %s, key %s) parked after %s attempts, its key waits: %s",
            row.position,
            row.topic,
            row.key,
            row.attempts + 1,
            reason,
        )

    def _count_failed_round(self, error: BaseException) -> None:
        self.stats.failed_rounds += 1
        PUBLISH_FAILURES.labels(self.service).inc()
        log.warning("outbox publish failed, retrying: %s", _describe(error))

    async def _observe_when_due(self) -> None:
        """Every relay, the standby ones too, reads the gauges from the table itself, so no
        replica reports what it saw while it last held the lock."""
        now = asyncio.get_running_loop().time()
        if now - self._observed_at < self.limits.metrics_interval_s:
            return
        self._observed_at = now
        try:
            async with self.sessionmaker() as session:
                state = await outbox_state(session)
        except Exception as error:
            log.debug("outbox metrics not read: %s", describe(error))
            return
        PENDING.labels(self.service).set(state.pending)
        PARKED.labels(self.service).set(state.parked)
        oldest = state.oldest_publishable
        LAG_SECONDS.labels(self.service).set(
            (datetime.now(UTC) - oldest).total_seconds() if oldest else 0
        )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = reliable_producer(
                self.connection, f"{self.service}-outbox-relay", self.limits.publish_timeout_s
            )
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


async def _send(
    producer: AIOKafkaProducer, row: ClaimedRow, payloads: dict[int, bytes]
) -> BaseException | None:
    """None once the broker acknowledged the row, else why it did not. Traced (when tracing
    is on) in the trace of the request or event that wrote the row."""
    payload = payloads[row.position]
    headers = [CONTENT_TYPE_HEADER]
    with publish_span(row.topic, row.key, payload, headers) as span:
        try:
            future = await producer.send(
                row.topic, value=payload, key=row.key.encode(), headers=headers
            )
            await future
        except Exception as error:
            mark_failed(span, _describe(error))
            return error
    return None


def _counts_against_row(error: BaseException, broker_answered: bool) -> bool:
    if isinstance(error, _ROW_ERRORS):
        return True
    return broker_answered and isinstance(error, UnknownTopicOrPartitionError)


def _describe(error: BaseException) -> str:
    """The error's class and Kafka's own message (never a payload); for a database error its
    class and SQLSTATE."""
    if isinstance(error, KafkaError):
        return f"{type(error).__name__}: {error}"
    return describe(error)


async def _take_relay_lock(session: AsyncSession) -> bool:
    result = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
    )
    return bool(result)


def _position_in(positions: list[int]) -> Any:
    """`position = ANY(:array)`: one parameter, one prepared statement whatever the count (an IN
    list renders and binds a parameter per row: a tenth of the relay's CPU per event)."""
    return outbox.c.position == any_(bindparam("positions", positions, type_=ARRAY(BigInteger)))


def _key_is_parked() -> Any:
    parked = outbox.alias("parked")
    return exists().where(
        parked.c.parked_at.is_not(None),
        parked.c.topic == outbox.c.topic,
        parked.c.key == outbox.c.key,
    )


async def _claim(session: AsyncSession, limit: int) -> list[ClaimedRow]:
    """The first rows in position order whose key has no parked row, without their payloads."""
    statement = (
        select(
            outbox.c.position,
            outbox.c.topic,
            outbox.c.key,
            func.octet_length(outbox.c.payload).label("size"),
            outbox.c.attempts,
        )
        .where(outbox.c.parked_at.is_(None), ~_key_is_parked())
        .order_by(outbox.c.position)
        .limit(limit)
        .with_for_update(skip_locked=True, of=outbox)
    )
    return [ClaimedRow(*row) for row in (await session.execute(statement)).all()]


def _within_bytes(rows: Sequence[ClaimedRow], max_bytes: int) -> list[ClaimedRow]:
    """The longest prefix of `rows` within `max_bytes`, and at least the first row."""
    taken: list[ClaimedRow] = []
    total = 0
    for row in rows:
        total += row.size
        if taken and total > max_bytes:
            break
        taken.append(row)
    return taken


async def _payloads(session: AsyncSession, positions: list[int]) -> dict[int, bytes]:
    result = await session.execute(
        select(outbox.c.position, outbox.c.payload).where(_position_in(positions))
    )
    return {position: payload for position, payload in result.all()}


async def outbox_state(session: AsyncSession) -> OutboxState:
    """Counts over the whole table, not the last batch: what waits, what is parked, and when
    the oldest row the relay can publish was written."""
    count = select(func.count()).select_from(outbox)
    pending = count.where(outbox.c.parked_at.is_(None)).scalar_subquery()
    parked = count.where(outbox.c.parked_at.is_not(None)).scalar_subquery()
    oldest = (
        select(outbox.c.created_at)
        .where(outbox.c.parked_at.is_(None), ~_key_is_parked())
        .order_by(outbox.c.position)
        .limit(1)
        .scalar_subquery()
    )
    row = (await session.execute(select(pending, parked, oldest))).one()
    return OutboxState(pending=int(row[0]), parked=int(row[1]), oldest_publishable=row[2])


PARKED_COLUMNS = (
    outbox.c.position,
    outbox.c.event_id,
    outbox.c.topic,
    outbox.c.key,
    outbox.c.event_type,
    outbox.c.created_at,
    outbox.c.attempts,
    outbox.c.last_error,
    outbox.c.parked_at,
)


async def parked_rows(session: AsyncSession, after: int | None, limit: int) -> list[Any]:
    """Parked rows in position order after the cursor, `limit` + 1 of them (keyset paging)."""
    statement = (
        select(*PARKED_COLUMNS)
        .where(outbox.c.parked_at.is_not(None))
        .order_by(outbox.c.position)
        .limit(limit + 1)
    )
    if after is not None:
        statement = statement.where(outbox.c.position > after)
    return list((await session.execute(statement)).all())


async def unpark(session: AsyncSession, position: int) -> Any | None:
    """Sends a parked row back to the relay with a fresh attempt count; None when no row is
    parked at `position`. Its key's later rows follow it once it is published."""
    statement = (
        update(outbox)
        .where(outbox.c.position == position, outbox.c.parked_at.is_not(None))
        .values(parked_at=None, attempts=0)
        .returning(*PARKED_COLUMNS)
    )
    return (await session.execute(statement)).one_or_none()
