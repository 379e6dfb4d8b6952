"""Batch handlers: a run of records applied set-based in one transaction, and a bad record in
a run found and treated alone while the rest is applied."""

from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import BatchHandler, EventConsumer, Outcome, event_consumer
from amana_common.db import Database
from amana_common.inbox import PoisonMessage
from amana_common.testing.clients import eventually, running
from amana_contracts.envelope import CloudEvent
from registry.settings import RegistrySettings

from .probes import Probe, ProbeProducer, applied, recording, records_on, rewind_group


def batch_recording(calls: list[int]) -> BatchHandler[Any]:
    """Records every event of a run, refusing a note keyed `poison`; notes each run's size."""
    record = recording()

    async def apply(session: AsyncSession, run: list[tuple[Any, CloudEvent]]) -> None:
        calls.append(len(run))
        for payload, event in run:
            if payload.key == "poison":
                raise PoisonMessage("this note can never be applied")
            await record(session, payload, event)

    return apply


def batch_consumer(
    settings: RegistrySettings, database: Database, probe: Probe, calls: list[int]
) -> EventConsumer:
    consumer = event_consumer(
        settings,
        database,
        f"{probe.service}-batches",
        {},
        batch_handlers={probe.noted: batch_recording(calls)},
    )
    return cast(EventConsumer, consumer)


async def test_a_run_is_applied_in_few_calls_in_order_and_a_replay_changes_nothing(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    for n in range(200):
        await produce.send_on_key(probe.noted(key=f"h-{n}", n=n), "one-partition")
    calls: list[int] = []
    consumer = batch_consumer(consumer_settings, registry_db, probe, calls)

    async with running(consumer):
        await eventually(lambda: consumer.stats.outcomes[Outcome.applied] >= 200)

    assert [row[2] for row in await applied(registry_db)] == list(range(200))
    assert sum(calls) == 200 and len(calls) < 20, calls
    await rewind_group(kafka_bootstrap, consumer.name, probe.topic, partitions=3)
    calls.clear()
    replay = batch_consumer(consumer_settings, registry_db, probe, calls)
    async with running(replay):
        await eventually(lambda: replay.stats.outcomes[Outcome.duplicate] >= 200)
    assert calls == [] and len(await applied(registry_db)) == 200


async def test_a_bad_record_in_a_run_goes_alone_to_the_dlq_and_the_others_are_applied(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    keys = [f"k-{n}" for n in range(10)]
    keys[4] = "poison"
    for n, key in enumerate(keys):
        await produce.send_on_key(probe.noted(key=key, n=n), "one-partition")
    calls: list[int] = []
    consumer = batch_consumer(consumer_settings, registry_db, probe, calls)

    async with running(consumer):
        await eventually(lambda: consumer.stats.outcomes[Outcome.applied] >= 9)

    assert [row[1] for row in await applied(registry_db)] == [k for k in keys if k != "poison"]
    dead = await records_on(kafka_bootstrap, probe.dlq, seconds=2)
    assert len(dead) == 1 and consumer.stats.outcomes[Outcome.dead_lettered] == 1


async def test_contracts_registered_with_one_batch_handler_share_their_runs(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    """Two contracts of one handler, interleaved on a partition: runs span both, in order (one
    run per contract would mean a call for nearly every record)."""
    for n in range(200):
        model = probe.noted if n % 2 else probe.other
        await produce.send_on_key(model(key=f"h-{n}", n=n), "one-partition")
    calls: list[int] = []
    handler = batch_recording(calls)
    consumer = cast(
        EventConsumer,
        event_consumer(
            consumer_settings,
            registry_db,
            f"{probe.service}-shared-batches",
            {},
            batch_handlers={probe.noted: handler, probe.other: handler},
        ),
    )

    async with running(consumer):
        await eventually(lambda: consumer.stats.outcomes[Outcome.applied] >= 200)

    assert [row[2] for row in await applied(registry_db)] == list(range(200))
    assert sum(calls) == 200 and len(calls) < 20, calls
