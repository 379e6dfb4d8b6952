"""A provider registered and suspended over HTTP reaches the registry's projection through the
provider's outbox relay, the real broker and the registry worker's consumer."""

from uuid import UUID

import httpx
from sqlalchemy import select

from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.testing.clients import eventually, running
from registry.consumers import provider_projection
from registry.models import ProviderProjection
from registry.settings import RegistrySettings

from .test_provider_events import PROVIDER


async def projected(database: Database, provider_id: UUID) -> ProviderProjection | None:
    async with database.sessionmaker() as session:
        statement = select(ProviderProjection).where(ProviderProjection.provider_id == provider_id)
        return (await session.scalars(statement)).one_or_none()


async def test_provider_events_build_the_registry_projection(
    provider_client: httpx.AsyncClient,
    provider_db: Database,
    registry_db: Database,
    registry_url: str,
    kafka_bootstrap: str,
) -> None:
    settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    relay = OutboxRelay("provider", provider_db.sessionmaker, KafkaConnection(kafka_bootstrap))
    body = PROVIDER | {"code": "MPESA-PROJ", "currencies": ["KES", "USD"]}

    async with running(relay, provider_projection(settings, registry_db)):
        created = await provider_client.post("/providers", json=body)
        assert created.status_code == 201, created.text
        provider_id = UUID(created.json()["id"])
        await eventually(lambda: projected(registry_db, provider_id), timeout_s=60)
        suspended = await provider_client.post(
            f"/providers/{provider_id}/suspend", json={"reason": "Float exhausted"}
        )
        assert suspended.status_code == 200, suspended.text

        async def is_suspended() -> bool:
            row = await projected(registry_db, provider_id)
            return row is not None and row.status == "suspended"

        await eventually(is_suspended, timeout_s=60)

    row = await projected(registry_db, provider_id)
    assert row is not None
    assert (row.code, row.version, row.currencies) == ("MPESA-PROJ", 2, ["KES", "USD"])
    assert row.mechanisms == ["mobile_money"] and row.service_areas == ["KE"]
