"""Changing a household: If-Match, field changes, status with reason, members and their roles,
history; each change publishes the whole snapshot with a higher version."""

from typing import Any

import httpx
import pytest

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events
from amana_common.testing.databases import row_count as count
from amana_contracts.registry import HouseholdStatusChangedV1, HouseholdUpdatedV1
from registry.models import HouseholdChange

from .conftest import household


async def enrol(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/households", json=household(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def at(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


async def test_a_change_without_if_match_is_428_and_with_a_stale_one_412(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"

    missing = await client.patch(url, json={"address": "Plot 9"})
    stale = await client.patch(url, json={"address": "Plot 9"}, headers=at(7))

    assert missing.status_code == 428
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'
    assert await count(database, outbox) == 1  # the enrolment's only


async def test_patch_cleans_changes_records_history_and_publishes_the_next_version(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"

    response = await client.patch(
        url,
        json={
            "phone": "0711 222333",
            "address": "  Plot 9,\n Laini Saba ",
            "gps": {"latitude": -1.3133, "longitude": 36.7876},
            "eligibility_attributes": {"pmt_score": 21.5, "housing_type": "temporary"},
        },
        headers=at(1),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"2"' and body["version"] == 2
    assert body["phone"] == "+254711222333"
    assert body["address"] == "Plot 9,\nLaini Saba"
    assert body["gps"] == {"latitude": -1.3133, "longitude": 36.7876}
    history = (await client.get(f"{url}/history")).json()["items"]
    assert [(h["version"], h["action"], h["changed_by"]) for h in history] == [
        (1, "enrolled", "test-admin"),
        (2, "updated", "test-admin"),
    ]
    changed = {c["field"]: (c["before"], c["after"]) for c in history[1]["changes"]}
    assert changed["phone"] == ("+254700000001", "+254711222333")
    assert changed["eligibility_attributes.pmt_score"] == (None, 21.5)
    event = (await outbox_events(database))[-1]
    assert event.type == "amana.registry.HouseholdUpdated.v1"
    snapshot = HouseholdUpdatedV1.model_validate(event.data)
    assert snapshot.version == 2
    assert snapshot.eligibility_attributes == {"pmt_score": 21.5, "housing_type": "temporary"}
    assert snapshot.primary_recipient is not None
    assert snapshot.primary_recipient.phone == "+254711222333"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"location_code": "KE-999"}, "location_code"),
        ({"location_code": None}, "location_code"),
        ({"phone": "12"}, "phone"),
        ({"eligibility_attributes": {"pmt_score": 101}}, "eligibility_attributes.pmt_score"),
        ({"eligibility_attributes": {"nickname": "x"}}, "eligibility_attributes"),
        ({"gps": {"latitude": 91, "longitude": 0}}, "gps.latitude"),
        ({"address": "Plot\x009"}, "address"),
    ],
)
async def test_a_bad_patch_names_the_field_and_changes_nothing(
    patch: dict[str, Any], field: str, client: httpx.AsyncClient, database: Database
) -> None:
    created = await enrol(client)

    response = await client.patch(f"/households/{created['id']}", json=patch, headers=at(1))

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get(f"/households/{created['id']}")).json() == created
    assert await count(database, outbox) == 1


async def test_suspend_and_reactivate_with_reasons_in_the_status_history(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"

    suspended = await client.post(
        f"{url}/status", json={"status": "suspended", "reason": "moved away"}, headers=at(1)
    )
    again = await client.post(
        f"{url}/status", json={"status": "suspended", "reason": "twice"}, headers=at(2)
    )
    active = await client.post(
        f"{url}/status", json={"status": "active", "reason": "came back"}, headers=at(2)
    )

    assert suspended.status_code == 200 and suspended.json()["status_reason"] == "moved away"
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "status"
    assert active.json()["status"] == "active" and active.json()["version"] == 3
    history = (await client.get(f"{url}/status-history")).json()["items"]
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in history] == [
        (None, "active", "enrolled"),
        ("active", "suspended", "moved away"),
        ("suspended", "active", "came back"),
    ]
    events = [e for e in await outbox_events(database) if "StatusChanged" in e.type]
    changes = [HouseholdStatusChangedV1.model_validate(e.data) for e in events]
    assert [(c.previous_status, c.status, c.version, c.payable) for c in changes] == [
        ("active", "suspended", 2, False),
        ("suspended", "active", 3, False),  # not payable yet: it has no payment preference
    ]
    assert "status_not_active" in changes[0].not_payable_reasons


async def test_under_review_is_not_set_by_hand(client: httpx.AsyncClient) -> None:
    created = await enrol(client)

    response = await client.post(
        f"/households/{created['id']}/status",
        json={"status": "under_review", "reason": "x"},
        headers=at(1),
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "status"


async def test_an_identifier_is_held_once_until_its_household_exits(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await enrol(client)
    national_id = first["members"][0]["identifiers"][0]["value"]
    again = household()
    again["members"][0]["identifiers"] = [{"scheme": "national_id", "value": national_id}]  # type: ignore[index]

    clash = await client.post("/households", json=again)
    exited = await client.post(
        f"/households/{first['id']}/status",
        json={"status": "exited", "reason": "duplicate enrolment"},
        headers=at(1),
    )
    after_exit = await client.post("/households", json=again)

    assert clash.status_code == 409
    problem = clash.json()
    assert problem["type"].endswith("/identifier-taken")
    assert first["household_number"] in problem["detail"]
    assert problem["errors"][0]["field"] == "members.0.identifiers.0.value"
    assert problem["errors"][0]["household_number"] == first["household_number"]
    assert exited.status_code == 200
    assert after_exit.status_code == 201, after_exit.text
    final = await client.patch(f"/households/{first['id']}", json={"address": "x"}, headers=at(2))
    assert final.status_code == 409 and final.json()["type"].endswith("/household-exited")


async def test_adding_a_member_as_head_moves_the_head_and_the_payments(
    client: httpx.AsyncClient,
) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"
    newcomer = {
        "given_name": "Joseph",
        "family_name": "Otieno",
        "sex": "male",
        "date_of_birth": "1980-01-01",
        "relationship": "head",
    }

    without_relationship = await client.post(f"{url}/members", json=newcomer, headers=at(1))
    added = await client.post(
        f"{url}/members", json=newcomer | {"former_head_relationship": "spouse"}, headers=at(1)
    )

    assert without_relationship.status_code == 422
    assert without_relationship.json()["errors"][0]["field"] == "former_head_relationship"
    assert added.status_code == 201, added.text
    members = {m["given_name"]: m for m in added.json()["members"]}
    assert members["Joseph"]["is_head"] and members["Joseph"]["is_primary_recipient"]
    assert members["Amina"]["relationship"] == "spouse"
    assert not members["Amina"]["is_head"] and not members["Amina"]["is_primary_recipient"]
    assert added.json()["version"] == 2


async def test_naming_a_primary_recipient_and_removing_them(client: httpx.AsyncClient) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"
    head, child = created["members"]

    named = await client.patch(
        f"{url}/members/{child['id']}", json={"is_primary_recipient": True}, headers=at(1)
    )
    head_removed = await client.delete(f"{url}/members/{head['id']}", headers=at(2))
    removed = await client.delete(f"{url}/members/{child['id']}", headers=at(2))

    assert [m["is_primary_recipient"] for m in named.json()["members"]] == [False, True]
    assert head_removed.status_code == 409
    assert head_removed.json()["type"].endswith("/head-removal")
    assert removed.status_code == 200
    assert [(m["given_name"], m["is_primary_recipient"]) for m in removed.json()["members"]] == [
        ("Amina", True)
    ]


async def test_updating_a_member_cleans_and_checks_its_identifiers(
    client: httpx.AsyncClient,
) -> None:
    other = await enrol(client)
    created = await enrol(client)
    url = f"/households/{created['id']}/members/{created['members'][1]['id']}"
    taken = other["members"][0]["identifiers"][0]["value"]

    renamed = await client.patch(url, json={"given_name": " Baraka  Junior "}, headers=at(1))
    clash = await client.patch(
        url, json={"identifiers": [{"scheme": "national_id", "value": taken}]}, headers=at(2)
    )
    future = await client.patch(url, json={"date_of_birth": "2999-01-01"}, headers=at(2))

    assert renamed.json()["members"][1]["given_name"] == "Baraka Junior"
    assert clash.status_code == 409
    assert clash.json()["errors"][0]["household_number"] == other["household_number"]
    assert future.status_code == 422
    assert future.json()["errors"][0]["field"] == "date_of_birth"


async def test_every_change_has_one_history_row_per_version(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await enrol(client)
    url = f"/households/{created['id']}"
    for version in (1, 2, 3):
        response = await client.patch(url, json={"address": f"Plot {version}"}, headers=at(version))
        assert response.status_code == 200

    first = (await client.get(f"{url}/history", params={"limit": 2})).json()
    rest = (
        await client.get(f"{url}/history", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()

    assert [h["version"] for h in first["items"] + rest["items"]] == [1, 2, 3, 4]
    assert rest["next_cursor"] is None
    assert await count(database, HouseholdChange.__table__) == 4
