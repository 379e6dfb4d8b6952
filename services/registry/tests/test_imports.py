"""Bulk imports (CSV and FHIR NDJSON) through the API and the worker: progress, report,
re-import, and every kind of bad input as a per-record error while the rest goes on."""

from __future__ import annotations

import copy
import json

import httpx
from sqlalchemy import func, select

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import outbox_events, row_count
from registry.generate import csv_columns
from registry.models import Household, HouseholdSource, JobBlock, Member

from .conftest import household
from .imports_support import (
    CSV,
    NDJSON,
    csv_file,
    fhir_lines,
    ndjson,
    population,
    report,
    run_import,
)


async def test_a_csv_import_creates_every_household_with_its_events_and_report(
    client: httpx.AsyncClient, database: Database
) -> None:
    households = population(12)
    members = sum(len(h.body["members"]) for h in households)

    job = await run_import(client, database, csv_file(households), CSV, source="legacy")

    assert (job["status"], job["processed"], job["created"], job["rejected"]) == (
        "done",
        12,
        12,
        0,
    ), job
    assert await row_count(database, Household.__table__) == 12
    assert await row_count(database, Member.__table__) == members
    events = await outbox_events(database)
    assert [e.type for e in events] == ["amana.registry.HouseholdEnrolled.v1"] * 12
    lines = await report(client, job["id"])
    assert [line["outcome"] for line in lines] == ["created"] * 12
    assert await row_count(database, JobBlock.__table__) == 0  # the upload is gone once done
    one = (await client.get(f"/households/{lines[0]['household_id']}")).json()
    assert one["location_code"] == households[0].body["location_code"]
    history = (await client.get(f"/households/{one['id']}/history")).json()["items"]
    assert [(h["action"], h["changed_by"]) for h in history] == [("enrolled", "import-test")]


async def test_reimporting_the_same_file_updates_and_creates_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    households = population(5, seed=12)
    first = await run_import(client, database, csv_file(households), CSV, source="legacy")
    households[0].body["members"][0]["given_name"] = "Renamed"

    second = await run_import(client, database, csv_file(households), CSV, source="legacy")

    assert (first["created"], second["created"], second["updated"]) == (5, 0, 5), second
    assert await row_count(database, Household.__table__) == 5
    names = (await client.get("/households/search", params={"name": "Renamed"})).json()
    assert len(names["items"]) == 1
    types = [e.type for e in await outbox_events(database)]
    assert types.count("amana.registry.HouseholdUpdated.v1") == 5


async def test_a_fhir_ndjson_import_in_any_order_and_its_reimport(
    client: httpx.AsyncClient, database: Database
) -> None:
    resources = fhir_lines(population(6, seed=13))
    patients_first = sorted(resources, key=lambda r: r["resourceType"] != "Patient")

    job = await run_import(client, database, ndjson(patients_first), NDJSON, source="dhis")
    again = await run_import(client, database, ndjson(resources), NDJSON, source="dhis")

    assert (job["status"], job["created"], job["rejected"]) == ("done", 6, 0), job
    assert (again["created"], again["updated"], again["rejected"]) == (0, 6, 0), again
    assert await row_count(database, Household.__table__) == 6
    async with database.sessionmaker() as session:
        keys = await session.scalar(select(func.count()).select_from(HouseholdSource))
    assert keys == 12  # Group/<id> and the generator's identifier, per household


async def test_bad_fhir_records_are_reported_one_by_one_and_the_rest_imports(
    client: httpx.AsyncClient, database: Database
) -> None:
    good = fhir_lines(population(3, seed=14))
    broken = fhir_lines(population(4, seed=15))
    groups = [r for r in broken if r["resourceType"] == "Group"]
    groups[0]["member"].append({"entity": {"reference": "Patient/nowhere"}})  # broken reference
    del groups[1]["actual"]  # a required element missing
    head = next(r for r in broken if r["id"] == groups[2]["member"][0]["entity"]["reference"][8:])
    head["birthDate"] = "2999-01-01"  # born in the future
    groups[3]["member"][0]["extension"][0]["valueCode"] = "child"  # no head
    lonely = {"resourceType": "Patient", "id": "lonely", "birthDate": "1990-01-01"}
    body = ndjson(
        [*good, *broken, "{not json", {"resourceType": "Observation", "id": "o1"}, lonely]
    )

    job = await run_import(client, database, body, NDJSON)

    assert (job["created"], job["rejected"]) == (3, 7), job
    errors = {
        (e["field"], e["code"]) for line in await report(client, job["id"]) for e in line["errors"]
    }
    g = [group["id"] for group in groups]
    assert (
        f"Group/{g[0]}.member[{len(groups[0]['member']) - 1}].entity",
        "broken-reference",
    ) in errors
    assert (f"Group/{g[1]}.actual", "invalid-fhir") in errors
    assert (f"Patient/{head['id']}.birthDate", "birth-date-in-future") in errors
    assert (f"Group/{g[3]}.member", "one-head") in errors
    assert ("Patient/lonely", "in-no-group") in errors
    assert any(code == "malformed-json" for _, code in errors)
    assert any(code == "wrong-resource-type" for _, code in errors)
    assert await row_count(database, Household.__table__) == 3


async def test_bad_csv_records_are_reported_by_line_and_column(
    client: httpx.AsyncClient, database: Database
) -> None:
    taken = (await client.post("/households", json=household())).json()
    national_id = taken["members"][0]["identifiers"][0]["value"]
    households = population(6, seed=16)
    bodies = [h.body for h in households]
    bodies[0]["members"][0]["relationship"] = "spouse"  # no head
    for member in bodies[1]["members"][:2]:
        member["is_primary_recipient"] = True  # two primary recipients
    bodies[2]["members"][0]["given_name"] = "Ami\u0000na"  # NUL
    bodies[3]["members"][0]["identifiers"] = [{"scheme": "national_id", "value": national_id}]
    bodies[4]["members"][0]["date_of_birth"] = "2999-02-02"

    job = await run_import(client, database, csv_file(households), CSV)

    assert (job["created"], job["rejected"], job["flagged"]) == (1, 4, 1), job
    lines = {line["source_id"]: line for line in await report(client, job["id"])}
    codes = {code: [(e["field"], e["code"]) for e in lines[code]["errors"]] for code in lines}
    c = [h.code for h in households]
    assert codes[c[0]] == [(f"household {c[0]}", "one-head")]
    assert codes[c[1]] == [(f"household {c[1]}", "one-primary-recipient")]
    assert codes[c[2]][0][1] == "control-character" and codes[c[2]][0][0].endswith("given_name")
    assert lines[c[3]]["outcome"] == "flagged"
    assert lines[c[3]]["errors"][0]["household_number"] == taken["household_number"]
    assert codes[c[3]][0][0].endswith(": national_id")
    assert codes[c[4]][0][1] == "birth-date-in-future"
    assert codes[c[4]][0][0].endswith(": date_of_birth")
    assert lines[c[5]]["outcome"] == "created"
    assert await row_count(database, Household.__table__) == 2


async def test_a_wrong_csv_header_is_a_422_naming_the_columns_and_keeps_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    columns = [c for c in csv_columns() if c != "date_of_birth"] + ["birthday"]
    body = ",".join(columns) + "\nH1,KE-047-0101\n"

    response = await client.post("/imports", content=body, headers=CSV)

    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"header.date_of_birth", "header.birthday"}
    assert await row_count(database, JobBlock.__table__) == 0


async def test_a_file_over_the_limit_is_413_and_keeps_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    client_app = client._transport.app  # type: ignore[attr-defined]
    client_app.state.settings = client_app.state.settings.model_copy(
        update={"import_max_bytes": 3 * 1024 * 1024}
    )
    body = ndjson(fhir_lines(population(3))) * 4000  # about 10 MiB

    response = await client.post("/imports", content=body.encode(), headers=NDJSON)

    assert response.status_code == 413, response.text
    assert await row_count(database, JobBlock.__table__) == 0
    assert await row_count(database, outbox) == 0


async def test_an_unknown_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/imports", content=b"x", headers={"content-type": "image/png"})
    assert response.status_code == 415


async def test_the_template_is_the_header_the_import_expects(client: httpx.AsyncClient) -> None:
    response = await client.get("/imports/templates/households.csv")
    assert response.status_code == 200
    assert response.text.strip().split(",") == csv_columns()


async def test_the_csv_report_has_a_row_per_error_and_change(
    client: httpx.AsyncClient, database: Database
) -> None:
    households = population(2, seed=17)
    households[0].body["members"][0]["date_of_birth"] = "1999-13-01"
    job = await run_import(client, database, csv_file(households), CSV)

    response = await client.get(f"/imports/{job['id']}/report", params={"format": "csv"})

    rows = response.text.splitlines()
    assert rows[0].startswith("position,line,source_id,outcome")
    assert any("invalid-date" in row and "rejected" in row for row in rows[1:])


async def test_an_idempotency_key_replays_the_first_upload(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = csv_file(population(2, seed=18)).encode()
    headers = CSV | {"Idempotency-Key": "upload-1"}
    first = await client.post("/imports", content=body, headers=headers)
    second = await client.post("/imports", content=body, headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    async with database.sessionmaker() as session:
        jobs = await session.scalar(select(func.count(func.distinct(JobBlock.job_id))))
    assert jobs == 1


def _copy(value: object) -> object:
    return copy.deepcopy(json.loads(json.dumps(value)))
