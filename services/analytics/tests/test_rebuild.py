"""On the real broker: the worker ingests the scenario from the topics; `rebuild` empties the
reporting tables and replays the topics from the beginning, and every report comes out the
same (and as computed by hand); a rebuild is refused while the worker runs."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.kafka import KafkaConnection, reliable_producer
from amana_common.testing.clients import eventually, running, service_client
from amana_common.testing.service import bearer
from amana_contracts.envelope import topic_for
from analytics import rebuild
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings
from analytics.worker import ingest_consumer

from .factories import Event
from .kafka_setup import TOPICS
from .scenario import scenario

REPORTS = (
    "enrolment",
    "households",
    "members",
    "coverage",
    "payroll",
    "outcomes",
    "non_payment_reasons",
    "timeliness",
    "duplicates",
    "summary",
)


async def publish(bootstrap: str, events: list[Event]) -> None:
    producer = reliable_producer(KafkaConnection(bootstrap), "analytics-test")
    await producer.start()
    try:
        for _, envelope in events:
            await producer.send_and_wait(
                topic_for(envelope.service),
                value=envelope.model_dump_json().encode(),
                key=envelope.subject.encode(),
            )
    finally:
        await producer.stop()


async def snapshot(settings: AnalyticsSettings, database: Database) -> dict[str, Any]:
    async with service_client(create_analytics_app(settings), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        found = {}
        for name in REPORTS:
            response = await http.get(
                f"/reports/{name}",
                params={"level": "3"} if name not in ("payroll", "summary", "enrolment") else {},
            )
            assert response.status_code == 200, response.text
            found[name] = response.json()["rows"]
        return found


async def topic_ends(admin: AIOKafkaAdminClient, bootstrap: str) -> dict[Any, int]:
    from aiokafka import AIOKafkaConsumer

    partitions = await rebuild.topic_partitions(admin, TOPICS)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        probe.assign(partitions)
        return dict(await probe.end_offsets(partitions))
    finally:
        await probe.stop()


async def caught_up(admin: AIOKafkaAdminClient, group: str, ends: dict[Any, int]) -> bool:
    done = await rebuild.committed(admin, group, list(ends))
    return all(done.get(tp, -1) >= end for tp, end in ends.items() if end > 0)


async def test_rebuild_gives_the_same_reports(
    worker: tuple[AnalyticsSettings, Database], kafka_bootstrap: str
) -> None:
    settings, database = worker
    await publish(kafka_bootstrap, scenario().events)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        ends = await topic_ends(admin, kafka_bootstrap)
        async with running(ingest_consumer(settings, database)):
            await eventually(lambda: caught_up(admin, settings.consumer_name, ends), timeout_s=120)
            with pytest.raises(rebuild.RebuildRefused):
                await rebuild.rebuild(settings, database, timeout_s=60)
    finally:
        await admin.close()
    before = await snapshot(settings, database)
    result = await rebuild.rebuild(settings, database, timeout_s=300)
    assert result.events >= len(scenario().events)
    after = await snapshot(settings, database)
    assert after == before
    async with service_client(create_analytics_app(settings), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        [figures] = (await http.get("/reports/summary", params={"programme": "PROG-A"})).json()[
            "rows"
        ]
    assert (figures["settled"], figures["failed"], figures["expired"], figures["reversed"]) == (
        3,
        1,
        1,
        1,
    )
    assert (figures["median_hours"], figures["p90_hours"]) == (48.0, 240.0)
