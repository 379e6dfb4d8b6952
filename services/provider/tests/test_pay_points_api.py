from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common import events
from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events
from amana_common.testing.databases import row_count as count
from amana_contracts.provider import ProviderUpdatedV1
from provider.models import PayPoint

from .conftest import (
    add_pay_point,
    assert_problem,
    pay_point_body,
    register,
)


def _url(provider: dict[str, Any], pay_point: dict[str, Any] | None = None) -> str:
    url = f"/providers/{provider['id']}/pay-points"
    return url if pay_point is None else f"{url}/{pay_point['id']}"


async def _snapshot(database: Database) -> ProviderUpdatedV1:
    """The provider snapshot of the latest event, which must be a ProviderUpdated."""
    event = (await outbox_events(database))[-1]
    assert event.type == "amana.provider.ProviderUpdated.v1"
    return ProviderUpdatedV1.model_validate(event.data)


async def test_adding_a_pay_point_bumps_the_provider_and_publishes_its_snapshot(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)

    response = await client.post(_url(provider), json=pay_point_body())

    assert response.status_code == 201, response.text
    point = response.json()
    assert response.headers["location"].endswith(_url(provider, point))
    assert response.headers["etag"] == '"1"'
    assert point["provider_id"] == provider["id"]
    assert point["status"] == "active"
    assert point["gps"] == {"latitude": -1.3133, "longitude": 36.7876}
    assert (await client.get(f"/providers/{provider['id']}")).json()["version"] == 2
    snapshot = await _snapshot(database)
    assert snapshot.version == 2
    assert [(p.code, p.location_codes, p.daily_capacity) for p in snapshot.pay_points] == [
        ("AG-0001", ["KE-047-0101"], 400)
    ]
    assert (await outbox_events(database))[-1].subject == provider["id"]


async def test_pay_point_reads_back_and_lists(client: httpx.AsyncClient) -> None:
    provider = await register(client)
    point = await add_pay_point(client, provider["id"], gps=None)

    read = await client.get(_url(provider, point))
    listed = (await client.get(_url(provider))).json()

    assert read.json() == point
    assert read.headers["etag"] == '"1"'
    assert point["gps"] is None
    assert listed == {"items": [point], "next_cursor": None}


async def test_pay_point_of_another_provider_is_404(client: httpx.AsyncClient) -> None:
    mpesa = await register(client)
    other = await register(client, code="AIRTEL")
    point = await add_pay_point(client, mpesa["id"])

    response = await client.get(_url(other, point))

    assert_problem(response, 404)
    assert response.json()["type"].endswith("/pay-point-not-found")


async def test_pay_point_of_an_unknown_provider_is_404(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = {"id": "0190b7a2-0000-7000-8000-000000000000"}

    created = await client.post(_url(provider), json=pay_point_body())
    listed = await client.get(_url(provider))

    assert_problem(created, 404)
    assert_problem(listed, 404)
    assert await count(database, PayPoint.__table__) == 0


BAD_PAY_POINTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "outside the service areas": (
        pay_point_body(location_codes=["KE-047-0101", "KE-030-0001"]),
        422,
        "location_codes.1",
    ),
    "prefix that is not a parent": (
        pay_point_body(location_codes=["KE-0470"]),
        422,
        "location_codes.0",
    ),
    "location twice": (
        pay_point_body(location_codes=["KE-047-0101", "KE-047-0101"]),
        422,
        "location_codes",
    ),
    "no location": (pay_point_body(location_codes=[]), 422, "location_codes"),
    "bad location code": (pay_point_body(location_codes=["ke 47"]), 422, "location_codes.0"),
    "unknown weekday": (pay_point_body(opening_days=["mon", "funday"]), 422, "opening_days.1"),
    "no capacity": (pay_point_body(daily_capacity=0), 422, "daily_capacity"),
    "latitude off the globe": (
        pay_point_body(gps={"latitude": 91, "longitude": 36.8}),
        422,
        "gps.latitude",
    ),
    "unknown status": (pay_point_body(status="closed"), 422, "status"),
    "unknown field": (pay_point_body(mechanism="cash_pay_point"), 422, "mechanism"),
}


@pytest.mark.parametrize("case", BAD_PAY_POINTS, ids=list(BAD_PAY_POINTS))
async def test_bad_pay_point_is_refused_with_the_field_and_nothing_written(
    case: str, client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)
    body, status, field = BAD_PAY_POINTS[case]

    response = await client.post(_url(provider), json=body)

    assert_problem(response, status, field)
    assert await count(database, PayPoint.__table__) == 0
    assert await count(database, outbox) == 1
    assert (await client.get(f"/providers/{provider['id']}")).json()["version"] == 1


async def test_cash_pay_point_needs_the_cash_mechanism(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client, mechanisms=["mobile_money"])

    response = await client.post(_url(provider), json=pay_point_body())

    assert_problem(response, 422, "provider_id")
    assert response.json()["type"].endswith("/cash-mechanism-required")
    assert await count(database, PayPoint.__table__) == 0
    assert await count(database, outbox) == 1


async def test_duplicate_pay_point_code_is_409_within_a_provider_only(
    client: httpx.AsyncClient, database: Database
) -> None:
    mpesa = await register(client)
    other = await register(client, code="AIRTEL")
    await add_pay_point(client, mpesa["id"])

    duplicate = await client.post(_url(mpesa), json=pay_point_body(name="Again"))
    elsewhere = await client.post(_url(other), json=pay_point_body())

    assert_problem(duplicate, 409, "code")
    assert duplicate.json()["type"].endswith("/duplicate-code")
    assert elsewhere.status_code == 201
    assert await count(database, PayPoint.__table__) == 2


async def test_pay_points_per_provider_are_bounded(
    client: httpx.AsyncClient, database: Database, settings: Any
) -> None:
    settings.max_pay_points_per_provider = 2
    provider = await register(client)
    for code in ("AG-1", "AG-2"):
        await add_pay_point(client, provider["id"], code=code)

    response = await client.post(_url(provider), json=pay_point_body(code="AG-3"))

    assert_problem(response, 409)
    assert response.json()["type"].endswith("/too-many-pay-points")
    assert await count(database, PayPoint.__table__) == 2


async def test_a_snapshot_too_large_for_kafka_is_refused(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = await register(client)
    await add_pay_point(client, provider["id"], code="AG-1")
    one_pay_point = len((await outbox_events(database))[-1].model_dump_json())
    monkeypatch.setattr(events, "MAX_EVENT_BYTES", one_pay_point + 50)

    response = await client.post(_url(provider), json=pay_point_body(code="AG-2"))

    assert_problem(response, 409)
    assert response.json()["type"].endswith("/provider-too-large")
    assert await count(database, PayPoint.__table__) == 1
    assert await count(database, outbox) == 2


async def test_pay_point_update_with_if_match_publishes_the_snapshot(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)
    point = await add_pay_point(client, provider["id"])

    response = await client.patch(
        _url(provider, point),
        json={"daily_capacity": 650, "status": "inactive", "location_codes": ["KE-047"]},
        headers={"If-Match": '"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json()["daily_capacity"] == 650
    assert response.json()["name"] == point["name"]
    snapshot = await _snapshot(database)
    assert snapshot.version == 3
    [carried] = snapshot.pay_points
    assert (carried.daily_capacity, carried.status, carried.version) == (650, "inactive", 2)
    assert carried.location_codes == ["KE-047"]


async def test_pay_point_update_that_changes_nothing_publishes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)
    point = await add_pay_point(client, provider["id"])

    response = await client.patch(
        _url(provider, point), json={"daily_capacity": 400}, headers={"If-Match": '"1"'}
    )

    assert response.json()["version"] == 1
    assert await count(database, outbox) == 2


async def test_pay_point_update_needs_a_current_if_match(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)
    point = await add_pay_point(client, provider["id"])
    url = _url(provider, point)

    missing = await client.patch(url, json={"daily_capacity": 1})
    stale = await client.patch(url, json={"daily_capacity": 1}, headers={"If-Match": '"2"'})

    assert_problem(missing, 428)
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"1"'
    assert (await client.get(url)).json()["daily_capacity"] == 400
    assert await count(database, outbox) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"location_codes": ["UG-001"]}, "location_codes.0"),
        ({"code": "AG-9"}, "code"),
        ({"name": None}, "name"),
        ({"opening_days": []}, "opening_days"),
    ],
)
async def test_bad_pay_point_update_is_refused_with_the_field(
    client: httpx.AsyncClient, database: Database, body: dict[str, Any], field: str
) -> None:
    provider = await register(client)
    point = await add_pay_point(client, provider["id"])

    response = await client.patch(_url(provider, point), json=body, headers={"If-Match": '"1"'})

    assert_problem(response, 422, field)
    assert (await client.get(_url(provider, point))).json() == point
    assert await count(database, outbox) == 2


async def test_removing_a_pay_point_publishes_the_snapshot_without_it(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(client)
    kept = await add_pay_point(client, provider["id"], code="AG-1")
    removed = await add_pay_point(client, provider["id"], code="AG-2")
    url = _url(provider, removed)

    missing = await client.delete(url)
    response = await client.delete(url, headers={"If-Match": '"1"'})

    assert_problem(missing, 428)
    assert response.status_code == 204
    assert (await client.get(url)).status_code == 404
    snapshot = await _snapshot(database)
    assert snapshot.version == 4
    assert [p.pay_point_id for p in snapshot.pay_points] == [UUID(kept["id"])]
    assert await count(database, PayPoint.__table__) == 1


# --- by location -------------------------------------------------------------------------


@pytest.fixture
async def network(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Providers and pay points around Nairobi (KE-047) and its ward KE-047-0101.

    MPESA: mobile money + cash in KE-047; agents in the ward (A1), elsewhere in the county
    (A2), county-wide (A3), and an inactive one in the ward (A4).
    BANK: bank transfer, national (KE). CASHCO: cash only in KE-047, one point outside the
    ward (C1). DORMANT: suspended mobile money in KE-047. NEAR: mobile money in KE-0470, which
    looks like a prefix of KE-047-0101 but is not its parent.
    """
    found: dict[str, dict[str, Any]] = {}
    found["MPESA"] = await register(client, code="MPESA", service_areas=["KE-047"])
    found["BANK"] = await register(
        client,
        code="BANK",
        mechanisms=["bank_transfer"],
        service_areas=["KE"],
        delivery={"mode": "file", "file_profile": {"format": "iso20022_pain001"}},
    )
    found["CASHCO"] = await register(
        client, code="CASHCO", mechanisms=["cash_pay_point"], service_areas=["KE-047"]
    )
    found["DORMANT"] = await register(client, code="DORMANT", mechanisms=["mobile_money"])
    await client.post(f"/providers/{found['DORMANT']['id']}/suspend", json={"reason": "Audit"})
    found["NEAR"] = await register(
        client, code="NEAR", mechanisms=["mobile_money"], service_areas=["KE-0470"]
    )
    mpesa, cashco = found["MPESA"]["id"], found["CASHCO"]["id"]
    for code, locations, status in [
        ("A1", ["KE-047-0101"], "active"),
        ("A2", ["KE-047-0202"], "active"),
        ("A3", ["KE-047"], "active"),
        ("A4", ["KE-047-0101"], "inactive"),
    ]:
        found[code] = await add_pay_point(
            client, mpesa, code=code, location_codes=locations, status=status
        )
    found["C1"] = await add_pay_point(client, cashco, code="C1", location_codes=["KE-047-0303"])
    return found


async def _lookup(client: httpx.AsyncClient, **params: str) -> dict[str, list[str]]:
    """provider code -> its pay point codes, as the lookup answers."""
    response = await client.get("/lookup", params=params)
    assert response.status_code == 200, response.text
    return {
        p["code"]: [point["code"] for point in p["pay_points"]]
        for p in response.json()["providers"]
    }


@pytest.mark.usefixtures("network")
async def test_lookup_follows_the_location_hierarchy(client: httpx.AsyncClient) -> None:
    ward = "KE-047-0101"

    assert await _lookup(client, location_code=ward, mechanism="cash_pay_point") == {
        "MPESA": ["A1", "A3"]
    }
    assert await _lookup(client, location_code=ward, mechanism="mobile_money") == {"MPESA": []}
    assert await _lookup(client, location_code=ward) == {"BANK": [], "MPESA": ["A1", "A3"]}
    assert await _lookup(client, location_code="KE-047-0303", mechanism="cash_pay_point") == {
        "CASHCO": ["C1"],
        "MPESA": ["A3"],
    }
    assert await _lookup(client, location_code="KE-0470-01") == {"BANK": [], "NEAR": []}
    assert await _lookup(client, location_code="UG-001") == {}


@pytest.mark.usefixtures("network")
async def test_lookup_names_the_usable_mechanisms(client: httpx.AsyncClient) -> None:
    response = await client.get("/lookup", params={"location_code": "KE-047-0101"})

    providers = {p["code"]: p for p in response.json()["providers"]}
    assert providers["MPESA"]["mechanisms"] == ["mobile_money", "cash_pay_point"]
    assert providers["MPESA"]["fee"] == {
        "currency": "KES",
        "fixed_minor": 3000,
        "basis_points": 150,
    }
    assert providers["BANK"]["mechanisms"] == ["bank_transfer"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "location_code"), ({"location_code": "KE", "mechanism": "cash"}, "mechanism")],
)
async def test_lookup_refuses_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    assert_problem(await client.get("/lookup", params=params), 422, field)


async def test_pay_points_list_by_location(
    client: httpx.AsyncClient, network: dict[str, dict[str, Any]]
) -> None:
    async def codes(url: str = "/pay-points", **params: str) -> list[str]:
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [p["code"] for p in response.json()["items"]]

    assert await codes(serves="KE-047-0101") == ["A1", "A3", "A4"]
    assert await codes(serves="KE-047-0101", status="active") == ["A1", "A3"]
    assert await codes(within="KE-047") == ["A1", "A2", "A3", "A4", "C1"]
    assert await codes(within="KE-047-0101") == ["A1", "A4"]
    assert await codes(within="KE-04") == []
    assert await codes(provider_id=network["CASHCO"]["id"]) == ["C1"]
    assert await codes(_url(network["MPESA"]), within="KE-047-0202") == ["A2"]

    first = (await client.get("/pay-points", params={"limit": 3})).json()
    rest = (await client.get("/pay-points", params={"cursor": first["next_cursor"]})).json()
    assert [p["code"] for p in first["items"] + rest["items"]] == ["A1", "A2", "A3", "A4", "C1"]
    assert rest["next_cursor"] is None
