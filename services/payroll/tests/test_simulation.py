"""What-if: candidate rules against the current version on the hand-computed projection of
test_generation, with a budget that binds and one that does not; nothing is written."""

from typing import Any

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.databases import outbox_events, row_count
from payroll.models import Payroll, PayrollLine
from payroll.settings import PayrollSettings

from .factories import FORMULA, as_user
from .test_generation import BUDGET, EXPECTED_EXCLUSIONS, active_programme, generate, seed

# Only KE-047-0101, children or not: H1, H2, H6, H7, H8, H11, H12, H13 are eligible; of them
# H1 (350,000), H2 (600,000), H11 (300,000: no child) and H12 (350,000) are payable; by
# pmt_score H1 (10), H2 (20), H12 (50), then H11 (no score).
CANDIDATE = {
    "eligibility": {"field": "location", "op": "within", "value": "KE-047-0101"},
    "formula": FORMULA,
    "cycle_sequence": 1,
}


async def simulate(client: httpx.AsyncClient, programme_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/programmes/{programme_id}/simulate", json=CANDIDATE | body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("after_a_payroll", [False, True])
async def test_a_budget_that_binds_leaves_out_the_last_by_priority_in_each_version(
    client: httpx.AsyncClient, database: Database, after_a_payroll: bool
) -> None:
    """The same answer whether simulation counts first (nothing says the budget binds) or
    ranks at once (the last payroll left someone out over budget)."""
    await seed(database)
    programme = await active_programme(client, budget_per_cycle_minor=BUDGET)
    if after_a_payroll:
        url = f"/programmes/{programme['id']}/payrolls"
        assert (await client.post(url, json={"cycle_sequence": 1})).status_code == 202
        await generate(database)

    result = await simulate(client, programme["id"])

    # current: H1, H2, H9 paid (1,300,000), H12 over the budget of 1,400,000
    assert result["current"] == {
        "eligible": 11,
        "on_payroll": 3,
        "total_amount_minor": 1_300_000,
        "exclusions": EXPECTED_EXCLUSIONS,
    }
    # candidate: H1, H2, H12 paid (1,300,000), H11 over the budget
    assert result["candidate"] == {
        "eligible": 8,
        "on_payroll": 3,
        "total_amount_minor": 1_300_000,
        "exclusions": {
            "not_active": 0,
            "under_review": 0,
            "no_payable_preference": 2,
            "provider_suspended": 1,
            "provider_currency": 1,
            "over_budget": 1,
        },
    }
    assert result["difference"] == {
        "newly_included": 1,  # H12
        "newly_excluded": 1,  # H9
        "cost_delta_minor": 0,
    }
    by_location = {r["location_code"]: r for r in result["by_location"]}
    assert by_location["KE-047-0101"] == {
        "location_code": "KE-047-0101",
        "eligible": 8,
        "on_payroll": 3,
        "amount_minor": 1_300_000,
        "current_on_payroll": 2,
        "current_amount_minor": 950_000,
    }
    assert by_location["KE-047.02"]["current_amount_minor"] == 350_000
    assert by_location["KE-047.02"]["on_payroll"] == 0
    assert (result["cycle_sequence"], result["cycle_date"]) == (1, "2026-01-01")


async def test_without_a_binding_budget_everyone_payable_is_paid(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(database)
    programme = await active_programme(client, budget_per_cycle_minor=BUDGET)

    result = await simulate(client, programme["id"], budget_minor=2_000_000, location_level=2)

    assert result["current"]["total_amount_minor"] == 1_650_000  # H1, H2, H9, H12
    assert result["candidate"]["total_amount_minor"] == 1_600_000  # H1, H2, H11, H12
    assert result["difference"] == {
        "newly_included": 1,  # H11
        "newly_excluded": 1,  # H9
        "cost_delta_minor": -50_000,
    }
    assert [r["location_code"] for r in result["by_location"]] == ["KE-047"]
    assert result["budget_minor"] == 2_000_000


async def test_simulation_writes_nothing_and_names_the_path_of_a_bad_rule(
    client: httpx.AsyncClient, database: Database, settings: PayrollSettings
) -> None:
    await seed(database)
    programme = await active_programme(client)
    events_before = len(await outbox_events(database))
    url = f"/programmes/{programme['id']}/simulate"

    bad = await client.post(
        url, json={"eligibility": {"all": [{"field": "income", "op": "<", "value": 1}]}}
    )
    analyst = await client.post(url, json=CANDIDATE, headers=as_user(settings, "a", Role.analyst))
    approver = await client.post(
        url, json=CANDIDATE, headers=as_user(settings, "b", Role.payroll_approver)
    )

    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["eligibility.all.0.field"]
    assert analyst.status_code == 200
    assert approver.status_code == 403
    assert await row_count(database, Payroll.__table__) == 0
    assert await row_count(database, PayrollLine.__table__) == 0  # and nothing else:
    assert len(await outbox_events(database)) == events_before
