"""Several relays on one outbox (say two worker replicas): nothing lost, each key in order,
and both relays publish (the one holding the lock at the moment; the other stands by)."""

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import Database
from amana_common.events import add_to_outbox
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay, RelayLimits
from amana_common.testing.clients import TopicReader, running
from amana_common.topics import ensure_topics
from amana_contracts.base import EventData
from amana_contracts.envelope import topic_for

KEYS = 5
EVENTS_PER_KEY = 60


class Numbered(EventData):
    """A test event, on a topic of its own, whose data says its position within its key."""

    service = "relay_probe"
    event_name = "RelayOrderProbe"

    key: str
    sequence: int

    def subject(self) -> str:
        return self.key


async def write_batch(session: AsyncSession, run: str, sequence: int) -> None:
    await add_to_outbox(
        session, *(Numbered(key=f"{run}-{k}", sequence=sequence) for k in range(KEYS))
    )


async def test_two_relays_deliver_everything_in_order_per_key(
    registry_db: Database, kafka_bootstrap: str
) -> None:
    connection = KafkaConnection(kafka_bootstrap)
    await ensure_topics(connection, [topic_for(Numbered.service)], partitions=6)
    run = f"relays-{id(registry_db):x}"
    relays = [
        OutboxRelay("registry", registry_db.sessionmaker, connection, RelayLimits(batch_size=7))
        for _ in range(2)
    ]
    async with (
        TopicReader(kafka_bootstrap, topic_for(Numbered.service)) as reader,
        running(*relays),
    ):
        for sequence in range(EVENTS_PER_KEY):
            async with registry_db.sessionmaker() as session, session.begin():
                await write_batch(session, run, sequence)
            await asyncio.sleep(0.03)  # written over time, as requests come: both relays poll
        await reader.read_until(
            lambda rs: (
                sum(1 for r in rs if r.key and r.key.decode().startswith(run))
                >= KEYS * EVENTS_PER_KEY
            ),
            timeout_s=60,
        )

    ours = [e for e in reader.events() if e.subject.startswith(run)]
    for k in range(KEYS):
        sequences = [e.data["sequence"] for e in ours if e.subject == f"{run}-{k}"]
        assert sequences == list(range(EVENTS_PER_KEY)), f"key {k} out of order or incomplete"
    published = [relay.stats.published for relay in relays]
    assert sum(published) == KEYS * EVENTS_PER_KEY
    assert all(count > 0 for count in published), f"both relays take part: {published}"
