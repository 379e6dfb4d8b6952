"""What a report accepts: its filters by name, periods in DHIS2 and ISO forms, CSV; and what it
refuses, by name, as problem+json: unknown or inapplicable parameters, invalid periods,
control characters, unknown codes, levels above the location, reports too large; roles."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.service import bearer
from analytics.settings import AnalyticsSettings

from .ingest import ingest_batch
from .scenario import scenario


@pytest.fixture
async def ingested(database: Database, settings: AnalyticsSettings) -> None:
    await ingest_batch(database, settings, scenario().events)


async def problem(
    client: httpx.AsyncClient, path: str, params: dict[str, str] | None = None, status: int = 422
) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("report", "params", "field", "slug"),
    [
        ("outcomes", {"colour": "red"}, "colour", "unknown-parameter"),
        ("households", {"provider": "MPESA"}, "provider", "unknown-parameter"),
        ("payroll", {"group_by": "location"}, "group_by", "unknown-parameter"),
        ("outcomes", {"period": "2026-13"}, "period", "invalid-period"),
        ("outcomes", {"period": "2026Q5"}, "period", "invalid-period"),
        ("outcomes", {"period": "2026-02-30"}, "period", "invalid-period"),
        ("outcomes", {"period": "2026W54"}, "period", "invalid-period"),
        ("outcomes", {"period": "2026-11-30..2026-11-01"}, "period", "invalid-period"),
        ("outcomes", {"period": "last month"}, "period", "invalid-period"),
        ("outcomes", {"location": "KE-047\x00"}, "location", "invalid-query"),
        ("outcomes", {"provider": "MPESA\u2028"}, "provider", "invalid-query"),
        ("outcomes", {"programme": "x" * 300}, "programme", "invalid-query"),
        ("outcomes", {"cycle": "not-a-uuid"}, "cycle", "invalid-query"),
        ("outcomes", {"group_by": "colour"}, "group_by", "invalid-query"),
        ("outcomes", {"group_by": "provider,provider"}, "group_by", "invalid-query"),
        ("outcomes", {"level": "0"}, "level", "invalid-query"),
        ("outcomes", {"level": "²"}, "level", "invalid-query"),
        ("outcomes", {"location": "KE-047", "level": "1"}, "level", "invalid-query"),
        ("outcomes", {"format": "xml"}, "format", "invalid-query"),
        ("enrolment", {"interval": "fortnight"}, "interval", "invalid-query"),
    ],
)
async def test_bad_filters_are_named(
    client: httpx.AsyncClient, report: str, params: dict[str, str], field: str, slug: str
) -> None:
    body = await problem(client, f"/reports/{report}", params)
    assert body["type"] == f"https://amana.dev/problems/{slug}"
    assert body["errors"][0]["field"] == field
    assert field in body["detail"]


async def test_a_parameter_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/reports/outcomes?period=2026&period=2025")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "period"


async def test_unknown_codes_and_reports(client: httpx.AsyncClient, ingested: None) -> None:
    body = await problem(client, "/reports/outcomes", {"provider": "NOPE"})
    assert body["errors"][0]["field"] == "provider"
    body = await problem(client, "/reports/outcomes", {"programme": "NOPE"})
    assert body["errors"][0]["field"] == "programme"
    await problem(client, "/reports/nothing", status=404)
    await problem(client, "/reports/../etc", status=404)
    await problem(client, "/charts/nothing.png", status=404)


@pytest.mark.parametrize(
    "period",
    [
        "2026",
        "2026Q4",
        "2026S2",
        "202611B",
        "202611",
        "2026-11",
        "2026W45",
        "2026-W45",
        "20261101",
        "2026-11-01",
        "2026-11-01..2026-11-30",
    ],
)
async def test_periods_in_dhis2_and_iso_forms(client: httpx.AsyncClient, period: str) -> None:
    response = await client.get("/reports/outcomes", params={"period": period})
    assert response.status_code == 200, response.text
    assert response.json()["filters"]["period"] == period


async def test_csv_has_the_json_rows(client: httpx.AsyncClient, ingested: None) -> None:
    as_json = (await client.get("/reports/coverage", params={"level": "3"})).json()
    response = await client.get("/reports/coverage", params={"level": "3", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="coverage.csv"' in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert list(table[0]) == as_json["columns"]
    assert [row["location"] for row in table] == [r["location"] for r in as_json["rows"]]
    assert [int(row["paid"]) for row in table] == [r["paid"] for r in as_json["rows"]]
    assert table[0]["eligible_rate"] == str(as_json["rows"][0]["eligible_rate"])


async def test_a_report_too_large_is_refused(
    database: Database, settings: AnalyticsSettings, ingested: None
) -> None:
    from amana_common.testing.clients import service_client
    from analytics.main import create_analytics_app

    small = settings.model_copy(update={"report_max_rows": 2})
    async with service_client(create_analytics_app(small), database) as http:
        http.headers.update(bearer(small, Role.analyst))
        response = await http.get("/reports/members")
        assert response.status_code == 422
        assert response.json()["type"].endswith("/report-too-large")
        assert (await http.get("/reports/outcomes")).status_code == 200


async def test_readers_and_others(client: httpx.AsyncClient, settings: AnalyticsSettings) -> None:
    for role in (Role.analyst, Role.admin, Role.programme_manager, Role.auditor):
        response = await client.get("/reports/summary", headers=bearer(settings, role))
        assert response.status_code == 200, role
    for role in (Role.registrar, Role.finance, Role.payroll_approver):
        response = await client.get("/reports/summary", headers=bearer(settings, role))
        assert response.status_code == 403, role
    anonymous = await client.get("/reports/summary", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    index = (await client.get("/reports", headers=bearer(settings, Role.analyst))).json()
    assert [item["name"] for item in index][:3] == ["enrolment", "households", "members"]
