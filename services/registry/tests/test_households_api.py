import json
from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.check_digits import is_luhn_valid
from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events
from amana_common.testing.databases import row_count as count
from amana_contracts.registry import HouseholdEnrolledV1
from registry.models import Household, Member, MemberIdentifier

from .conftest import household

PROBLEM = "application/problem+json"


async def test_enrolment_answers_the_household_and_writes_its_event(
    client: httpx.AsyncClient, database: Database
) -> None:
    request = household()
    response = await client.post("/households", json=request)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"].endswith(f"/households/{body['id']}")
    assert body["status"] == "active"
    assert body["location_code"] == "KE-047-0101"
    assert [m["relationship"] for m in body["members"]] == ["head", "child"]
    assert body["members"][0]["is_head"] is True
    assert body["members"][0]["identifiers"] == request["members"][0]["identifiers"]  # type: ignore[index]
    assert body["household_number"].startswith("H")
    assert is_luhn_valid(body["household_number"][1:])

    events = await outbox_events(database)
    assert len(events) == 1
    event = events[0]
    assert event.type == "amana.registry.HouseholdEnrolled.v1"
    assert event.source == "amana/registry"
    assert event.subject == body["id"]
    assert event.traceparent is not None
    payload = HouseholdEnrolledV1.model_validate(event.data)
    assert payload.household_id == UUID(body["id"])
    assert payload.size == 2
    assert [m.member_id for m in payload.members] == [UUID(m["id"]) for m in body["members"]]
    assert "Baraka" not in json.dumps(event.data), "only the primary recipient is named"
    child_certificate = request["members"][1]["identifiers"][0]["value"]  # type: ignore[index]
    assert child_certificate not in json.dumps(event.data), "only the recipient's id leaves"


async def test_enrolled_household_reads_back(client: httpx.AsyncClient) -> None:
    created = (await client.post("/households", json=household())).json()

    response = await client.get(f"/households/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_household_numbers_are_unique_and_check_digited(client: httpx.AsyncClient) -> None:
    numbers = {
        (await client.post("/households", json=household())).json()["household_number"]
        for _ in range(5)
    }
    assert len(numbers) == 5
    assert all(is_luhn_valid(n[1:]) for n in numbers)


async def test_unknown_household_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/households/0190b7a2-0000-7000-8000-000000000000")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/household-not-found")


async def test_malformed_household_id_names_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.get("/households/not-a-uuid")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "household_id"


def _without_head() -> dict[str, object]:
    body = household()
    body["members"] = [m | {"relationship": "spouse"} for m in body["members"]]  # type: ignore[attr-defined]
    return body


def _two_heads() -> dict[str, object]:
    body = household()
    body["members"] = [m | {"relationship": "head"} for m in body["members"]]  # type: ignore[attr-defined]
    return body


def _member_with(**fields: object) -> dict[str, object]:
    body = household()
    body["members"][0].update(fields)  # type: ignore[index]
    return body


def _two_primary_recipients() -> dict[str, object]:
    body = household()
    body["members"] = [m | {"is_primary_recipient": True} for m in body["members"]]  # type: ignore[attr-defined]
    return body


UNKNOWN_PROVIDER = "01930000-0000-7000-8000-00000000dead"

BAD_BODIES = {
    "two primary recipients": (_two_primary_recipients(), 422, "members"),
    "nul in a name": (_member_with(given_name="Ami\u0000na"), 422, "members.0.given_name"),
    "control character in the address": (household(address="Plot\u00079"), 422, "address"),
    "unknown location": (household(location_code="KE-047-9999"), 422, "location_code"),
    "attribute out of range": (
        household(eligibility_attributes={"pmt_score": -1}),
        422,
        "eligibility_attributes.pmt_score",
    ),
    "unknown provider": (
        household(
            payment_preference={
                "provider_id": UNKNOWN_PROVIDER,
                "mechanism": "mobile_money",
                "account": {"kind": "msisdn", "value": "0712345678"},
            }
        ),
        422,
        "payment_preference.provider_id",
    ),
    "cash without a pay point": (
        household(
            payment_preference={"provider_id": UNKNOWN_PROVIDER, "mechanism": "cash_pay_point"}
        ),
        422,
        "payment_preference.pay_point_id",
    ),
    "mobile money paid to an IBAN": (
        household(
            payment_preference={
                "provider_id": UNKNOWN_PROVIDER,
                "mechanism": "mobile_money",
                "account": {"kind": "iban", "value": "DE89370400440532013000"},
            }
        ),
        422,
        "payment_preference.account",
    ),
    "a broken IBAN": (
        household(
            payment_preference={
                "provider_id": UNKNOWN_PROVIDER,
                "mechanism": "bank_transfer",
                "account": {"kind": "iban", "value": "DE89370400440532013001"},
            }
        ),
        422,
        "payment_preference.account.value",
    ),
    "missing head": (_without_head(), 422, "members"),
    "two heads": (_two_heads(), 422, "members"),
    "no members": (household(members=[]), 422, "members"),
    "wrong type": (household(location_code=42), 422, "location_code"),
    "bad location code": (household(location_code="nairobi west"), 422, "location_code"),
    "unknown field": (household(colour="blue"), 422, "colour"),
    "unknown member field": (_member_with(nickname="Mama"), 422, "members.0.nickname"),
    "unknown sex": (_member_with(sex="x"), 422, "members.0.sex"),
    "future birth": (_member_with(date_of_birth="2999-01-01"), 422, "members.0.date_of_birth"),
    "bad date": (_member_with(date_of_birth="1984-13-40"), 422, "members.0.date_of_birth"),
    "bad phone": (household(phone="0700 000"), 422, "phone"),
    "empty name": (_member_with(given_name="  "), 422, "members.0.given_name"),
    "duplicate identifier scheme": (
        _member_with(
            identifiers=[
                {"scheme": "national_id", "value": "1"},
                {"scheme": "national_id", "value": "2"},
            ]
        ),
        422,
        "members.0.identifiers",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
async def test_bad_household_is_refused_with_the_field_and_nothing_written(
    case: str, client: httpx.AsyncClient, database: Database
) -> None:
    body, status, field = BAD_BODIES[case]

    response = await client.post("/households", json=body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await count(database, Household.__table__) == 0
    assert await count(database, outbox) == 0


async def test_malformed_json_is_400_and_nothing_written(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post(
        "/households",
        content=b'{"location_code": "KE", "members": [',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["type"].endswith("/malformed-json")
    assert await count(database, outbox) == 0


async def test_body_over_the_limit_is_413_and_nothing_written(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = household(address="x" * 70_000)

    response = await client.post("/households", json=body)

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert await count(database, outbox) == 0


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    response = await client.post(
        "/households", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413


async def test_same_idempotency_key_and_body_replays_without_a_second_household(
    client: httpx.AsyncClient, database: Database
) -> None:
    headers = {"Idempotency-Key": "enrol-7f3a"}
    body = household()
    first = await client.post("/households", json=body, headers=headers)
    second = await client.post("/households", json=body, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await count(database, Household.__table__) == 1
    assert await count(database, outbox) == 1


async def test_same_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient, database: Database
) -> None:
    headers = {"Idempotency-Key": "enrol-7f3b"}
    await client.post("/households", json=household(), headers=headers)

    response = await client.post(
        "/households", json=household(location_code="KE-001"), headers=headers
    )

    assert response.status_code == 422
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert await count(database, Household.__table__) == 1


async def test_list_pages_in_enrolment_order_and_filters(client: httpx.AsyncClient) -> None:
    ids = [
        (
            await client.post(
                "/households", json=household(location_code=f"KE-00{i % 2 or 8}-0101")
            )
        ).json()["id"]
        for i in range(5)
    ]

    first = (await client.get("/households", params={"limit": 2})).json()
    second = (
        await client.get("/households", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    last = (
        await client.get("/households", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    filtered = (await client.get("/households", params={"location_code": "KE-001"})).json()

    assert [h["id"] for h in first["items"] + second["items"] + last["items"]] == ids
    assert last["next_cursor"] is None
    assert [h["id"] for h in filtered["items"]] == ids[1::2]


async def test_list_refuses_an_oversized_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/households", params={"limit": 10_000})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"


async def test_members_and_identifiers_are_stored(
    client: httpx.AsyncClient, database: Database
) -> None:
    await client.post("/households", json=household())

    assert await count(database, Member.__table__) == 2
    assert await count(database, MemberIdentifier.__table__) == 2
