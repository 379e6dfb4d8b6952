"""Enrolment and changes over HTTP reach `registry.events` on the real broker, as CloudEvents
carrying the household's whole snapshot, in order, with increasing versions."""

import json
from typing import Any
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.testing.clients import TopicReader, running
from amana_contracts.registry import (
    DuplicateFlaggedV1,
    DuplicateReviewedV1,
    HouseholdEnrolledV1,
    HouseholdStatusChangedV1,
)

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


async def test_a_flagged_duplicate_and_its_decision_reach_the_broker_without_names(
    registry_client: httpx.AsyncClient, registry_db: Database, kafka_bootstrap: str
) -> None:
    """Enrolling the same family twice raises a flag: DuplicateFlagged and both households'
    HouseholdStatusChanged (under review, not payable) reach `registry.events`; deciding it
    publishes DuplicateReviewed. The flag's events carry ids, score and reasons, no name."""
    first_body = household()
    second_body = json.loads(json.dumps(first_body))
    second_body["members"][0]["given_name"] = "Wanjiko"
    second_body["members"][0]["identifiers"] = [{"scheme": "national_id", "value": "39000001"}]
    relay = OutboxRelay("registry", registry_db.sessionmaker, KafkaConnection(kafka_bootstrap))
    async with TopicReader(kafka_bootstrap, "registry.events") as reader, running(relay):
        first = (await registry_client.post("/households", json=first_body)).json()
        second = (await registry_client.post("/households", json=second_body)).json()
        assert second["status"] == "under_review"
        [flag] = (await registry_client.get("/duplicates")).json()["items"]
        decided = await registry_client.post(
            f"/duplicates/{flag['id']}/decision",
            json={"decision": "duplicate", "action": "exit"},
        )
        assert decided.status_code == 200, decided.text
        key = flag["id"].encode()
        exited_key = second["id"].encode()

        def complete(rs: list[Any]) -> bool:
            # The exit's status event has the household's key: another partition, which may
            # come later than the flag's two events.
            return sum(r.key == key for r in rs) == 2 and any(
                r.key == exited_key
                and b"HouseholdStatusChanged" in r.value
                and b'"exited"' in r.value
                for r in rs
            )

        records = await reader.read_until(complete)

    flag_events = [json.loads(r.value) for r in records if r.key == key]
    assert [e["type"] for e in flag_events] == [
        "amana.registry.DuplicateFlagged.v1",
        "amana.registry.DuplicateReviewed.v1",
    ]
    flagged = DuplicateFlaggedV1.model_validate(flag_events[0]["data"])
    assert (flagged.household_id, flagged.other_household_id) == (
        UUID(first["id"]),
        UUID(second["id"]),
    )
    assert flagged.score >= 0.99 and flagged.reasons[0].startswith("head/head: name phonetic")
    reviewed = DuplicateReviewedV1.model_validate(flag_events[1]["data"])
    assert (reviewed.decision, reviewed.decided_by) == ("duplicate_exited", "test-registrar")
    for envelope in flag_events:
        assert "Wanjik" not in json.dumps(envelope) and "Juma" not in json.dumps(envelope)
    statuses = [
        HouseholdStatusChangedV1.model_validate(json.loads(r.value)["data"])
        for r in records
        if r.key in (first["id"].encode(), second["id"].encode())
        and json.loads(r.value)["type"].endswith("HouseholdStatusChanged.v1")
    ]
    assert {(str(s.household_id), s.status) for s in statuses} >= {
        (first["id"], "under_review"),
        (second["id"], "under_review"),
        (second["id"], "exited"),
    }
    assert all(not s.payable for s in statuses)
