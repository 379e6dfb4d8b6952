"""The whole disbursement cycle over real Kafka, PostgreSQL and HTTP: a PayrollApproved produced
onto `payroll.events` is consumed, released as payments and batches, dispatched to a provider's
API, settled by signed webhooks that arrive duplicated, replayed and re-sent under new ids, and
reconciled. No payment is settled twice and the reconciliation equality holds.

The provider here is an HTTP server of the test's own that answers like a PSP (202, honours
Idempotency-Key) and signs its webhooks with the standardwebhooks library.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from services.disbursement.tests.factories import chunks, line, provider_snapshot
from sqlalchemy import select
from standardwebhooks import Webhook
from uuid6 import uuid7

from amana_common.auth import Role, issue_token
from amana_common.db import Database
from amana_common.events import build_event
from amana_common.kafka import KafkaConnection
from amana_common.outbox import OutboxRelay
from amana_common.testing.clients import TopicReader, eventually, running, serving
from amana_common.testing.databases import clear_service_tables, committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.topics import ensure_topics
from amana_contracts.envelope import dead_letter_topic, topic_for
from amana_contracts.psp import PaymentBatch
from disbursement.dispatch import Dispatcher
from disbursement.main import create_disbursement_app
from disbursement.models import Base, Payment, Payroll
from disbursement.settings import DisbursementSettings
from disbursement.worker import event_consumer

from .conftest import REPO

PROVIDER = UUID("01930000-0000-7000-8000-0000000000e1")
LINES = 240


class SandboxPsp:
    """Accepts batches (202, once per Idempotency-Key), then reports every payment by signed
    webhooks: each posted twice, one replayed at the end, and every result re-sent under a
    fresh webhook id."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.accepted: dict[str, PaymentBatch] = {}
        self.deliveries: list[asyncio.Task[None]] = []
        self.answers: list[tuple[bool, dict[str, Any]]] = []  # (replayed, answer)
        self.replay: tuple[str, dict[str, str]] | None = None
        self.secret = ""
        self.webhook_url = ""
        self.first_calls = 1  # answered 503 before accepting, to exercise the retry

        @self.app.post("/v1/batches")
        async def batches(request: Request) -> JSONResponse:
            if self.first_calls:
                self.first_calls -= 1
                return JSONResponse({"error": "warming up"}, status_code=503)
            key = request.headers["idempotency-key"]
            batch = PaymentBatch.model_validate_json(await request.body())
            if key not in self.accepted:
                self.accepted[key] = batch
                self.deliveries.append(asyncio.create_task(self.settle(batch)))
            body = {"batch_id": str(batch.batch_id), "accepted": batch.payment_count}
            return JSONResponse(body, status_code=202)

    async def settle(self, batch: PaymentBatch) -> None:
        rng = random.Random(str(batch.batch_id))
        results: list[dict[str, Any]] = [
            {
                "payment_number": p.payment_number,
                "status": "failed" if rng.random() < 0.1 else "settled",
                "amount_minor": p.amount_minor,
                "currency": p.currency,
                "provider_reference": f"PSP-{p.payment_number}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "reason_code": "AC01" if rng.random() < 0.5 else "NCOL",
            }
            for p in batch.payments
        ]
        for result in results:
            if result["status"] == "settled":
                result["reason_code"] = None
        async with httpx.AsyncClient(timeout=30) as http:
            for start in range(0, len(results), 20):
                part = results[start : start + 20]
                body = json.dumps({"type": "payment.results", "results": part})
                headers = self.sign(body)
                for _ in range(2):  # delivered twice: the same webhook-id
                    await self.post(http, body, headers)
                self.replay = self.replay or (body, headers)
                await self.post(http, body, self.sign(body))  # the same results, a new id

    def sign(self, body: str) -> dict[str, str]:
        webhook_id = f"msg_{uuid7().hex}"
        now = datetime.now(UTC)
        signature = Webhook(self.secret).sign(webhook_id, now, body)
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }

    async def post(self, http: httpx.AsyncClient, body: str, headers: dict[str, str]) -> None:
        response = await http.post(self.webhook_url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        self.answers.append((response.headers.get("webhook-replayed") == "true", response.json()))


@pytest.fixture(scope="session")
async def disbursement_url(migrated_database: MigratedDatabase) -> str:
    return await migrated_database(
        "disbursement", REPO / "services" / "disbursement", "integration"
    )


@pytest.fixture
async def disbursement_db(disbursement_url: str) -> AsyncIterator[Database]:
    async with committing_database(disbursement_url) as database:
        await clear_service_tables(database, Base.metadata)
        yield database


async def skip_history(bootstrap: str, group: str) -> None:
    """The consumer group starts at the topics' ends: earlier runs' events are not ours."""
    consumer = AIOKafkaConsumer(
        topic_for("payroll"),
        topic_for("provider"),
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        await consumer.seek_to_end(*consumer.assignment())
        for partition in consumer.assignment():
            await consumer.position(partition)
        await consumer.commit()
    finally:
        await consumer.stop()


def payroll_chunks() -> list[Any]:
    lines = [line(PROVIDER, 100_000 + 7 * i, i) for i in range(LINES)]
    return chunks(lines, per_chunk=100)


def provider_registered(base_url: str) -> Any:
    return provider_snapshot(PROVIDER, base_url=base_url)


async def test_the_whole_cycle_pays_each_payment_once_and_reconciles(
    disbursement_url: str, disbursement_db: Database, kafka_bootstrap: str
) -> None:
    settings = DisbursementSettings(
        database_url=disbursement_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        allowed_api_hosts=["127.0.0.1"],
        batch_size=50,
        dispatch_interval_s=0.1,
        dispatch_backoff_base_s=0.2,
        dispatch_backoff_cap_s=0.5,
    )
    # payroll.events is created by the catalog once payroll is cataloged; until then, here.
    payroll_topics = [topic_for("payroll"), dead_letter_topic(topic_for("payroll"))]
    await ensure_topics(KafkaConnection(kafka_bootstrap), payroll_topics)
    group = f"disbursement-it-{uuid7().hex[:8]}"
    await skip_history(kafka_bootstrap, group)
    consumer = event_consumer(settings, disbursement_db, group_id=group)
    psp = SandboxPsp()
    admin = {"Authorization": f"Bearer {issue_token(settings, 'it-admin', [Role.admin])}"}

    async with (
        serving(create_disbursement_app(settings)) as amana,
        serving(psp.app) as psp_url,
        TopicReader(kafka_bootstrap, topic_for("disbursement")) as reader,
        AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all") as producer,
    ):
        psp.webhook_url = f"{amana}/webhooks/providers/{PROVIDER}"
        chunks = payroll_chunks()
        payroll_id = chunks[0].payroll_id
        async with running(consumer):
            snapshot = build_event(provider_registered(psp_url + "/v1"))
            await producer.send_and_wait(
                topic_for("provider"),
                snapshot.model_dump_json().encode(),
                key=snapshot.subject.encode(),
            )

            async def provider_known() -> bool:
                async with httpx.AsyncClient(base_url=amana, headers=admin) as http:
                    return (
                        await http.get(f"/channels/{PROVIDER}/webhook-secrets")
                    ).status_code == 200

            await eventually(provider_known, timeout_s=30)
            async with httpx.AsyncClient(base_url=amana, headers=admin) as http:
                created = await http.post(f"/channels/{PROVIDER}/webhook-secrets")
                psp.secret = created.json()["secret"]
                credential = {"credential": "sandbox-token-0123456789"}
                assert (
                    await http.put(f"/channels/{PROVIDER}/api-credential", json=credential)
                ).status_code == 204
            for chunk in reversed(chunks):  # out of order, and one chunk twice
                for _ in range(2 if chunk.chunk_index == 1 else 1):
                    event = build_event(chunk)
                    await producer.send_and_wait(
                        topic_for("payroll"),
                        event.model_dump_json().encode(),
                        key=event.subject.encode(),
                    )

            relay = OutboxRelay(
                "disbursement", disbursement_db.sessionmaker, KafkaConnection(kafka_bootstrap)
            )
            async with running(Dispatcher(settings, disbursement_db), relay):

                async def reconciled() -> bool:
                    async with disbursement_db.sessionmaker() as session:
                        payroll = await session.get(Payroll, payroll_id)
                        return payroll is not None and payroll.status == "reconciled"

                await eventually(reconciled, timeout_s=120, interval_s=0.5)
                async with httpx.AsyncClient(base_url=amana, headers=admin) as http:
                    export = await http.get(f"/reconciliation/{payroll_id}/export.csv")
                assert export.status_code == 200
                assert len(export.text.splitlines()) == LINES + 1, "a header and every payment"
                await asyncio.gather(*psp.deliveries)
                assert psp.replay is not None
                async with httpx.AsyncClient() as http:
                    await psp.post(http, *psp.replay)  # a replay after the fact
                await reader.read_until(
                    lambda records: any(b"PayrollReconciled" in (r.value or b"") for r in records),
                    timeout_s=30,
                )

    events = [e for e in reader.events() if e.data.get("payroll_id") == str(payroll_id)]
    outcomes = Counter(
        e.data["payment_number"] for e in events if e.name in ("PaymentSettled", "PaymentFailed")
    )
    assert len(outcomes) == LINES, "every payment has an outcome"
    assert set(outcomes.values()) == {1}, "no payment settled or failed twice"
    assert sum(e.name == "PayrollReconciled" for e in events) == 1
    assert len(psp.accepted) == 5, "five batches of 50, each accepted once"
    first_answers = [answer for replayed, answer in psp.answers if not replayed]
    assert sum(a["applied"] for a in first_answers) == LINES
    assert sum(a["duplicates"] for a in first_answers) == LINES, "the results re-sent"
    assert sum(a["exceptions"] for a in first_answers) == 0
    replays = [answer for replayed, answer in psp.answers if replayed]
    assert len(replays) == len(first_answers) // 2 + 1, "each delivered twice, one replayed"
    async with disbursement_db.sessionmaker() as session:
        payments = (
            await session.scalars(select(Payment).where(Payment.payroll_id == payroll_id))
        ).all()
        payroll = await session.get(Payroll, payroll_id)
    assert payroll is not None
    by_status = Counter(p.status for p in payments)
    assert set(by_status) <= {"settled", "failed"}
    assert sum(by_status.values()) == payroll.line_count == LINES
    assert sum(p.amount_minor for p in payments) == payroll.total_amount_minor
    summary = next(e for e in events if e.name == "PayrollReconciled").data
    assert summary["by_status"]["settled"]["count"] == by_status["settled"]
    assert summary["by_status"]["failed"]["count"] == by_status["failed"]
    assert (
        sum(v["amount_minor"] for v in summary["by_status"].values()) == payroll.total_amount_minor
    )
