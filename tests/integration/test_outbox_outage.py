"""The broker goes down while households are enrolled: nothing is lost when it comes back."""

import asyncio

import httpx

from amana_common.db import Database
from amana_common.outbox import OutboxRelay
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, running
from amana_common.testing.databases import row_count
from amana_common.testing.infrastructure import LocalBroker
from amana_common.testing.plugin import BrokerFactory
from amana_contracts.registry import HouseholdEnrolledV1

from .conftest import household

OUTAGE_BROKER_PORT = 59192
HOUSEHOLDS = 200


async def pending_rows(database: Database) -> int:
    return await row_count(database, outbox)


async def test_events_written_while_the_broker_is_down_all_arrive(
    registry_client: httpx.AsyncClient, registry_db: Database, own_broker: BrokerFactory
) -> None:
    broker: LocalBroker = own_broker(OUTAGE_BROKER_PORT)
    relay = OutboxRelay("registry", registry_db.sessionmaker, broker.bootstrap, batch_size=50)

    async with running(relay):
        await asyncio.to_thread(broker.stop)
        enrolled = set()
        for _ in range(HOUSEHOLDS):
            response = await registry_client.post("/households", json=household())
            assert response.status_code == 201, response.text
            enrolled.add(response.json()["id"])
        await asyncio.sleep(2)  # the relay keeps failing meanwhile and must keep every row
        assert await pending_rows(registry_db) == HOUSEHOLDS

        await asyncio.to_thread(broker.start)
        async with TopicReader(broker.bootstrap, "registry.events", from_beginning=True) as reader:
            await reader.read_until(
                lambda rs: {r.key.decode() for r in rs if r.key} >= enrolled, timeout_s=90
            )
            events = reader.events()

    published = {str(HouseholdEnrolledV1.model_validate(e.data).household_id) for e in events}
    assert published == enrolled, "every enrolled household has its event; nothing else"
    assert len({e.id for e in events}) == HOUSEHOLDS, "duplicates on the wire are allowed, loss not"
    assert await pending_rows(registry_db) == 0
