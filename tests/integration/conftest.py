import itertools
import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, eventually, running, service_client
from amana_common.testing.databases import clear_service_tables, committing_database, row_count
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import bearer
from provider.main import create_provider_app
from provider.models import Base as ProviderBase
from provider.settings import ProviderSettings
from registry.main import create_registry_app
from registry.models import Base as RegistryBase
from registry.settings import RegistrySettings

from .probes import (
    Probe,
    ProbeProducer,
    create_probe_topics,
    new_probe,
    probe_producer,
    reset_applied,
)

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
async def registry_url(migrated_database: MigratedDatabase) -> str:
    """A registry database that really commits, so the relay and consumers see the rows."""
    return await migrated_database("registry", REPO / "services" / "registry", "integration")


@pytest.fixture
async def registry_db(registry_url: str) -> AsyncIterator[Database]:
    async with committing_database(registry_url) as database:
        await clear_service_tables(database, RegistryBase.metadata)
        yield database


@pytest.fixture
async def registry_client(
    registry_url: str, registry_db: Database, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    async with service_client(create_registry_app(settings), registry_db) as client:
        client.headers.update(bearer(settings, Role.registrar))
        yield client


@pytest.fixture(scope="session")
async def provider_url(migrated_database: MigratedDatabase) -> str:
    """A provider database that really commits, so the relay sees the rows."""
    return await migrated_database("provider", REPO / "services" / "provider", "integration")


@pytest.fixture
async def provider_db(provider_url: str) -> AsyncIterator[Database]:
    async with committing_database(provider_url) as database:
        await clear_service_tables(database, ProviderBase.metadata)
        yield database


@pytest.fixture
async def provider_client(
    provider_url: str, provider_db: Database, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ProviderSettings(
        database_url=provider_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        allowed_api_hosts=["*.psp.example"],
    )
    async with service_client(create_provider_app(settings), provider_db) as client:
        client.headers.update(bearer(settings, Role.finance))
        yield client


@pytest.fixture
async def probe(kafka_bootstrap: str, registry_db: Database) -> Probe:
    """Topics of the test's own (3 partitions) and an empty it_applied table."""
    probe = new_probe()
    await create_probe_topics(kafka_bootstrap, probe)
    await reset_applied(registry_db)
    return probe


@pytest.fixture
async def produce(kafka_bootstrap: str, probe: Probe) -> AsyncIterator[ProbeProducer]:
    async with probe_producer(kafka_bootstrap, probe) as producer:
        yield producer


@pytest.fixture
def consumer_settings(registry_url: str, kafka_bootstrap: str) -> RegistrySettings:
    """Quick retries, and a consumer that stops after five DLQ sends in a row."""
    return RegistrySettings(
        database_url=registry_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        consumer_retry_backoff_s=0.05,
        consumer_max_backoff_s=0.3,
        consumer_max_consecutive_dead_letters=5,
    )


async def post_and_consume(
    client: httpx.AsyncClient,
    database: Database,
    kafka_bootstrap: str,
    service: str,
    url: str,
    body: dict[str, Any],
    trace_id: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """POSTs `body` with a traceparent while the service's relay runs; answers the created
    resource and the CloudEvent about it read from `<service>.events`, after checking the
    envelope every Amana event has and that the outbox drained."""
    relay = OutboxRelay(service, database.sessionmaker, KafkaConnection(kafka_bootstrap))
    async with TopicReader(kafka_bootstrap, f"{service}.events") as reader, running(relay):
        headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        key = created["id"].encode()
        records = await reader.read_until(lambda rs: any(r.key == key for r in rs))

    record = next(r for r in records if r.key == key)
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    envelope: dict[str, Any] = json.loads(record.value)
    assert envelope["specversion"] == "1.0"
    assert envelope["type"].startswith(f"amana.{service}.")
    assert envelope["source"] == f"amana/{service}"
    assert envelope["subject"] == created["id"]
    assert envelope["datacontenttype"] == "application/json"
    assert UUID(envelope["id"]).version == 7
    assert envelope["traceparent"].startswith(f"00-{trace_id}-")

    async def outbox_is_empty() -> bool:
        return await row_count(database, outbox) == 0

    await eventually(outbox_is_empty, timeout_s=10)
    return created, envelope


_national_ids = itertools.count(27_118_043)


_households = itertools.count()
FAMILIES = ("Kamau", "Otieno", "Mwangi", "Wekesa", "Kiprono")


def _born(year: int, index: int) -> str:
    return date(year, 1 + index % 12, 1 + index % 28).isoformat()


def household(location_code: str = "KE-047-0101") -> dict[str, object]:
    """A household to enrol; each call's head has a national id of its own (the registry holds
    one household per identifier). Up to 350 calls are 350 households, not duplicates for the
    registry's duplicate detection: each head has a family name and a year of birth no other
    head shares, and the child is born 25 years after its head."""
    index = next(_households)
    family = FAMILIES[(index // 70) % len(FAMILIES)]
    year = 1930 + index % 70
    return {
        "location_code": location_code,
        "members": [
            {
                "given_name": "Wanjiku",
                "family_name": family,
                "sex": "female",
                "date_of_birth": _born(year, index),
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": str(next(_national_ids))}],
            },
            {
                "given_name": "Juma",
                "family_name": family,
                "sex": "male",
                "date_of_birth": _born(year + 25, index),
                "relationship": "child",
            },
        ],
    }
