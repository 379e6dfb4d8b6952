"""The batch run over the whole registry: blocking (the pairs examined are the pairs inside
blocks, however many households there are), oversized blocks skipped, progress through the
admin API, and the run's flags."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.service import bearer
from registry import duplicates, service
from registry.cleaning import HouseholdDraft, IdentifierDraft, MemberDraft
from registry.models import DuplicateRun
from registry.settings import RegistrySettings

GROUPS = (("Amina", "Otieno"), ("Baraka", "Mwangi"), ("Chebet", "Kiprono"), ("Dalmas", "Wekesa"))


def single(given: str, family: str, born: date, national_id: int) -> HouseholdDraft:
    head = MemberDraft(
        given,
        family,
        "female",
        born,
        "head",
        is_primary_recipient=True,
        identifiers=(IdentifierDraft("national_id", str(national_id)),),
    )
    return HouseholdDraft(location_code="KE-047-0101", members=(head,))


async def registry_of(database: Database, fillers: int, group_sizes: tuple[int, ...]) -> None:
    """`fillers` households sharing no blocking key (each born in a year of its own, no phone),
    and for each group size a group of identical households (one block of that size)."""
    ids = iter(range(40_000_001, 50_000_000))
    async with database.sessionmaker() as session:
        for index in range(fillers):
            draft = single("Filler", "Person", date(1900 + index, 1, 1), next(ids))
            await service.save_household(session, draft, "test")
        for (given, family), size in zip(GROUPS, group_sizes, strict=False):
            for _ in range(size):
                draft = single(given, family, date(2030 - len(given), 6, 15), next(ids))
                await service.save_household(session, draft, "test")
        await session.commit()


async def batch(database: Database) -> DuplicateRun:
    async with database.sessionmaker() as session:
        run = await duplicates.request_run(session, "test")
        await session.commit()
    assert await duplicates.claim_run(database) == run.id
    return await duplicates.execute_run(database, run.id)


@pytest.mark.parametrize(
    ("fillers", "group_sizes", "pairs"),
    [
        (20, (2, 3, 4), 1 + 3 + 6),
        (80, (2, 3, 4), 1 + 3 + 6),  # four times the registry: the same pairs
        (80, (2, 3, 4, 5), 1 + 3 + 6 + 10),  # one more block: its pairs
    ],
)
async def test_the_pairs_examined_are_those_inside_blocks_not_the_registry_squared(
    database: Database, fillers: int, group_sizes: tuple[int, ...], pairs: int
) -> None:
    await registry_of(database, fillers, group_sizes)

    run = await batch(database)

    households = fillers + sum(group_sizes)
    assert run.status == "done"
    assert run.pairs_total == run.pairs_scored == pairs
    assert pairs < households * (households - 1) // 2 / 10
    assert run.flags_created == pairs  # identical households: every pair is flagged


async def test_a_block_held_by_too_many_households_is_skipped(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "MAX_BLOCK", 3)
    await registry_of(database, 5, (2, 3, 4))

    run = await batch(database)

    # The group of four shares four keys (the date of birth with the pair of name codes and
    # with each code, the year with the pair): each block holds four households, more than 3.
    assert (run.pairs_total, run.blocks_skipped) == (1 + 3, 4)


async def test_a_second_run_examines_only_pairs_no_flag_names(database: Database) -> None:
    await registry_of(database, 5, (2, 3))
    first = await batch(database)

    second = await batch(database)

    assert (first.pairs_total, first.flags_created) == (4, 4)
    assert (second.pairs_total, second.flags_created) == (0, 0)


async def test_admins_start_a_run_and_follow_its_progress(
    client: httpx.AsyncClient, database: Database, settings: RegistrySettings
) -> None:
    await registry_of(database, 3, (2,))
    admin = bearer(settings, Role.admin)

    started = await client.post("/duplicates/runs", headers=admin)
    refused = await client.post("/duplicates/runs", headers=admin)
    queued = (await client.get(started.headers["location"], headers=admin)).json()
    run_id = await duplicates.claim_run(database)
    assert run_id is not None
    await duplicates.execute_run(database, run_id)
    done = (
        await client.get(f"/duplicates/runs/{run_id}", headers=bearer(settings, Role.auditor))
    ).json()
    runs = (await client.get("/duplicates/runs", headers=admin)).json()["items"]

    assert started.status_code == 202, started.text
    assert UUID(started.json()["id"]) == run_id
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/duplicate-run-unfinished")
    assert queued["status"] == "queued"
    assert (done["status"], done["pairs_total"], done["pairs_scored"], done["flags_created"]) == (
        "done",
        1,
        1,
        1,
    )
    assert done["requested_by"] == "test-admin" and done["finished_at"]
    assert [run["id"] for run in runs] == [str(run_id)]
    [flag] = (await client.get("/duplicates", params={"source": "batch"})).json()["items"]
    assert flag["reasons"][0] == (
        "head/head: name exact, birth date exact, sex same, identifier different"
    )
