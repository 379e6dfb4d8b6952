"""The PSP API Amana calls: POST /batches and GET /batches/{id}."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import func, select
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.testing.databases import row_count
from amana_common.testing.service import TEST_BODY_LIMIT
from psp_sandbox.domain import DEFAULT_REASON_MIX, decide_outcome
from psp_sandbox.models import Batch, Payment

from .support import (
    api_key_for,
    assert_problem,
    batch_body,
    configure,
    post_batch,
    psp_headers,
)


async def test_a_batch_is_accepted_with_202_and_every_payment_stored(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id, 3)

    response = await post_batch(client, body)

    assert response.status_code == 202, response.text
    assert response.json() == {"batch_id": body["batch_id"], "accepted": 3, "status": "accepted"}
    assert "Idempotent-Replayed" not in response.headers
    assert await row_count(database, Batch) == 1
    assert await row_count(database, Payment) == 3


async def test_the_same_batch_again_is_answered_as_the_first_and_pays_nothing_twice(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id, 4)
    first = await post_batch(client, body)

    again = await post_batch(client, body)

    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await row_count(database, Payment) == 4


async def test_the_same_batch_spelled_differently_is_still_the_same_batch(
    client: httpx.AsyncClient,
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id, 2)
    await post_batch(client, body)
    reordered = dict(reversed(list(body.items())))
    reordered["payments"] = [
        p | {"pay_by": p["pay_by"].replace("+00:00", "Z")} for p in body["payments"]
    ]

    again = await post_batch(client, reordered)

    assert again.status_code == 202, again.text
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_another_body_under_the_same_batch_id_is_422_and_changes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id, 2)
    await post_batch(client, body)
    changed = batch_body(provider_id, 3, batch_id=UUID(body["batch_id"]), prefix="Q")

    response = await post_batch(client, changed)

    assert_problem(response, 422)
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert await row_count(database, Payment) == 2


async def test_a_payment_number_already_accepted_in_another_batch_is_409(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    await post_batch(client, batch_body(provider_id, 3))
    overlapping = batch_body(provider_id, 5)  # the same numbers P000000..P000004

    response = await post_batch(client, overlapping)

    assert_problem(response, 409, "payments.0.payment_number")
    assert response.json()["type"].endswith("/duplicate-payment")
    assert await row_count(database, Payment) == 3
    assert await row_count(database, Batch) == 1


async def test_the_idempotency_key_is_required_and_must_be_the_batch_id(
    client: httpx.AsyncClient,
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id)
    key_only = {"Authorization": f"Bearer {api_key_for(provider_id)}"}

    missing = await client.post("/batches", json=body, headers=key_only)
    other = await client.post(
        "/batches", json=body, headers=key_only | {"Idempotency-Key": str(uuid7())}
    )

    assert_problem(missing, 400)
    assert missing.json()["type"].endswith("/idempotency-key-required")
    assert_problem(other, 422, "Idempotency-Key")


async def test_calls_without_a_known_api_key_are_401(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id)

    anonymous = await client.post("/batches", json=body, headers={"Authorization": ""})
    wrong = await client.post(
        "/batches",
        json=body,
        headers={"Authorization": "Bearer not-a-key-of-anyone-at-all-here"},
    )

    assert_problem(anonymous, 401)
    assert_problem(wrong, 401)


async def test_a_batch_for_another_provider_is_refused_naming_provider_id(
    client: httpx.AsyncClient,
) -> None:
    mine = await configure(client)
    theirs = await configure(client)
    body = batch_body(theirs)

    response = await post_batch(client, body, provider_id=mine)

    assert_problem(response, 422, "provider_id")


async def test_inconsistent_batches_are_422_naming_the_field(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)

    def with_payments(body: dict[str, Any], *payments: dict[str, Any]) -> dict[str, Any]:
        return body | {"payments": list(payments)}

    def first(body: dict[str, Any]) -> dict[str, Any]:
        payment: dict[str, Any] = body["payments"][0]
        return payment

    cases: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "payment_count": lambda b: b | {"payment_count": 9},
        "total_amount_minor": lambda b: b | {"total_amount_minor": 1},
        "currency": lambda b: b | {"currency": "XYZ"},
        "payments.1.currency": lambda b: with_payments(
            b, first(b), first(b) | {"currency": "UGX", "payment_number": "X1"}
        ),
        "payments.1.payment_number": lambda b: with_payments(b, first(b), first(b)),
        "payments.0.pay_by": lambda b: with_payments(
            b, first(b) | {"pay_by": "2030-01-01T00:00:00"}, b["payments"][1]
        ),
    }
    for field, change in cases.items():
        body = change(batch_body(provider_id, 2))

        response = await post_batch(client, body)

        assert_problem(response, 422, field)
    assert await row_count(database, Batch) == 0


async def test_bad_input_is_a_clear_4xx_never_a_500(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    body = batch_body(provider_id, 1)
    headers = psp_headers(provider_id, UUID(body["batch_id"]))
    control = body | {"payments": [body["payments"][0] | {"payment_number": "P\x00\u2028"}]}
    unknown_field = body | {"surprise": True}

    malformed = await client.post(
        "/batches", content=b'{"batch_id": ', headers=headers | {"content-type": "application/json"}
    )
    with_control = await client.post("/batches", json=control, headers=headers)
    with_unknown = await client.post("/batches", json=unknown_field, headers=headers)
    too_big = await client.post("/batches", content=b"x" * (TEST_BODY_LIMIT + 1), headers=headers)

    assert_problem(malformed, 400)
    assert_problem(with_control, 422, "payments.0.payment_number")
    assert_problem(with_unknown, 422, "surprise")
    assert_problem(too_big, 413)
    assert await row_count(database, Batch) == 0


async def test_get_batch_shows_each_payment_pending_until_its_result_happened(
    client: httpx.AsyncClient,
) -> None:
    provider_id = await configure(client, settle_delay_s=3600)
    body = batch_body(provider_id, 2)
    await post_batch(client, body)

    response = await client.get(f"/batches/{body['batch_id']}", headers=psp_headers(provider_id))

    assert response.status_code == 200, response.text
    status = response.json()
    assert status["status"] == "accepted"
    assert status["counts"] == {"pending": 2, "settled": 0, "failed": 0}
    assert [p["payment_number"] for p in status["payments"]] == ["P000000", "P000001"]
    assert all(p["provider_reference"] is None for p in status["payments"])


async def test_get_batch_shows_outcomes_once_due(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client, settle_delay_s=0, failure_rate=1.0)
    body = batch_body(provider_id, 2, mechanism="cash_pay_point")
    await post_batch(client, body)

    status = (
        await client.get(f"/batches/{body['batch_id']}", headers=psp_headers(provider_id))
    ).json()

    assert status["counts"] == {"pending": 0, "settled": 0, "failed": 2}
    assert status["status"] == "in_progress"  # due, not yet reported by webhook
    for payment in status["payments"]:
        assert payment["reason_code"] in {"AM04", "BE01", "MD07", "NCOL"}
        assert payment["reported"] is False


async def test_another_providers_batch_is_404(client: httpx.AsyncClient) -> None:
    mine = await configure(client)
    theirs = await configure(client)
    body = batch_body(theirs)
    await post_batch(client, body)

    response = await client.get(f"/batches/{body['batch_id']}", headers=psp_headers(mine))

    assert_problem(response, 404)


async def test_outcomes_are_decided_at_acceptance_from_the_seed(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client, failure_rate=0.5, seed=42)
    await post_batch(client, batch_body(provider_id, 200))

    async with database.sessionmaker() as session:
        failed = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.outcome == "failed")
        )

    expected = sum(
        decide_outcome(42, f"P{i:06d}", "mobile_money", 0.5, DEFAULT_REASON_MIX).status == "failed"
        for i in range(200)
    )
    assert failed == expected
    assert 70 <= expected <= 130


async def test_the_same_seed_gives_the_same_outcomes_another_seed_others(
    client: httpx.AsyncClient,
) -> None:
    outcomes = {}
    for name, seed in (("first", 5), ("same", 5), ("other", 6)):
        provider_id = await configure(client, failure_rate=0.5, seed=seed)
        body = batch_body(provider_id, 40)
        await post_batch(client, body)
        status = (
            await client.get(f"/batches/{body['batch_id']}", headers=psp_headers(provider_id))
        ).json()
        outcomes[name] = [
            (p["status"], p["reason_code"], p["provider_reference"]) for p in status["payments"]
        ]

    assert outcomes["first"] == outcomes["same"]
    assert outcomes["first"] != outcomes["other"]
