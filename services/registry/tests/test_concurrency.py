"""Concurrency claims, with sessions that really commit: one holder per identifier, one change
per version, and the database's own guard of one head and one primary recipient."""

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from amana_common.db import Database
from amana_common.testing.databases import row_count as count
from registry.models import Household

from .conftest import household


async def test_concurrent_enrolments_of_one_identifier_create_one_household(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    bodies = []
    for _ in range(8):
        body = household()
        body["members"][0]["identifiers"] = [{"scheme": "national_id", "value": "31415926"}]  # type: ignore[index]
        bodies.append(body)

    responses = await asyncio.gather(
        *(committed_client.post("/households", json=body) for body in bodies)
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: 7}
    winner = next(r.json() for r in responses if r.status_code == 201)
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["errors"][0]["household_number"] == winner["household_number"]
    assert await count(committed_database, Household.__table__) == 1


async def test_concurrent_changes_on_one_version_apply_once(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    created = (await committed_client.post("/households", json=household())).json()
    url = f"/households/{created['id']}"

    responses = await asyncio.gather(
        *(
            committed_client.patch(url, json={"address": f"Plot {n}"}, headers={"If-Match": '"1"'})
            for n in range(6)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: 1, 412: 5}
    final = (await committed_client.get(url)).json()
    assert final["version"] == 2
    history = (await committed_client.get(f"{url}/history")).json()["items"]
    assert [h["version"] for h in history] == [1, 2]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM members WHERE household_id = :h AND is_head",
        "UPDATE members SET is_primary_recipient = false WHERE household_id = :h",
        "UPDATE members SET is_head = false WHERE household_id = :h",
    ],
    ids=["head deleted", "no primary recipient", "no head"],
)
async def test_the_database_refuses_a_household_left_without_a_head_or_recipient(
    statement: str, committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    created = (await committed_client.post("/households", json=household())).json()

    with pytest.raises(DBAPIError, match=r"registry_household_roles|primary recipients"):
        async with committed_database.sessionmaker() as session, session.begin():
            await session.execute(text(statement), {"h": created["id"]})

    read = (await committed_client.get(f"/households/{created['id']}")).json()
    assert [m["is_head"] for m in read["members"]] == [True, False]
    assert [m["is_primary_recipient"] for m in read["members"]] == [True, False]


async def test_the_database_refuses_a_second_primary_recipient_at_once(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    created = (await committed_client.post("/households", json=household())).json()

    with pytest.raises(DBAPIError, match="uq_members_one_primary_recipient"):
        async with committed_database.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE members SET is_primary_recipient = true WHERE household_id = :h"),
                {"h": created["id"]},
            )
