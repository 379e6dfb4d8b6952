"""A small stand-in for Amana's webhook endpoint, for the sandbox's own tests: it verifies
signatures with the `standardwebhooks` library (timestamp within 5 minutes), applies each
webhook-id once (a webhook-id seen before is answered as the first time, with
`Webhook-Replayed: true`, as disbursement does; or 409), and answers per result as the
contract says (applied, duplicate, or an exception: unknown payment, amount mismatch,
conflicting settlement, result after expiry)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from amana_common.testing.clients import serving
from amana_contracts.psp import PaymentResult, ResultOutcome, ResultsWebhook, WebhookAnswer


@dataclass(frozen=True)
class Expected:
    amount_minor: int
    pay_by: datetime


@dataclass
class Call:
    webhook_id: str | None
    status_code: int
    payment_numbers: list[str]


@dataclass
class Receiver:
    secret: str
    payments: dict[str, Expected] = field(default_factory=dict)
    fail_first: int = 0
    delay_s: float = 0.0
    calls: list[Call] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    outcomes: dict[str, PaymentResult] = field(default_factory=dict)
    carried_by: dict[str, set[str]] = field(default_factory=dict)
    seen_answer: Literal["first", "409"] = "first"
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    verify: bool = True
    """False: a careless receiver that takes unsigned and forged webhooks (the sandbox's
    verdicts must then say so)."""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhooks/providers/{provider_id}")
        async def receive(provider_id: str, request: Request) -> JSONResponse:
            return await self.receive(request)

        return app

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        webhook_id = request.headers.get("webhook-id")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_first > 0:
            self.fail_first -= 1
            return self._answer(webhook_id, 503, {"detail": "down for the test"}, [])
        try:
            if self.verify:
                Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError) as error:
            return self._answer(webhook_id, 401, {"detail": str(error)}, [])
        webhook = ResultsWebhook.model_validate_json(body)
        numbers = [result.payment_number for result in webhook.results]
        assert webhook_id is not None
        if webhook_id in self.seen_ids:
            if self.seen_answer == "409":
                return self._answer(webhook_id, 409, {"detail": "webhook-id seen"}, numbers)
            first = self.answers[webhook_id]
            return self._answer(webhook_id, 200, first, numbers, {"Webhook-Replayed": "true"})
        self.seen_ids.add(webhook_id)
        for number in numbers:
            self.carried_by.setdefault(number, set()).add(webhook_id)
        outcomes = [self._apply(result) for result in webhook.results]
        answer = WebhookAnswer(
            received=len(outcomes),
            applied=sum(o.outcome == "applied" for o in outcomes),
            duplicates=sum(o.outcome == "duplicate" for o in outcomes),
            exceptions=sum(o.outcome == "exception" for o in outcomes),
            results=outcomes,
        )
        self.answers[webhook_id] = answer.model_dump(mode="json")
        return self._answer(webhook_id, 200, self.answers[webhook_id], numbers)

    def _answer(
        self,
        webhook_id: str | None,
        status: int,
        body: object,
        numbers: list[str],
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        self.calls.append(Call(webhook_id, status, numbers))
        return JSONResponse(body, status_code=status, headers=headers)

    def _apply(self, result: PaymentResult) -> ResultOutcome:
        number = result.payment_number
        expected = self.payments.get(number)
        if expected is None:
            return ResultOutcome(
                payment_number=number, outcome="exception", exception="unknown_payment"
            )
        if result.amount_minor != expected.amount_minor:
            return ResultOutcome(
                payment_number=number, outcome="exception", exception="amount_mismatch"
            )
        if result.occurred_at > expected.pay_by:
            return ResultOutcome(
                payment_number=number, outcome="exception", exception="result_after_expiry"
            )
        earlier = self.outcomes.get(number)
        if earlier is not None:
            if earlier.provider_reference == result.provider_reference:
                return ResultOutcome(payment_number=number, outcome="duplicate")
            return ResultOutcome(
                payment_number=number, outcome="exception", exception="conflicting_settlement"
            )
        self.outcomes[number] = result
        return ResultOutcome(payment_number=number, outcome="applied")

    def ok_calls(self) -> list[Call]:
        return [call for call in self.calls if call.status_code == 200]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    """Serves the receiver on a free loopback port; answers its base URL."""
    async with serving(receiver.app()) as base_url:
        yield base_url
