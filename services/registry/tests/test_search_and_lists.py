"""Search by number, identifier, phone and name; list filters; the duplicate review seam."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.registry import HouseholdStatusChangedV1, HouseholdUpdatedV1
from registry import service

from .conftest import household


async def enrol(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/households", json=household(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def head(given: str, family: str, **fields: object) -> list[dict[str, Any]]:
    member: dict[str, Any] = household()["members"][0]  # type: ignore[index]
    return [member | {"given_name": given, "family_name": family, **fields}]


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/households/search", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_search_by_name_ignores_accents_and_case_and_tolerates_a_typo(
    client: httpx.AsyncClient,
) -> None:
    amelie = await enrol(client, members=head("Amélie", "Wanjirũ"))
    await enrol(client, members=head("Joseph", "Kamau"))

    for query in ("amelie wanjiru", "AMÉLIE", "Wanjiru", "Amelie Wanjru"):
        hits = (await search(client, name=query))["items"]
        assert [h["id"] for h in hits] == [amelie["id"]], query
        assert hits[0]["given_name"] == "Amélie"
    exact = (await search(client, name="Amélie Wanjirũ"))["items"][0]
    assert exact["score"] == 1.0
    assert (await search(client, name="Otieno Mwangi"))["items"] == []


async def test_search_by_number_identifier_and_phone(client: httpx.AsyncClient) -> None:
    created = await enrol(client, phone="+254711000222")
    national_id = created["members"][0]["identifiers"][0]["value"]
    spaced = f"{national_id[:4]} {national_id[4:]}"

    by_number = await search(client, number=created["household_number"].lower())
    by_identifier = await search(client, identifier=spaced)
    by_scheme = await search(client, identifier=national_id, scheme="passport")
    by_phone = await search(client, phone="0711 000222")

    assert [h["id"] for h in by_number["items"]] == [created["id"]]
    assert by_number["items"][0]["member_id"] is None
    assert [h["member_id"] for h in by_identifier["items"]] == [created["members"][0]["id"]]
    assert by_scheme["items"] == []
    assert [h["id"] for h in by_phone["items"]] == [created["id"]]
    assert by_phone["by"] == "phone"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "query"),
        ({"name": "Amina", "phone": "0711000222"}, "query"),
        ({"name": "Am"}, "name"),
        ({"name": "Ami\x00na"}, "name"),
        ({"phone": "12"}, "phone"),
        ({"name": "Amina", "limit": 51}, "limit"),
    ],
)
async def test_a_bad_search_names_the_parameter(
    params: dict[str, Any], field: str, client: httpx.AsyncClient
) -> None:
    response = await client.get("/households/search", params=params)

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_list_filters_by_location_below_an_area_status_and_time(
    client: httpx.AsyncClient,
) -> None:
    kibra = await enrol(client, location_code="KE-047-0101.01.001")
    westlands = await enrol(client, location_code="KE-047-0102")
    mombasa = await enrol(client, location_code="KE-001-0101")
    suspended = await client.post(
        f"/households/{mombasa['id']}/status",
        json={"status": "suspended", "reason": "audit"},
        headers={"If-Match": '"1"'},
    )
    assert suspended.status_code == 200

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/households", params=params)
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["items"]]

    assert await ids(location_code="KE-047") == [kibra["id"], westlands["id"]]
    assert await ids(location_code="ke-047-0101") == [kibra["id"]]
    assert await ids(status="suspended") == [mombasa["id"]]
    since = datetime.fromisoformat(suspended.json()["updated_at"]) - timedelta(microseconds=1)
    assert await ids(updated_since=since.isoformat()) == [mombasa["id"]]
    assert await ids(updated_since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []


async def test_list_filters_by_attributes(client: httpx.AsyncClient) -> None:
    poor = await enrol(
        client, eligibility_attributes={"pmt_score": 12.5, "housing_type": "temporary"}
    )
    middle = await enrol(
        client, eligibility_attributes={"pmt_score": 45, "housing_type": "permanent"}
    )
    await enrol(client, eligibility_attributes={"pmt_score": 80, "has_orphan": True})

    async def ids(*filters: str) -> list[str]:
        response = await client.get("/households", params={"attribute": list(filters)})
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["items"]]

    assert await ids("pmt_score:lt:50") == [poor["id"], middle["id"]]
    assert await ids("pmt_score:gte:12.5", "pmt_score:lte:45") == [poor["id"], middle["id"]]
    assert await ids("housing_type:eq:temporary") == [poor["id"]]
    assert await ids("pmt_score:gt:40", "housing_type:eq:permanent") == [middle["id"]]
    assert len(await ids("has_orphan:eq:true")) == 1


@pytest.mark.parametrize(
    "bad",
    [
        "colour:eq:red",
        "pmt_score:like:3",
        "housing_type:gt:a",
        "pmt_score:lt:many",
        "has_orphan:eq:yes",
        "pmt_score:lt:nan",
    ],
)
async def test_a_bad_attribute_filter_is_422(bad: str, client: httpx.AsyncClient) -> None:
    response = await client.get("/households", params={"attribute": bad})

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "attribute"


async def test_the_duplicate_review_seam_moves_households_under_review_and_back(
    client: httpx.AsyncClient, database: Database
) -> None:
    active = await enrol(client)
    suspended = await enrol(client)
    await client.post(
        f"/households/{suspended['id']}/status",
        json={"status": "suspended", "reason": "audit"},
        headers={"If-Match": '"1"'},
    )
    ids = [UUID(active["id"]), UUID(suspended["id"])]

    async with database.sessionmaker() as session:
        opened = await service.set_duplicate_review(session, ids, open=True, actor="dedup-7")
        again = await service.set_duplicate_review(session, ids, open=True, actor="dedup-7")
        await session.commit()

    assert len(opened) == 2 and again == []
    flagged = (await client.get("/households", params={"duplicate_review_open": True})).json()
    assert {h["id"]: h["status"] for h in flagged["items"]} == {
        active["id"]: "under_review",
        suspended["id"]: "suspended",
    }
    reactivate = await client.post(
        f"/households/{suspended['id']}/status",
        json={"status": "active", "reason": "audit done"},
        headers={"If-Match": '"3"'},
    )
    assert reactivate.status_code == 409
    assert reactivate.json()["type"].endswith("/duplicate-review-open")
    events = (await outbox_events(database))[-2:]
    status_changed = HouseholdStatusChangedV1.model_validate(events[0].data)
    updated = HouseholdUpdatedV1.model_validate(events[1].data)
    assert (status_changed.status, status_changed.previous_status) == ("under_review", "active")
    assert status_changed.duplicate_review_open and not status_changed.payable
    assert "under_review" in status_changed.not_payable_reasons
    assert (updated.status, updated.duplicate_review_open, updated.version) == (
        "suspended",
        True,
        3,
    )
    history = (await client.get(f"/households/{active['id']}/history")).json()["items"]
    assert history[-1]["changed_by"] == "dedup-7"
    assert {"field": "duplicate_review_open", "before": False, "after": True} in history[-1][
        "changes"
    ]

    async with database.sessionmaker() as session:
        await service.set_duplicate_review(session, ids, open=False, actor="reviewer-2")
        await session.commit()

    after = {h["id"]: h for h in (await client.get("/households")).json()["items"]}
    assert after[active["id"]]["status"] == "active"
    assert after[suspended["id"]]["status"] == "suspended"
    assert not after[active["id"]]["duplicate_review_open"]


async def test_an_exited_household_is_not_put_under_review(
    client: httpx.AsyncClient, database: Database
) -> None:
    exited = await enrol(client)
    await client.post(
        f"/households/{exited['id']}/status",
        json={"status": "exited", "reason": "died"},
        headers={"If-Match": '"1"'},
    )

    async with database.sessionmaker() as session:
        opened = await service.set_duplicate_review(
            session, [UUID(exited["id"])], open=True, actor="dedup-7"
        )
        await session.commit()

    assert opened == []
    read = (await client.get(f"/households/{exited['id']}")).json()
    assert (read["status"], read["duplicate_review_open"], read["version"]) == ("exited", False, 2)
