"""`python -m analytics rebuild`: empty the reporting tables and replay every topic from the
beginning; the reports come out as they were.

1. Refuse while the worker runs: the ingest consumer group must have no member (stop the
   worker first; the rebuild would otherwise race it).
2. In one transaction: empty the reporting tables and forget the events applied
   (`processed_events` of the ingest consumer). A DHIS2 push log is kept.
3. Move the group's committed offsets to the beginning of every partition, and note where
   each partition ends now.
4. Run the ingest consumer until the group has committed those ends, then stop. Events
   published meanwhile are applied by the worker when it starts again.

Each step may be repeated: a rebuild that stopped half-way is finished by running it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from amana_common.db import Database, create_database
from amana_common.kafka import KafkaConnection, admin_client, kafka_connection
from amana_common.observability import configure_logging
from analytics import repository
from analytics.settings import AnalyticsSettings
from analytics.worker import ingest_consumer

log = logging.getLogger("amana.analytics.rebuild")
T = TypeVar("T")


class RebuildRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class RebuildResult:
    partitions: int
    events: int
    seconds: float


async def _retried(call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """A group coordinator may not be ready yet (retriable errors): try again a few times."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except KafkaError as error:
            if not getattr(error, "retriable", False) or attempt == attempts:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    described = await _retried(lambda: admin.describe_consumer_groups([group]))
    members = 0
    for response in described:
        for description in response.to_object()["groups"]:
            members += len(description["members"])
    return members


async def topic_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> list[TopicPartition]:
    """The partitions of the topics that exist (a service not deployed has no topic yet)."""
    described = await _retried(lambda: admin.describe_topics(list(topics)))
    return sorted(
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    )


async def reset_to_beginning(
    connection: KafkaConnection, group: str, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Commits the first offset of every partition for `group`; answers where each begins
    and ends."""
    consumer = AIOKafkaConsumer(
        **connection.client_kwargs(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: offset for tp, offset in beginnings.items()})
        return dict(beginnings), {tp: ends[tp] for tp in partitions}
    finally:
        await consumer.stop()


async def committed(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    offsets = await _retried(
        lambda: admin.list_consumer_group_offsets(group, partitions=partitions)
    )
    return {tp: (meta.offset if meta is not None else -1) for tp, meta in offsets.items()}


async def rebuild(
    settings: AnalyticsSettings, database: Database, timeout_s: float = 3600
) -> RebuildResult:
    started = time.monotonic()
    group = settings.consumer_name
    component = ingest_consumer(settings, database)
    topics: Sequence[str] = component.topics  # type: ignore[attr-defined]
    connection = kafka_connection(settings)
    admin = admin_client(connection)
    await admin.start()
    try:
        if await group_members(admin, group):
            raise RebuildRefused(
                f"the consumer group {group} has members: stop the analytics worker first"
            )
        async with database.sessionmaker() as session, session.begin():
            await repository.empty_reporting_tables(session, group)
        partitions = await topic_partitions(admin, topics)
        beginnings, ends = await reset_to_beginning(connection, group, partitions)
        await _replay_until(component, admin, group, ends, started + timeout_s)
        events = sum(ends[tp] - beginnings[tp] for tp in ends)
    finally:
        await admin.close()
    return RebuildResult(len(ends), events, time.monotonic() - started)


async def _replay_until(
    component: object,
    admin: AIOKafkaAdminClient,
    group: str,
    ends: dict[TopicPartition, int],
    deadline: float,
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(component.run(stop))  # type: ignore[attr-defined]
    try:
        while True:
            if running.done():
                running.result()  # the consumer crashed: say why
                raise RuntimeError("the ingest consumer stopped before the replay ended")
            done = await committed(admin, group, list(ends))
            if all(done.get(tp, -1) >= end for tp, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the replay did not reach the end of the topics in time")
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analytics rebuild", description=__doc__)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
    args = parser.parse_args(argv)
    settings = AnalyticsSettings()
    configure_logging(settings.log_level)

    async def run() -> RebuildResult:
        database = create_database(settings.database_url, pool_size=5)
        try:
            return await rebuild(settings, database, args.timeout)
        finally:
            await database.dispose()

    try:
        result = uvloop.run(run())
    except RebuildRefused as error:
        print(f"rebuild refused: {error}", file=sys.stderr)
        return 2
    print(
        f"rebuilt from {result.events} events on {result.partitions} partitions "
        f"in {result.seconds:.1f}s"
    )
    return 0
