"""The outbox relay keeps flowing: a row the broker refuses is parked after a few attempts and
blocks only its own key; batches are bounded by bytes; the gauges read the whole table, on
every replica; an admin lists parked rows and sends them back."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.events import add_to_outbox
from amana_common.kafka import KafkaConnection
from amana_common.outbox import RELAY_LOCK_KEY, OutboxRelay, RelayLimits, unpark
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, eventually, running
from amana_common.testing.service import bearer
from amana_common.topics import ensure_topics
from amana_contracts.base import EventData
from registry.settings import RegistrySettings

from .probes import Probe, create_probe_topics, new_probe


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": "registry"})


async def outbox_rows(database: Database) -> list[dict[str, object]]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(
                outbox.c.position,
                outbox.c.key,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.parked_at,
            ).order_by(outbox.c.position)
        )
        return [dict(row._mapping) for row in rows]


async def write(database: Database, *payloads: EventData) -> None:
    async with database.sessionmaker() as session, session.begin():
        await add_to_outbox(session, *payloads)


@pytest.fixture
async def flowing(kafka_bootstrap: str) -> Probe:
    probe = new_probe()
    await create_probe_topics(kafka_bootstrap, probe)
    return probe


async def keep_writing(database: Database, probe: Probe, stop: asyncio.Event) -> int:
    written = 0
    while not stop.is_set():
        await write(database, probe.noted(key=f"flowing-{written}", n=written))
        written += 1
        await asyncio.sleep(0.1)
    return written


async def test_a_row_that_cannot_be_published_is_parked_and_blocks_only_its_key(
    registry_db: Database, kafka_bootstrap: str, flowing: Probe
) -> None:
    missing = new_probe()  # its topic is never created
    await write(registry_db, missing.noted(key="stuck", n=1), missing.noted(key="stuck", n=2))
    relay = OutboxRelay(
        "registry",
        registry_db.sessionmaker,
        KafkaConnection(kafka_bootstrap),
        RelayLimits(max_attempts=3, publish_timeout_s=1, max_backoff_s=0.2, metrics_interval_s=0.1),
    )
    stop_writing = asyncio.Event()

    async with running(relay):
        writer = asyncio.create_task(keep_writing(registry_db, flowing, stop_writing))
        await eventually(lambda: relay.stats.parked == 1, timeout_s=60)
        stop_writing.set()
        written = await writer
        await eventually(lambda: _only_stuck_left(registry_db), timeout_s=30)
        # The row behind the parked one still waits; nothing publishable does.
        await eventually(
            lambda: (gauge("amana_outbox_parked"), gauge("amana_outbox_pending")) == (1, 1)
        )
        lag = gauge("amana_outbox_lag_seconds")

    head, behind = await outbox_rows(registry_db)
    assert head["attempts"] == 3 and head["parked_at"] is not None
    assert "UnknownTopicOrPartitionError" in str(head["last_error"])
    assert behind["attempts"] == 0 and behind["parked_at"] is None, "it waits, untried"
    assert relay.stats.published == written, "every other key kept flowing"
    assert lag == 0

    # The topic is created, an admin sends the row back: both go, in order.
    await ensure_topics(KafkaConnection(kafka_bootstrap), [missing.topic])
    async with TopicReader(kafka_bootstrap, missing.topic) as reader, running(relay):
        async with registry_db.sessionmaker() as session, session.begin():
            assert await unpark(session, int(str(head["position"]))) is not None
        records = await reader.read_until(lambda rs: len(rs) >= 2)
    assert [event.data["n"] for event in reader.events()] == [1, 2]
    assert len(records) == 2
    assert await outbox_rows(registry_db) == []


async def _only_stuck_left(database: Database) -> bool:
    return {row["key"] for row in await outbox_rows(database)} == {"stuck"}


class Bulky(EventData):
    service = "relay_probe"
    event_name = "Bulky"

    key: str
    filler: str

    def subject(self) -> str:
        return self.key


async def test_a_batch_is_bounded_by_bytes_as_well_as_rows(
    registry_db: Database, kafka_bootstrap: str
) -> None:
    connection = KafkaConnection(kafka_bootstrap)
    await ensure_topics(connection, ["relay_probe.events"])
    await write(registry_db, *(Bulky(key=f"b{n}", filler="x" * 100_000) for n in range(5)))
    relay = OutboxRelay(
        "registry",
        registry_db.sessionmaker,
        connection,
        RelayLimits(batch_size=500, batch_max_bytes=250_000),
    )
    try:
        rounds = [await relay.relay_once() for _ in range(3)]
    finally:
        await relay._reset_producer()

    assert [r.claimed for r in rounds] == [2, 2, 1]
    assert [r.published for r in rounds] == [2, 2, 1]
    assert await outbox_rows(registry_db) == []


@contextlib.asynccontextmanager
async def relay_lock_held_elsewhere(database: Database) -> AsyncIterator[None]:
    """Another replica holds the relay lock: a relay started now is a standby."""
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
        yield


async def test_the_gauges_count_the_whole_table_even_on_a_standby_relay(
    registry_db: Database, kafka_bootstrap: str, flowing: Probe
) -> None:
    await write(registry_db, *(flowing.noted(key=f"k{n}", n=n) for n in range(1200)))
    relay = OutboxRelay(
        "registry",
        registry_db.sessionmaker,
        KafkaConnection(kafka_bootstrap),
        RelayLimits(batch_size=500, metrics_interval_s=0.1),
    )
    async with relay_lock_held_elsewhere(registry_db), running(relay):
        await eventually(lambda: gauge("amana_outbox_pending") == 1200)
        assert (gauge("amana_outbox_lag_seconds") or 0) > 0
        async with registry_db.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "DELETE FROM outbox WHERE position IN "
                    "(SELECT position FROM outbox ORDER BY position LIMIT 200)"
                )
            )
        await eventually(lambda: gauge("amana_outbox_pending") == 1000)
        assert relay.stats.published == 0, "the standby published nothing"


async def test_an_admin_lists_parked_rows_and_sends_one_back(
    registry_db: Database, registry_url: str, kafka_bootstrap: str, flowing: Probe
) -> None:
    from amana_common.testing.clients import service_client
    from registry.main import create_registry_app

    await write(registry_db, *(flowing.noted(key=f"k{n}", n=n) for n in range(3)))
    async with registry_db.sessionmaker() as session, session.begin():
        await session.execute(
            outbox.update()
            .where(outbox.c.key.in_(["k0", "k2"]))
            .values(parked_at=text("now()"), attempts=5, last_error="MessageSizeTooLargeError")
        )
    settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    async with service_client(create_registry_app(settings), registry_db) as client:
        client.headers.update(bearer(settings, Role.admin))
        first = await client.get("/admin/outbox/parked", params={"limit": 1})
        second = await client.get(
            "/admin/outbox/parked", params={"limit": 1, "cursor": first.json()["next_cursor"]}
        )
        position = first.json()["items"][0]["position"]
        retried = await client.post(f"/admin/outbox/parked/{position}/retry")
        again = await client.post(f"/admin/outbox/parked/{position}/retry")
        after = await client.get("/admin/outbox/parked")
        registrar = await client.get(
            "/admin/outbox/parked", headers=bearer(settings, Role.registrar)
        )

    assert first.status_code == 200, first.text
    assert [item["key"] for item in first.json()["items"]] == ["k0"]
    assert [item["key"] for item in second.json()["items"]] == ["k2"]
    assert second.json()["next_cursor"] is None
    assert first.json()["items"][0]["last_error"] == "MessageSizeTooLargeError"
    assert "payload" not in first.json()["items"][0]
    assert retried.status_code == 200
    assert retried.json()["parked_at"] is None and retried.json()["attempts"] == 0
    assert again.status_code == 404
    assert [item["key"] for item in after.json()["items"]] == ["k2"]
    assert registrar.status_code == 403
