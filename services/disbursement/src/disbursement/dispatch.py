"""Dispatch of `api` batches: `POST {base_url}/batches` with `Idempotency-Key: <batch id>`,
expecting 202.

One batch at a time per worker, in two short transactions around the call (no transaction is
held open over the network): the claim locks a due batch (SKIP LOCKED, so workers share the
work), consults the provider's circuit breaker, counts the attempt and leases the batch; the
record writes the outcome. A transient failure (network, timeout, 5xx, 408, 429) is retried
after an exponential backoff with jitter until `dispatch_max_attempts`; any other answer, a
refused URL or a missing credential stalls the batch for an operator (`POST
/batches/{id}/requeue`). A worker that dies mid-call leaves a leased batch that is retried
when the lease ends; the provider answers the retry like the first call (same key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import Database
from amana_common.guarded_http import guarded_client
from amana_common.outbound import UnsafeUrl
from amana_common.tracing import traced_job
from amana_contracts.psp import BatchPayment, BatchRecipient, PaymentBatch
from amana_contracts.registry import AccountV1, IdentifierV1
from disbursement import domain, repository, service
from disbursement.files import recipient_name
from disbursement.models import Batch, Payment, Provider, ProviderBreaker
from disbursement.settings import DisbursementSettings

log = logging.getLogger("amana.disbursement.dispatch")


@dataclass(frozen=True)
class Claim:
    batch_id: UUID
    provider_id: UUID
    url: str
    body: bytes
    credential: str


@dataclass(frozen=True)
class CallOutcome:
    accepted: bool
    retryable: bool
    error: str | None = None


class Stall(Exception):
    """The batch cannot be sent as things are; an operator must act."""


def batch_body(batch: Batch, payments: list[Payment], provider: Provider) -> bytes:
    body = PaymentBatch(
        batch_id=batch.id,
        provider_id=batch.provider_id,
        currency=batch.currency,
        payment_count=len(payments),
        total_amount_minor=sum(p.amount_minor for p in payments),
        payments=[_batch_payment(p, provider.pay_point_codes) for p in payments],
    )
    return body.model_dump_json().encode()


def _batch_payment(payment: Payment, pay_point_codes: dict[str, str]) -> BatchPayment:
    return BatchPayment(
        payment_number=payment.number,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        mechanism=payment.mechanism,
        recipient=BatchRecipient(
            name=recipient_name(payment),
            identifier=(
                IdentifierV1.model_validate(payment.recipient_identifier)
                if payment.recipient_identifier
                else None
            ),
            phone=payment.recipient_phone,
        ),
        account=AccountV1.model_validate(payment.account) if payment.account else None,
        pay_point_code=pay_point_codes.get(str(payment.pay_point_id)),
        pay_by=payment.pay_by,
    )


class Dispatcher:
    def __init__(self, settings: DisbursementSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.cooldown = timedelta(seconds=settings.breaker_cooldown_s)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = self.settings.dispatch_timeout_s
        async with guarded_client(self.settings.is_production, timeout) as client:
            while not stop.is_set():
                try:
                    worked = await self.dispatch_once(client)
                except Exception as error:  # the database is down: try again later
                    log.warning("dispatch failed, retrying: %r", error)
                    worked = False
                if not worked:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.dispatch_interval_s)

    async def dispatch_once(self, client: httpx.AsyncClient) -> bool:
        """Sends one due batch; False when none was due."""
        async with self.database.sessionmaker() as session, session.begin():
            batch = await repository.claim_due_api_batch(session, _now())
            if batch is None:
                return False
            claim = await self._claim(session, batch, _now())
        if claim is None:
            return True
        with traced_job("disbursement.dispatch", batch_id=str(claim.batch_id)):
            outcome = await self._call(client, claim)
            async with self.database.sessionmaker() as session, session.begin():
                await self._record(session, claim, outcome, _now())
        return True

    async def _claim(self, session: AsyncSession, batch: Batch, now: datetime) -> Claim | None:
        breaker_row = await repository.lock_breaker(session, batch.provider_id)
        breaker = domain.Breaker(
            domain.BreakerState(breaker_row.state),
            breaker_row.consecutive_failures,
            breaker_row.opened_at,
        )
        admitted = breaker.admits(now, self.cooldown)
        if admitted is None:
            batch.next_attempt_at = now + self.cooldown
            return None
        _save_breaker(breaker_row, admitted)
        batch.attempts += 1
        batch.next_attempt_at = now + timedelta(seconds=self.settings.dispatch_lease_s)
        try:
            return await self._prepare(session, batch)
        except Stall as stall:
            _stall(batch, str(stall))
            return None

    async def _prepare(self, session: AsyncSession, batch: Batch) -> Claim:
        provider = await repository.get_provider(session, batch.provider_id)
        assert provider is not None and provider.base_url is not None
        try:
            base = self.settings.api_url_policy().check(provider.base_url)
        except UnsafeUrl as error:
            raise Stall(f"the provider's URL is refused: the URL {error}") from error
        key = self.settings.secrets_key_bytes()
        credential = await service.api_credential(session, provider.id, key)
        if credential is None:
            raise Stall("the provider has no API credential: set it, then requeue")
        payments = await repository.payments_of_batch(session, batch.id)
        return Claim(
            batch.id,
            provider.id,
            base.rstrip("/") + "/batches",
            batch_body(batch, payments, provider),
            credential,
        )

    async def _call(self, client: httpx.AsyncClient, claim: Claim) -> CallOutcome:
        headers = {
            "Idempotency-Key": str(claim.batch_id),
            "Authorization": f"Bearer {claim.credential}",
            "Content-Type": "application/json",
        }
        try:
            response = await client.post(claim.url, content=claim.body, headers=headers)
        except UnsafeUrl as error:
            return CallOutcome(False, False, f"the provider's address is refused: it {error}")
        except httpx.HTTPError as error:
            return CallOutcome(False, True, f"{type(error).__name__}: {error}"[:500])
        if response.status_code == 202:
            return CallOutcome(True, False)
        retryable = domain.is_retryable_http_status(response.status_code)
        return CallOutcome(False, retryable, f"the provider answered {response.status_code}")

    async def _record(
        self, session: AsyncSession, claim: Claim, outcome: CallOutcome, now: datetime
    ) -> None:
        batch = await repository.get_batch(session, claim.batch_id, lock=True)
        breaker_row = await repository.lock_breaker(session, claim.provider_id)
        assert batch is not None
        breaker = domain.Breaker(
            domain.BreakerState(breaker_row.state),
            breaker_row.consecutive_failures,
            breaker_row.opened_at,
        )
        if outcome.accepted:
            _save_breaker(breaker_row, breaker.succeeded())
            await service.mark_sent(session, batch, now)
            return
        batch.last_error = outcome.error
        if outcome.retryable:
            _save_breaker(breaker_row, breaker.failed(now, self.settings.breaker_threshold))
        if outcome.retryable and batch.attempts < self.settings.dispatch_max_attempts:
            delay = domain.backoff_delay(
                batch.attempts,
                self.settings.dispatch_backoff_base_s,
                self.settings.dispatch_backoff_cap_s,
                random.random(),  # noqa: S311 - jitter, not a secret
            )
            batch.next_attempt_at = now + timedelta(seconds=delay)
        else:
            _stall(batch, outcome.error or "refused")
        log.warning("batch %s attempt %s failed: %s", batch.id, batch.attempts, outcome.error)


def _stall(batch: Batch, error: str) -> None:
    batch.status = "stalled"
    batch.last_error = error[:500]
    batch.version += 1


def _save_breaker(row: ProviderBreaker, breaker: domain.Breaker) -> None:
    row.state = breaker.state.value
    row.consecutive_failures = breaker.consecutive_failures
    row.opened_at = breaker.opened_at


def _now() -> datetime:
    return datetime.now(UTC)
