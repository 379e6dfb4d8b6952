"""Duplicate detection on enrolment, update and import (CSV bulk and FHIR Bundle), against real
PostgreSQL: exact and fuzzy matches, flags with score and reasons, the review opened
(under_review) with its events, and flags recomputed when a change resolves the clash."""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import select

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.registry import DuplicateFlaggedV1, DuplicateReviewedV1
from registry import duplicates
from registry.generate import GeneratedHousehold, fhir_resources
from registry.models import DuplicateFlag

from .conftest import household
from .imports_support import CSV, csv_file, report, run_import
from .test_fhir_api import FHIR, bundle

FAMILY: dict[str, Any] = {
    "location_code": "KE-047-0101",
    "address": "Plot 44, Kware",
    "phone": "+254711000044",
    "members": [
        {
            "given_name": "Wanjiru",
            "family_name": "Kamau",
            "sex": "female",
            "date_of_birth": "1979-04-11",
            "relationship": "head",
            "identifiers": [{"scheme": "national_id", "value": "30010001"}],
        },
        {
            "given_name": "Njeri",
            "family_name": "Kamau",
            "sex": "female",
            "date_of_birth": "2009-10-02",
            "relationship": "child",
        },
        {
            "given_name": "Kariuki",
            "family_name": "Kamau",
            "sex": "male",
            "date_of_birth": "2012-06-21",
            "relationship": "child",
        },
    ],
}


def variant(**head: Any) -> dict[str, Any]:
    """The family enrolled again: the head varied, a new national id, no phone or address."""
    body = copy.deepcopy(FAMILY)
    body["members"][0].update(head)
    body["members"][0]["identifiers"] = [{"scheme": "national_id", "value": "30010002"}]
    del body["phone"], body["address"]
    return body


async def enrol(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/households", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def flags(database: Database) -> list[DuplicateFlag]:
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(DuplicateFlag).order_by(DuplicateFlag.id))).all())


async def test_a_near_duplicate_enrolment_is_flagged_and_both_households_go_under_review(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await enrol(client, FAMILY)
    second = await enrol(client, variant(given_name="Wanjiku", family_name="Kamau"))

    assert (first["status"], second["status"]) == ("active", "under_review")
    assert second["duplicate_review_open"] is True
    [flag] = await flags(database)
    assert (flag.household_id, flag.other_household_id) == (UUID(first["id"]), UUID(second["id"]))
    assert flag.status == "open" and flag.source == "enrolment" and flag.score >= 0.99
    assert flag.reasons[:3] == [
        "head/head: name close, birth date exact, sex same, identifier different",
        "child/child: name exact, birth date exact, sex same",
        "child/child: name exact, birth date exact, sex same",
    ]
    assert flag.reasons[3:] == ["location same"]
    first_now = (await client.get(f"/households/{first['id']}")).json()
    assert first_now["status"] == "under_review"
    events = await outbox_events(database)
    flagged = [e for e in events if e.type == "amana.registry.DuplicateFlagged.v1"]
    assert [DuplicateFlaggedV1.model_validate(e.data).flag_id for e in flagged] == [flag.id]
    changed = [e for e in events if e.type == "amana.registry.HouseholdStatusChanged.v1"]
    assert {e.subject for e in changed} == {first["id"], second["id"]}
    assert all(e.data["status"] == "under_review" and not e.data["payable"] for e in changed)


async def test_swapped_names_and_a_birth_date_a_month_off_are_still_found(
    client: httpx.AsyncClient, database: Database
) -> None:
    await enrol(client, FAMILY)
    second = await enrol(
        client, variant(given_name="Kamau", family_name="Wanjiru", date_of_birth="1979-05-11")
    )

    assert second["status"] == "under_review"
    [flag] = await flags(database)
    assert flag.reasons[0].startswith("head/head: name swapped, birth date near")


async def test_different_households_are_not_flagged(
    client: httpx.AsyncClient, database: Database
) -> None:
    await enrol(client, FAMILY)
    other = household()

    created = await enrol(client, other)

    assert created["status"] == "active"
    assert await flags(database) == []


async def test_an_imports_identifier_clash_is_a_flag_with_its_reason(
    client: httpx.AsyncClient, database: Database
) -> None:
    holder = await enrol(client, FAMILY)
    stranger = await enrol(client, household())

    async with database.sessionmaker() as session:
        raised = await duplicates.flag_candidates(
            session,
            [UUID(stranger["id"])],
            actor="import-7",
            clashes=[
                duplicates.IdentifierClash(UUID(stranger["id"]), UUID(holder["id"]), "national_id")
            ],
        )
        await session.commit()

    assert raised == 1
    [flag] = await flags(database)
    assert flag.reasons[0] == "identifier clash: national_id"
    assert (flag.source, flag.flagged_by) == ("import", "import-7")


async def test_a_correction_that_resolves_the_clash_closes_the_flag_and_the_review(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await enrol(client, FAMILY)
    second = await enrol(client, variant(given_name="Wanjiku"))
    head = second["members"][0]["id"]
    children = second["members"][1:]

    for child in children:
        current = (await client.get(f"/households/{second['id']}")).json()
        removed = await client.delete(
            f"/households/{second['id']}/members/{child['id']}",
            headers={"If-Match": f'"{current["version"]}"'},
        )
        assert removed.status_code == 200, removed.text
    current = (await client.get(f"/households/{second['id']}")).json()
    corrected = await client.patch(
        f"/households/{second['id']}/members/{head}",
        json={"given_name": "Achieng", "family_name": "Odhiambo", "date_of_birth": "1990-01-05"},
        headers={"If-Match": f'"{current["version"]}"'},
    )

    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["status"] == "active"
    [flag] = await flags(database)
    assert (flag.status, flag.decided_by) == ("resolved", "test-admin")
    assert (await client.get(f"/households/{first['id']}")).json()["status"] == "active"
    reviewed = [
        DuplicateReviewedV1.model_validate(e.data)
        for e in await outbox_events(database)
        if e.type == "amana.registry.DuplicateReviewed.v1"
    ]
    assert [(r.flag_id, r.decision) for r in reviewed] == [(flag.id, "resolved")]


async def test_the_family_enrolled_again_in_another_region_is_found_by_names_and_dates(
    client: httpx.AsyncClient, database: Database
) -> None:
    """Keys of the date of birth with both names count anywhere; the others only within the
    household's area (README, "Blocking")."""
    first = await enrol(client, FAMILY)
    moved = variant(given_name="Wanjiku")
    moved["location_code"] = "KE-001-0101"

    second = await enrol(client, moved)

    assert second["status"] == "under_review"
    [flag] = await flags(database)
    assert flag.household_id == UUID(first["id"])
    assert flag.reasons[-1] == "location different"


async def test_an_imported_near_duplicate_opens_a_flag_and_is_reported_flagged(
    client: httpx.AsyncClient, database: Database
) -> None:
    enrolled = await enrol(client, FAMILY)
    again = GeneratedHousehold("legacy-7", variant(given_name="Wanjiku"))

    job = await run_import(client, database, csv_file([again]), CSV, source="legacy")

    assert (job["status"], job["created"], job["flagged"]) == ("done", 1, 1), job
    [line] = await report(client, job["id"])
    assert (line["outcome"], line["duplicate_flagged"]) == ("created", True)
    [flag] = await flags(database)
    assert (flag.household_id, flag.other_household_id) == (
        UUID(enrolled["id"]),
        UUID(line["household_id"]),
    )
    assert (flag.status, flag.source, flag.flagged_by) == ("open", "import", "import-test")
    imported = (await client.get(f"/households/{line['household_id']}")).json()
    assert imported["status"] == "under_review"


async def test_a_fhir_bundle_of_a_near_duplicate_opens_a_flag(
    client: httpx.AsyncClient, database: Database
) -> None:
    enrolled = await enrol(client, FAMILY)
    again = GeneratedHousehold("fhir-7", variant(given_name="Wanjiku"))

    response = await client.post("/fhir", json=bundle(fhir_resources(again)), headers=FHIR)

    assert response.status_code == 200, response.text
    [flag] = await flags(database)
    assert flag.household_id == UUID(enrolled["id"])
    assert (flag.status, flag.source) == ("open", "import")
    assert (await client.get(f"/households/{enrolled['id']}")).json()["status"] == "under_review"
