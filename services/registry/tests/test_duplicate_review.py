"""The duplicate review API against real PostgreSQL: list and detail, decisions (not_duplicate
remembered, duplicate merged or exited) with their events, bulk decisions, roles, and two
reviewers deciding one flag at once on really committing sessions."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.databases import outbox_events, slowed_writes
from amana_common.testing.service import bearer
from amana_contracts.registry import DuplicateReviewedV1
from registry.settings import RegistrySettings

from .test_duplicate_detection import FAMILY, enrol, variant


async def flagged_pair(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], str]:
    first = await enrol(client, FAMILY)
    second = await enrol(client, variant(given_name="Wanjiku"))
    listed = (await client.get("/duplicates")).json()["items"]
    assert len(listed) == 1
    return first, second, listed[0]["id"]


async def household(client: httpx.AsyncClient, household_id: str) -> dict[str, Any]:
    response = await client.get(f"/households/{household_id}")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def reviewed(events: list[Any]) -> list[DuplicateReviewedV1]:
    return [
        DuplicateReviewedV1.model_validate(e.data)
        for e in events
        if e.type == "amana.registry.DuplicateReviewed.v1"
    ]


async def test_the_open_flags_list_and_a_flags_detail_side_by_side(
    client: httpx.AsyncClient,
) -> None:
    first, second, flag_id = await flagged_pair(client)

    listed = (await client.get("/duplicates", params={"location_code": "KE-047"})).json()
    elsewhere = (await client.get("/duplicates", params={"location_code": "KE-001"})).json()
    decided = (await client.get("/duplicates", params={"status": "not_duplicate"})).json()
    detail = (await client.get(f"/duplicates/{flag_id}")).json()

    [item] = listed["items"]
    assert (item["household_number"], item["other_household_number"]) == (
        first["household_number"],
        second["household_number"],
    )
    assert item["score"] >= 0.99 and item["reasons"][0].startswith("head/head: name close")
    assert elsewhere["items"] == [] and decided["items"] == []
    assert detail["household"]["id"] == first["id"]
    assert detail["other_household"]["members"][0]["given_name"] == "Wanjiku"
    assert detail["comparison"]["members"][0]["name"] == "close"
    assert detail["comparison"]["location"] == "same"


async def test_not_duplicate_is_remembered_and_both_households_leave_review(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second, flag_id = await flagged_pair(client)

    decision = await client.post(
        f"/duplicates/{flag_id}/decision",
        json={"decision": "not_duplicate", "note": "twins, separate homes"},
    )
    again = await client.patch(
        f"/households/{second['id']}",
        json={"address": "Plot 45"},
        headers={"If-Match": f'"{(await household(client, second["id"]))["version"]}"'},
    )

    assert decision.status_code == 200, decision.text
    assert decision.json()["status"] == "not_duplicate"
    assert decision.json()["decided_by"] == "test-admin" and decision.json()["decided_at"]
    assert again.status_code == 200 and again.json()["status"] == "active"
    assert (await household(client, first["id"]))["status"] == "active"
    assert (await client.get("/duplicates")).json()["items"] == []
    [event] = reviewed(await outbox_events(database))
    assert (event.decision, event.decided_by) == ("not_duplicate", "test-admin")


async def test_duplicate_exit_exits_the_other_household_and_frees_the_survivor(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second, flag_id = await flagged_pair(client)

    decision = await client.post(
        f"/duplicates/{flag_id}/decision",
        json={"decision": "duplicate", "action": "exit", "surviving_household_id": first["id"]},
    )

    assert decision.status_code == 200, decision.text
    assert decision.json()["surviving_household_id"] == first["id"]
    exited = await household(client, second["id"])
    assert (exited["status"], exited["status_reason"]) == (
        "exited",
        f"duplicate of household {first['household_number']}",
    )
    assert exited["duplicate_review_open"] is False
    assert (await household(client, first["id"]))["status"] == "active"
    [event] = reviewed(await outbox_events(database))
    assert event.decision == "duplicate_exited"


async def test_duplicate_merge_moves_members_identifiers_and_preference_into_the_survivor(
    client: httpx.AsyncClient, database: Database
) -> None:
    first = await enrol(client, FAMILY)
    body = variant(given_name="Wanjiku", phone="+254722000001")
    body["members"][1]["identifiers"] = [{"scheme": "birth_certificate", "value": "BC7001"}]
    body["members"].append(
        {
            "given_name": "Muthoni",
            "family_name": "Kamau",
            "sex": "female",
            "date_of_birth": "2019-02-14",
            "relationship": "child",
        }
    )
    body["address"] = "Plot 44, Kware"
    second = await enrol(client, body)
    [flag] = (await client.get("/duplicates")).json()["items"]

    decision = await client.post(
        f"/duplicates/{flag['id']}/decision",
        json={"decision": "duplicate", "action": "merge"},
    )

    assert decision.status_code == 200, decision.text
    merged = await household(client, first["id"])
    assert merged["status"] == "active"
    assert [(m["given_name"], m["relationship"]) for m in merged["members"]] == [
        ("Wanjiru", "head"),
        ("Njeri", "child"),
        ("Kariuki", "child"),
        ("Muthoni", "child"),
    ]
    identifiers = {
        (m["given_name"], i["scheme"], i["value"])
        for m in merged["members"]
        for i in m["identifiers"]
    }
    # The head keeps her own national id (the other's is of a scheme she has); Njeri gains
    # the birth certificate only the other household knew.
    assert identifiers == {
        ("Wanjiru", "national_id", "30010001"),
        ("Njeri", "birth_certificate", "BC7001"),
    }
    assert merged["members"][0]["id"] == first["members"][0]["id"]
    assert merged["phone"] == FAMILY["phone"]
    exited = await household(client, second["id"])
    assert exited["status"] == "exited"
    history = (await client.get(f"/households/{first['id']}/history")).json()["items"]
    assert "duplicate_merged" in [entry["action"] for entry in history]
    [event] = reviewed(await outbox_events(database))
    assert event.decision == "duplicate_merged"


async def test_bulk_decisions_are_all_or_nothing(
    client: httpx.AsyncClient,
) -> None:
    _, second, flag_id = await flagged_pair(client)

    refused = await client.post(
        "/duplicates/decisions",
        json={
            "decisions": [
                {"flag_id": flag_id, "decision": "not_duplicate"},
                {"flag_id": "01930000-0000-7000-8000-0000000000f9", "decision": "not_duplicate"},
            ]
        },
    )
    still_open = (await client.get("/duplicates")).json()["items"]
    accepted = await client.post(
        "/duplicates/decisions",
        json={"decisions": [{"flag_id": flag_id, "decision": "not_duplicate"}]},
    )

    assert refused.status_code == 404
    assert refused.json()["errors"][0]["field"] == "decisions.1.flag_id"
    assert [item["id"] for item in still_open] == [flag_id]
    assert accepted.status_code == 200
    assert [item["status"] for item in accepted.json()["items"]] == ["not_duplicate"]
    assert (await household(client, second["id"]))["status"] == "active"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "duplicate"}, "action"),
        ({"decision": "not_duplicate", "action": "exit"}, "action"),
        (
            {
                "decision": "duplicate",
                "action": "exit",
                "surviving_household_id": "01930000-0000-7000-8000-0000000000f9",
            },
            "surviving_household_id",
        ),
    ],
)
async def test_a_decision_that_does_not_say_what_to_do_is_422_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    _, second, flag_id = await flagged_pair(client)

    response = await client.post(f"/duplicates/{flag_id}/decision", json=body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field
    assert (await household(client, second["id"]))["status"] == "under_review"


async def test_roles_registrar_decides_auditor_reads_others_are_refused(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    _, _, flag_id = await flagged_pair(client)
    decision = {"decision": "not_duplicate"}

    auditor_reads = await client.get("/duplicates", headers=bearer(settings, Role.auditor))
    auditor_decides = await client.post(
        f"/duplicates/{flag_id}/decision", json=decision, headers=bearer(settings, Role.auditor)
    )
    manager_reads = await client.get(
        f"/duplicates/{flag_id}", headers=bearer(settings, Role.programme_manager)
    )
    registrar_starts_run = await client.post(
        "/duplicates/runs", headers=bearer(settings, Role.registrar)
    )
    registrar_decides = await client.post(
        f"/duplicates/{flag_id}/decision",
        json=decision,
        headers=bearer(settings, Role.registrar),
    )

    assert auditor_reads.status_code == 200
    assert auditor_decides.status_code == 403
    assert manager_reads.status_code == 403
    assert registrar_starts_run.status_code == 403
    assert registrar_decides.status_code == 200
    assert registrar_decides.json()["decided_by"] == "test-registrar"


async def test_two_reviewers_deciding_one_flag_at_once_one_wins_one_is_409(
    committed_client: httpx.AsyncClient,
    committed_database: Database,
    settings: RegistrySettings,
) -> None:
    """Each request commits on its own connection; the first decision's transaction is held
    open (its flag update sleeps) while the second arrives and waits on the flag's lock, then
    finds it decided."""
    first = await enrol(committed_client, FAMILY)
    second = await enrol(committed_client, variant(given_name="Wanjiku"))
    [flag] = (await committed_client.get("/duplicates")).json()["items"]
    url = f"/duplicates/{flag['id']}/decision"

    async with slowed_writes(committed_database, "duplicate_flags", 0.5, "UPDATE"):
        answers = await asyncio.gather(
            committed_client.post(
                url,
                json={"decision": "duplicate", "action": "exit"},
                headers=bearer(settings, Role.registrar),
            ),
            committed_client.post(
                url, json={"decision": "not_duplicate"}, headers=bearer(settings, Role.admin)
            ),
        )

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 409], [answer.text for answer in answers]
    winner = next(answer for answer in answers if answer.status_code == 200).json()
    loser = next(answer for answer in answers if answer.status_code == 409).json()
    assert loser["type"].endswith("/flag-decided")
    assert winner["decided_by"] in loser["detail"]
    events = reviewed(await outbox_events(committed_database))
    assert len(events) == 1 and events[0].flag_id == UUID(flag["id"])
    statuses_now = {(await household(committed_client, h["id"]))["status"] for h in (first, second)}
    assert statuses_now in ({"active", "exited"}, {"active"})
