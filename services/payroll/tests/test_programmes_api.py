"""Programmes, their versions and cycles over HTTP; bad input is a 4xx problem+json and
writes nothing."""

from typing import Any

import httpx
import pytest

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events, row_count
from amana_contracts.payroll import ProgrammeCreatedV1, ProgrammeUpdatedV1
from payroll.models import Cycle, Payroll, Programme, RuleVersion

from .factories import RULES, programme_body, project, provider

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
async def shilling_provider(database: Database) -> None:
    await project(database, provider())


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/programmes", json=programme_body(**overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_problem(response: httpx.Response, status: int, *fields: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    if fields:
        assert [e["field"] for e in problem.get("errors", [])] == list(fields), problem
    return problem


async def nothing_written(database: Database) -> None:
    for table in (Programme, RuleVersion, Cycle, Payroll):
        assert await row_count(database, table.__table__) == 0, table
    assert await row_count(database, outbox) == 0


async def test_a_programme_is_created_as_a_draft_with_version_1_and_its_cycles(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post(
        "/programmes",
        json=programme_body(end_date="2026-12-31"),
        headers={"Idempotency-Key": "create-1"},
    )
    replay = await client.post(
        "/programmes",
        json=programme_body(end_date="2026-12-31"),
        headers={"Idempotency-Key": "create-1"},
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["status"], created["rules_version"], created["version"]) == ("draft", 1, 1)
    assert response.headers["etag"] == '"1"'
    assert replay.json() == created
    read = await client.get(response.headers["location"])
    assert read.json() == created
    version = (await client.get(f"/programmes/{created['id']}/versions/1")).json()
    assert version["eligibility"] == RULES
    cycles = (await client.get(f"/programmes/{created['id']}/cycles", params={"limit": 20})).json()
    assert [c["payment_date"] for c in cycles["items"]][:2] == ["2026-01-10", "2026-02-10"]
    assert len(cycles["items"]) == 12  # January to December
    events = await outbox_events(database)
    assert [e.name for e in events] == ["ProgrammeCreated"]
    snapshot = ProgrammeCreatedV1.model_validate(events[0].data)
    assert (snapshot.code, snapshot.rules_version) == ("CT-OVC", 1)


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        (
            {"eligibility": {"all": [{"field": "income", "op": "<", "value": 1}]}},
            ["eligibility.all.0.field"],
        ),
        (
            {"eligibility": {"field": "household_size", "op": ">=", "value": "3"}},
            ["eligibility.value"],
        ),
        (
            {"eligibility": {"field": "attributes.pmt_score", "op": "<", "value": True}},
            ["eligibility.value"],
        ),
        ({"formula": {"base_amount_minor": -1}}, ["formula.base_amount_minor"]),
        (
            {
                "formula": {
                    "base_amount_minor": 100,
                    "top_ups": [{"amount_minor": -5, "max_count": 1}],
                }
            },
            ["formula.top_ups.0.amount_minor"],
        ),
        ({"budget_priority": [{"by": "attributes.income"}]}, ["budget_priority.0.by"]),
        ({"budget_per_cycle_minor": -1}, ["budget_per_cycle_minor"]),
        ({"currency": "XYZ"}, ["currency"]),
        (
            {"frequency": {"unit": "weekly", "payment_day": 1, "payment_window_days": 5}},
            ["frequency.unit"],
        ),
        (
            {"frequency": {"unit": "monthly", "payment_day": 31, "payment_window_days": 5}},
            ["frequency.payment_day"],
        ),
        ({"name": "Cash\u0000transfer"}, ["name"]),
        ({"colour": "blue"}, ["colour"]),
    ],
)
async def test_bad_programmes_are_refused_naming_the_field(
    client: httpx.AsyncClient, database: Database, change: dict[str, Any], fields: list[str]
) -> None:
    response = await client.post("/programmes", json=programme_body(**change))

    assert_problem(response, 422, *fields)
    await nothing_written(database)


async def test_a_currency_no_active_provider_serves_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post("/programmes", json=programme_body(currency="UGX"))

    problem = assert_problem(response, 422, "currency")
    assert problem["type"].endswith("/currency-not-served")
    await nothing_written(database)


async def test_dates_without_a_single_cycle_are_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post(
        "/programmes", json=programme_body(start_date="2026-01-11", end_date="2026-02-09")
    )

    assert_problem(response, 422, "end_date")
    await nothing_written(database)


async def test_a_duplicate_code_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create(client)

    response = await client.post("/programmes", json=programme_body())

    assert_problem(response, 409, "code")


async def test_changes_need_the_current_etag_and_drafts_alone_change_their_calendar(
    client: httpx.AsyncClient, database: Database
) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"

    missing = await client.patch(url, json={"budget_per_cycle_minor": 5})
    stale = await client.patch(url, json={"budget_per_cycle_minor": 5}, headers={"If-Match": '"9"'})
    moved = await client.patch(
        url,
        json={"frequency": {"unit": "quarterly", "payment_day": 5, "payment_window_days": 20}},
        headers={"If-Match": '"1"'},
    )
    await client.post(f"{url}/activate", json={"reason": "Launch"})
    locked = await client.patch(url, json={"currency": "KES"}, headers={"If-Match": '"3"'})

    assert_problem(missing, 428)
    assert_problem(stale, 412)
    assert moved.status_code == 200, moved.text
    assert moved.json()["frequency"]["unit"] == "quarterly"
    assert moved.headers["etag"] == '"2"'
    cycles = (await client.get(f"{url}/cycles")).json()["items"]
    assert [c["payment_date"] for c in cycles][:2] == ["2026-01-05", "2026-04-05"]
    assert_problem(locked, 409, "currency")
    names = [e.name for e in await outbox_events(database)]
    assert names == ["ProgrammeCreated", "ProgrammeUpdated", "ProgrammeUpdated"]


async def test_a_new_version_of_the_rules_is_what_new_payrolls_use(
    client: httpx.AsyncClient, database: Database
) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"
    rules = {"eligibility": {"all": []}, "formula": {"base_amount_minor": 1000}, "note": "All"}

    bad = await client.post(
        f"{url}/versions",
        json=rules | {"eligibility": {"not": {"field": "x", "op": "=", "value": 1}}},
        headers={"If-Match": '"1"'},
    )
    response = await client.post(f"{url}/versions", json=rules, headers={"If-Match": '"1"'})
    versions = (await client.get(f"{url}/versions")).json()

    assert_problem(bad, 422, "eligibility.not.field")
    assert response.status_code == 201, response.text
    assert response.json()["version"] == 2
    assert [v["version"] for v in versions] == [2, 1]
    assert (await client.get(url)).json()["rules_version"] == 2
    updated = [e for e in await outbox_events(database) if e.name == "ProgrammeUpdated"]
    assert ProgrammeUpdatedV1.model_validate(updated[-1].data).rules_version == 2


async def test_status_changes_follow_the_programme_lifecycle(client: httpx.AsyncClient) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"

    assert_problem(await client.post(f"{url}/suspend", json={}), 409)
    assert (await client.post(f"{url}/activate", json={})).json()["status"] == "active"
    assert (await client.post(f"{url}/suspend", json={"reason": "Audit"})).json()[
        "status_reason"
    ] == "Audit"
    assert (await client.post(f"{url}/close", json={})).json()["status"] == "closed"
    assert_problem(await client.post(f"{url}/activate", json={}), 409)


async def test_payrolls_are_refused_for_a_closed_programme_or_outside_its_dates(
    client: httpx.AsyncClient, database: Database
) -> None:
    programme = await create(client, end_date="2026-06-30")
    url = f"/programmes/{programme['id']}"

    draft = await client.post(f"{url}/payrolls", json={"cycle_sequence": 1})
    await client.post(f"{url}/activate", json={})
    outside = await client.post(f"{url}/payrolls", json={"cycle_sequence": 7})  # July
    await client.post(f"{url}/close", json={})
    closed = await client.post(f"{url}/payrolls", json={"cycle_sequence": 1})

    assert_problem(draft, 409)["type"].endswith("/programme-not-active")
    assert assert_problem(outside, 422)["type"].endswith("/cycle-outside-programme")
    assert assert_problem(closed, 409)["type"].endswith("/programme-not-active")
    assert await row_count(database, Payroll.__table__) == 0


async def test_a_cycle_shows_its_live_payroll(client: httpx.AsyncClient) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"
    await client.post(f"{url}/activate", json={})

    triggered = await client.post(f"{url}/payrolls", json={"cycle_sequence": 2})
    again = await client.post(f"{url}/payrolls", json={"cycle_sequence": 2})
    cycles = (await client.get("/cycles", params={"programme_id": programme["id"]})).json()

    assert triggered.status_code == 202
    assert_problem(again, 409)
    second = next(c for c in cycles["items"] if c["sequence"] == 2)
    assert (second["payroll_id"], second["payroll_status"]) == (
        triggered.json()["id"],
        "GENERATING",
    )
    one = (await client.get(f"/cycles/{second['id']}")).json()
    assert one["payroll_id"] == triggered.json()["id"]
    assert_problem(await client.get("/cycles/01930000-0000-7000-8000-000000000000"), 404)


async def test_a_new_lead_time_moves_the_generation_of_cycles_not_generated(
    client: httpx.AsyncClient,
) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"
    await client.post(f"{url}/activate", json={})
    assert (await client.post(f"{url}/payrolls", json={"cycle_sequence": 1})).status_code == 202
    version = (await client.get(url)).json()["version"]

    moved = await client.patch(
        url, json={"generation_lead_days": 9}, headers={"If-Match": f'"{version}"'}
    )
    cycles = (await client.get(f"{url}/cycles", params={"limit": 3})).json()["items"]

    assert moved.status_code == 200, moved.text
    assert [(c["sequence"], c["generate_on"]) for c in cycles] == [
        (1, "2026-01-05"),  # generated already: unchanged
        (2, "2026-02-01"),
        (3, "2026-03-01"),
    ]


async def test_an_end_date_before_a_generated_cycle_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    programme = await create(client)
    url = f"/programmes/{programme['id']}"
    await client.post(f"{url}/activate", json={})
    await client.post(f"{url}/payrolls", json={"cycle_sequence": 3})
    version = (await client.get(url)).json()["version"]

    response = await client.patch(
        url, json={"end_date": "2026-02-28"}, headers={"If-Match": f'"{version}"'}
    )
    shorter = await client.patch(
        url, json={"end_date": "2026-06-30"}, headers={"If-Match": f'"{version}"'}
    )

    assert_problem(response, 409, "end_date")
    assert shorter.status_code == 200, shorter.text
    cycles = (await client.get(f"{url}/cycles", params={"limit": 50})).json()["items"]
    assert [c["sequence"] for c in cycles] == [1, 2, 3, 4, 5, 6]
