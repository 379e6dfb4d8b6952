"""Every string of every request body, query parameter and header of the provider API refuses
control characters and lone surrogates with 422 naming the field."""

from typing import Any

import httpx

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.bad_input import BodyRequest, coverage_gaps, sweep_failures
from amana_common.testing.databases import row_count
from provider.main import create_provider_app
from provider.schemas import (
    PayPointIn,
    PayPointPatch,
    ProviderIn,
    ProviderPatch,
    ReasonIn,
)
from provider.settings import ProviderSettings

from .conftest import add_pay_point, pay_point_body, provider_body, register

FILE_DELIVERY = {
    "mode": "file",
    "file_profile": {"format": "csv", "delimiter": ";", "max_records_per_file": 100},
}
CONTACT = {"name": "Payments desk", "email": "desk@mpesa.example", "phone": "+254700000009"}
FULL_PATCH: dict[str, Any] = {
    "legal_name": "Safaricom M-PESA Ltd",
    "country": "KE",
    "currencies": ["KES"],
    "mechanisms": ["mobile_money", "cash_pay_point"],
    "service_areas": ["KE-047"],
    "contact": CONTACT,
    "fee": {"currency": "KES", "fixed_minor": 0, "basis_points": 0},
    "delivery": {"mode": "api", "base_url": "https://api.mpesa.example/v2"},
}
QUERY_EXAMPLES = {
    "location_code": "KE-047",
    "serves": "KE-047-0101",
    "within": "KE-047",
    "status": "active",
    "mechanism": "mobile_money",
    "cursor": "0" * 32,
    "provider_id": "0" * 32,
}


def requests(provider_id: str = "0" * 32, pay_point_id: str = "0" * 32) -> list[BodyRequest]:
    """One per route with a body; the ids and ETags are those of a provider with one pay
    point, so that a body that wrongly passed validation would succeed."""
    provider = {"provider_id": provider_id}
    pay_point = {"provider_id": provider_id, "pay_point_id": pay_point_id}
    return [
        BodyRequest(
            "POST",
            "/providers",
            ProviderIn,
            [provider_body(), provider_body(delivery=FILE_DELIVERY)],
            headers={"Idempotency-Key": "sweep-register"},
        ),
        BodyRequest(
            "PATCH",
            "/providers/{provider_id}",
            ProviderPatch,
            [FULL_PATCH, {"delivery": FILE_DELIVERY}],
            path=provider,
            headers={"If-Match": '"2"'},
        ),
        *(
            BodyRequest(
                "POST",
                f"/providers/{{provider_id}}/{action}",
                ReasonIn,
                [{"reason": "Audit finding\nsee the report"}],
                path=provider,
                headers={"Idempotency-Key": f"sweep-{action}"},
            )
            for action in ("suspend", "reactivate")
        ),
        BodyRequest(
            "POST",
            "/providers/{provider_id}/pay-points",
            PayPointIn,
            [pay_point_body(code="AG-0002", status="active")],
            path=provider,
            headers={"Idempotency-Key": "sweep-pay-point"},
        ),
        BodyRequest(
            "PATCH",
            "/providers/{provider_id}/pay-points/{pay_point_id}",
            PayPointPatch,
            [{k: v for k, v in pay_point_body(status="inactive").items() if k != "code"}],
            path=pay_point,
            headers={"If-Match": '"1"'},
        ),
    ]


def test_the_sweep_covers_every_body_field_query_parameter_and_header(
    settings: ProviderSettings,
) -> None:
    assert coverage_gaps(create_provider_app(settings), requests(), QUERY_EXAMPLES) == []


async def test_every_text_input_refuses_bad_characters(
    client: httpx.AsyncClient, settings: ProviderSettings, database: Database
) -> None:
    app = create_provider_app(settings)
    provider = await register(client)
    pay_point = await add_pay_point(client, provider["id"])
    events = await row_count(database, outbox)

    sweep = requests(provider["id"], pay_point["id"])
    path = {"provider_id": provider["id"]}
    assert await sweep_failures(client, app, sweep, QUERY_EXAMPLES, path) == []
    assert await row_count(database, outbox) == events
