import json
from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events
from amana_common.testing.databases import row_count as count
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from provider import repository
from provider.models import Provider, ProviderStatusChange

from .conftest import (
    add_pay_point,
    assert_problem,
    provider_body,
    register,
)


async def test_registration_writes_provider_history_and_event(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post("/providers", json=provider_body())

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"].endswith(f"/providers/{body['id']}")
    assert response.headers["etag"] == '"1"'
    assert body["code"] == "MPESA-KE"
    assert body["status"] == "active"
    assert body["version"] == 1
    assert body["fee"] == {"currency": "KES", "fixed_minor": 3000, "basis_points": 150}
    assert body["delivery"] == {
        "mode": "api",
        "base_url": "https://api.mpesa.example/v1",
        "file_profile": None,
    }
    assert body["contact"]["email"] == "desk@mpesa.example"

    [event] = await outbox_events(database)
    assert event.type == "amana.provider.ProviderRegistered.v1"
    assert event.source == "amana/provider"
    assert event.subject == body["id"]
    payload = ProviderRegisteredV1.model_validate(event.data)
    assert payload.provider_id == UUID(body["id"])
    assert payload.service_areas == ["KE-047", "KE-001"]
    assert payload.pay_points == []
    assert "desk@mpesa.example" not in json.dumps(event.data), "contact stays in the service"

    history = (await client.get(f"/providers/{body['id']}/status-history")).json()
    assert [(h["status"], h["reason"]) for h in history] == [("active", "registered")]


async def test_registered_provider_reads_back_with_its_etag(client: httpx.AsyncClient) -> None:
    created = await register(client)

    response = await client.get(f"/providers/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_file_delivery_gets_its_profile_defaults(client: httpx.AsyncClient) -> None:
    created = await register(
        client, delivery={"mode": "file", "file_profile": {"format": "csv"}}, contact=None
    )

    assert created["delivery"] == {
        "mode": "file",
        "base_url": None,
        "file_profile": {"format": "csv", "delimiter": ",", "max_records_per_file": 10_000},
    }
    assert created["contact"] is None


async def test_unknown_provider_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/providers/0190b7a2-0000-7000-8000-000000000000")

    assert_problem(response, 404)
    assert response.json()["type"].endswith("/provider-not-found")


def _api(url: str) -> dict[str, Any]:
    return provider_body(delivery={"mode": "api", "base_url": url})


BAD_PROVIDERS: dict[str, tuple[dict[str, Any], int, str]] = {
    "unknown mechanism": (provider_body(mechanisms=["mobile_money", "cash"]), 422, "mechanisms.1"),
    "currency not ISO 4217": (provider_body(currencies=["KES", "KSH"]), 422, "currencies.1"),
    "fund code, not a currency": (provider_body(currencies=["USN"]), 422, "currencies.0"),
    "lower-case currency": (provider_body(currencies=["kes"]), 422, "currencies.0"),
    "currency twice": (provider_body(currencies=["KES", "KES"]), 422, "currencies"),
    "no currency": (provider_body(currencies=[]), 422, "currencies"),
    "fee in another currency": (
        provider_body(fee={"currency": "USD", "fixed_minor": 0}),
        422,
        "fee.currency",
    ),
    "fee as a float": (
        provider_body(fee={"currency": "KES", "fixed_minor": 2.5}),
        422,
        "fee.fixed_minor",
    ),
    "percentage over 100": (
        provider_body(fee={"currency": "KES", "basis_points": 10_001}),
        422,
        "fee.basis_points",
    ),
    "country not alpha-2": (provider_body(country="KEN"), 422, "country"),
    "bad service area": (provider_body(service_areas=["nairobi west"]), 422, "service_areas.0"),
    "bad code": (provider_body(code="mpesa ke"), 422, "code"),
    "unknown field": (provider_body(colour="green"), 422, "colour"),
    "bad phone": (
        provider_body(contact={"name": "Desk", "phone": "0700 000"}),
        422,
        "contact.phone",
    ),
    "api without base URL": (provider_body(delivery={"mode": "api"}), 422, "delivery.base_url"),
    "file without profile": (
        provider_body(delivery={"mode": "file"}),
        422,
        "delivery.file_profile",
    ),
    "file with a base URL": (
        provider_body(
            delivery={
                "mode": "file",
                "base_url": "https://api.mpesa.example",
                "file_profile": {"format": "csv"},
            }
        ),
        422,
        "delivery.base_url",
    ),
    "URL host not allowlisted": (_api("https://api.evil.example/v1"), 422, "delivery.base_url"),
    "allowlisted name inside another": (
        _api("https://api.mpesa.example.evil.example/"),
        422,
        "delivery.base_url",
    ),
    "plain http": (_api("http://api.mpesa.example/v1"), 422, "delivery.base_url"),
    "credentials in URL": (
        _api("https://user:pw@api.mpesa.example/v1"),
        422,
        "delivery.base_url",
    ),
    "credentials hiding the host": (
        _api("https://api.mpesa.example@169.254.169.254/"),
        422,
        "delivery.base_url",
    ),
    "query in URL": (_api("https://api.mpesa.example/v1?key=abc"), 422, "delivery.base_url"),
    "port not allowed": (_api("https://api.mpesa.example:8080/v1"), 422, "delivery.base_url"),
    "metadata address": (_api("https://169.254.169.254/latest"), 422, "delivery.base_url"),
    "not a URL": (_api("api.mpesa.example"), 422, "delivery.base_url"),
    "wildcard does not cover the apex": (_api("https://bank.example/"), 422, "delivery.base_url"),
}


@pytest.mark.parametrize("case", BAD_PROVIDERS, ids=list(BAD_PROVIDERS))
async def test_bad_provider_is_refused_with_the_field_and_nothing_written(
    case: str, client: httpx.AsyncClient, database: Database
) -> None:
    body, status, field = BAD_PROVIDERS[case]

    response = await client.post("/providers", json=body)

    assert_problem(response, status, field)
    assert await count(database, Provider.__table__) == 0
    assert await count(database, ProviderStatusChange.__table__) == 0
    assert await count(database, outbox) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://payments.bank.example/api",
        "https://a.b.bank.example",
        "http://127.0.0.1:8555/sandbox",
        "HTTPS://API.MPESA.EXAMPLE/v1",
    ],
)
async def test_allowlisted_api_urls_are_accepted(client: httpx.AsyncClient, url: str) -> None:
    created = await register(client, delivery={"mode": "api", "base_url": url})

    assert created["delivery"]["base_url"].lower() == url.lower()


async def test_duplicate_code_is_409_naming_code(
    client: httpx.AsyncClient, database: Database
) -> None:
    await register(client)

    response = await client.post("/providers", json=provider_body(legal_name="Another"))

    assert_problem(response, 409, "code")
    assert response.json()["type"].endswith("/duplicate-code")
    assert await count(database, Provider.__table__) == 1
    assert await count(database, outbox) == 1


async def test_duplicate_code_that_passes_the_pre_check_is_still_409(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two concurrent registrations both pass the pre-check; the unique constraint decides."""
    await register(client)

    async def not_taken(*args: object) -> bool:
        return False

    monkeypatch.setattr(repository, "provider_code_taken", not_taken)
    response = await client.post("/providers", json=provider_body())

    assert_problem(response, 409, "code")
    assert await count(database, Provider.__table__) == 1
    assert await count(database, outbox) == 1


# --- update ------------------------------------------------------------------------------


async def _patch(
    client: httpx.AsyncClient, provider: dict[str, Any], body: object, etag: str | None = '"1"'
) -> httpx.Response:
    headers = {} if etag is None else {"If-Match": etag}
    return await client.patch(f"/providers/{provider['id']}", json=body, headers=headers)


async def test_update_with_if_match_bumps_the_version_and_publishes_the_snapshot(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)

    response = await _patch(
        client,
        created,
        {
            "legal_name": "Safaricom PLC (M-PESA)",
            "service_areas": ["KE"],
            "fee": {"currency": "KES", "fixed_minor": 2500, "basis_points": 100},
        },
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    body = response.json()
    assert body["version"] == 2
    assert body["legal_name"] == "Safaricom PLC (M-PESA)"
    assert body["service_areas"] == ["KE"]
    assert body["code"] == created["code"]
    assert body["contact"] == created["contact"], "fields left out are kept"
    events = await outbox_events(database)
    assert [e.type for e in events] == [
        "amana.provider.ProviderRegistered.v1",
        "amana.provider.ProviderUpdated.v1",
    ]
    snapshot = ProviderUpdatedV1.model_validate(events[1].data)
    assert snapshot.version == 2
    assert snapshot.legal_name == "Safaricom PLC (M-PESA)"
    assert snapshot.fee.fixed_minor == 2500
    assert snapshot.delivery.base_url == "https://api.mpesa.example/v1"


async def test_update_that_changes_nothing_keeps_the_version_and_publishes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)

    response = await _patch(client, created, {"legal_name": created["legal_name"]})

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert await count(database, outbox) == 1


async def test_update_can_remove_the_contact(client: httpx.AsyncClient) -> None:
    created = await register(client)

    response = await _patch(client, created, {"contact": None})

    assert response.json()["contact"] is None


async def test_update_without_if_match_is_428(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)

    response = await _patch(client, created, {"legal_name": "X"}, etag=None)

    assert_problem(response, 428)
    assert (await client.get(f"/providers/{created['id']}")).json()["version"] == 1
    assert await count(database, outbox) == 1


@pytest.mark.parametrize("etag", ['"2"', 'W/"1"', '"0", "7"'])
async def test_update_with_a_stale_if_match_is_412_with_the_current_etag(
    client: httpx.AsyncClient, database: Database, etag: str
) -> None:
    created = await register(client)

    response = await _patch(client, created, {"legal_name": "X"}, etag=etag)

    assert_problem(response, 412)
    assert response.headers["etag"] == '"1"'
    assert await count(database, outbox) == 1


async def test_if_match_may_list_several_versions(client: httpx.AsyncClient) -> None:
    created = await register(client)

    response = await _patch(client, created, {"legal_name": "X"}, etag='"5", "1"')

    assert response.status_code == 200


@pytest.mark.parametrize(("etag", "status"), [("*", 428), ("1", 422)])
async def test_if_match_must_name_a_version(
    client: httpx.AsyncClient, etag: str, status: int
) -> None:
    created = await register(client)

    response = await _patch(client, created, {"legal_name": "X"}, etag=etag)

    assert_problem(response, status, "If-Match" if status == 422 else None)


BAD_UPDATES: dict[str, tuple[dict[str, Any], str]] = {
    "code is not editable": ({"code": "OTHER"}, "code"),
    "status is not editable": ({"status": "suspended"}, "status"),
    "null for a required field": ({"legal_name": None}, "legal_name"),
    "unknown mechanism": ({"mechanisms": ["barter"]}, "mechanisms.0"),
    "currency not ISO 4217": ({"currencies": ["KES", "BTC"]}, "currencies.1"),
    "dropping the fee currency": ({"currencies": ["USD"]}, "fee.currency"),
    "non-allowlisted URL": (
        {"delivery": {"mode": "api", "base_url": "https://10.0.0.8/"}},
        "delivery.base_url",
    ),
}


@pytest.mark.parametrize("case", BAD_UPDATES, ids=list(BAD_UPDATES))
async def test_bad_update_is_refused_with_the_field_and_nothing_written(
    case: str, client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)
    body, field = BAD_UPDATES[case]

    response = await _patch(client, created, body)

    assert_problem(response, 422, field)
    assert (await client.get(f"/providers/{created['id']}")).json() == created
    assert await count(database, outbox) == 1


async def test_update_cannot_leave_pay_points_outside_the_service_areas(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)
    await add_pay_point(client, created["id"])

    shrunk = await _patch(client, created, {"service_areas": ["KE-001"]}, etag='"2"')
    no_cash = await _patch(client, created, {"mechanisms": ["mobile_money"]}, etag='"2"')

    assert_problem(shrunk, 422, "service_areas")
    assert "AG-0001" in shrunk.json()["detail"]
    assert_problem(no_cash, 422, "mechanisms")
    assert await count(database, outbox) == 2


# --- status ------------------------------------------------------------------------------


async def test_suspend_and_reactivate_publish_and_keep_the_history(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)
    url = f"/providers/{created['id']}"

    suspended = await client.post(f"{url}/suspend", json={"reason": "Float exhausted"})
    reactivated = await client.post(f"{url}/reactivate", json={"reason": "Float topped up"})

    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert suspended.json()["status_reason"] == "Float exhausted"
    assert suspended.headers["etag"] == '"2"'
    assert reactivated.json()["status"] == "active"
    assert reactivated.json()["version"] == 3
    history = (await client.get(f"{url}/status-history")).json()
    assert [(h["status"], h["reason"]) for h in history] == [
        ("active", "Float topped up"),
        ("suspended", "Float exhausted"),
        ("active", "registered"),
    ]
    events = await outbox_events(database)
    suspension = ProviderSuspendedV1.model_validate(events[1].data)
    reactivation = ProviderReactivatedV1.model_validate(events[2].data)
    assert events[1].type == "amana.provider.ProviderSuspended.v1"
    assert events[2].type == "amana.provider.ProviderReactivated.v1"
    assert {e.subject for e in events} == {created["id"]}
    assert (suspension.reason, suspension.version) == ("Float exhausted", 2)
    assert (reactivation.reason, reactivation.version) == ("Float topped up", 3)


async def test_suspending_a_suspended_provider_is_409(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)
    url = f"/providers/{created['id']}/suspend"
    await client.post(url, json={"reason": "Audit"})

    response = await client.post(url, json={"reason": "Audit again"})

    assert_problem(response, 409)
    assert response.json()["type"].endswith("/provider-already-suspended")
    assert await count(database, ProviderStatusChange.__table__) == 2
    assert await count(database, outbox) == 2


async def test_reactivating_an_active_provider_is_409(
    client: httpx.AsyncClient, database: Database
) -> None:
    created = await register(client)

    response = await client.post(
        f"/providers/{created['id']}/reactivate", json={"reason": "Just in case"}
    )

    assert_problem(response, 409)
    assert response.json()["type"].endswith("/provider-already-active")
    assert await count(database, outbox) == 1


@pytest.mark.parametrize("body", [{}, {"reason": "  "}, {"reason": "x" * 501}])
async def test_suspension_needs_a_reason(
    client: httpx.AsyncClient, database: Database, body: dict[str, str]
) -> None:
    created = await register(client)

    response = await client.post(f"/providers/{created['id']}/suspend", json=body)

    assert_problem(response, 422, "reason")
    assert await count(database, outbox) == 1


# --- list --------------------------------------------------------------------------------


async def test_list_filters_by_mechanism_location_and_status_and_pages(
    client: httpx.AsyncClient,
) -> None:
    mpesa = await register(client)
    bank = await register(
        client,
        code="KCB",
        mechanisms=["bank_transfer"],
        service_areas=["KE"],
        delivery={"mode": "api", "base_url": "https://payments.bank.example"},
    )
    prefix_trap = await register(client, code="NEAR", service_areas=["KE-0470"])
    suspended = await register(client, code="DORMANT", mechanisms=["voucher"])
    await client.post(f"/providers/{suspended['id']}/suspend", json={"reason": "Dormant"})

    async def codes(**params: str | int) -> list[str]:
        response = await client.get("/providers", params=params)
        assert response.status_code == 200, response.text
        return [p["code"] for p in response.json()["items"]]

    assert await codes() == ["MPESA-KE", "KCB", "NEAR", "DORMANT"]
    assert await codes(mechanism="bank_transfer") == ["KCB"]
    assert await codes(location_code="KE-047-0101") == ["MPESA-KE", "KCB", "DORMANT"]
    assert await codes(location_code="KE-0470-01") == ["KCB", "NEAR"]
    assert await codes(location_code="UG") == []
    assert await codes(status="suspended") == ["DORMANT"]
    assert await codes(status="active", mechanism="cash_pay_point") == ["MPESA-KE", "NEAR"]

    first = (await client.get("/providers", params={"limit": 3})).json()
    second = (
        await client.get("/providers", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    ids = [p["id"] for p in first["items"] + second["items"]]
    assert ids == [mpesa["id"], bank["id"], prefix_trap["id"], suspended["id"]]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 201}, "limit"), ({"mechanism": "cash"}, "mechanism"), ({"status": "x"}, "status")],
)
async def test_list_refuses_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, str | int], field: str
) -> None:
    response = await client.get("/providers", params=params)

    assert_problem(response, 422, field)
