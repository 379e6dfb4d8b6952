"""Generation end to end on a small projection: amounts, exclusions and snapshots against
hand-computed values, then approval and its chunks."""

import csv
import io
import json
from datetime import date
from typing import Any
from uuid import UUID

import httpx
from uuid6 import uuid7

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import captured_json_log
from amana_common.testing.databases import outbox_events
from amana_contracts.payroll import PayrollApprovedV1, PayrollGeneratedV1
from payroll import repository, service
from payroll.settings import PayrollSettings

from .conftest import ATTRIBUTES
from .factories import CASH_POINT, PSP, as_user, household, programme_body, project, provider

SUSPENDED_PSP = UUID("01930000-0000-7000-8000-0000000000a2")
SHILLING_LESS_PSP = UUID("01930000-0000-7000-8000-0000000000a3")
ADULT = (date(1980, 3, 1), "female", False)  # 45 on 2026-01-01: 35-59
TODDLER = (date(2021, 6, 1), "male", False)  # 4: 0-4


def child(year: int, disability: bool = False) -> tuple[date, str, bool]:
    return (date(year, 5, 5), "female", disability)


# Cycle 1 of a monthly programme starting 2026-01-01 (payment day 10): ages on 2026-01-01.
HOUSEHOLDS = [
    # paid: base 300,000 + one child 50,000
    household("H0000000001", "KE-047-0101", [ADULT, TODDLER], attributes={"pmt_score": 10}),
    # paid: 4 children (3 counted: 150,000) + 2 disabled (200,000) = 650,000, capped at 600,000
    household(
        "H0000000002",
        "KE-047-0101",
        [
            (date(1975, 1, 1), "male", True),
            child(2010, True),
            child(2011),
            child(2012),
            child(2013),
        ],
        attributes={"pmt_score": 20},
    ),
    household("H0000000003", "KE-047-0102", [ADULT, TODDLER], status="suspended"),
    household("H0000000004", "KE-047-0102", [ADULT, TODDLER], status="under_review"),
    household("H0000000005", "KE-047-0102", [ADULT, TODDLER], review=True),
    household(
        "H0000000006", "KE-047-0101", [ADULT, TODDLER], payable=False, reasons=["account_missing"]
    ),
    household("H0000000007", "KE-047-0101", [ADULT, TODDLER], provider_id=SUSPENDED_PSP),
    household("H0000000008", "KE-047-0101", [ADULT, TODDLER], provider_id=SHILLING_LESS_PSP),
    # paid through a cash pay point: 350,000
    household(
        "H0000000009",
        "KE-047.02",
        [ADULT, child(2025)],
        mechanism="cash_pay_point",
        pay_point_id=CASH_POINT,
        attributes={"pmt_score": 30},
    ),
    household("H0000000010", "KE-001-0001", [ADULT, TODDLER]),  # outside KE-047: not eligible
    household("H0000000011", "KE-047-0101", [ADULT]),  # no child: not eligible
    # eligible and payable, but last by pmt_score: over the budget of 1,400,000
    household("H0000000012", "KE-047-0101", [ADULT, TODDLER], attributes={"pmt_score": 50}),
    household(
        "H0000000013",
        "KE-047-0101",
        [ADULT, TODDLER],
        mechanism="cash_pay_point",
        pay_point_id=uuid7(),  # a pay point its provider does not have
    ),
]
EXPECTED_EXCLUSIONS = {
    "not_active": 1,
    "under_review": 2,
    "no_payable_preference": 2,
    "provider_suspended": 1,
    "provider_currency": 1,
    "over_budget": 1,
}
BUDGET = 1_400_000


async def seed(database: Database) -> None:
    await project(
        database,
        provider(),
        provider(SUSPENDED_PSP, status="suspended"),
        provider(SHILLING_LESS_PSP, currencies=["UGX"]),
        *HOUSEHOLDS,
    )


async def active_programme(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/programmes", json=programme_body(**overrides))
    assert response.status_code == 201, response.text
    programme: dict[str, Any] = response.json()
    activated = await client.post(f"/programmes/{programme['id']}/activate", json={})
    assert activated.status_code == 200, activated.text
    return dict(activated.json())


async def generate(database: Database, chunk_rows: int = 1_000) -> list[tuple[str, int, int]]:
    """Runs the generation of the waiting payroll as the worker does; answers its progress."""
    reported: list[tuple[str, int, int]] = []

    async def progress(phase: str, done: int, total: int) -> None:
        reported.append((phase, done, total))

    async with database.sessionmaker() as session, session.begin():
        payroll = await repository.claim_generating(session)
        assert payroll is not None
        await service.generate_payroll(session, payroll, ATTRIBUTES, chunk_rows, progress)
    return reported


async def generated_payroll(
    client: httpx.AsyncClient, database: Database, manager: dict[str, str]
) -> dict[str, Any]:
    await seed(database)
    client.headers.update(manager)
    programme = await active_programme(client, budget_per_cycle_minor=BUDGET)
    triggered = await client.post(
        f"/programmes/{programme['id']}/payrolls", json={"cycle_sequence": 1}
    )
    assert triggered.status_code == 202, triggered.text
    assert triggered.json()["status"] == "GENERATING"
    progress = await generate(database, chunk_rows=2)
    assert progress[0] == ("evaluating", 0, 0)
    assert progress[-2:] == [("writing_lines", 3, 3), ("done", 3, 3)]
    payroll = await client.get(triggered.headers["location"])
    assert payroll.status_code == 200
    return dict(payroll.json())


async def test_generation_pays_and_leaves_out_exactly_the_hand_computed_households(
    client: httpx.AsyncClient, database: Database, manager: dict[str, str]
) -> None:
    payroll = await generated_payroll(client, database, manager)

    assert payroll["status"] == "PENDING_APPROVAL"
    assert payroll["eligible_count"] == 11
    assert payroll["line_count"] == 3
    assert payroll["total_amount_minor"] == 350_000 + 600_000 + 350_000
    assert payroll["exclusions"] == EXPECTED_EXCLUSIONS
    assert payroll["generated_by"] == "manager-1"

    lines = await all_lines(client, payroll["id"])
    amounts = {line["household_number"]: line["amount_minor"] for line in lines}
    assert amounts == {"H0000000001": 350_000, "H0000000002": 600_000, "H0000000009": 350_000}
    cash = next(line for line in lines if line["household_number"] == "H0000000009")
    assert (cash["mechanism"], cash["pay_point_id"], cash["account"]) == (
        "cash_pay_point",
        str(CASH_POINT),
        None,
    )
    mobile = next(line for line in lines if line["household_number"] == "H0000000001")
    assert mobile["account"]["kind"] == "msisdn"
    assert mobile["provider_id"] == str(PSP)
    assert mobile["recipient_given_name"] == "GivenH0000000001"
    assert mobile["recipient_age_band"] == "35-59"
    assert mobile["recipient_identifier"] == {"scheme": "national_id", "value": "IDH0000000001"}

    summary = (await client.get(f"/payrolls/{payroll['id']}/summary")).json()
    assert [
        (r["location_code"], r["eligible"], r["on_payroll"], r["amount_minor"])
        for r in summary["by_location"]
    ] == [
        ("KE-047-0101", 7, 2, 950_000),
        ("KE-047-0102", 3, 0, 0),
        ("KE-047.02", 1, 1, 350_000),
    ]
    assert summary["by_location"][1]["exclusions"] == {"not_active": 1, "under_review": 2}

    generated = [e for e in await outbox_events(database) if e.name == "PayrollGenerated"]
    assert len(generated) == 1
    event = PayrollGeneratedV1.model_validate(generated[0].data)
    assert event.exclusions == EXPECTED_EXCLUSIONS
    assert (event.line_count, event.eligible_count, event.budget_minor) == (3, 11, BUDGET)
    assert event.period_start == date(2026, 1, 1)
    assert (event.payment_window_start, event.payment_window_end) == (
        date(2026, 1, 10),
        date(2026, 1, 23),
    )


async def all_lines(client: httpx.AsyncClient, payroll_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get(f"/payrolls/{payroll_id}/lines", params=params)
        assert page.status_code == 200, page.text
        found.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found


async def test_approval_by_a_checker_publishes_the_lines_once(
    client: httpx.AsyncClient,
    database: Database,
    manager: dict[str, str],
    checker: dict[str, str],
) -> None:
    payroll = await generated_payroll(client, database, manager)
    url = f"/payrolls/{payroll['id']}"

    refused = await client.post(f"{url}/approve", headers=manager)
    approved = await client.post(f"{url}/approve", headers=checker)
    twice = await client.post(f"{url}/approve", headers=checker)

    assert refused.status_code == 403, "a programme manager may not approve"
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "APPROVED"
    assert approved.json()["decided_by"] == "checker-1"
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("/payroll-approved")
    chunks = [e for e in await outbox_events(database) if e.name == "PayrollApproved"]
    assert len(chunks) == 1
    assert chunks[0].subject == payroll["id"]
    chunk = PayrollApprovedV1.model_validate(chunks[0].data)
    assert (chunk.chunk_index, chunk.chunk_count, chunk.line_count) == (0, 1, 3)
    assert chunk.total_amount_minor == sum(line.amount_minor for line in chunk.lines)
    assert chunk.approved_by == "checker-1"
    assert {line.household_number for line in chunk.lines} == {
        "H0000000001",
        "H0000000002",
        "H0000000009",
    }


async def test_the_maker_may_not_approve_even_with_the_approver_role(
    client: httpx.AsyncClient, database: Database, settings: PayrollSettings
) -> None:
    both = as_user(settings, "manager-2", Role.programme_manager, Role.payroll_approver)
    payroll = await generated_payroll(client, database, both)

    response = await client.post(f"/payrolls/{payroll['id']}/approve", headers=both)

    assert response.status_code == 403
    assert response.json()["type"].endswith("/maker-checker")
    assert (await client.get(f"/payrolls/{payroll['id']}")).json()["status"] == "PENDING_APPROVAL"


async def test_approval_checks_the_budget_as_it_is_now(
    client: httpx.AsyncClient,
    database: Database,
    manager: dict[str, str],
    checker: dict[str, str],
) -> None:
    payroll = await generated_payroll(client, database, manager)
    programme = (await client.get(f"/programmes/{payroll['programme_id']}")).json()
    lowered = await client.patch(
        f"/programmes/{programme['id']}",
        json={"budget_per_cycle_minor": 1_000_000},
        headers={"If-Match": f'"{programme["version"]}"'},
    )
    assert lowered.status_code == 200, lowered.text

    response = await client.post(f"/payrolls/{payroll['id']}/approve", headers=checker)

    assert response.status_code == 409
    assert response.json()["type"].endswith("/over-budget")
    assert (await client.get(f"/payrolls/{payroll['id']}")).json()["status"] == "PENDING_APPROVAL"
    assert not [e for e in await outbox_events(database) if e.name == "PayrollApproved"]


async def test_a_rejection_needs_a_reason_and_frees_the_cycle(
    client: httpx.AsyncClient,
    database: Database,
    manager: dict[str, str],
    checker: dict[str, str],
) -> None:
    payroll = await generated_payroll(client, database, manager)
    url = f"/payrolls/{payroll['id']}"

    without = await client.post(f"{url}/reject", json={}, headers=checker)
    rejected = await client.post(f"{url}/reject", json={"reason": "Wrong budget"}, headers=checker)
    again = await client.post(
        f"/programmes/{payroll['programme_id']}/payrolls", json={"cycle_sequence": 1}
    )

    assert without.status_code == 422
    assert rejected.status_code == 200
    assert rejected.json()["rejection_reason"] == "Wrong budget"
    assert again.status_code == 202, "a rejected payroll's cycle may be generated again"
    rejections = [e for e in await outbox_events(database) if e.name == "PayrollRejected"]
    assert [e.data["reason"] for e in rejections] == ["Wrong budget"]


async def test_lines_export_as_csv_with_formulas_defused(
    client: httpx.AsyncClient, database: Database, manager: dict[str, str]
) -> None:
    payroll = await generated_payroll(client, database, manager)
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            repository.lines.update()
            .where(repository.lines.c.household_number == "H0000000001")
            .values(recipient_family_name="=HYPERLINK(0)")
        )

    response = await client.get(f"/payrolls/{payroll['id']}/lines.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(int(r["amount_minor"]) for r in rows) == [350_000, 350_000, 600_000]
    assert {r["recipient_family_name"] for r in rows} == {"Otieno", "'=HYPERLINK(0)"}


async def test_analysts_read_counts_but_never_lines(
    client: httpx.AsyncClient,
    database: Database,
    manager: dict[str, str],
    settings: PayrollSettings,
) -> None:
    payroll = await generated_payroll(client, database, manager)
    analyst = as_user(settings, "analyst-1", Role.analyst)

    assert (
        await client.get(f"/payrolls/{payroll['id']}/summary", headers=analyst)
    ).status_code == 200
    assert (
        await client.get(f"/payrolls/{payroll['id']}/lines", headers=analyst)
    ).status_code == 403
    assert (
        await client.get(f"/payrolls/{payroll['id']}/lines.csv", headers=analyst)
    ).status_code == 403


async def test_reading_lines_is_audited_with_the_ids_read_and_no_personal_data(
    client: httpx.AsyncClient,
    database: Database,
    manager: dict[str, str],
    settings: PayrollSettings,
) -> None:
    payroll = await generated_payroll(client, database, manager)
    finance = as_user(settings, "finance-1", Role.finance)

    with captured_json_log("amana.audit") as log:
        page = await client.get(f"/payrolls/{payroll['id']}/lines", headers=finance)
        await client.get(f"/payrolls/{payroll['id']}/lines.csv", headers=finance)

    reads = [json.loads(line)["audit"] for line in log.getvalue().splitlines()]
    assert [(r["read"]["kind"], r["principal"], r["role"], r["target"]) for r in reads] == [
        ("payroll_line", "finance-1", "finance", payroll["id"]),
        ("payroll_lines_export", "finance-1", "finance", payroll["id"]),
    ]
    assert sorted(reads[0]["read"]["ids"]) == sorted(line["id"] for line in page.json()["items"])
    for personal in ("GivenH0000000001", "IDH0000000001", "+254700000001"):
        assert personal not in log.getvalue()
