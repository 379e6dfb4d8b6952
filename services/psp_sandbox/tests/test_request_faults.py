"""Faults on Amana's calls of the PSP API: outage (503), slow answers, 500s at a rate, and the
lost answer (500 after the batch was accepted), each bounded and logged."""

import asyncio
import time
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_common.testing.databases import row_count
from psp_sandbox.domain import draw
from psp_sandbox.models import Batch, Payment

from .support import (
    all_pages,
    assert_problem,
    batch_body,
    configure,
    post_batch,
    psp_headers,
    put_faults,
)


async def test_an_outage_answers_503_with_retry_after_for_its_count_then_ends(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "outage", "count": 2, "retry_after_s": 7})
    body = batch_body(provider_id)

    first, second, third = [await post_batch(client, body) for _ in range(3)]

    assert_problem(first, 503)
    assert first.headers["Retry-After"] == "7"
    assert_problem(second, 503)
    assert third.status_code == 202
    assert await row_count(database, Batch) == 1
    (fault,) = await all_pages(client, "/sandbox/faults")
    assert fault["applied"] == 2 and fault["in_force"] is False
    logged = await all_pages(client, "/sandbox/injections", kind="outage")
    assert [i["detail"] for i in logged] == [{"answer": 503, "call": "POST /batches"}] * 2


async def test_a_timed_outage_ends_by_itself(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "outage", "for_s": 0.5})
    body = batch_body(provider_id)

    during = await post_batch(client, body)
    await asyncio.sleep(0.6)
    after = await post_batch(client, body)

    assert_problem(during, 503)
    assert after.status_code == 202


async def test_status_calls_are_subject_to_outages_too(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id)
    await post_batch(client, body)
    await put_faults(client, {"kind": "outage", "count": 1})

    response = await client.get(f"/batches/{body['batch_id']}", headers=psp_headers(provider_id))

    assert_problem(response, 503)


async def test_500s_at_rate_one_answer_every_call_without_accepting(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "error_500", "rate": 1, "count": 2})
    body = batch_body(provider_id)

    answers = [(await post_batch(client, body)).status_code for _ in range(3)]

    assert answers == [500, 500, 202]
    assert await row_count(database, Payment) == 3


async def test_500s_at_a_rate_hit_the_calls_the_seed_says(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "error_500", "rate": 0.3, "for_s": 60, "seed": 11})

    statuses = [
        (await client.get(f"/batches/{UUID(int=i)}", headers=psp_headers(provider_id))).status_code
        for i in range(60)
    ]

    expected = [500 if draw(11, "error_500", n) < 0.3 else 404 for n in range(1, 61)]
    assert statuses == expected
    assert 8 <= statuses.count(500) <= 30
    (fault,) = await all_pages(client, "/sandbox/faults")
    assert fault["seen"] == 60 and fault["applied"] == statuses.count(500)


async def test_a_lost_answer_accepts_the_batch_and_the_retry_finds_it_accepted(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "error_500", "after_accept": True, "count": 1})
    body = batch_body(provider_id, 4)

    lost = await post_batch(client, body)
    retry = await post_batch(client, body)

    assert_problem(lost, 500)
    assert retry.status_code == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await row_count(database, Payment) == 4
    (logged,) = await all_pages(client, "/sandbox/injections", kind="error_500")
    assert logged["batch_id"] == body["batch_id"]
    assert logged["detail"] == {"after_accept": True}


async def test_slow_answers_wait_before_the_work(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "slow", "delay_s": 0.4, "count": 1})

    started = time.monotonic()
    slow = await post_batch(client, batch_body(provider_id, prefix="S"))
    slow_s = time.monotonic() - started
    started = time.monotonic()
    fast = await post_batch(client, batch_body(provider_id, prefix="F"))
    fast_s = time.monotonic() - started

    assert slow.status_code == fast.status_code == 202
    assert slow_s >= 0.4 > fast_s


async def test_a_providers_faults_leave_other_providers_alone(client: httpx.AsyncClient) -> None:
    faulty = await configure(client)
    healthy = await configure(client)
    await put_faults(client, {"kind": "outage", "for_s": 60}, provider_id=faulty)

    refused = await post_batch(client, batch_body(faulty))
    accepted = await post_batch(client, batch_body(healthy))

    assert_problem(refused, 503)
    assert accepted.status_code == 202
