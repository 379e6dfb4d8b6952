"""The event consumer over a real broker and database: applied once, only a broken contract
goes to the DLQ, anything else waits (and never gets committed past)."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import BLOCKED_PARTITIONS, ConsumerHalted, Outcome
from amana_common.db import Database
from amana_common.events import build_event
from amana_common.inbox import DLQ_REASON, DLQ_SOURCE, PoisonMessage
from amana_common.testing.clients import eventually, running
from amana_common.worker import run_components
from amana_contracts.envelope import CloudEvent
from registry.settings import RegistrySettings

from .probes import (
    Probe,
    ProbeProducer,
    applied,
    applied_ids,
    committed_offsets,
    consumer_for,
    failing_until,
    recording,
    records_on,
    rewind_group,
)


async def count_is(database: Database, expected: int) -> bool:
    return len(await applied(database)) >= expected


async def test_an_event_received_twice_is_applied_once_and_a_replay_changes_nothing(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    first = await produce.send(probe.noted(key="h-1", n=1))
    await produce.send_event(first.event)
    await produce.send(probe.noted(key="h-2", n=2))
    await produce.send(probe.noted(key="h-3", n=3))
    consumer = consumer_for(consumer_settings, registry_db, probe, recording())

    async with running(consumer):
        await eventually(lambda: count_is(registry_db, 3))
    assert [row[1] for row in await applied(registry_db)] == ["h-1", "h-2", "h-3"]
    assert consumer.stats.outcomes[Outcome.duplicate] == 1

    await rewind_group(kafka_bootstrap, consumer.name, probe.topic, partitions=3)
    replay = consumer_for(consumer_settings, registry_db, probe, recording())
    async with running(replay):
        await eventually(lambda: replay.stats.outcomes[Outcome.duplicate] >= 4)
    assert len(await applied(registry_db)) == 3
    assert replay.stats.outcomes[Outcome.applied] == 0


async def test_only_a_broken_contract_goes_to_the_dlq_and_the_next_message_is_applied(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    async def refuse_poison(session: AsyncSession, payload: object, event: CloudEvent) -> None:
        if getattr(payload, "key", "") == "poison":
            raise PoisonMessage("this note can never be applied")
        await recording()(session, payload, event)

    # One Kafka key, so all four land on one partition, in this order.
    await produce.send_raw(b'{"this is": "not a cloudevent"', "k")
    broken = build_event(probe.noted(key="k", n=1))
    broken = broken.model_copy(update={"data": {**broken.data, "n": "many"}})
    await produce.send_event(broken)
    await produce.send_on(build_event(probe.noted(key="poison", n=2)), "k")
    after = await produce.send(probe.noted(key="k", n=3))

    consumer = consumer_for(consumer_settings, registry_db, probe, refuse_poison)
    async with running(consumer):
        await eventually(lambda: count_is(registry_db, 1))
    dead = await records_on(kafka_bootstrap, probe.dlq, seconds=2)

    assert await applied_ids(registry_db) == [str(after.event.id)]
    reasons = [dict(r.headers)[DLQ_REASON].decode() for r in dead]
    assert len(reasons) == 3, reasons
    assert "not a valid CloudEvent" in reasons[0]
    assert f"data breaks {probe.noted.cloudevent_type()}" in reasons[1] and "n:" in reasons[1]
    assert reasons[2] == "PoisonMessage: this note can never be applied"
    assert dead[0].value == b'{"this is": "not a cloudevent"'
    assert dict(dead[0].headers)[DLQ_SOURCE].decode().startswith(f"{probe.topic}/")


async def test_the_consumer_stops_after_n_dead_letters_in_a_row(
    consumer_settings: RegistrySettings, registry_db: Database, probe: Probe, produce: ProbeProducer
) -> None:
    for _ in range(consumer_settings.consumer_max_consecutive_dead_letters + 2):
        await produce.send_raw(b"garbage", "k")
    consumer = consumer_for(consumer_settings, registry_db, probe, recording())

    with pytest.raises(ConsumerHalted, match="in a row went to the DLQ"):
        await asyncio.wait_for(run_components([consumer], asyncio.Event()), timeout=60)
    assert consumer.stats.outcomes[Outcome.dead_lettered] == 5


async def test_a_handler_bug_blocks_its_partition_and_raises_the_alert_instead_of_the_dlq(
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    released = asyncio.Event()

    async def bug() -> None:
        raise KeyError("a state this handler does not expect")

    handler = failing_until(released, {"buggy"}, bug, recording())
    before = await produce.send(probe.noted(key="k", n=1))
    stuck = await produce.send_on(build_event(probe.noted(key="buggy", n=2)), "k")
    await produce.send(probe.noted(key="k", n=3))
    consumer = consumer_for(consumer_settings, registry_db, probe, handler)

    async with running(consumer):
        await eventually(lambda: consumer.stats.outcomes[Outcome.blocked] >= 3)
        blocked = BLOCKED_PARTITIONS.labels(consumer.name)._value.get()
        committed = await committed_offsets(kafka_bootstrap, consumer.name, probe.topic)
        assert await applied_ids(registry_db) == [str(before.event.id)]
        released.set()
        await eventually(lambda: count_is(registry_db, 3))
        await eventually(lambda: BLOCKED_PARTITIONS.labels(consumer.name)._value.get() == 0)

    assert blocked == 1
    assert committed.get(stuck.partition, 0) <= stuck.offset, "never past the stuck message"
    assert await records_on(kafka_bootstrap, probe.dlq, seconds=1) == []
    assert [row[2] for row in await applied(registry_db)] == [1, 2, 3]


async def test_a_handler_that_writes_then_fails_leaves_nothing_and_is_applied_once(
    consumer_settings: RegistrySettings, registry_db: Database, probe: Probe, produce: ProbeProducer
) -> None:
    failures = 0

    async def write_then_fail(session: AsyncSession, payload: object, event: CloudEvent) -> None:
        nonlocal failures
        await recording()(session, payload, event)
        if failures < 3:
            failures += 1
            await session.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
            )

    sent = await produce.send(probe.noted(key="k", n=1))
    consumer = consumer_for(consumer_settings, registry_db, probe, write_then_fail)
    async with running(consumer):
        await eventually(lambda: count_is(registry_db, 1))
        await asyncio.sleep(0.5)

    assert await applied_ids(registry_db) == [str(sent.event.id)]
    assert consumer.stats.outcomes[Outcome.retrying] == 3
    assert consumer.stats.outcomes[Outcome.applied] == 1


@pytest.mark.parametrize("policy", ["block", "dead_letter"])
async def test_an_unknown_version_of_a_known_event_is_never_silently_committed(
    policy: str,
    consumer_settings: RegistrySettings,
    registry_db: Database,
    kafka_bootstrap: str,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    newer = await produce.send(probe.noted_v2(key="k", n=1))
    after = await produce.send(probe.noted(key="k", n=2))
    consumer = consumer_for(
        consumer_settings, registry_db, probe, recording(), on_unknown_version=policy
    )

    async with running(consumer):
        if policy == "block":
            await eventually(lambda: consumer.stats.outcomes[Outcome.blocked] >= 2)
            await asyncio.sleep(0.5)
            committed = await committed_offsets(kafka_bootstrap, consumer.name, probe.topic)
            assert await applied(registry_db) == []
            assert committed.get(newer.partition, 0) <= newer.offset
            assert BLOCKED_PARTITIONS.labels(consumer.name)._value.get() == 1
        else:
            await eventually(lambda: count_is(registry_db, 1))

    if policy == "dead_letter":
        assert await applied_ids(registry_db) == [str(after.event.id)]
        dead = await records_on(kafka_bootstrap, probe.dlq, seconds=2)
        assert [dict(r.headers)[DLQ_REASON].decode() for r in dead] == [
            f"unknown version: {probe.noted_v2.cloudevent_type()} (this consumer handles v1)"
        ]
    else:
        assert await records_on(kafka_bootstrap, probe.dlq, seconds=1) == []


@pytest.mark.parametrize("policy", ["skip", "block"])
async def test_an_unknown_event_name_is_skipped_or_blocks_as_configured(
    policy: str,
    consumer_settings: RegistrySettings,
    registry_db: Database,
    probe: Probe,
    produce: ProbeProducer,
) -> None:
    await produce.send(probe.other(key="k", n=1))
    after = await produce.send(probe.noted(key="k", n=2))
    consumer = consumer_for(
        consumer_settings, registry_db, probe, recording(), on_unknown_type=policy
    )

    async with running(consumer):
        if policy == "skip":
            await eventually(lambda: count_is(registry_db, 1))
        else:
            await eventually(lambda: consumer.stats.outcomes[Outcome.blocked] >= 2)

    if policy == "skip":
        assert await applied_ids(registry_db) == [str(after.event.id)]
        assert consumer.stats.outcomes[Outcome.skipped] == 1
    else:
        assert await applied(registry_db) == []
