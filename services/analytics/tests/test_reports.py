"""Every report on the scenario of `scenario.py`, against figures computed by hand.

Ages are counted on 2026-11-02. Households after the events: h1 KE-047-0101 (head female
35-59; a boy 5-17, a girl 0-4), h2 moved to KE-047-0102 (head male 60+, spouse female 60+),
h3 KE-047-0102 (female 18-34), h4 KE-030-0001 (head male 35-59, a girl 5-17 who turned 16
that day), h5 KE-030-0001 exited (female 60+). Payroll of PROG-A for November: 6 lines,
eligible 7 (KE-047-0101 3, KE-047-0102 2, KE-030-0001 2), one excluded under review; a
rejected payroll of the same cycle counts nowhere but in the payroll list.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amana_common.db import Database
from analytics.settings import AnalyticsSettings

from .factories import uid
from .ingest import ingest_batch, ingest_one_by_one
from .scenario import CYCLE, REJECTED, SUMMARY, scenario


@pytest.fixture
async def ingested(database: Database, settings: AnalyticsSettings) -> None:
    await ingest_batch(database, settings, scenario().events)


async def rows(client: httpx.AsyncClient, report: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/reports/{report}", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["rows"]
    return found


def pick(items: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: item[k] for k in keys} for item in items]


async def test_households_by_location_and_status(client: httpx.AsyncClient, ingested: None) -> None:
    assert await rows(client, "households") == [
        {"location": "KE-030", "households": 2, "members": 3},
        {"location": "KE-047", "households": 3, "members": 6},
    ]
    assert await rows(client, "households", group_by="location,status", level="3") == [
        {"location": "KE-030-0001", "status": "active", "households": 1, "members": 2},
        {"location": "KE-030-0001", "status": "exited", "households": 1, "members": 1},
        {"location": "KE-047-0101", "status": "active", "households": 1, "members": 3},
        {"location": "KE-047-0102", "status": "active", "households": 2, "members": 3},
    ]
    assert await rows(client, "households", group_by="head_sex,head_age_band") == [
        {"head_sex": "female", "head_age_band": "18-34", "households": 1, "members": 1},
        {"head_sex": "female", "head_age_band": "35-59", "households": 1, "members": 3},
        {"head_sex": "female", "head_age_band": "60+", "households": 1, "members": 1},
        {"head_sex": "male", "head_age_band": "35-59", "households": 1, "members": 2},
        {"head_sex": "male", "head_age_band": "60+", "households": 1, "members": 2},
    ]


async def test_members_by_location_sex_and_age_band(
    client: httpx.AsyncClient, ingested: None
) -> None:
    assert await rows(client, "members") == [
        {"location": "KE-030", "sex": "female", "age_band": "5-17", "members": 1},
        {"location": "KE-030", "sex": "female", "age_band": "60+", "members": 1},
        {"location": "KE-030", "sex": "male", "age_band": "35-59", "members": 1},
        {"location": "KE-047", "sex": "female", "age_band": "0-4", "members": 1},
        {"location": "KE-047", "sex": "female", "age_band": "18-34", "members": 1},
        {"location": "KE-047", "sex": "female", "age_band": "35-59", "members": 1},
        {"location": "KE-047", "sex": "female", "age_band": "60+", "members": 1},
        {"location": "KE-047", "sex": "male", "age_band": "5-17", "members": 1},
        {"location": "KE-047", "sex": "male", "age_band": "60+", "members": 1},
    ]
    only_047 = await rows(client, "members", location="KE-047", group_by="sex")
    assert only_047 == [{"sex": "female", "members": 4}, {"sex": "male", "members": 2}]


async def test_enrolment_over_time(client: httpx.AsyncClient, ingested: None) -> None:
    """October: h1, h4, h5 (6 members); November: h2, h3 (3 members)."""
    assert pick(
        await rows(client, "enrolment"), "period", "households", "members", "cumulative_households"
    ) == [
        {"period": "2026-10", "households": 3, "members": 6, "cumulative_households": 3},
        {"period": "2026-11", "households": 2, "members": 3, "cumulative_households": 5},
    ]
    november = await rows(client, "enrolment", period="202611", interval="day")
    assert pick(november, "period", "households") == [{"period": "2026-11-01", "households": 2}]
    by_place = await rows(client, "enrolment", group_by="location", interval="quarter")
    assert pick(by_place, "location", "period", "households") == [
        {"location": "KE-030", "period": "2026Q4", "households": 2},
        {"location": "KE-047", "period": "2026Q4", "households": 3},
    ]


async def test_coverage_per_cycle_and_location(client: httpx.AsyncClient, ingested: None) -> None:
    """Enrolled = not exited; eligible and on payroll from the approved payroll (the rejected
    one's 9 eligible count nowhere); paid = settled (L5 was reversed, L3 failed, L6 expired)."""
    found = await rows(client, "coverage", level="3")
    assert {r["cycle_id"] for r in found} == {str(CYCLE.cycle_id)}
    assert {r["programme"] for r in found} == {"PROG-A"}
    assert pick(found, "location", "enrolled", "eligible", "on_payroll", "paid", "paid_rate") == [
        {
            "location": "KE-030-0001",
            "enrolled": 1,
            "eligible": 2,
            "on_payroll": 2,
            "paid": 1,
            "paid_rate": 0.5,
        },
        {
            "location": "KE-047-0101",
            "enrolled": 1,
            "eligible": 3,
            "on_payroll": 2,
            "paid": 1,
            "paid_rate": 0.5,
        },
        {
            "location": "KE-047-0102",
            "enrolled": 2,
            "eligible": 2,
            "on_payroll": 2,
            "paid": 1,
            "paid_rate": 0.5,
        },
    ]
    by_county = await rows(client, "coverage")
    assert pick(by_county, "location", "enrolled", "eligible", "on_payroll", "paid") == [
        {"location": "KE-030", "enrolled": 1, "eligible": 2, "on_payroll": 2, "paid": 1},
        {"location": "KE-047", "enrolled": 3, "eligible": 5, "on_payroll": 4, "paid": 2},
    ]
    bank = await rows(client, "coverage", level="3", provider="BANK")
    assert pick(bank, "location", "enrolled", "eligible", "on_payroll", "paid") == [
        {"location": "KE-030-0001", "enrolled": None, "eligible": None, "on_payroll": 1, "paid": 1},
        {"location": "KE-047-0102", "enrolled": None, "eligible": None, "on_payroll": 1, "paid": 0},
    ]


async def test_payroll_per_cycle(client: httpx.AsyncClient, ingested: None) -> None:
    found = await rows(client, "payroll", programme="PROG-A")
    assert [r["payroll_id"] for r in found] == [str(REJECTED.payroll_id), str(CYCLE.payroll_id)]
    rejected, approved = found
    assert rejected["status"] == "rejected"
    assert rejected["excluded_over_budget"] == 4
    assert pick(
        [approved],
        "status",
        "eligible",
        "households",
        "amount_minor",
        "budget_minor",
        "budget_used",
        "excluded_under_review",
        "excluded_over_budget",
    ) == [
        {
            "status": "reconciled",
            "eligible": 7,
            "households": 6,
            "amount_minor": 1_500_000,
            "budget_minor": 2_000_000,
            "budget_used": 0.75,
            "excluded_under_review": 1,
            "excluded_over_budget": 0,
        },
    ]
    in_county = await rows(client, "payroll", location="KE-030")
    assert pick(
        in_county, "status", "eligible", "households", "amount_minor", "excluded_under_review"
    ) == [
        {
            "status": "rejected",
            "eligible": None,
            "households": None,
            "amount_minor": None,
            "excluded_under_review": None,
        },
        {
            "status": "reconciled",
            "eligible": 2,
            "households": 2,
            "amount_minor": 450_000,
            "excluded_under_review": None,
        },
    ]


async def test_outcomes_by_provider_mechanism_and_location(
    client: httpx.AsyncClient, ingested: None
) -> None:
    """MPESA: L1, L2 settled (600,000), L6 expired, L5 reversed; BANK: L4 settled, L3 failed."""
    by_provider = await rows(client, "outcomes")
    assert pick(
        by_provider,
        "provider",
        "on_payroll",
        "settled",
        "settled_amount_minor",
        "failed",
        "expired",
        "reversed",
        "reversed_amount_minor",
        "fees_minor",
        "pending",
        "success_rate",
    ) == [
        {
            "provider": "BANK",
            "on_payroll": 2,
            "settled": 1,
            "settled_amount_minor": 250_000,
            "failed": 1,
            "expired": 0,
            "reversed": 0,
            "reversed_amount_minor": 0,
            "fees_minor": 0,
            "pending": 0,
            "success_rate": 0.5,
        },
        {
            "provider": "MPESA",
            "on_payroll": 4,
            "settled": 2,
            "settled_amount_minor": 600_000,
            "failed": 0,
            "expired": 1,
            "reversed": 1,
            "reversed_amount_minor": 200_000,
            "fees_minor": 150,
            "pending": 0,
            "success_rate": 0.5,
        },
    ]
    by_mechanism = await rows(client, "outcomes", group_by="mechanism")
    assert pick(by_mechanism, "mechanism", "settled", "failed") == [
        {"mechanism": "bank_transfer", "settled": 1, "failed": 1},
        {"mechanism": "mobile_money", "settled": 2, "failed": 0},
    ]
    by_place = await rows(client, "outcomes", group_by="location", level="3", provider="MPESA")
    assert pick(by_place, "location", "settled", "expired", "reversed") == [
        {"location": "KE-030-0001", "settled": 0, "expired": 0, "reversed": 1},
        {"location": "KE-047-0101", "settled": 1, "expired": 1, "reversed": 0},
        {"location": "KE-047-0102", "settled": 1, "expired": 0, "reversed": 0},
    ]
    by_recipient = await rows(client, "outcomes", group_by="sex,age_band")
    assert pick(by_recipient, "sex", "age_band", "settled") == [
        {"sex": "female", "age_band": "18-34", "settled": 0},
        {"sex": "female", "age_band": "35-59", "settled": 1},
        {"sex": "female", "age_band": "60+", "settled": 0},
        {"sex": "male", "age_band": "35-59", "settled": 1},
        {"sex": "male", "age_band": "60+", "settled": 1},
    ]


async def test_reasons_for_non_payment(client: httpx.AsyncClient, ingested: None) -> None:
    assert pick(
        await rows(client, "non_payment_reasons"),
        "outcome",
        "reason_code",
        "reason",
        "payments",
        "amount_minor",
        "share",
    ) == [
        {
            "outcome": "expired",
            "reason_code": "EXPIRED",
            "reason": "Payment window closed unpaid",
            "payments": 1,
            "amount_minor": 200_000,
            "share": 0.3333,
        },
        {
            "outcome": "failed",
            "reason_code": "AC01",
            "reason": "Incorrect account number",
            "payments": 1,
            "amount_minor": 250_000,
            "share": 0.3333,
        },
        {
            "outcome": "reversed",
            "reason_code": "MD07",
            "reason": "End customer deceased",
            "payments": 1,
            "amount_minor": 200_000,
            "share": 0.3333,
        },
    ]


async def test_timeliness(client: httpx.AsyncClient, ingested: None) -> None:
    """Settled: 24 h, 48 h, 288 h after approval. Median 48; p90 = 48 + 0.8 x (288 - 48) =
    240. Within the window (by 15 Nov 00:00 UTC): 2 of the 6 payments on the payroll."""
    found = await rows(client, "timeliness")
    assert pick(
        found,
        "programme",
        "period_start",
        "on_payroll",
        "settled",
        "median_hours",
        "p90_hours",
        "within_window",
        "share_within_window",
    ) == [
        {
            "programme": "PROG-A",
            "period_start": "2026-11-01",
            "on_payroll": 6,
            "settled": 3,
            "median_hours": 48.0,
            "p90_hours": 240.0,
            "within_window": 2,
            "share_within_window": 0.3333,
        },
    ]
    by_provider = await rows(client, "timeliness", group_by="provider")
    assert pick(
        by_provider, "provider", "settled", "median_hours", "within_window", "share_within_window"
    ) == [
        {
            "provider": "BANK",
            "settled": 1,
            "median_hours": 288.0,
            "within_window": 0,
            "share_within_window": 0.0,
        },
        {
            "provider": "MPESA",
            "settled": 2,
            "median_hours": 36.0,
            "within_window": 2,
            "share_within_window": 0.5,
        },
    ]


async def test_duplicate_review_backlog(client: httpx.AsyncClient, ingested: None) -> None:
    """KE-047: decided in 36 h and 72 h (median 54, p90 36 + 0.9 x 36 = 68.4); KE-030: open."""
    assert await rows(client, "duplicates") == [
        {
            "location": "KE-030",
            "flags": 1,
            "open": 1,
            "decided": 0,
            "oldest_open_flagged_at": "2026-11-03T00:00:00+00:00",
            "median_decision_hours": None,
            "p90_decision_hours": None,
        },
        {
            "location": "KE-047",
            "flags": 2,
            "open": 0,
            "decided": 2,
            "oldest_open_flagged_at": None,
            "median_decision_hours": 54.0,
            "p90_decision_hours": 68.4,
        },
    ]


async def test_summary(client: httpx.AsyncClient, ingested: None) -> None:
    [figures] = await rows(client, "summary")
    assert figures == SUMMARY


async def test_filters_select_cycles_by_period_and_programme(
    client: httpx.AsyncClient, ingested: None
) -> None:
    assert await rows(client, "outcomes", period="2026-10") == []
    assert len(await rows(client, "outcomes", period="2026Q4")) == 2
    assert len(await rows(client, "outcomes", cycle=str(CYCLE.cycle_id))) == 2
    by_id = await rows(client, "outcomes", programme=str(uid("programme/PROG-A")))
    assert by_id == await rows(client, "outcomes", programme="PROG-A")


async def test_one_event_at_a_time_and_replays_give_the_same_reports(
    client: httpx.AsyncClient, database: Database, settings: AnalyticsSettings
) -> None:
    events = scenario().events
    await ingest_one_by_one(database, settings, events)
    first = {name: await rows(client, name) for name in REPORT_NAMES}
    await ingest_batch(database, settings, events)  # everything again, as a replay would
    await ingest_one_by_one(database, settings, list(reversed(events)))  # and backwards
    assert {name: await rows(client, name) for name in REPORT_NAMES} == first
    assert first["summary"][0]["settled"] == 3


REPORT_NAMES = (
    "enrolment",
    "households",
    "members",
    "coverage",
    "payroll",
    "outcomes",
    "non_payment_reasons",
    "timeliness",
    "duplicates",
    "summary",
)
