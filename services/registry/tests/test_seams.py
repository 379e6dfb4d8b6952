"""The seams the import and duplicate work build on: clean a record with its report, then
create or replace a household from it through one use case."""

from dataclasses import replace
from datetime import date
from uuid import UUID

import httpx
import pytest

from amana_common.db import Database
from amana_common.errors import Problem
from amana_common.testing.databases import outbox_events
from amana_contracts.registry import HouseholdUpdatedV1
from registry import repository, service
from registry.cleaning import HouseholdDraft, IdentifierDraft, MemberDraft, clean_household
from registry.reference import cleaning_rules
from registry.settings import RegistrySettings

from .conftest import household

RULES = cleaning_rules(RegistrySettings(environment="test"))
TODAY = date(2026, 6, 1)
HEAD = MemberDraft(
    "Grace ",
    "Achieng",
    "female",
    date(1980, 5, 1),
    "head",
    identifiers=(IdentifierDraft("national_id", "3141 5926"),),
)
CHILD = MemberDraft("Tom", "Achieng", "male", date(2012, 1, 9), "child")


def draft(*members: MemberDraft) -> HouseholdDraft:
    return HouseholdDraft(location_code=" ke-047-0101 ", members=members, phone="0711 000111")


def cleaned(*members: MemberDraft) -> HouseholdDraft:
    value = clean_household(draft(*members), RULES, TODAY).value
    assert value is not None
    return value


async def test_an_import_cleans_then_creates_with_the_report_of_what_changed(
    database: Database,
) -> None:
    result = clean_household(draft(HEAD, CHILD), RULES, TODAY)
    assert result.value is not None
    assert {(c.field, c.after) for c in result.report.changes} == {
        ("location_code", "KE-047-0101"),
        ("phone", "+254711000111"),
        ("members.0.given_name", "Grace"),
        ("members.0.identifiers.0.value", "31415926"),
    }

    async with database.sessionmaker() as session:
        created = await service.save_household(session, result.value, "import-42")
        await session.commit()

    assert created.version == 1 and created.location_code == "KE-047-0101"
    assert [(m.given_name, m.is_head, m.is_primary_recipient) for m in created.members] == [
        ("Grace", True, True),
        ("Tom", False, False),
    ]
    [event] = await outbox_events(database)
    assert event.type == "amana.registry.HouseholdEnrolled.v1"


async def test_replacing_keeps_matched_members_removes_the_others_and_adds_new_ones(
    database: Database, client: httpx.AsyncClient
) -> None:
    async with database.sessionmaker() as session:
        created = await service.save_household(session, cleaned(HEAD, CHILD), "import-42")
        await session.commit()
    head_id = created.members[0].id
    newborn = MemberDraft("Zawadi", "Achieng", "female", date(2025, 2, 2), "child")
    second = cleaned(replace(HEAD, given_name="Grace Auma"), newborn)

    async with database.sessionmaker() as session:
        locked = await repository.get_household(session, created.id, for_update=True)
        assert locked is not None
        replaced = await service.save_household(session, second, "import-43", household=locked)
        await session.commit()

    assert replaced.version == 2
    assert [(m.id == head_id, m.given_name) for m in replaced.members] == [
        (True, "Grace Auma"),
        (False, "Zawadi"),
    ]
    history = (await client.get(f"/households/{created.id}/history")).json()["items"]
    assert [(h["action"], h["changed_by"]) for h in history] == [
        ("enrolled", "import-42"),
        ("replaced", "import-43"),
    ]
    fields = {c["field"] for c in history[1]["changes"]}
    assert f"members[{head_id}].given_name" in fields
    updated = HouseholdUpdatedV1.model_validate((await outbox_events(database))[-1].data)
    assert updated.version == 2 and updated.size == 2


async def test_an_import_of_an_identifier_held_elsewhere_is_a_409_naming_the_holder(
    database: Database, client: httpx.AsyncClient
) -> None:
    holder = (await client.post("/households", json=household())).json()
    taken = holder["members"][0]["identifiers"][0]["value"]
    clash = cleaned(replace(HEAD, identifiers=(IdentifierDraft("national_id", taken),)))

    async with database.sessionmaker() as session:
        with pytest.raises(Problem) as refused:
            await service.save_household(session, clash, "import-44")

    assert refused.value.status == 409
    assert refused.value.errors is not None
    assert refused.value.errors[0]["household_number"] == holder["household_number"]
    assert refused.value.errors[0]["field"] == "members.0.identifiers.0.value"
    assert UUID(refused.value.errors[0]["household_id"]) == UUID(holder["id"])
