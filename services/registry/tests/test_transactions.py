"""Atomicity and concurrency of enrolment, on a database whose sessions really commit: each
request has its own connection and transaction, as in production."""

import asyncio
import time

import httpx

from amana_common.db import Database
from amana_common.tables import idempotency_keys, outbox
from amana_common.testing.databases import (
    failing_commits,
    outbox_events,
    row_count,
    slowed_writes,
)
from registry.models import Household, Member

from .conftest import household

SLOW_S = 0.5


async def test_enrolment_commits_the_household_and_its_event_together(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    response = await committed_client.post("/households", json=household())

    assert response.status_code == 201, response.text
    assert await row_count(committed_database, Household.__table__) == 1
    assert [e.subject for e in await outbox_events(committed_database)] == [response.json()["id"]]


async def test_a_commit_that_fails_is_a_5xx_and_leaves_nothing(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    """The household and member rows are written, then the event's row makes COMMIT fail:
    the client must not hear 201, and neither the household nor its event nor the key stay."""
    headers = {"Idempotency-Key": "fails-at-commit"}
    async with failing_commits(committed_database, "outbox"):
        response = await committed_client.post("/households", json=household(), headers=headers)

    assert response.status_code >= 500, response.text
    for table in (Household.__table__, Member.__table__, outbox, idempotency_keys):
        assert await row_count(committed_database, table) == 0, table

    retried = await committed_client.post("/households", json=household(), headers=headers)

    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


async def test_two_concurrent_requests_with_one_key_run_once_and_replay_once(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    """The second arrives while the first's transaction is open (its insert sleeps): it waits
    for the first to commit and replays its answer, instead of running again or failing."""
    headers = {"Idempotency-Key": "concurrent-same"}
    body = household()
    async with slowed_writes(committed_database, "households", SLOW_S):
        started = time.monotonic()
        first, second = await asyncio.gather(
            committed_client.post("/households", json=body, headers=headers),
            committed_client.post("/households", json=body, headers=headers),
        )
        elapsed = time.monotonic() - started

    ran, replayed = sorted([first, second], key=lambda r: "idempotent-replayed" in r.headers)
    assert ran.status_code == replayed.status_code == 201, (ran.text, replayed.text)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == ran.json()
    assert elapsed >= SLOW_S, "both requests were in flight while the first slept"
    assert await row_count(committed_database, Household.__table__) == 1
    assert len(await outbox_events(committed_database)) == 1
    assert await row_count(committed_database, idempotency_keys) == 1


async def test_two_concurrent_requests_with_one_key_and_other_bodies_are_201_and_422(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    headers = {"Idempotency-Key": "concurrent-other"}
    async with slowed_writes(committed_database, "households", SLOW_S):
        responses = await asyncio.gather(
            committed_client.post("/households", json=household(), headers=headers),
            committed_client.post(
                "/households", json=household(location_code="KE-001"), headers=headers
            ),
        )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 422], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 422)
    assert refused.json()["type"].endswith("/idempotency-key-reused")
    assert await row_count(committed_database, Household.__table__) == 1
    assert len(await outbox_events(committed_database)) == 1
