"""Text with control characters or lone surrogates is refused with 422 naming the field, in
every string of every request body, query parameter and header; never a 500, never a name in
a log line."""

import httpx

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.bad_input import BodyRequest, coverage_gaps, sweep_failures
from amana_common.testing.clients import captured_json_log
from amana_common.testing.databases import row_count
from registry.duplicates_schemas import BulkDecisionsIn, DecisionIn
from registry.main import create_registry_app
from registry.models import Household
from registry.schemas import (
    HouseholdIn,
    HouseholdPatch,
    MemberPatch,
    NewMemberIn,
    PaymentPreferenceIn,
    StatusIn,
)
from registry.settings import RegistrySettings

from .conftest import household

HOUSEHOLD = {"household_id": "01930000-0000-7000-8000-000000000001"}
MEMBER = HOUSEHOLD | {"member_id": "01930000-0000-7000-8000-000000000002"}
IF_MATCH = {"If-Match": '"1"'}
PREFERENCE = {
    "provider_id": "01930000-0000-7000-8000-0000000000a1",
    "mechanism": "bank_transfer",
    "currency": "KES",
    "pay_point_id": "01930000-0000-7000-8000-0000000000b1",
    "account": {
        "kind": "bank_account",
        "value": "0123456789",
        "bank_code": "01094",
        "holder_name": "Amina Otieno",
    },
}
MEMBER_FIELDS = {
    "given_name": "Joseph",
    "family_name": "Otieno",
    "sex": "male",
    "date_of_birth": "1980-01-01",
    "relationship": "head",
    "former_head_relationship": "spouse",
    "phone": "0712345678",
    "identifiers": [{"scheme": "national_id", "value": "12345678"}],
}
BODIES = [
    BodyRequest(
        "POST",
        "/households",
        HouseholdIn,
        [
            household(address="Plot 12, Kibera\nNairobi", payment_preference=PREFERENCE)
            | {"members": [household()["members"][0] | {"phone": "0712345678"}]}  # type: ignore[index]
        ],
        headers={"Idempotency-Key": "sweep-key"},
    ),
    BodyRequest(
        "PATCH",
        "/households/{household_id}",
        HouseholdPatch,
        [{"location_code": "KE-047", "address": "Plot 9", "phone": "0712345678"}],
        path=HOUSEHOLD,
        headers=IF_MATCH,
    ),
    BodyRequest(
        "POST",
        "/households/{household_id}/status",
        StatusIn,
        [{"status": "suspended", "reason": "moved away"}],
        path=HOUSEHOLD,
        headers=IF_MATCH,
    ),
    BodyRequest(
        "POST",
        "/households/{household_id}/members",
        NewMemberIn,
        [MEMBER_FIELDS],
        path=HOUSEHOLD,
        headers=IF_MATCH | {"Idempotency-Key": "sweep-member"},
    ),
    BodyRequest(
        "PATCH",
        "/households/{household_id}/members/{member_id}",
        MemberPatch,
        [MEMBER_FIELDS],
        path=MEMBER,
        headers=IF_MATCH,
    ),
    BodyRequest(
        "PUT",
        "/households/{household_id}/payment-preference",
        PaymentPreferenceIn,
        [PREFERENCE],
        path=HOUSEHOLD,
        headers=IF_MATCH,
    ),
]
FLAG = {"flag_id": "01930000-0000-7000-8000-0000000000f1"}
DECISION = {
    "decision": "duplicate",
    "action": "merge",
    "surviving_household_id": HOUSEHOLD["household_id"],
    "note": "same family, enrolled twice",
}
BODIES += [
    BodyRequest("POST", "/duplicates/{flag_id}/decision", DecisionIn, [DECISION], path=FLAG),
    BodyRequest(
        "POST",
        "/duplicates/decisions",
        BulkDecisionsIn,
        [{"decisions": [DECISION | FLAG]}],
    ),
]
QUERY_EXAMPLES = {
    "location_code": "KE-047",
    "status": "active",
    "cursor": "0" * 32,
    "updated_since": "2026-01-01T00:00:00Z",
    "attribute": "pmt_score:lt:30",
    "number": "H0000000018",
    "identifier": "12345678",
    "scheme": "national_id",
    "phone": "0712345678",
    "name": "Amina Otieno",
    "format": "csv",
    "source": "openimis",
    "_lastUpdated": "gt2026-01-01",
    "address-state": "KE-047",
    "_page": "abc",
    "_type": "Group",
    "_since": "2026-01-01T00:00:00Z",
    "household_id": HOUSEHOLD["household_id"],
    "flagged_since": "2026-01-01T00:00:00Z",
}


def test_the_sweep_covers_every_body_field_query_parameter_and_header(
    settings: RegistrySettings,
) -> None:
    assert coverage_gaps(create_registry_app(settings), BODIES, QUERY_EXAMPLES) == []


async def test_every_text_input_refuses_bad_characters(
    client: httpx.AsyncClient, settings: RegistrySettings, database: Database
) -> None:
    app = create_registry_app(settings)

    paths = HOUSEHOLD | {"import_id": "01930000-0000-7000-8000-000000000003"}
    assert await sweep_failures(client, app, BODIES, QUERY_EXAMPLES, path=paths) == []
    assert await row_count(database, Household.__table__) == 0
    assert await row_count(database, outbox) == 0


async def test_a_nul_in_a_name_is_422_and_no_log_line_holds_a_name(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = household()
    body["members"][0]["given_name"] = "Amina\u0000"  # type: ignore[index]

    with captured_json_log("") as log:
        response = await client.post("/households", json=body)

    assert response.status_code == 422, response.text
    assert "members.0.given_name" in [e["field"] for e in response.json()["errors"]]
    assert "Amina" not in log.getvalue() and "Otieno" not in log.getvalue(), log.getvalue()
    assert await row_count(database, Household.__table__) == 0
