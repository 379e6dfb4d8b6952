"""The broker goes down while households are enrolled: the API keeps answering (enrolment 201,
/readyz 200), the relay keeps failing and retrying, and nothing is lost when it comes back."""

import asyncio

import httpx
from prometheus_client import REGISTRY

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay, RelayLimits
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, eventually, running, service_client
from amana_common.testing.databases import row_count
from amana_common.testing.infrastructure import LocalBroker
from amana_common.testing.plugin import BrokerFactory
from amana_common.testing.service import bearer
from amana_contracts.registry import HouseholdEnrolledV1
from registry.main import create_registry_app
from registry.settings import RegistrySettings

from .conftest import household

HOUSEHOLDS = 200


def publish_failures() -> float:
    return (
        REGISTRY.get_sample_value("amana_outbox_publish_failures_total", {"service": "registry"})
        or 0.0
    )


async def pending_rows(database: Database) -> int:
    return await row_count(database, outbox)


async def test_events_written_while_the_broker_is_down_all_arrive(
    registry_url: str, registry_db: Database, own_broker: BrokerFactory
) -> None:
    broker: LocalBroker = own_broker()
    settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=broker.bootstrap, environment="test"
    )
    relay = OutboxRelay(
        "registry",
        registry_db.sessionmaker,
        KafkaConnection(broker.bootstrap),
        RelayLimits(batch_size=50, publish_timeout_s=2, max_backoff_s=1),
    )

    async with (
        service_client(create_registry_app(settings), registry_db) as client,
        running(relay),
    ):
        client.headers.update(bearer(settings, Role.registrar))
        await asyncio.to_thread(broker.stop)
        failed_before = relay.stats.failed_rounds
        counted_before = publish_failures()
        enrolled = await enrol(client, HOUSEHOLDS)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok"}
        await eventually(lambda: relay.stats.failed_rounds >= failed_before + 2, timeout_s=30)
        assert publish_failures() >= counted_before + 2, "the metric says so too"
        assert await pending_rows(registry_db) == HOUSEHOLDS, "the relay keeps every row"

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


async def enrol(client: httpx.AsyncClient, households: int) -> set[str]:
    enrolled = set()
    for _ in range(households):
        response = await client.post("/households", json=household())
        assert response.status_code == 201, response.text
        enrolled.add(response.json()["id"])
    return enrolled
