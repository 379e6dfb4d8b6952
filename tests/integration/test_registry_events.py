"""Enrolment over HTTP reaches `registry.events` on the real broker, as a CloudEvent."""

import json
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_contracts.registry import HouseholdEnrolledV1

from .conftest import household, post_and_consume


async def test_enrolled_household_is_published_as_a_cloudevent(
    registry_client: httpx.AsyncClient, registry_db: Database, kafka_bootstrap: str
) -> None:
    created, envelope = await post_and_consume(
        registry_client,
        registry_db,
        kafka_bootstrap,
        "registry",
        "/households",
        household(),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )

    assert envelope["type"] == "amana.registry.HouseholdEnrolled.v1"
    payload = HouseholdEnrolledV1.model_validate(envelope["data"])
    assert payload.household_id == UUID(created["id"])
    assert payload.household_number == created["household_number"]
    assert payload.size == 2
    assert [m.is_head for m in payload.members] == [True, False]
    assert "Wanjiku" not in json.dumps(envelope)
