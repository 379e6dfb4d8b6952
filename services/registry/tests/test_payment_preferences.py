"""Payment preferences are checked against the projection of provider events; when the provider
changes later, the preference stays and the households' next snapshots say whether they can be
paid, and why not."""

from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.provider import ProviderRegisteredV1, ProviderSuspendedV1, ProviderUpdatedV1
from amana_contracts.registry import HouseholdEnrolledV1, HouseholdUpdatedV1

from .conftest import household
from .test_provider_projection import (
    KIBERA_POINT,
    MOMBASA_POINT,
    PROVIDER,
    apply,
    snapshot,
    status_change,
)

BANK = {
    "provider_id": str(PROVIDER),
    "mechanism": "bank_transfer",
    "account": {"kind": "bank_account", "value": "0123-456789", "bank_code": "68"},
}
CASH = {
    "provider_id": str(PROVIDER),
    "mechanism": "cash_pay_point",
    "pay_point_id": str(KIBERA_POINT),
}


async def enrol(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/households", json=household(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_preference_the_provider_can_pay_is_kept_and_the_household_is_payable(
    client: httpx.AsyncClient, database: Database
) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))

    created = await enrol(client, payment_preference=BANK)

    preference = created["payment_preference"]
    assert preference["account"] == {
        "kind": "bank_account",
        "value": "0123456789",
        "bank_code": "68",
        "holder_name": None,
    }
    assert preference["currency"] == "KES"
    enrolled = HouseholdEnrolledV1.model_validate((await outbox_events(database))[-1].data)
    assert enrolled.payable and enrolled.not_payable_reasons == []
    assert enrolled.payment_preference is not None
    assert enrolled.payment_preference.account is not None
    assert enrolled.payment_preference.account.value == "0123456789"


async def test_cash_at_a_pay_point_serving_the_household(
    client: httpx.AsyncClient, database: Database
) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))
    created = await enrol(client)
    url = f"/households/{created['id']}/payment-preference"

    elsewhere = await client.put(
        url, json=CASH | {"pay_point_id": str(MOMBASA_POINT)}, headers={"If-Match": '"1"'}
    )
    kibera = await client.put(url, json=CASH, headers={"If-Match": '"1"'})
    cleared = await client.delete(url, headers={"If-Match": '"2"'})

    assert elsewhere.status_code == 422
    assert elsewhere.json()["errors"][0]["field"] == "pay_point_id"
    assert kibera.status_code == 200, kibera.text
    assert kibera.json()["payment_preference"]["pay_point_id"] == str(KIBERA_POINT)
    assert cleared.status_code == 200 and cleared.json()["payment_preference"] is None
    last = HouseholdUpdatedV1.model_validate((await outbox_events(database))[-1].data)
    assert last.not_payable_reasons == ["no_payment_preference"]


@pytest.mark.parametrize(
    ("preference", "location", "field", "code"),
    [
        (
            BANK
            | {"mechanism": "mobile_money", "account": {"kind": "msisdn", "value": "0712345678"}},
            "KE-047-0101",
            "payment_preference.mechanism",
            "mechanism_not_offered",
        ),
        (
            BANK | {"currency": "USD"},
            "KE-047-0101",
            "payment_preference.currency",
            "currency_not_offered",
        ),
        (BANK, "KE-032-0101", "payment_preference.provider_id", "location_not_served"),
        (
            BANK | {"provider_id": "01930000-0000-7000-8000-00000000dead"},
            "KE-047-0101",
            "payment_preference.provider_id",
            "provider_unknown",
        ),
    ],
    ids=["mechanism", "currency", "location", "unknown provider"],
)
async def test_a_preference_the_provider_cannot_pay_is_refused_naming_the_field(
    preference: dict[str, Any],
    location: str,
    field: str,
    code: str,
    client: httpx.AsyncClient,
    database: Database,
) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))

    response = await client.post(
        "/households", json=household(location_code=location, payment_preference=preference)
    )

    assert response.status_code == 422, response.text
    assert (field, code) in [(e["field"], e.get("code")) for e in response.json()["errors"]]
    assert [e.type for e in await outbox_events(database)] == []


async def test_a_suspended_provider_keeps_the_preference_and_the_snapshot_says_why(
    client: httpx.AsyncClient, database: Database
) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))
    paid = await enrol(client, payment_preference=BANK)
    await enrol(client)  # no preference: not republished

    await apply(database, status_change(ProviderSuspendedV1, 2))
    await apply(database, snapshot(ProviderUpdatedV1, 3, mechanisms=["cash_pay_point"]))

    suspended, narrowed = (
        HouseholdUpdatedV1.model_validate(event.data)
        for event in (await outbox_events(database))[-2:]
    )
    assert suspended.household_id == narrowed.household_id == UUID(paid["id"])
    assert (suspended.version, suspended.payable) == (2, False)
    assert suspended.not_payable_reasons == ["provider_suspended"]
    assert narrowed.version == 3
    assert narrowed.not_payable_reasons == ["mechanism_not_offered"]
    read = (await client.get(f"/households/{paid['id']}")).json()
    assert read["payment_preference"]["mechanism"] == "bank_transfer"
    history = (await client.get(f"/households/{paid['id']}/history")).json()["items"]
    assert [h["action"] for h in history] == ["enrolled", "provider_changed", "provider_changed"]
