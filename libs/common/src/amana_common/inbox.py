"""Idempotent Kafka consumer.

Each message is applied in one database transaction that also records
`(consumer, event_id)` in `processed_events`; the Kafka offset is committed only after that
transaction committed. A message that cannot be parsed or handled goes to `<topic>.dlq` with
the reason in a header, and the consumer keeps going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amana_common.kafka import manual_commit_consumer, reliable_producer
from amana_common.tables import processed_events
from amana_contracts.envelope import CloudEvent, dead_letter_topic

log = logging.getLogger("amana.inbox")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]

CONSUMED = Counter(
    "amana_consumer_events_total", "Consumed events by outcome", ["consumer", "outcome"]
)

DLQ_REASON = "amana-dlq-reason"


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be applied (goes to the DLQ at once)."""


class Unparseable(Exception):
    pass


def parse_event(raw: bytes | None) -> CloudEvent:
    if raw is None:
        raise Unparseable("empty message value")
    try:
        return CloudEvent.model_validate_json(raw)
    except ValidationError as error:
        raise Unparseable(f"not a valid CloudEvent: {_summarise(error)}") from error


def _summarise(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()
    ]
    return "; ".join(parts[:5])


_TRANSIENT = (OperationalError, InterfaceError, ConnectionError, OSError)


class IdempotentConsumer:
    def __init__(
        self,
        name: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        bootstrap: str,
        handlers: dict[str, Handler],
        topics: list[str],
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        group_id: str | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id or name
        self.sessionmaker = sessionmaker
        self.bootstrap = bootstrap
        self.handlers = handlers
        self.topics = topics
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s

    async def run(self, stop: asyncio.Event) -> None:
        consumer = manual_commit_consumer(self.bootstrap, self.group_id, *self.topics)
        dlq = reliable_producer(self.bootstrap, f"{self.name}-dlq")
        await _start_with_retry(consumer, stop)
        await _start_with_retry(dlq, stop)
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for partition, records in batches.items():
                    for record in records:
                        await self.process(record, dlq, stop)
                    await consumer.commit({partition: records[-1].offset + 1})
        finally:
            await consumer.stop()
            await dlq.stop()

    async def process(
        self, record: ConsumerRecord[Any, Any], dlq: AIOKafkaProducer, stop: asyncio.Event
    ) -> str:
        """Applies one record; answers the outcome (applied, duplicate, ignored, dead_lettered)."""
        try:
            event = parse_event(record.value)
        except Unparseable as error:
            return await self._dead_letter(record, dlq, str(error))
        handler = self.handlers.get(event.type)
        if handler is None:
            CONSUMED.labels(self.name, "ignored").inc()
            return "ignored"
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await self._apply(event, handler)
                CONSUMED.labels(self.name, outcome).inc()
                return outcome
            except _TRANSIENT as error:
                # The database or network is down: retry forever, never skip the message.
                log.warning("consumer %s transient failure: %r", self.name, error)
                if stop.is_set():
                    raise
                await asyncio.sleep(min(self.retry_backoff_s * attempt, 5.0))
            except (PoisonMessage, ValidationError, ValueError, KeyError, TypeError) as error:
                return await self._dead_letter(record, dlq, f"{type(error).__name__}: {error}")
            except (DBAPIError, Exception) as error:
                if attempt >= self.max_attempts:
                    return await self._dead_letter(record, dlq, f"{type(error).__name__}: {error}")
                await asyncio.sleep(self.retry_backoff_s * attempt)

    async def _apply(self, event: CloudEvent, handler: Handler) -> str:
        async with self.sessionmaker() as session, session.begin():
            first_time = await session.scalar(
                insert(processed_events)
                .values(consumer=self.name, event_id=event.id, event_type=event.type)
                .on_conflict_do_nothing()
                .returning(processed_events.c.event_id)
            )
            if first_time is None:
                return "duplicate"
            await handler(session, event)
        return "applied"

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], dlq: AIOKafkaProducer, reason: str
    ) -> str:
        headers = [
            *list(record.headers or ()),
            (DLQ_REASON, reason[:1000].encode()),
            ("amana-dlq-consumer", self.name.encode()),
            ("amana-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await dlq.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        log.error(
            "consumer %s dead-lettered %s/%s/%s: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason[:200],
        )
        CONSUMED.labels(self.name, "dead_lettered").inc()
        return "dead_lettered"


async def _start_with_retry(
    client: AIOKafkaConsumer | AIOKafkaProducer, stop: asyncio.Event
) -> None:
    delay = 0.5
    while True:
        try:
            await client.start()
            return
        except Exception as error:
            if stop.is_set():
                raise
            log.warning("kafka client start failed, retrying in %.1fs: %r", delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


__all__ = ["DLQ_REASON", "Handler", "IdempotentConsumer", "PoisonMessage", "TopicPartition"]
