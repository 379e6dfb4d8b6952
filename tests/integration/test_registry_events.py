"""Enrolment over HTTP reaches `registry.events` on the real broker, as a CloudEvent."""

import json
from uuid import UUID

import httpx
from sqlalchemy import func, select

from amana_common.db import Database
from amana_common.outbox import OutboxRelay
from amana_common.tables import outbox
from amana_common.testing.clients import TopicReader, eventually, running
from amana_contracts.registry import HouseholdEnrolledV1

from .conftest import household


async def test_enrolled_household_is_published_as_a_cloudevent(
    registry_client: httpx.AsyncClient, registry_db: Database, kafka_bootstrap: str
) -> None:
    relay = OutboxRelay("registry", registry_db.sessionmaker, kafka_bootstrap)
    async with TopicReader(kafka_bootstrap, "registry.events") as reader, running(relay):
        response = await registry_client.post(
            "/households",
            json=household(),
            headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 201, response.text
        created = response.json()
        records = await reader.read_until(
            lambda rs: any(r.key == created["id"].encode() for r in rs)
        )

    record = next(r for r in records if r.key == created["id"].encode())
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    envelope = json.loads(record.value)
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "amana.registry.HouseholdEnrolled.v1"
    assert envelope["source"] == "amana/registry"
    assert envelope["subject"] == created["id"]
    assert envelope["datacontenttype"] == "application/json"
    assert UUID(envelope["id"]).version == 7
    assert envelope["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    payload = HouseholdEnrolledV1.model_validate(envelope["data"])
    assert payload.household_id == UUID(created["id"])
    assert payload.household_number == created["household_number"]
    assert payload.size == 2
    assert [m.is_head for m in payload.members] == [True, False]
    assert "Wanjiku" not in record.value.decode()

    async def outbox_is_empty() -> bool:
        async with registry_db.sessionmaker() as session:
            return await session.scalar(select(func.count()).select_from(outbox)) == 0

    await eventually(outbox_is_empty, timeout_s=10)
