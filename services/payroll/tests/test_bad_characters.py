"""Every string of every request body, query parameter and header of the payroll API refuses
control characters and lone surrogates with 422 naming the field, and writes nothing."""

from typing import Any

import httpx

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.bad_input import BodyRequest, coverage_gaps, sweep_failures
from amana_common.testing.databases import row_count
from payroll.main import create_payroll_app
from payroll.models import Payroll, RuleVersion
from payroll.schemas import (
    OptionalReasonIn,
    ProgrammeIn,
    ProgrammePatch,
    ReasonIn,
    SimulationIn,
    TriggerIn,
    VersionIn,
)
from payroll.settings import PayrollSettings

from .factories import FORMULA, RULES, as_user, programme_body, project, provider

FREQUENCY = {
    "unit": "every_n_months",
    "every_n_months": 2,
    "payment_day": 3,
    "payment_window_days": 9,
}
FULL_PATCH: dict[str, Any] = {
    "name": "Renamed",
    "description": "Line one\nline two",
    "currency": "KES",
    "start_date": "2026-02-01",
    "end_date": "2027-01-31",
    "frequency": FREQUENCY,
    "budget_per_cycle_minor": 5,
    "carry_over": True,
    "generation_lead_days": 3,
}
RULES_BODY = {"eligibility": RULES, "formula": FORMULA, "budget_priority": []}
QUERY_EXAMPLES = {
    "status": "active",
    "cursor": "0" * 32,
    "programme_id": "0" * 32,
    "cycle_id": "0" * 32,
    "provider_id": "0" * 32,
    "location_code": "KE-047",
    "payment_from": "2026-01-01",
    "payment_to": "2026-12-31",
}


def requests(programme_id: str = "0" * 32, payroll_id: str = "0" * 32) -> list[BodyRequest]:
    programme = {"programme_id": programme_id}
    payroll = {"payroll_id": payroll_id}
    return [
        BodyRequest(
            "POST",
            "/programmes",
            ProgrammeIn,
            [programme_body(code="CT-SWEEP", description="Why", end_date="2027-06-30")],
            headers={"Idempotency-Key": "sweep-create"},
        ),
        BodyRequest(
            "PATCH",
            "/programmes/{programme_id}",
            ProgrammePatch,
            [FULL_PATCH],
            path=programme,
            headers={"If-Match": '"1"'},
        ),
        *(
            BodyRequest(
                "POST",
                f"/programmes/{{programme_id}}/{action}",
                OptionalReasonIn,
                [{"reason": "Board decision\nminute 12"}],
                path=programme,
            )
            for action in ("activate", "suspend", "close")
        ),
        BodyRequest(
            "POST",
            "/programmes/{programme_id}/versions",
            VersionIn,
            [RULES_BODY | {"note": "A new threshold"}],
            path=programme,
            headers={"If-Match": '"1"'},
        ),
        BodyRequest(
            "POST",
            "/programmes/{programme_id}/simulate",
            SimulationIn,
            [RULES_BODY | {"cycle_sequence": 1}],
            path=programme,
        ),
        BodyRequest(
            "POST",
            "/programmes/{programme_id}/payrolls",
            TriggerIn,
            [{"cycle_sequence": 1}],
            path=programme,
            headers={"Idempotency-Key": "sweep-trigger"},
        ),
        BodyRequest(
            "POST",
            "/payrolls/{payroll_id}/reject",
            ReasonIn,
            [{"reason": "Wrong budget"}],
            path=payroll,
            headers={"Idempotency-Key": "sweep-reject"},
        ),
    ]


def test_the_sweep_covers_every_body_field_query_parameter_and_header(
    settings: PayrollSettings,
) -> None:
    assert coverage_gaps(create_payroll_app(settings), requests(), QUERY_EXAMPLES) == []


async def test_every_text_input_refuses_bad_characters(
    client: httpx.AsyncClient, settings: PayrollSettings, database: Database
) -> None:
    await project(database, provider())
    created = await client.post("/programmes", json=programme_body())
    assert created.status_code == 201, created.text
    programme = created.json()
    events = await row_count(database, outbox)

    client.headers.update(as_user(settings, "sweeper", Role.admin, Role.payroll_approver))
    sweep = requests(programme["id"])
    path = {"programme_id": programme["id"], "payroll_id": "0" * 32}
    assert (
        await sweep_failures(client, create_payroll_app(settings), sweep, QUERY_EXAMPLES, path)
        == []
    )
    assert await row_count(database, outbox) == events
    assert await row_count(database, RuleVersion.__table__) == 1
    assert await row_count(database, Payroll.__table__) == 0
