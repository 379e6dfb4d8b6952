"""A known cycle end to end on the real broker, as a demo runs it: households enrolled, a
payroll generated and approved (in chunks, one delivered twice), payments settled, failed,
expired and reversed, the payroll reconciled, all published as contract events on the services'
topics and read by the worker's consumer; the reports a demo checks give the figures computed
by hand in `test_reports.py` (the scenario of `scenario.py`).

The topics also hold other tests' events (and this scenario again, from the rebuild test, which
changes nothing: every write is idempotent), so the figures checked are those of the
programme; households and members, which no programme owns, are checked exactly in
`test_reports.py` through the same handlers.
"""

from __future__ import annotations

from typing import Any

import httpx

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.service import bearer
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings

from .kafka_setup import worker_caught_up
from .scenario import CYCLE, REJECTED, SUMMARY, scenario


async def rows(http: httpx.AsyncClient, report: str, **params: str) -> list[dict[str, Any]]:
    response = await http.get(f"/reports/{report}", params={"programme": "PROG-A", **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["rows"]
    return found


def pick(items: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(item[k] for k in keys) for item in items]


async def test_a_cycle_published_on_the_topics_gives_the_figures_computed_by_hand(
    worker: tuple[AnalyticsSettings, Database], kafka_bootstrap: str
) -> None:
    settings, database = worker
    async with worker_caught_up(settings, database, kafka_bootstrap, scenario().events):
        pass

    async with service_client(create_analytics_app(settings), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        [summary] = await rows(http, "summary", cycle=str(CYCLE.cycle_id))
        coverage = await rows(http, "coverage", level="3")
        payroll = await rows(http, "payroll")
        outcomes = await rows(http, "outcomes")
        reasons = await rows(http, "non_payment_reasons")
        timeliness = await rows(http, "timeliness")

    assert summary | PROGRAMME_FREE == SUMMARY | PROGRAMME_FREE
    # Coverage has a row for every place with households enrolled, the other tests' too.
    planned = [row for row in coverage if row["eligible"] or row["on_payroll"]]
    assert pick(planned, "location", "eligible", "on_payroll", "paid", "paid_rate") == [
        ("KE-030-0001", 2, 2, 1, 0.5),
        ("KE-047-0101", 3, 2, 1, 0.5),
        ("KE-047-0102", 2, 2, 1, 0.5),
    ]
    assert pick(payroll, "payroll_id", "status", "households", "amount_minor", "budget_used") == [
        (str(REJECTED.payroll_id), "rejected", 0, 0, 0.0),
        (str(CYCLE.payroll_id), "reconciled", 6, 1_500_000, 0.75),
    ]
    assert pick(outcomes, "provider", "on_payroll", "settled", "failed", "expired", "reversed") == [
        ("BANK", 2, 1, 1, 0, 0),
        ("MPESA", 4, 2, 0, 1, 1),
    ]
    assert pick(reasons, "outcome", "reason_code", "payments", "amount_minor") == [
        ("expired", "EXPIRED", 1, 200_000),
        ("failed", "AC01", 1, 250_000),
        ("reversed", "MD07", 1, 200_000),
    ]
    assert pick(timeliness, "settled", "median_hours", "p90_hours", "within_window") == [
        (3, 48.0, 240.0, 2),
    ]


PROGRAMME_FREE = dict.fromkeys(("households", "members", "open_duplicate_flags"))
"""Summary figures over every household and duplicate flag, whatever the programme filter."""
