"""Sandbox use cases. They take the caller's session and never commit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.errors import Problem
from amana_common.etag import IfMatch
from amana_contracts.psp import BatchAccepted, PaymentBatch, ResultsWebhook
from psp_sandbox import domain, repository
from psp_sandbox.domain import (
    GENUINE,
    PLANNING_FAULTS,
    REQUEST_FAULTS,
    ActiveFault,
    DueResult,
    FaultKind,
    Injection,
    Plan,
    RequestDecision,
)
from psp_sandbox.models import Delivery, Fault, Payment, SandboxProvider
from psp_sandbox.schemas import (
    BatchStatusOut,
    FaultsIn,
    PaymentStatusOut,
    ProviderConfigIn,
    StatusCounts,
)

MAX_NAMED_ERRORS = 20


def key_hash(api_key: str) -> str:
    """API keys are long random tokens, so a plain SHA-256 is enough to keep them unreadable
    and still find the provider by its key in one indexed lookup."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _not_found(kind: str, identifier: object) -> Problem:
    return Problem(404, f"{kind}-not-found", f"No {kind.replace('-', ' ')} {identifier}")


# --- provider accounts ---------------------------------------------------------------------


async def configure_provider(
    session: AsyncSession,
    provider_id: UUID,
    body: ProviderConfigIn,
    if_match: IfMatch | None,
    now: datetime,
) -> tuple[SandboxProvider, bool]:
    """Creates or replaces a simulated provider account; answers it and whether it is new."""
    owner = await repository.key_hash_owner(session, key_hash(body.api_key))
    if owner is not None and owner != provider_id:
        raise Problem(409, "api-key-in-use", "another provider account uses this api_key")
    values = _config_values(body)
    try:
        created = await repository.insert_provider(
            session,
            {"id": provider_id, "version": 1, "created_at": now, "updated_at": now} | values,
        )
    except IntegrityError as error:
        raise Problem(
            409, "api-key-in-use", "another provider account uses this api_key"
        ) from error
    provider = await repository.lock_provider(session, provider_id)
    assert provider is not None
    if created:
        return provider, True
    if if_match is not None:
        if_match.require(provider.version)
    for name, value in values.items():
        setattr(provider, name, value)
    provider.version += 1
    provider.updated_at = now
    await session.flush()
    return provider, False


def _config_values(body: ProviderConfigIn) -> dict[str, Any]:
    return {
        "api_key_hash": key_hash(body.api_key),
        "webhook_url": body.webhook_url,
        "webhook_secret": body.webhook_secret,
        "settle_delay_s": body.settle_delay_s,
        "failure_rate": body.failure_rate,
        "reason_mix": dict(body.reason_mix),
        "results_per_webhook": body.results_per_webhook,
        "seed": body.seed,
    }


async def get_provider(session: AsyncSession, provider_id: UUID) -> SandboxProvider:
    provider = await repository.get_provider(session, provider_id)
    if provider is None:
        raise _not_found("provider", provider_id)
    return provider


async def authenticate(session: AsyncSession, api_key: str) -> SandboxProvider | None:
    return await repository.provider_by_key_hash(session, key_hash(api_key))


# --- faults --------------------------------------------------------------------------------


def active(fault: Fault) -> ActiveFault:
    remaining = None if fault.max_count is None else fault.max_count - fault.applied
    return ActiveFault(fault.id, FaultKind(fault.kind), fault.params, remaining, fault.seed)


def fault_in_force(fault: Fault, now: datetime) -> bool:
    return (
        fault.cleared_at is None
        and (fault.active_until is None or fault.active_until > now)
        and (fault.max_count is None or fault.applied < fault.max_count)
    )


async def replace_faults(
    session: AsyncSession, provider_id: UUID | None, body: FaultsIn, now: datetime
) -> list[Fault]:
    """Ends the scope's faults (one provider's, or those for every provider) and puts `body`'s
    in force instead."""
    if provider_id is not None:
        await get_provider(session, provider_id)
    await repository.clear_faults(session, now, provider_id)
    faults = [
        Fault(
            id=uuid7(),
            provider_id=provider_id,
            kind=fault.kind.value,
            params=fault.params(),
            max_count=fault.count,
            active_until=None if fault.for_s is None else now + timedelta(seconds=fault.for_s),
            seed=fault.seed,
            seen=0,
            applied=0,
            created_at=now,
        )
        for fault in body.faults
    ]
    session.add_all(faults)
    await session.flush()
    return faults


async def clear_every_fault(session: AsyncSession, now: datetime) -> None:
    await repository.clear_faults(session, now, None, every_scope=True)


async def request_faults(
    session: AsyncSession, provider_id: UUID, call: str, now: datetime
) -> RequestDecision:
    """What the faults in force do to this call of the PSP API (`call`: method and route).
    A lost answer (500 after the work) is logged by `log_lost_answer` with its batch."""
    faults = await repository.faults_in_force(
        session, [provider_id], [kind.value for kind in REQUEST_FAULTS], now, lock=True
    )
    if not faults:
        return RequestDecision()
    rated = [fault.id for fault in faults if fault.kind == FaultKind.error_500]
    seen = await repository.count_calls(session, rated)
    states = [active(fault) for fault in faults]
    decision = domain.decide_request(states, seen)
    await repository.add_applications(session, {state.id: state.taken for state in states})
    # A lost answer is logged with the batch it lost, in the transaction that accepted it.
    logged = [
        injection
        for injection in decision.injections
        if not (decision.answer == "error_after_accept" and injection.kind is FaultKind.error_500)
    ]
    await _log_injections(session, logged, provider_id, now, detail={"call": call})
    return decision


async def log_lost_answer(
    session: AsyncSession,
    decision: RequestDecision,
    provider_id: UUID,
    batch_id: UUID,
    now: datetime,
) -> None:
    """In the transaction that accepted the batch: its 202 is replaced by a 500."""
    lost = [i for i in decision.injections if i.kind is FaultKind.error_500]
    await _log_injections(session, lost, provider_id, now, batch_id=batch_id)


async def _log_injections(
    session: AsyncSession,
    injections: Sequence[Injection],
    provider_id: UUID | None,
    now: datetime,
    *,
    batch_id: UUID | None = None,
    delivery_ids: Sequence[UUID] = (),
    detail: dict[str, Any] | None = None,
) -> None:
    await repository.insert_injections(
        session,
        [
            {
                "id": uuid7(),
                "fault_id": injection.fault_id,
                "kind": injection.kind.value,
                "provider_id": provider_id,
                "batch_id": batch_id,
                "payment_number": injection.payment_number,
                "delivery_id": (
                    None if injection.delivery_key is None else delivery_ids[injection.delivery_key]
                ),
                "detail": dict(injection.detail) | (detail or {}),
                "injected_at": now,
            }
            for injection in injections
        ],
    )


# --- batches -------------------------------------------------------------------------------


async def accept_batch(
    session: AsyncSession, provider: SandboxProvider, batch: PaymentBatch, now: datetime
) -> tuple[BatchAccepted, bool]:
    """Accepts the batch and decides each payment's outcome; the same batch again is answered
    as the first (and the second answer says it is a replay). Answers (answer, replayed)."""
    errors = domain.batch_errors(batch, provider.id)
    if errors:
        raise _field_errors(errors)
    fingerprint = domain.batch_fingerprint(batch)
    accepted = BatchAccepted(batch_id=batch.batch_id, accepted=len(batch.payments))
    inserted = await repository.insert_batch(
        session,
        {
            "id": batch.batch_id,
            "provider_id": provider.id,
            "fingerprint": fingerprint,
            "currency": batch.currency,
            "payment_count": batch.payment_count,
            "total_amount_minor": batch.total_amount_minor,
            "accepted_at": now,
        },
    )
    if not inserted:
        existing = await repository.get_batch(session, batch.batch_id)
        if (
            existing is None
            or existing.provider_id != provider.id
            or (existing.fingerprint != fingerprint)
        ):
            raise Problem(
                422,
                "idempotency-key-reused",
                "this batch id was already used for a different batch",
            )
        return accepted, True
    await _store_payments(session, provider, batch, now)
    return accepted, False


def _field_errors(errors: Sequence[domain.FieldError]) -> Problem:
    shown = [{"field": e.field, "in": "body", "message": e.message} for e in errors]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return Problem(422, "validation-error", detail, errors=shown[:MAX_NAMED_ERRORS])


async def _store_payments(
    session: AsyncSession, provider: SandboxProvider, batch: PaymentBatch, now: datetime
) -> None:
    numbers = [payment.payment_number for payment in batch.payments]
    taken = set(await repository.numbers_taken(session, provider.id, numbers))
    if taken:
        raise _duplicate_payments(numbers, taken)
    late = await _late_results(session, provider.id, batch, now)
    rows = []
    for payment in batch.payments:
        outcome = domain.decide_outcome(
            provider.seed,
            payment.payment_number,
            payment.mechanism,
            provider.failure_rate,
            provider.reason_mix,
        )
        late_by = late.get(payment.payment_number)
        rows.append(
            {
                "batch_id": batch.batch_id,
                "provider_id": provider.id,
                "payment_number": payment.payment_number,
                "amount_minor": payment.amount_minor,
                "currency": payment.currency,
                "mechanism": payment.mechanism,
                "pay_by": payment.pay_by,
                "outcome": outcome.status,
                "reason_code": outcome.reason_code,
                "provider_reference": outcome.provider_reference,
                "result_due_at": domain.result_due_at(
                    now, provider.settle_delay_s, payment.pay_by, late_by
                ),
                "late": late_by is not None,
            }
        )
    try:
        await repository.insert_payments(session, rows)
    except IntegrityError as error:  # a concurrent batch took a number meanwhile
        raise Problem(
            409, "duplicate-payment", "a payment number of this batch was accepted meanwhile"
        ) from error


def _duplicate_payments(numbers: Sequence[str], taken: set[str]) -> Problem:
    errors = [
        {
            "field": f"payments.{index}.payment_number",
            "in": "body",
            "message": "was already accepted in another batch: it would be paid twice",
        }
        for index, number in enumerate(numbers)
        if number in taken
    ]
    return Problem(
        409,
        "duplicate-payment",
        f"{len(taken)} payment numbers were already accepted in another batch",
        errors=errors[:MAX_NAMED_ERRORS],
    )


async def _late_results(
    session: AsyncSession, provider_id: UUID, batch: PaymentBatch, now: datetime
) -> dict[str, float]:
    """Payment number -> seconds after pay_by, for the payments a late_result fault takes."""
    faults = await repository.faults_in_force(
        session, [provider_id], [FaultKind.late_result.value], now, lock=True
    )
    late: dict[str, float] = {}
    injections: list[Injection] = []
    for fault in map(active, faults):
        waiting = [p for p in batch.payments if p.payment_number not in late]
        for payment in waiting[: fault.take(len(waiting))] if waiting else []:
            late[payment.payment_number] = float(fault.params["after_s"])
            injections.append(Injection(fault.id, fault.kind, payment.payment_number))
        await repository.add_applications(session, {fault.id: fault.taken})
    await _log_injections(session, injections, provider_id, now, batch_id=batch.batch_id)
    return late


async def batch_status(
    session: AsyncSession, provider: SandboxProvider, batch_id: UUID, now: datetime
) -> BatchStatusOut:
    batch = await repository.get_batch(session, batch_id)
    if batch is None or batch.provider_id != provider.id:
        raise _not_found("batch", batch_id)
    payments = [
        _payment_status(row.Payment, row.delivery_status, now)
        for row in await repository.batch_payments(session, batch_id)
    ]
    counts = StatusCounts(
        pending=sum(p.status == "pending" for p in payments),
        settled=sum(p.status == "settled" for p in payments),
        failed=sum(p.status == "failed" for p in payments),
    )
    return BatchStatusOut(
        batch_id=batch.id,
        provider_id=batch.provider_id,
        status=_batch_state(counts, payments),
        currency=batch.currency,
        payment_count=batch.payment_count,
        total_amount_minor=batch.total_amount_minor,
        accepted_at=batch.accepted_at,
        counts=counts,
        payments=payments,
    )


def _payment_status(
    payment: Payment, delivery_status: str | None, now: datetime
) -> PaymentStatusOut:
    """A payment's outcome shows once its result happened, not before."""
    happened = payment.result_due_at <= now
    return PaymentStatusOut(
        payment_number=payment.payment_number,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status=payment.outcome if happened else "pending",
        reason_code=payment.reason_code if happened else None,
        provider_reference=payment.provider_reference if happened else None,
        result_at=payment.result_due_at if happened else None,
        reported=delivery_status == "delivered",
    )


def _batch_state(counts: StatusCounts, payments: Sequence[PaymentStatusOut]) -> Any:
    if counts.pending == len(payments):
        return "accepted"
    if counts.pending == 0 and all(p.reported for p in payments):
        return "completed"
    return "in_progress"


# --- settlement: due results become planned webhooks ---------------------------------------


def new_webhook_id() -> str:
    return f"msg_{uuid7().hex}"


async def plan_due_results(
    session: AsyncSession,
    now: datetime,
    limit: int,
    webhook_id: Callable[[], str] = new_webhook_id,
) -> int:
    """Cuts the results that fell due into signed-webhook deliveries, per provider, with the
    faults in force; answers how many results were planned."""
    due = await repository.claim_due_payments(session, now, limit)
    if not due:
        return 0
    provider_ids = {payment.provider_id for payment in due}
    providers = await repository.providers_by_id(session, provider_ids)
    faults = await repository.faults_in_force(
        session, provider_ids, [kind.value for kind in PLANNING_FAULTS], now, lock=True
    )
    states = {fault.id: active(fault) for fault in faults}
    by_provider = sorted(due, key=lambda payment: str(payment.provider_id))
    for provider_id, payments in groupby(by_provider, key=lambda payment: payment.provider_id):
        scope = [states[f.id] for f in faults if f.provider_id in (None, provider_id)]
        plan = domain.plan_webhooks(
            [_due_result(payment) for payment in payments],
            scope,
            providers[provider_id].results_per_webhook,
            webhook_id,
        )
        await _store_plan(session, provider_id, plan, now)
    await repository.add_applications(session, {i: s.taken for i, s in states.items()})
    return len(due)


def _due_result(payment: Payment) -> DueResult:
    return DueResult(
        payment_id=payment.id,
        payment_number=payment.payment_number,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status=payment.outcome,  # type: ignore[arg-type]
        reason_code=payment.reason_code,
        provider_reference=payment.provider_reference,
        occurred_at=payment.result_due_at,
        late=payment.late,
    )


async def _store_plan(session: AsyncSession, provider_id: UUID, plan: Plan, now: datetime) -> None:
    ids = [uuid7() for _ in plan.deliveries]
    rows = [
        {
            "id": ids[planned.key],
            "provider_id": provider_id,
            "webhook_id": planned.webhook_id,
            "kind": planned.kind,
            "fault_id": planned.fault_id,
            "faults": planned.faults,
            "body": ResultsWebhook(results=planned.results).model_dump_json().encode(),
            "payment_numbers": planned.payment_numbers,
            "result_count": len(planned.results),
            "signing": planned.signing,
            "depends_on": [ids[key] for key in planned.depends_on],
            "expected": planned.expected,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now + timedelta(seconds=planned.delay_s),
            "created_at": now,
        }
        for planned in plan.deliveries
    ]
    await repository.insert_deliveries(session, rows)
    for planned in plan.deliveries:
        if planned.kind == GENUINE:
            await repository.assign_payments(session, ids[planned.key], planned.payment_ids)
    await _log_injections(session, plan.injections, provider_id, now, delivery_ids=ids)


# --- delivery: planned webhooks are sent ---------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery leased to this worker, with what sending it needs."""

    delivery: Delivery
    url: str
    request: domain.SignedRequest
    lease_until: datetime


@dataclass(frozen=True)
class AttemptResult:
    claim: Claim
    started_at: datetime
    duration_ms: int
    status_code: int | None
    answer: str | None
    error: str | None


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float
    cap_s: float
    max_attempts: int


async def claim_deliveries(
    session: AsyncSession, now: datetime, limit: int, lease_s: float
) -> list[Claim]:
    lease_until = now + timedelta(seconds=lease_s)
    deliveries = await repository.claim_deliveries(session, now, lease_until, limit)
    if not deliveries:
        return []
    providers = await repository.providers_by_id(session, {d.provider_id for d in deliveries})
    replayed = [d.depends_on[0] for d in deliveries if d.signing.get("mode") == "replay"]
    earlier = await repository.sent_headers(session, replayed) if replayed else {}
    claims = []
    for delivery in deliveries:
        provider = providers[delivery.provider_id]
        request = domain.signed_request(
            delivery.signing,
            provider.webhook_secret,
            delivery.webhook_id,
            delivery.body,
            now,
            earlier.get(delivery.depends_on[0]) if delivery.depends_on else None,
        )
        claims.append(Claim(delivery, provider.webhook_url, request, lease_until))
    return claims


async def record_attempt(
    session: AsyncSession, result: AttemptResult, now: datetime, policy: RetryPolicy
) -> None:
    """Logs the attempt and moves the delivery on: done (a genuine webhook answered 2xx, a
    fault's extra answered at all), tried again later with backoff, or abandoned."""
    delivery = result.claim.delivery
    may_have_arrived = await repository.may_have_arrived(session, delivery.id, delivery.attempts)
    first_answer = (
        await repository.last_answer(session, delivery.depends_on[0])
        if delivery.expected["answer"] == "not_applied" and delivery.depends_on
        else None
    )
    await repository.insert_attempt(
        session,
        {
            "delivery_id": delivery.id,
            "attempt": delivery.attempts,
            "started_at": result.started_at,
            "duration_ms": result.duration_ms,
            "headers": result.claim.request.headers,
            "status_code": result.status_code,
            "error": result.error,
            "answer": result.answer,
        },
    )
    values = {
        "last_status_code": result.status_code,
        "last_error": result.error,
        "sent_headers": result.claim.request.headers,
        "answer_summary": _answer_summary(result.answer),
    }
    values |= _next_step(
        delivery, result, may_have_arrived, _json_or_none(first_answer), now, policy
    )
    await repository.finish_attempt(session, delivery.id, result.claim.lease_until, values)


def _next_step(
    delivery: Delivery,
    result: AttemptResult,
    may_have_arrived: bool,
    first_answer: Any,
    now: datetime,
    policy: RetryPolicy,
) -> dict[str, Any]:
    code = result.status_code
    if domain.attempt_finishes(delivery.kind == GENUINE, code, may_have_arrived):
        assert code is not None
        verdict, detail = domain.judge(
            delivery.expected,
            code,
            _json_or_none(result.answer),
            delivery.payment_numbers,
            lenient=may_have_arrived,
            first_answer=first_answer,
        )
        status = "delivered" if 200 <= code < 300 or delivery.kind == GENUINE else "answered"
        return {"status": status, "verdict": verdict, "verdict_detail": detail, "finished_at": now}
    if delivery.attempts >= policy.max_attempts:
        last = f"last answer {code}" if code is not None else f"last error {result.error}"
        return {
            "status": "abandoned",
            "verdict": "unexpected",
            "verdict_detail": f"gave up after {delivery.attempts} attempts; {last}",
            "finished_at": now,
        }
    delay = domain.retry_delay_s(
        delivery.attempts,
        policy.base_s,
        policy.cap_s,
        domain.draw(0, delivery.id, delivery.attempts),
    )
    return {"next_attempt_at": now + timedelta(seconds=delay)}


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _answer_summary(text: str | None) -> dict[str, Any] | None:
    answer = _json_or_none(text)
    if not isinstance(answer, dict):
        return None
    summary = {
        k: answer[k] for k in ("received", "applied", "duplicates", "exceptions") if k in answer
    }
    return summary or None
