"""DHIS2: reports as dataValueSets through the mapping (checked against a JSON Schema of the
documented format), unmapped elements named, and the push to a server that answers as DHIS2's
/api/dataValueSets does, with its import summary recorded and listed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client, serving
from amana_common.testing.service import bearer
from analytics.domain import dhis2_period
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings

from .ingest import ingest_batch
from .scenario import scenario

SCHEMA = json.loads((Path(__file__).parent / "dhis2" / "dataValueSets.schema.json").read_text())
BANDS = ("0-4", "5-17", "18-34", "35-59", "60+")
MAPPING: dict[str, Any] = {
    "data_set": "pBOMPrpg1QX",
    "period_type": "Monthly",
    "org_units": {
        "KE-047": "OrgUnit0047",
        "KE-030": "OrgUnit0030",
        "KE-047-0101": "OrgUnit0101",
        "KE-047-0102": "OrgUnit0102",
        "ROOT": "OrgUnitRoot",
    },
    "reports": {
        "coverage": {
            "measures": {
                "enrolled": {"data_element": "DeEnrolled1"},
                "eligible": {"data_element": "DeEligible1"},
                "on_payroll": {"data_element": "DeOnPayrol1"},
                "paid": {"data_element": "DePaid00001"},
            }
        },
        "outcomes": {
            "measures": {
                "settled": {
                    "data_element": "DeSettled01",
                    "disaggregate_by": ["sex"],
                    "category_option_combos": {"female": "CocFemale01", "male": "CocMale0001"},
                }
            }
        },
        "members": {
            "measures": {
                "members": {
                    "data_element": "DeMembers01",
                    "disaggregate_by": ["sex", "age_band"],
                    "category_option_combos": {
                        f"{sex}|{band}": f"Coc{sex[0].upper()}{i:07d}"
                        for sex in ("female", "male")
                        for i, band in enumerate(BANDS)
                    },
                }
            }
        },
        "enrolment": {"measures": {"households": {"data_element": "DeEnrol0001"}}},
        "payroll": {"measures": {"amount_minor": {"data_element": "DeAmount001"}}},
        "timeliness": {"measures": {"colour": {"data_element": "DeColour001"}}},
    },
}


def configured(settings: AnalyticsSettings, **changes: Any) -> AnalyticsSettings:
    values = settings.model_dump() | {"dhis2_mapping": json.dumps(MAPPING)} | changes
    return AnalyticsSettings(**values)


@pytest.fixture
async def dhis2_client(
    settings: AnalyticsSettings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    await ingest_batch(database, settings, scenario().events)
    async with service_client(create_analytics_app(configured(settings)), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        yield http


async def export(client: httpx.AsyncClient, report: str, **params: str) -> httpx.Response:
    return await client.get(f"/dhis2/dataValueSets/{report}", params=params)


def values(payload: dict[str, Any]) -> list[tuple[str, str, str, str | None, str]]:
    return sorted(
        (v["dataElement"], v["period"], v["orgUnit"], v.get("categoryOptionCombo"), v["value"])
        for v in payload["dataValues"]
    )


def test_dhis2_periods() -> None:
    day = date(2026, 11, 5)
    assert [
        dhis2_period(day, t)
        for t in ("Daily", "Weekly", "Monthly", "BiMonthly", "Quarterly", "SixMonthly", "Yearly")
    ] == [
        "20261105",
        "2026W45",
        "202611",
        "202611B",
        "2026Q4",
        "2026S2",
        "2026",
    ]
    assert dhis2_period(date(2027, 1, 1), "Weekly") == "2026W53"  # ISO week of the year before
    assert dhis2_period(date(2026, 2, 28), "BiMonthly") == "202601B"


async def test_coverage_as_a_data_value_set(dhis2_client: httpx.AsyncClient) -> None:
    response = await export(dhis2_client, "coverage")
    assert response.status_code == 200, response.text
    payload = response.json()
    jsonschema.validate(payload, SCHEMA)
    assert payload["dataSet"] == "pBOMPrpg1QX"
    assert values(payload) == sorted(
        [
            ("DeEnrolled1", "202611", "OrgUnit0030", None, "1"),
            ("DeEligible1", "202611", "OrgUnit0030", None, "2"),
            ("DeOnPayrol1", "202611", "OrgUnit0030", None, "2"),
            ("DePaid00001", "202611", "OrgUnit0030", None, "1"),
            ("DeEnrolled1", "202611", "OrgUnit0047", None, "3"),
            ("DeEligible1", "202611", "OrgUnit0047", None, "5"),
            ("DeOnPayrol1", "202611", "OrgUnit0047", None, "4"),
            ("DePaid00001", "202611", "OrgUnit0047", None, "2"),
        ]
    )


async def test_disaggregated_by_category_option_combos(dhis2_client: httpx.AsyncClient) -> None:
    outcomes = (await export(dhis2_client, "outcomes", location="KE-047")).json()
    jsonschema.validate(outcomes, SCHEMA)
    # KE-047 is the level of the filter + 1 = its children: 0101 (L1 female settled),
    # 0102 (L2 male settled; L3 female failed).
    assert values(outcomes) == [
        ("DeSettled01", "202611", "OrgUnit0101", "CocFemale01", "1"),
        ("DeSettled01", "202611", "OrgUnit0102", "CocFemale01", "0"),
        ("DeSettled01", "202611", "OrgUnit0102", "CocMale0001", "1"),
    ]
    members = (await export(dhis2_client, "members", period="2026Q4")).json()
    jsonschema.validate(members, SCHEMA)
    assert ("DeMembers01", "202610", "OrgUnit0047", "CocF0000000", "1") in values(members)
    assert sum(int(v["value"]) for v in members["dataValues"]) == 9


async def test_periods_of_rows_and_of_the_filter(dhis2_client: httpx.AsyncClient) -> None:
    enrolment = (await export(dhis2_client, "enrolment")).json()
    jsonschema.validate(enrolment, SCHEMA)
    assert values(enrolment) == [
        ("DeEnrol0001", "202610", "OrgUnit0030", None, "2"),
        ("DeEnrol0001", "202610", "OrgUnit0047", None, "1"),
        ("DeEnrol0001", "202611", "OrgUnit0047", None, "2"),
    ]
    payroll = (await export(dhis2_client, "payroll", programme="PROG-A")).json()
    jsonschema.validate(payroll, SCHEMA)
    # November's payroll for the whole country (the root org unit); the rejected one is left out.
    assert values(payroll) == [("DeAmount001", "202611", "OrgUnitRoot", None, "1500000")]
    needs_period = await export(dhis2_client, "members")
    assert needs_period.status_code == 422
    assert needs_period.json()["errors"] == [
        {"field": "period", "message": "required for this export"}
    ]


async def test_unmapped_elements_are_named(dhis2_client: httpx.AsyncClient) -> None:
    unmapped_place = await export(dhis2_client, "coverage", level="3")
    assert unmapped_place.status_code == 422
    body = unmapped_place.json()
    assert body["type"].endswith("/dhis2-unmapped")
    assert [e["field"] for e in body["errors"]] == ["org_units.KE-030-0001"]
    no_report = (await export(dhis2_client, "duplicates", period="2026-11")).json()
    assert [e["field"] for e in no_report["errors"]] == ["reports.duplicates"]
    no_column = (await export(dhis2_client, "timeliness")).json()
    assert [e["field"] for e in no_column["errors"]] == ["reports.timeliness.measures.colour"]
    assert "colour" in no_column["detail"]
    bad_filter = (await export(dhis2_client, "coverage", period="2026-14")).json()
    assert bad_filter["errors"][0]["field"] == "period"


async def test_no_mapping_configured(client: httpx.AsyncClient) -> None:
    response = await client.get("/dhis2/dataValueSets/coverage")
    assert response.status_code == 422
    assert response.json()["type"].endswith("/dhis2-not-configured")


class FakeDhis2:
    """Answers POST /api/dataValueSets as DHIS2 2.38+ does: a web message with an import
    summary; records what it received."""

    def __init__(self, answer: dict[str, Any] | None = None, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer = answer
        self.status = status
        self.app = FastAPI()
        self.app.post("/api/dataValueSets")(self.import_)

    async def import_(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.received.append(
            {"body": body, "params": dict(request.query_params), "headers": dict(request.headers)}
        )
        count = len(body["dataValues"])
        answer = self.answer or {
            "httpStatus": "OK",
            "httpStatusCode": 200,
            "status": "OK",
            "message": "Import was successful.",
            "response": {
                "responseType": "ImportSummary",
                "status": "SUCCESS",
                "importCount": {"imported": count - 1, "updated": 1, "ignored": 0, "deleted": 0},
                "conflicts": [],
                "dataSetComplete": "false",
            },
        }
        return JSONResponse(answer, status_code=self.status)


async def push_client(
    settings: AnalyticsSettings, database: Database, url: str
) -> httpx.AsyncClient:
    pushing = configured(
        settings, dhis2_url=url, dhis2_allowed_hosts="127.0.0.1", dhis2_token="d2pat_test_token"
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_with_db(create_analytics_app(pushing), database)),
        base_url="http://testserver",
        headers=bearer(settings, Role.analyst),
    )


def _with_db(app: FastAPI, database: Database) -> FastAPI:
    app.state.database = database
    return app


async def test_push_records_the_import_summary(
    settings: AnalyticsSettings, database: Database
) -> None:
    await ingest_batch(database, settings, scenario().events)
    dhis2 = FakeDhis2()
    async with serving(dhis2.app) as url, await push_client(settings, database, url) as http:
        body = {"report": "coverage", "filters": {"programme": "PROG-A"}}
        response = await http.post("/dhis2/pushes", json=body, headers={"Idempotency-Key": "p-1"})
        assert response.status_code == 201, response.text
        push = response.json()
        assert push["status"] == "success" and push["http_status"] == 200
        assert (push["data_values"], push["imported"], push["updated"]) == (8, 7, 1)
        assert push["filters"] == {"programme": "PROG-A", "level": 2}
        [received] = dhis2.received
        jsonschema.validate(received["body"], SCHEMA)
        assert received["params"] == {"importStrategy": "CREATE_AND_UPDATE", "dryRun": "false"}
        assert received["headers"]["authorization"] == "ApiToken d2pat_test_token"
        again = await http.post("/dhis2/pushes", json=body, headers={"Idempotency-Key": "p-1"})
        assert again.json() == push and len(dhis2.received) == 1
        listed = (await http.get("/dhis2/pushes")).json()
        assert [p["push_id"] for p in listed["items"]] == [push["push_id"]]
        assert (await http.get(f"/dhis2/pushes/{push['push_id']}")).json() == push


async def test_a_refused_or_unreachable_push_is_recorded(
    settings: AnalyticsSettings, database: Database
) -> None:
    await ingest_batch(database, settings, scenario().events)
    conflict = {
        "httpStatus": "Conflict",
        "httpStatusCode": 409,
        "status": "ERROR",
        "message": "Import was not successful.",
        "response": {
            "responseType": "ImportSummary",
            "status": "ERROR",
            "description": "Data set not found or not accessible",
            "importCount": {"imported": 0, "updated": 0, "ignored": 8, "deleted": 0},
            "conflicts": [{"object": "pBOMPrpg1QX", "value": "Data set not found"}],
        },
    }
    dhis2 = FakeDhis2(conflict, status=409)
    async with serving(dhis2.app) as url, await push_client(settings, database, url) as http:
        response = await http.post("/dhis2/pushes", json={"report": "coverage", "dry_run": True})
        push = response.json()
        assert (push["status"], push["http_status"], push["ignored"]) == ("error", 409, 8)
        assert push["conflicts"] == [{"object": "pBOMPrpg1QX", "value": "Data set not found"}]
        assert push["error"] == "Data set not found or not accessible"
        assert dhis2.received[0]["params"]["dryRun"] == "true"
        unmapped = await http.post(
            "/dhis2/pushes", json={"report": "coverage", "filters": {"level": "3"}}
        )
        assert unmapped.status_code == 422 and len(dhis2.received) == 1
        bad = await http.post("/dhis2/pushes", json={"report": "coverage", "filters": {"x": "1"}})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "filters.x"
    async with await push_client(settings, database, url) as http:  # the server is gone
        gone = (await http.post("/dhis2/pushes", json={"report": "coverage"})).json()
        assert gone["status"] == "failed" and gone["http_status"] is None
        assert "ConnectError" in gone["error"]
        pushes = (await http.get("/dhis2/pushes")).json()["items"]
        assert [p["status"] for p in pushes] == ["failed", "error"]


def test_only_an_allowlisted_dhis2_host_is_accepted(settings: AnalyticsSettings) -> None:
    with pytest.raises(ValueError, match="allowlist"):
        configured(settings, dhis2_url="https://dhis2.example.org", dhis2_allowed_hosts="x.org")
    with pytest.raises(ValueError, match="link-local"):
        configured(
            settings, dhis2_url="https://169.254.169.254", dhis2_allowed_hosts="169.254.169.254"
        )
    ok = configured(
        settings, dhis2_url="https://dhis2.health.example.org/", dhis2_allowed_hosts="*.example.org"
    )
    assert ok.dhis2_url == "https://dhis2.health.example.org/"


async def test_only_analysts_and_admins_push(
    dhis2_client: httpx.AsyncClient, settings: AnalyticsSettings
) -> None:
    response = await dhis2_client.post(
        "/dhis2/pushes", json={"report": "coverage"}, headers=bearer(settings, Role.auditor)
    )
    assert response.status_code == 403
