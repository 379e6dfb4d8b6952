"""Text with control characters or lone surrogates is refused with 422 naming the field, in
every string of every request body, query parameter and header; never a 500, never a name in
a log line."""

import httpx

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.bad_input import BodyRequest, coverage_gaps, sweep_failures
from amana_common.testing.clients import captured_json_log
from amana_common.testing.databases import row_count
from registry.main import create_registry_app
from registry.models import Household
from registry.schemas import HouseholdIn
from registry.settings import RegistrySettings

from .conftest import household

BODIES = [
    BodyRequest(
        "POST",
        "/households",
        HouseholdIn,
        [household(address="Plot 12, Kibera\nNairobi")],
        headers={"Idempotency-Key": "sweep-key"},
    )
]
QUERY_EXAMPLES = {"location_code": "KE-047", "status": "active", "cursor": "0" * 32}


def test_the_sweep_covers_every_body_field_query_parameter_and_header(
    settings: RegistrySettings,
) -> None:
    assert coverage_gaps(create_registry_app(settings), BODIES, QUERY_EXAMPLES) == []


async def test_every_text_input_refuses_bad_characters(
    client: httpx.AsyncClient, settings: RegistrySettings, database: Database
) -> None:
    app = create_registry_app(settings)

    assert await sweep_failures(client, app, BODIES, QUERY_EXAMPLES) == []
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
