"""Signed settlement webhooks: verified, applied once, anomalies kept, answered per item."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.disbursement import PaymentFailedV1, PaymentSettledV1, PayrollReconciledV1
from disbursement.models import Payment, ReconciliationException, WebhookSecret

from .factories import (
    approve,
    assert_balanced,
    chunks,
    line,
    payments_of,
    register_provider,
    result,
    signed,
    webhook_body,
)

A = UUID("01930000-0000-7000-8000-0000000000a1")
B = UUID("01930000-0000-7000-8000-0000000000b2")


async def secret_for(client: httpx.AsyncClient, provider_id: UUID) -> str:
    response = await client.post(f"/channels/{provider_id}/webhook-secrets")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    secret: str = response.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


async def released(
    database: Database, count: int = 3, provider: UUID = A
) -> tuple[UUID, list[str]]:
    payroll = chunks([line(provider, index=i) for i in range(count)])
    await approve(database, payroll)
    payroll_id = payroll[0].payroll_id
    return payroll_id, [p.number for p in await payments_of(database, payroll_id)]


async def post(
    client: httpx.AsyncClient, secret: str, body: str, provider: UUID = A, **sign: Any
) -> httpx.Response:
    return await client.post(
        f"/webhooks/providers/{provider}", content=body, headers=signed(secret, body, **sign)
    )


@pytest.fixture
async def provider_a(database: Database) -> None:
    await register_provider(database, A)
    await register_provider(database, B)


async def test_results_are_applied_once_and_answered_per_item(
    client: httpx.AsyncClient, database: Database, provider_a: None
) -> None:
    secret = await secret_for(client, A)
    payroll_id, numbers = await released(database)
    body = webhook_body(
        result(numbers[0]),
        result(numbers[1], "failed", reason="AC04"),
        result(numbers[0]),
        result("P000000000000"),
    )

    response = await post(client, secret, body, webhook_id="msg_1")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["received"], answer["applied"], answer["duplicates"], answer["exceptions"]) == (
        4,
        2,
        1,
        1,
    )
    assert [r["outcome"] for r in answer["results"]] == [
        "applied",
        "applied",
        "duplicate",
        "exception",
    ]
    assert answer["results"][3]["exception"] == "unknown_payment"
    payments = {p.number: p for p in await payments_of(database, payroll_id)}
    assert payments[numbers[0]].status == "settled"
    assert payments[numbers[0]].fee_minor == 3000 + 3750, "the provider's fee model"
    assert payments[numbers[1]].status == "failed"
    assert payments[numbers[1]].reason_code == "AC04"
    events = await outbox_events(database)
    settled = [e for e in events if e.type == PaymentSettledV1.cloudevent_type()]
    failed = [PaymentFailedV1.model_validate(e.data) for e in events if e.name == "PaymentFailed"]
    assert len(settled) == 1 and len(failed) == 1
    assert failed[0].outcome == "failed" and not failed[0].retryable
    await assert_balanced(database, payroll_id)

    replay = await post(client, secret, body, webhook_id="msg_1")
    assert replay.status_code == 200
    assert replay.headers["webhook-replayed"] == "true"
    assert replay.json() == answer
    assert len(await outbox_events(database)) == len(events), "a replay applies nothing"

    reused = await post(client, secret, webhook_body(result(numbers[2])), webhook_id="msg_1")
    assert reused.status_code == 409


async def test_every_anomaly_is_kept_as_an_exception(
    client: httpx.AsyncClient, database: Database, provider_a: None
) -> None:
    secret = await secret_for(client, A)
    payroll_id, numbers = await released(database, 5)
    _, other_numbers = await released(database, 1, provider=B)
    await post(client, secret, webhook_body(result(numbers[0], reference="MP-1")))
    await post(client, secret, webhook_body(result(numbers[4], "failed", reason="NCOL")))

    response = await post(
        client,
        secret,
        webhook_body(
            result(numbers[0], reference="MP-2"),
            result(numbers[1], amount=1),
            result(numbers[2], currency="UGX"),
            result(other_numbers[0]),
            result(numbers[3], "reversed", reason="AC06"),
            result(numbers[4]),
            result(numbers[3], "failed", reason="XX99"),
        ),
    )

    assert response.status_code == 200
    kinds = [r["exception"] for r in response.json()["results"]]
    assert kinds == [
        "conflicting_settlement",
        "amount_mismatch",
        "currency_mismatch",
        "other_provider",
        "invalid_transition",
        "result_after_terminal",
        "unknown_reason_code",
    ]
    async with database.sessionmaker() as session:
        kept = (await session.scalars(select(ReconciliationException))).all()
    assert sorted(e.kind for e in kept) == sorted(kinds)
    other = next(e for e in kept if e.kind == "other_provider")
    assert other.payroll_id is None and other.payment_id is None, "no link to another's payment"
    payments = {p.number: p for p in await payments_of(database, payroll_id)}
    assert payments[numbers[0]].provider_reference == "MP-1", "the first settlement stands"
    assert payments[numbers[1]].status == "pending"
    await assert_balanced(database, payroll_id)


@pytest.mark.parametrize(
    "tamper",
    ["no-signature", "wrong-secret", "stale", "future", "changed-body", "garbage-signature"],
)
async def test_an_unauthentic_webhook_is_refused_and_applies_nothing(
    client: httpx.AsyncClient, database: Database, provider_a: None, tamper: str
) -> None:
    secret = await secret_for(client, A)
    payroll_id, numbers = await released(database, 1)
    body = webhook_body(result(numbers[0]))
    headers = signed(secret, body)
    if tamper == "no-signature":
        del headers["webhook-signature"]
    elif tamper == "wrong-secret":
        headers = signed("whsec_" + "A" * 43, body)
    elif tamper == "stale":
        headers = signed(secret, body, at=datetime.now(UTC) - timedelta(minutes=6))
    elif tamper == "future":
        headers = signed(secret, body, at=datetime.now(UTC) + timedelta(minutes=6))
    elif tamper == "changed-body":
        body = body.replace("REF-", "FER-")
    else:
        headers["webhook-signature"] = "v1 nonsense"

    response = await client.post(f"/webhooks/providers/{A}", content=body, headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await payments_of(database, payroll_id))[0].status == "pending"


async def test_a_webhook_for_a_provider_without_secret_is_refused(
    client: httpx.AsyncClient, provider_a: None
) -> None:
    body = webhook_body(result("P000000000109"))
    response = await client.post(
        f"/webhooks/providers/{B}", content=body, headers=signed("whsec_" + "B" * 43, body)
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ('{"type": "payment.results", "results": []}', 422),
        ('{"results": [{"payment_number": "P1"}]}', 422),
        (
            '{"type": "payment.results", "results": [{"payment_number": "P\\u0000", "status": '
            '"settled", "amount_minor": 1, "currency": "KES", "provider_reference": "x", '
            '"occurred_at": "2026-12-01T10:00:00Z"}]}',
            422,
        ),
    ],
)
async def test_a_malformed_body_is_a_4xx_after_the_signature(
    client: httpx.AsyncClient, provider_a: None, body: str, status: int
) -> None:
    secret = await secret_for(client, A)

    response = await post(client, secret, body)

    assert response.status_code == status, response.text


async def test_a_rotated_secret_verifies_during_the_overlap_only(
    client: httpx.AsyncClient, database: Database, provider_a: None
) -> None:
    old = await secret_for(client, A)
    new = await secret_for(client, A)
    _, numbers = await released(database, 2)

    assert (await post(client, old, webhook_body(result(numbers[0])))).status_code == 200
    assert (await post(client, new, webhook_body(result(numbers[1])))).status_code == 200
    listed = await client.get(f"/channels/{A}/webhook-secrets")
    assert [s["expires_at"] is None for s in listed.json()] == [True, False]
    assert "secret" not in listed.json()[0]

    async with database.sessionmaker() as session, session.begin():
        rows = (await session.scalars(select(WebhookSecret))).all()
        for row in rows:
            assert b"whsec_" not in row.secret, "sealed at rest"
            if row.expires_at is not None:
                row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    late = await post(client, old, webhook_body(result(numbers[1])))
    assert late.status_code == 401


async def test_the_last_result_reconciles_the_payroll(
    client: httpx.AsyncClient, database: Database, provider_a: None
) -> None:
    secret = await secret_for(client, A)
    payroll_id, numbers = await released(database, 3)

    await post(client, secret, webhook_body(result(numbers[0]), result(numbers[1])))
    await post(client, secret, webhook_body(result(numbers[2], "failed", reason="MD07")))
    await post(client, secret, webhook_body(result(numbers[0], "reversed", reason="AC06")))

    reconciliation = await client.get(f"/reconciliation/{payroll_id}")
    body = reconciliation.json()
    assert body["complete"] and body["balanced"]
    assert body["settled"] == {"count": 1, "amount_minor": 250_000}
    assert body["failed"]["count"] == 1 and body["reversed"]["count"] == 1
    assert body["payroll"]["status"] == "reconciled"
    events = [e for e in await outbox_events(database) if e.name == "PayrollReconciled"]
    assert len(events) == 1, "published once, when the last open payment ended"
    reconciled = PayrollReconciledV1.model_validate(events[0].data)
    assert reconciled.by_status["settled"].count == 2, "before the reversal came"
    export = await client.get(f"/reconciliation/{payroll_id}/export.csv")
    assert export.status_code == 200
    rows = export.text.strip().splitlines()
    assert rows[0].startswith("payment_number,household_number")
    assert len(rows) == 4


async def test_payments_are_traced_by_number_and_providers_see_their_own(
    client: httpx.AsyncClient, database: Database, settings: Any, provider_a: None
) -> None:
    from amana_common.testing.service import bearer

    payroll_id, numbers = await released(database, 1)
    traced = await client.get(f"/payments/{numbers[0]}")
    assert traced.status_code == 200
    assert traced.json()["payroll_id"] == str(payroll_id)
    assert traced.json()["household_number"] == "H0000000000"
    assert "recipient_given_name" not in traced.json()
    typo = numbers[0][:-2] + ("00" if numbers[0][-2:] != "00" else "01")
    assert (await client.get(f"/payments/{typo}")).status_code == 404

    own = bearer(settings, "provider", provider_id=A)
    other = bearer(settings, "provider", provider_id=B)
    assert (await client.get(f"/payments/{numbers[0]}", headers=own)).status_code == 200
    assert (await client.get(f"/payments/{numbers[0]}", headers=other)).status_code == 404
    listed = await client.get("/payments", headers=other)
    assert listed.json()["items"] == []
    async with database.sessionmaker() as session:
        assert (await session.scalars(select(Payment))).first() is not None
