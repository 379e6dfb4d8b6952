"""Enrolment and changes over HTTP reach `registry.events` on the real broker, as CloudEvents
carrying the household's whole snapshot, in order, with increasing versions."""

import json
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.testing.clients import TopicReader, running
from amana_contracts.registry import HouseholdEnrolledV1, HouseholdStatusChangedV1

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
    assert payload.primary_recipient is not None
    assert payload.primary_recipient.given_name == "Wanjiku"
    assert "Juma" not in json.dumps(envelope), "only the primary recipient is named"


async def test_changes_reach_the_broker_in_order_with_increasing_versions(
    registry_client: httpx.AsyncClient, registry_db: Database, kafka_bootstrap: str
) -> None:
    relay = OutboxRelay("registry", registry_db.sessionmaker, KafkaConnection(kafka_bootstrap))
    async with TopicReader(kafka_bootstrap, "registry.events") as reader, running(relay):
        created = (await registry_client.post("/households", json=household())).json()
        url = f"/households/{created['id']}"
        patched = await registry_client.patch(
            url, json={"eligibility_attributes": {"pmt_score": 18}}, headers={"If-Match": '"1"'}
        )
        suspended = await registry_client.post(
            f"{url}/status",
            json={"status": "suspended", "reason": "left the area"},
            headers={"If-Match": '"2"'},
        )
        assert patched.status_code == suspended.status_code == 200
        key = created["id"].encode()
        records = await reader.read_until(lambda rs: sum(r.key == key for r in rs) == 3)

    envelopes = [json.loads(r.value) for r in records if r.key == key]
    assert [e["type"].split(".")[2] for e in envelopes] == [
        "HouseholdEnrolled",
        "HouseholdUpdated",
        "HouseholdStatusChanged",
    ]
    assert [e["data"]["version"] for e in envelopes] == [1, 2, 3]
    changed = HouseholdStatusChangedV1.model_validate(envelopes[2]["data"])
    assert (changed.previous_status, changed.status, changed.status_reason) == (
        "active",
        "suspended",
        "left the area",
    )
    assert changed.eligibility_attributes == {"pmt_score": 18}
    assert not changed.payable and "status_not_active" in changed.not_payable_reasons
