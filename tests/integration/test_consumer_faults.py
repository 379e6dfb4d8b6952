"""The consumer under faults, against the real database and broker: database connections
killed and a server that is starting up, a handler write rolled back, a relay that publishes
and then fails to delete, and a second consumer joining mid-batch. Every time: each event
applied once, nothing in the DLQ, and no offset committed past an unapplied message."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import Outcome
from amana_common.db import Database, create_database
from amana_common.events import add_to_outbox
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay, RelayLimits
from amana_common.testing.clients import eventually, running
from amana_contracts.envelope import CloudEvent
from registry.settings import RegistrySettings

from .probes import (
    Probe,
    ProbeProducer,
    Sent,
    applied,
    committed_offsets,
    consumer_for,
    create_probe_topics,
    new_probe,
    probe_producer,
    recording,
    records_on,
    reset_applied,
)

UNDER_TEST = "it-consumer-under-test"
STARTING_UP = (
    "DO $$ BEGIN RAISE EXCEPTION 'the database system is starting up' "
    "USING ERRCODE = '57P03'; END $$"
)


@pytest.fixture
async def consumer_db(registry_url: str) -> AsyncIterator[Database]:
    """The consumer's own engine, named so that the test can kill its connections only."""
    database = create_database(registry_url, 5, {"application_name": UNDER_TEST})
    yield database
    await database.dispose()


class OffsetAuditor:
    """Watches, while the consumer runs, that every offset committed is behind applied
    messages only: committed offset N on a partition means all of 0..N-1 are in it_applied."""

    def __init__(self, bootstrap: str, group: str, probe: Probe, sent: list[Sent]) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.probe = probe
        self.sent = sent
        self.violations: list[str] = []
        self.checks = 0

    async def run(self, stop: asyncio.Event, database: Database) -> None:
        while not stop.is_set():
            committed = await committed_offsets(self.bootstrap, self.group, self.probe.topic)
            done = {row[0] for row in await applied(database)}  # read after the offsets
            self.violations.extend(
                f"{message.partition}/{message.offset}"
                for message in self.sent
                if message.offset < committed.get(message.partition, 0)
                and str(message.event.id) not in done
            )
            self.checks += 1
            await asyncio.sleep(0.1)


async def terminate_backends(database: Database, stop: asyncio.Event) -> int:
    """Kills the consumer's database connections again and again, until `stop`."""
    killed = 0
    while not stop.is_set():
        async with database.sessionmaker() as session:
            killed += int(
                await session.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": UNDER_TEST},
                )
                or 0
            )
        await asyncio.sleep(0.15)
    return killed


async def test_killed_connections_and_a_starting_database_skip_nothing_and_dead_letter_nothing(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    consumer_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    injected: Counter[str] = Counter()

    async def slow_and_sometimes_starting_up(
        session: AsyncSession, payload: Any, event: CloudEvent
    ) -> None:
        await session.execute(text("SELECT pg_sleep(0.01)"))
        if payload.n % 10 == 0 and injected[payload.key] < 5:
            injected[payload.key] += 1
            await session.execute(text(STARTING_UP))
        await recording()(session, payload, event)

    sent = [await produce.send(probe.noted(key=f"k{n % 7}-{n}", n=n)) for n in range(60)]
    consumer = consumer_for(consumer_settings, consumer_db, probe, slow_and_sometimes_starting_up)
    auditor = OffsetAuditor(kafka_bootstrap, consumer.name, probe, sent)
    stop_faults = asyncio.Event()

    async with running(consumer) as stop:
        watching = asyncio.create_task(auditor.run(stop, registry_db))
        killing = asyncio.create_task(terminate_backends(registry_db, stop_faults))
        await asyncio.sleep(3)
        stop_faults.set()
        killed = await killing
        await eventually(lambda: _applied_count(registry_db, 60), timeout_s=60)
        await asyncio.sleep(0.5)
        stop.set()
        await watching

    ids = [row[0] for row in await applied(registry_db)]
    assert sorted(ids) == sorted(str(s.event.id) for s in sent), "each event applied once"
    assert killed > 0, "connections were killed while the consumer ran"
    assert sum(injected.values()) == 30, "six events met a starting-up database five times each"
    # A run that meets the error is applied again one by one, where each such event waits.
    assert consumer.stats.outcomes[Outcome.retrying] >= 6
    assert consumer.stats.outcomes[Outcome.dead_lettered] == 0
    assert await records_on(kafka_bootstrap, probe.dlq, seconds=1) == []
    assert auditor.checks > 5 and auditor.violations == []


async def test_a_relay_that_published_then_failed_to_delete_republishes_and_nothing_changes(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
) -> None:
    events = 10
    async with registry_db.sessionmaker() as session, session.begin():
        await add_to_outbox(session, *(probe.noted(key=f"k{n}", n=n) for n in range(events)))
        await session.execute(text("CREATE SEQUENCE IF NOT EXISTS it_failed_deletes"))
        await session.execute(text("SELECT setval('it_failed_deletes', 1, false)"))
        await session.execute(
            text(
                "CREATE OR REPLACE FUNCTION it_fail_deletes() RETURNS trigger AS $$ BEGIN "
                "IF nextval('it_failed_deletes') <= 2 THEN "
                "RAISE EXCEPTION 'injected: delete after publish failed'; END IF; "
                "RETURN NULL; END $$ LANGUAGE plpgsql"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER it_fail_deletes BEFORE DELETE ON outbox "
                "FOR EACH STATEMENT EXECUTE FUNCTION it_fail_deletes()"
            )
        )
    relay = OutboxRelay(
        "registry",
        registry_db.sessionmaker,
        KafkaConnection(kafka_bootstrap),
        RelayLimits(max_backoff_s=0.2),
    )
    consumer = consumer_for(consumer_settings, registry_db, probe, recording())
    try:
        async with running(relay, consumer):
            await eventually(lambda: relay.stats.published >= events)
            await eventually(lambda: _applied_count(registry_db, events))
            await eventually(lambda: consumer.stats.outcomes[Outcome.duplicate] >= 2 * events)
    finally:
        async with registry_db.sessionmaker() as session, session.begin():
            await session.execute(text("DROP TRIGGER IF EXISTS it_fail_deletes ON outbox"))

    on_the_wire = await records_on(kafka_bootstrap, probe.topic, seconds=1)
    assert len(on_the_wire) == 3 * events, "published three times: two deletes failed"
    assert relay.stats.failed_rounds == 2
    rows = await applied(registry_db)
    assert sorted(row[2] for row in rows) == list(range(events)), "applied once each"
    assert consumer.stats.outcomes[Outcome.applied] == events


async def test_a_second_consumer_joining_mid_batch_loses_and_duplicates_nothing(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
) -> None:
    probe = new_probe()
    await create_probe_topics(kafka_bootstrap, probe, partitions=6)
    await reset_applied(registry_db)
    total = 300
    async with probe_producer(kafka_bootstrap, probe) as produce:
        sent = [await produce.send(probe.noted(key=f"k{n}", n=n)) for n in range(total)]

    second_took_part = asyncio.Event()

    def slow(worker: str) -> Any:
        record = recording(worker)

        async def handle(session: AsyncSession, payload: Any, event: CloudEvent) -> None:
            # The first stays slow until the second has applied something, so a loaded machine
            # where joining the group takes seconds still sees both take part; sleeping (not
            # waiting on the event) keeps the first free to answer the rebalance.
            await asyncio.sleep(0.025 if second_took_part.is_set() else 0.1)
            await record(session, payload, event)
            if worker == "b":
                second_took_part.set()

        return handle

    first = consumer_for(
        consumer_settings, registry_db, probe, slow("a"), name=f"{probe.service}-group"
    )
    second = consumer_for(consumer_settings, registry_db, probe, slow("b"), name=first.name)
    auditor = OffsetAuditor(kafka_bootstrap, first.name, probe, sent)
    async with running(first) as stop:
        watching = asyncio.create_task(auditor.run(stop, registry_db))
        await eventually(lambda: _applied_count(registry_db, 30), interval_s=0.05)
        async with running(second):
            await eventually(lambda: _applied_count(registry_db, total), timeout_s=90)
        stop.set()
        await watching

    rows = await applied(registry_db)
    assert sorted(row[2] for row in rows) == list(range(total)), "nothing lost, nothing twice"
    workers = Counter(row[3] for row in rows)
    assert workers["a"] > 0 and workers["b"] > 0, f"both consumers took part: {workers}"
    assert first.stats.rebalances >= 1
    assert auditor.violations == []


async def _applied_count(database: Database, expected: int) -> bool:
    return len(await applied(database)) >= expected
