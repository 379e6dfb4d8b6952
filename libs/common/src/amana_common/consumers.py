"""Kafka consumers that never skip a message; `event_consumer` builds one for a worker.

Handlers are keyed by contract class. Each receives the session, the validated payload and
the envelope; it runs in the transaction that also records `(consumer, event id)` in
`processed_events`, and the offset is committed only after that transaction committed, so a
redelivery or a replay changes nothing.

Records a poll brings for one partition are applied together, in one transaction, when they
are all well-formed and routed: a contract may have a *batch handler* that applies a run of its
events set-based (one statement for the run; contracts registered with the same handler share
their runs), which is what lets a projection catch up with a million events in minutes. If that
transaction fails, the records are applied again one by one, so the one at fault is found and
treated as below while the others are applied.

When a message cannot be applied its partition waits (paused, the message sought back),
while the other partitions go on:
- a temporary failure (database or network down) is retried without limit, with backoff;
- a payload that breaks its contract goes to `<topic>.dlq` with the reason in a header, and
  after `max_consecutive_dead_letters` in a row the consumer stops (the worker crashes);
- any other failure blocks the partition, raises `amana_consumer_blocked_partitions` and is
  logged at every retry, until a fix is deployed;
- a known event name with an unknown version blocks, or goes to the DLQ, as configured; an
  unknown event name is counted and skipped, or blocks, as configured.
A rebalance commits what was applied and forgets the revoked partitions' pending work; a
commit that fails (the partition was revoked meanwhile) is logged and never crashes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby
from typing import Any, Literal, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amana_common.db import Database
from amana_common.inbox import (
    Failure,
    Unparseable,
    classify,
    dead_letter_headers,
    describe,
    parse_event,
    record_first_deliveries,
    record_first_delivery,
    summarise,
)
from amana_common.kafka import (
    KafkaConnection,
    kafka_connection,
    manual_commit_consumer,
    reliable_producer,
)
from amana_common.settings import ServiceSettings
from amana_common.tracing import consume_span, record_outcome
from amana_common.worker import Component, wait_or_stop
from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent, dead_letter_topic, topic_for

log = logging.getLogger("amana.consumers")

P = TypeVar("P", bound=EventData)
Handler = Callable[[AsyncSession, P, CloudEvent], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[tuple[P, CloudEvent]]], Awaitable[None]]
"""Applies a run of events, in the order received, in the caller's transaction: consecutive
records of its contract, or of every contract it is registered for (one handler for settled,
failed and reversed payments gets them together). A run may hold several events of one
aggregate: apply them in order (or keep the newest), as one multi-row statement would otherwise
touch a row twice."""
UnknownVersion = Literal["block", "dead_letter"]
UnknownType = Literal["skip", "block"]

CONSUMED = Counter(
    "amana_consumer_events_total", "Consumed events by outcome", ["consumer", "outcome"]
)
BLOCKED_PARTITIONS = Gauge(
    "amana_consumer_blocked_partitions",
    "Partitions waiting on a message no retry has applied yet (alert: a fix is needed)",
    ["consumer"],
)
COMMIT_FAILURES = Counter(
    "amana_consumer_commit_failures_total", "Offset commits that failed", ["consumer"]
)


class ConsumerHalted(RuntimeError):
    """Too many messages in a row went to the DLQ: something upstream is broken."""


class Outcome(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    skipped = "skipped"
    dead_lettered = "dead_lettered"
    retrying = "retrying"
    blocked = "blocked"


WAITING = frozenset({Outcome.retrying, Outcome.blocked})
SUCCESS = frozenset({Outcome.applied, Outcome.duplicate})


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True)
class ConsumerPolicy:
    on_unknown_version: UnknownVersion = "block"
    on_unknown_type: UnknownType = "skip"
    max_consecutive_dead_letters: int = 10
    retry_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    poll_timeout_ms: int = 200
    max_records: int = 500


@dataclass
class ConsumerStats:
    """What this consumer instance did, per outcome (Prometheus adds up every instance)."""

    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    rebalances: int = 0
    commit_failures: int = 0


@dataclass
class _PartitionState:
    """A partition's progress: the next offset to commit, and why it waits, if it does."""

    processed: int | None = None
    committed: int | None = None
    failures: int = 0
    blocked: bool = False
    resume_at: float | None = None


@dataclass(frozen=True)
class _Route:
    model: type[EventData]
    handler: Handler[Any]
    batch_handler: BatchHandler[Any] | None = None


@dataclass(frozen=True, eq=False)
class _Ready:
    """A record that parsed, has a route and a valid payload: it may join a batch."""

    record: ConsumerRecord[bytes, bytes]
    event: CloudEvent
    payload: EventData
    route: _Route


def _single(batch_handler: BatchHandler[Any]) -> Handler[Any]:
    async def handle(session: AsyncSession, payload: Any, event: CloudEvent) -> None:
        await batch_handler(session, [(payload, event)])

    return handle


class EventConsumer:
    def __init__(
        self,
        name: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        connection: KafkaConnection,
        handlers: Mapping[type[EventData], Handler[Any]],
        topics: Sequence[str],
        policy: ConsumerPolicy | None = None,
        batch_handlers: Mapping[type[EventData], BatchHandler[Any]] | None = None,
    ) -> None:
        batch_handlers = batch_handlers or {}
        if not handlers and not batch_handlers:
            raise ValueError(f"consumer {name} has no handlers")
        self.name = name
        self.sessionmaker = sessionmaker
        self.connection = connection
        self.topics = list(topics)
        self.policy = policy or ConsumerPolicy()
        self.stats = ConsumerStats()
        models = [*handlers, *(m for m in batch_handlers if m not in handlers)]
        self._routes = {
            model.cloudevent_type(): _Route(
                model,
                handlers.get(model) or _single(batch_handlers[model]),
                batch_handlers.get(model),
            )
            for model in models
        }
        self._versions: dict[tuple[str, str], list[int]] = {}
        for model in models:
            self._versions.setdefault((model.service, model.event_name), []).append(
                model.event_version
            )
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._generation = 0
        self._applying = asyncio.Lock()
        self._dead_letters_in_a_row = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        consumer = manual_commit_consumer(self.connection, self.name)
        consumer.subscribe(self.topics, listener=_Rebalance(self))
        dlq = reliable_producer(self.connection, f"{self.name}-dlq")
        self._consumer = consumer
        try:
            await _start_with_retry(consumer, stop)
            await _start_with_retry(dlq, stop)
            while not stop.is_set():
                await self._poll_once(consumer, dlq, stop)
        finally:
            with contextlib.suppress(Exception):
                await self._commit(consumer, list(self._partitions))
            await consumer.stop()
            await dlq.stop()
            BLOCKED_PARTITIONS.labels(self.name).set(0)

    async def _poll_once(
        self, consumer: AIOKafkaConsumer, dlq: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        self._resume_due(consumer)
        generation = self._generation
        try:
            batches = await consumer.getmany(
                timeout_ms=self.policy.poll_timeout_ms, max_records=self.policy.max_records
            )
        except KafkaError as error:
            log.warning("consumer %s poll failed: %r", self.name, error)
            await wait_or_stop(stop, self.policy.retry_backoff_s)
            return
        for partition, records in batches.items():
            await self._process_partition(consumer, dlq, partition, records, generation, stop)

    async def _process_partition(
        self,
        consumer: AIOKafkaConsumer,
        dlq: AIOKafkaProducer,
        partition: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        generation: int,
        stop: asyncio.Event,
    ) -> None:
        one_by_one = False
        index = 0
        while index < len(records):
            record = records[index]
            async with self._applying:
                state = self._partitions.get(partition)
                if stop.is_set() or generation != self._generation or state is None:
                    return  # revoked meanwhile: the new owner starts from the committed offset
                run = [] if one_by_one else self._ready_run(records[index:])
                outcomes = await self._apply_run(run) if len(run) > 1 else None
                if outcomes is None:
                    one_by_one = one_by_one or len(run) > 1
                    verdict = await self.process(record, dlq)
            if outcomes is not None:
                for outcome in outcomes:
                    self._count(Verdict(outcome))
                state.processed = run[-1].record.offset + 1
                self._recovered(state)
                self._dead_letters_in_a_row = 0
                index += len(run)
                continue
            index += 1
            self._count(verdict)
            if verdict.outcome in WAITING:
                self._wait_on(consumer, partition, record, verdict)
                break
            state.processed = record.offset + 1
            self._recovered(state)
            if verdict.outcome is Outcome.dead_lettered:
                await self._after_dead_letter(consumer, partition)
            elif verdict.outcome in SUCCESS:
                self._dead_letters_in_a_row = 0
        await self._commit(consumer, [partition])

    async def process(self, record: ConsumerRecord[bytes, bytes], dlq: AIOKafkaProducer) -> Verdict:
        """Applies one record, or says why not; never raises for the record's sake. Traced
        (when tracing is on) in the trace of the request or event that wrote it."""
        with consume_span(self.name, [record]) as span:
            verdict = await self._process(record, dlq)
            failed = verdict.outcome not in SUCCESS and verdict.outcome is not Outcome.skipped
            record_outcome(span, verdict.outcome.value, verdict.reason if failed else None)
        return verdict

    async def _process(
        self, record: ConsumerRecord[bytes, bytes], dlq: AIOKafkaProducer
    ) -> Verdict:
        try:
            event = parse_event(record.value)
        except Unparseable as error:
            return await self._dead_letter(record, dlq, str(error))
        route = self._routes.get(event.type)
        if route is None:
            return await self._unrouted(record, dlq, event)
        try:
            payload = route.model.model_validate(event.data)
        except ValidationError as error:
            return await self._dead_letter(
                record, dlq, f"data breaks {event.type}: {summarise(error)}"
            )
        try:
            first_time = await self._apply(event, payload, route.handler)
        except Exception as error:
            failure = classify(error)
            if failure is Failure.contract:
                return await self._dead_letter(record, dlq, describe(error))
            outcome = Outcome.retrying if failure is Failure.temporary else Outcome.blocked
            return Verdict(outcome, describe(error))
        return Verdict(Outcome.applied if first_time else Outcome.duplicate)

    def _ready_run(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[_Ready]:
        """The longest run of leading records that parse, are routed and are valid."""
        run: list[_Ready] = []
        for record in records:
            try:
                event = parse_event(record.value)
                route = self._routes[event.type]
                payload = route.model.model_validate(event.data)
            except (Unparseable, KeyError, ValidationError):
                break
            run.append(_Ready(record, event, payload, route))
        return run

    async def _apply_run(self, run: list[_Ready]) -> list[Outcome] | None:
        """Applies `run` in one transaction; None when it failed (nothing of it is kept)."""
        with consume_span(self.name, [ready.record for ready in run]) as span:
            try:
                async with self.sessionmaker() as session, session.begin():
                    events = [ready.event for ready in run]
                    first = await record_first_deliveries(session, self.name, events)
                    fresh = _first_of_each(run, first)
                    for _, group in groupby(fresh, key=_handled_together):
                        items = list(group)
                        await _apply_group(session, items[0].route, items)
            except Exception as error:
                reason = describe(error)
                record_outcome(span, "one_by_one", reason)
                log.info(
                    "consumer %s applies %s records one by one: %s", self.name, len(run), reason
                )
                return None
            record_outcome(span, Outcome.applied.value)
        applied = {id(ready) for ready in fresh}
        return [Outcome.applied if id(ready) in applied else Outcome.duplicate for ready in run]

    async def _apply(self, event: CloudEvent, payload: EventData, handler: Handler[Any]) -> bool:
        async with self.sessionmaker() as session, session.begin():
            if not await record_first_delivery(session, self.name, event):
                return False
            await handler(session, payload, event)
        return True

    async def _unrouted(
        self, record: ConsumerRecord[bytes, bytes], dlq: AIOKafkaProducer, event: CloudEvent
    ) -> Verdict:
        versions = self._versions.get((event.service, event.name))
        if versions is not None:
            handled = ", ".join(f"v{v}" for v in sorted(versions))
            reason = f"unknown version: {event.type} (this consumer handles {handled})"
            if self.policy.on_unknown_version == "dead_letter":
                return await self._dead_letter(record, dlq, reason)
            return Verdict(Outcome.blocked, reason)
        if self.policy.on_unknown_type == "block":
            return Verdict(Outcome.blocked, f"unknown event type: {event.type}")
        return Verdict(Outcome.skipped, f"unknown event type: {event.type}")

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], dlq: AIOKafkaProducer, reason: str
    ) -> Verdict:
        try:
            await dlq.send_and_wait(
                dead_letter_topic(record.topic),
                value=record.value,
                key=record.key,
                headers=dead_letter_headers(record, self.name, reason),
            )
        except Exception as error:
            return Verdict(Outcome.retrying, f"the DLQ did not take it: {describe(error)}")
        log.error(
            "consumer %s dead-lettered %s/%s/%s: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason[:200],
        )
        return Verdict(Outcome.dead_lettered, reason)

    def _count(self, verdict: Verdict) -> None:
        self.stats.outcomes[verdict.outcome] += 1
        CONSUMED.labels(self.name, verdict.outcome.value).inc()

    async def _after_dead_letter(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition
    ) -> None:
        self._dead_letters_in_a_row += 1
        limit = self.policy.max_consecutive_dead_letters
        if self._dead_letters_in_a_row >= limit:
            await self._commit(consumer, [partition])
            message = (
                f"consumer {self.name} stops: {limit} messages in a row went to the DLQ, "
                "something upstream is broken"
            )
            log.critical(message)
            raise ConsumerHalted(message)

    def _wait_on(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        verdict: Verdict,
    ) -> None:
        """Holds the partition at `record`: sought back, paused until its backoff has passed."""
        state = self._partitions.get(partition)
        if state is None:
            return  # revoked meanwhile: the new owner starts from the committed offset
        state.failures += 1
        state.blocked = verdict.outcome is Outcome.blocked
        delay = min(
            self.policy.retry_backoff_s * 2 ** min(state.failures - 1, 16),
            self.policy.max_backoff_s,
        )
        state.resume_at = asyncio.get_running_loop().time() + delay
        try:
            consumer.seek(partition, record.offset)
            consumer.pause(partition)
        except IllegalStateError:
            return  # revoked meanwhile
        self._publish_blocked()
        where = f"{record.topic}/{record.partition}/{record.offset}"
        if state.blocked:
            log.error(
                "consumer %s blocked at %s (attempt %s, retry in %.1fs): %s",
                self.name,
                where,
                state.failures,
                delay,
                verdict.reason,
            )
        else:
            log.warning(
                "consumer %s waits at %s (attempt %s, retry in %.1fs): %s",
                self.name,
                where,
                state.failures,
                delay,
                verdict.reason,
            )

    def _recovered(self, state: _PartitionState) -> None:
        if state.failures:
            state.failures = 0
            state.blocked = False
            self._publish_blocked()

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = asyncio.get_running_loop().time()
        for partition, state in self._partitions.items():
            if state.resume_at is not None and now >= state.resume_at:
                state.resume_at = None
                with contextlib.suppress(IllegalStateError):
                    consumer.resume(partition)

    def _publish_blocked(self) -> None:
        blocked = sum(1 for state in self._partitions.values() if state.blocked)
        BLOCKED_PARTITIONS.labels(self.name).set(blocked)

    async def _commit(
        self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> None:
        offsets = {
            partition: state.processed
            for partition in partitions
            if (state := self._partitions.get(partition)) is not None
            and state.processed is not None
            and state.processed != state.committed
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as error:
            # Revoked or the coordinator moved: the next owner redelivers from the last
            # committed offset, and processed_events makes the redelivery a no-op.
            self.stats.commit_failures += 1
            COMMIT_FAILURES.labels(self.name).inc()
            log.warning("consumer %s could not commit %s: %r", self.name, offsets, error)
            return
        for partition, offset in offsets.items():
            self._partitions[partition].committed = offset

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Waits for the message being applied, commits what was applied, then forgets the
        revoked partitions (their paused state and fetched records go with them)."""
        revoked = list(revoked)
        async with self._applying:
            self._generation += 1
            if self._consumer is not None:
                await self._commit(self._consumer, revoked)
            for partition in revoked:
                self._partitions.pop(partition, None)
            if revoked:
                self.stats.rebalances += 1
            self._publish_blocked()

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        for partition in assigned:
            self._partitions.setdefault(partition, _PartitionState())


def _first_of_each(run: list[_Ready], first: set[UUID]) -> list[_Ready]:
    """The records to apply: those seen for the first time, each event id once."""
    fresh: list[_Ready] = []
    taken: set[UUID] = set()
    for ready in run:
        if ready.event.id in first and ready.event.id not in taken:
            taken.add(ready.event.id)
            fresh.append(ready)
    return fresh


def _handled_together(ready: _Ready) -> object:
    """Consecutive records go to their batch handler together, whatever their contract: one
    handler may take several (settled, failed and reversed payments)."""
    return ready.route.batch_handler or ready.route


async def _apply_group(session: AsyncSession, route: _Route, group: list[_Ready]) -> None:
    if route.batch_handler is not None:
        await route.batch_handler(session, [(ready.payload, ready.event) for ready in group])
        return
    for ready in group:
        await route.handler(session, ready.payload, ready.event)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.on_assigned(assigned)


def event_consumer(
    settings: ServiceSettings,
    database: Database,
    name: str,
    handlers: Mapping[type[EventData], Handler[Any]],
    *,
    on_unknown_version: UnknownVersion = "block",
    on_unknown_type: UnknownType = "skip",
    batch_handlers: Mapping[type[EventData], BatchHandler[Any]] | None = None,
) -> Component:
    """A consumer of the topics of the handlers' contract classes (`<service>.events`), in
    the consumer group `name`, which is also its name in `processed_events`. A contract may
    have a handler, a batch handler (set-based, for high-volume events), or both."""
    topics = sorted({topic_for(model.service) for model in [*handlers, *(batch_handlers or {})]})
    policy = ConsumerPolicy(
        on_unknown_version=on_unknown_version,
        on_unknown_type=on_unknown_type,
        max_consecutive_dead_letters=settings.consumer_max_consecutive_dead_letters,
        retry_backoff_s=settings.consumer_retry_backoff_s,
        max_backoff_s=settings.consumer_max_backoff_s,
        max_records=settings.consumer_max_records,
    )
    return EventConsumer(
        name,
        database.sessionmaker,
        kafka_connection(settings),
        handlers,
        topics,
        policy,
        batch_handlers,
    )


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
                return
            log.warning("kafka client start failed, retrying in %.1fs: %r", delay, error)
            await wait_or_stop(stop, delay)
            delay = min(delay * 2, 10.0)
