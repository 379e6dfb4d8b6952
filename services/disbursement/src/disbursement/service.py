"""Disbursement use cases. They take the caller's session and never commit.

A payroll is paid only whole: its PayrollApproved chunks are staged until every chunk is in,
the line count and total are checked against the header, and only then are its payments and
batches created (set-based) and released for dispatch. Anything inconsistent holds the payroll
with the reason, and nothing of it is paid.

Results (webhooks and statements) go through `apply_results`: the payments are locked in one
query, the pure state machine decides per result, and the outcomes, exceptions and events are
written set-based in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.errors import Problem
from amana_common.events import add_to_outbox, build_event, outbox_row
from amana_contracts.base import EventData
from amana_contracts.disbursement import (
    PaymentFailedV1,
    PaymentReversedV1,
    PaymentSettledV1,
    PayrollReconciledV1,
    StatusTotalsV1,
)
from amana_contracts.payroll import PayrollApprovedV1, PayrollLineV1
from amana_contracts.provider import ProviderSnapshotV1, ProviderStatusChangeV1
from amana_contracts.psp import (
    MAX_RESULTS_PER_WEBHOOK,
    PaymentResult,
    ResultOutcome,
    ResultsWebhook,
    WebhookAnswer,
)
from disbursement import channels, domain, files, repository, statements
from disbursement.domain import Anomaly, Applied, PaymentState, Status, Totals
from disbursement.models import Batch, Payroll, ReconciliationException, Statement, WebhookSecret

log = logging.getLogger("amana.disbursement")

LINES = TypeAdapter(list[PayrollLineV1])
ResultSource = Literal["webhook", "statement"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- payroll intake ------------------------------------------------------------------------


def _header_sha256(chunk: PayrollApprovedV1) -> str:
    header = chunk.model_dump(mode="json", exclude={"chunk_index", "lines"})
    return _sha256(json.dumps(header, sort_keys=True).encode())


def _payroll_row(chunk: PayrollApprovedV1, now: datetime) -> dict[str, Any]:
    return {
        "id": chunk.payroll_id,
        "programme_id": chunk.programme_id,
        "programme_code": chunk.programme_code[:100],
        "cycle_id": chunk.cycle_id,
        "currency": chunk.currency,
        "period_start": chunk.period_start,
        "period_end": chunk.period_end,
        "payment_window_start": chunk.payment_window_start,
        "payment_window_end": chunk.payment_window_end,
        "pay_by": domain.pay_by(chunk.payment_window_end),
        "approved_at": chunk.approved_at,
        "approved_by": chunk.approved_by[:200],
        "line_count": chunk.line_count,
        "total_amount_minor": chunk.total_amount_minor,
        "chunk_count": chunk.chunk_count,
        "header_sha256": _header_sha256(chunk),
        "status": "staging",
        "received_at": now,
    }


async def receive_payroll_chunk(
    session: AsyncSession, chunk: PayrollApprovedV1, batch_size: int, now: datetime
) -> str:
    """Stages one chunk (idempotent) and releases the payroll when it is whole. Answers what
    happened: staged, duplicate, ignored, held or released."""
    await repository.insert_payroll_if_new(session, _payroll_row(chunk, now))
    payroll = await repository.lock_payroll(session, chunk.payroll_id)
    assert payroll is not None
    if payroll.status != "staging":
        return "ignored"
    if _header_sha256(chunk) != payroll.header_sha256:
        return _hold(payroll, f"chunk {chunk.chunk_index} carries another header")
    if chunk.chunk_index >= payroll.chunk_count:
        return _hold(payroll, f"chunk {chunk.chunk_index} of only {payroll.chunk_count}")
    lines_json = LINES.dump_json(chunk.lines)
    staged = await repository.stage_chunk(
        session,
        {
            "payroll_id": payroll.id,
            "chunk_index": chunk.chunk_index,
            "content_sha256": _sha256(lines_json),
            "line_count": len(chunk.lines),
            "amount_minor": sum(line.amount_minor for line in chunk.lines),
            "lines": lines_json.decode(),
            "received_at": now,
        },
    )
    if not staged:
        earlier = await repository.staged_chunk_hash(session, payroll.id, chunk.chunk_index)
        if earlier != _sha256(lines_json):
            return _hold(payroll, f"chunk {chunk.chunk_index} arrived twice with other lines")
        return "duplicate"
    return await _release_when_whole(session, payroll, batch_size, now)


def _hold(payroll: Payroll, reason: str) -> str:
    payroll.status = "held"
    payroll.hold_reason = reason[:500]
    log.warning("payroll %s held: %s", payroll.id, reason)
    return "held"


async def _release_when_whole(
    session: AsyncSession, payroll: Payroll, batch_size: int, now: datetime
) -> str:
    chunks, lines, amount = await repository.staged_totals(session, payroll.id)
    if chunks < payroll.chunk_count:
        return "staged"
    if (lines, amount) != (payroll.line_count, payroll.total_amount_minor):
        return _hold(
            payroll,
            f"the chunks hold {lines} lines for {amount}, the header says "
            f"{payroll.line_count} lines for {payroll.total_amount_minor}",
        )
    try:
        async with session.begin_nested():
            await repository.release_payroll(session, payroll, batch_size, now)
    except IntegrityError as error:
        if "uq_payments_payroll_line_id" not in str(error.orig):
            raise
        return _hold(payroll, "a payroll line id repeats, or was paid by another payroll")
    payroll.status = "released"
    payroll.released_at = now
    await session.flush()
    await reconcile_if_complete(session, [payroll.id], now)
    return "released"


# --- provider projection --------------------------------------------------------------------


async def apply_provider_snapshot(session: AsyncSession, snapshot: ProviderSnapshotV1) -> None:
    delivery = snapshot.delivery
    await repository.upsert_provider(
        session,
        {
            "id": snapshot.provider_id,
            "code": snapshot.code,
            "status": snapshot.status,
            "currencies": snapshot.currencies,
            "delivery_mode": delivery.mode,
            "base_url": delivery.base_url,
            "file_profile": (
                delivery.file_profile.model_dump(mode="json") if delivery.file_profile else None
            ),
            "fee_currency": snapshot.fee.currency,
            "fee_fixed_minor": snapshot.fee.fixed_minor,
            "fee_basis_points": snapshot.fee.basis_points,
            "pay_point_codes": {str(p.pay_point_id): p.code for p in snapshot.pay_points},
            "version": snapshot.version,
            "updated_at": snapshot.updated_at,
        },
    )


async def apply_provider_status(
    session: AsyncSession, change: ProviderStatusChangeV1, status: str
) -> None:
    await repository.set_provider_status(
        session, change.provider_id, status, change.version, change.changed_at
    )


# --- results --------------------------------------------------------------------------------


def _state(row: Row[Any]) -> PaymentState:
    return PaymentState(
        payment_id=row.id,
        provider_id=row.provider_id,
        status=Status(row.status),
        amount_minor=row.amount_minor,
        currency=row.currency,
        provider_reference=row.provider_reference,
        reason_code=row.reason_code,
    )


def _event_fields(row: Row[Any]) -> dict[str, Any]:
    return {
        "payment_id": row.id,
        "payment_number": row.number,
        "payroll_id": row.payroll_id,
        "payroll_line_id": row.payroll_line_id,
        "programme_id": row.programme_id,
        "cycle_id": row.cycle_id,
        "household_id": row.household_id,
        "provider_id": row.provider_id,
        "mechanism": row.mechanism,
        "location_code": row.location_code,
        "recipient_sex": row.recipient_sex,
        "recipient_age_band": row.recipient_age_band,
        "currency": row.currency,
        "amount_minor": row.amount_minor,
    }


@dataclass
class _Outcomes:
    """What applying a list of results produced, written at the end in a few statements."""

    answers: list[ResultOutcome]
    changes: dict[UUID, dict[str, Any]]
    events: list[EventData]
    exceptions: list[dict[str, Any]]

    def count(self, outcome: str) -> int:
        return sum(1 for answer in self.answers if answer.outcome == outcome)

    def answer(self) -> WebhookAnswer:
        return WebhookAnswer(
            received=len(self.answers),
            applied=self.count("applied"),
            duplicates=self.count("duplicate"),
            exceptions=self.count("exception"),
            results=self.answers,
        )


class FeeModel:
    def __init__(self, fixed_minor: int, basis_points: int, currency: str) -> None:
        self.fixed_minor = fixed_minor
        self.basis_points = basis_points
        self.currency = currency

    def fee(self, result: PaymentResult) -> int:
        if result.fee_minor or result.currency != self.currency:
            return result.fee_minor
        return domain.expected_fee(result.amount_minor, self.fixed_minor, self.basis_points)


def _fee_model(rows: Sequence[Row[Any]]) -> FeeModel | None:
    """The reporting provider's fee terms, which every locked row carries (None: unknown)."""
    if not rows or rows[0].fee_currency is None:
        return None
    first = rows[0]
    return FeeModel(first.fee_fixed_minor, first.fee_basis_points, first.fee_currency)


async def apply_results(
    session: AsyncSession,
    provider_id: UUID,
    results: Sequence[PaymentResult],
    source: ResultSource,
    source_id: str,
    now: datetime,
) -> tuple[WebhookAnswer, list[UUID]]:
    """Applies a provider's results in order (a payment named twice sees its first result);
    answers them, and the payrolls they touch, for the caller to reconcile once its own
    writes are done."""
    rows = await repository.lock_payments_by_number(
        session, sorted({r.payment_number for r in results}), provider_id
    )
    by_number = {row.number: row for row in rows}
    states = {row.number: _state(row) for row in rows}
    fees = _fee_model(rows)
    outcomes = _Outcomes([], {}, [], [])
    for result in results:
        row = by_number.get(result.payment_number)
        decision = domain.apply_result(states.get(result.payment_number), result, provider_id)
        if isinstance(decision, Applied):
            assert row is not None
            states[result.payment_number] = decision.state
            _record_applied(outcomes, row, decision.state, result, fees)
        elif isinstance(decision, Anomaly):
            outcomes.answers.append(
                ResultOutcome(
                    payment_number=result.payment_number,
                    outcome="exception",
                    exception=decision.kind,
                    detail=decision.detail,
                )
            )
            outcomes.exceptions.append(
                _exception_row(provider_id, row, decision, result, source, source_id, now)
            )
        else:
            outcomes.answers.append(
                ResultOutcome(payment_number=result.payment_number, outcome="duplicate")
            )
    events = [outbox_row(build_event(event)) for event in outcomes.events]
    await repository.write_outcomes(session, list(outcomes.changes.values()), events, now)
    await repository.add_exceptions(session, outcomes.exceptions)
    return outcomes.answer(), sorted({row.payroll_id for row in rows})


def _record_applied(
    outcomes: _Outcomes,
    row: Row[Any],
    state: PaymentState,
    result: PaymentResult,
    fees: FeeModel | None,
) -> None:
    change = outcomes.changes.setdefault(
        row.id,
        {
            "id": row.id,
            "fee": row.fee_minor,
            "settled": None,
            "failed": None,
            "reversed": None,
        },
    )
    change.update(status=state.status.value, reference=state.provider_reference)
    change["reason"] = state.reason_code
    fields = _event_fields(row)
    event: EventData
    if state.status is Status.settled:
        change["fee"] = fees.fee(result) if fees is not None else result.fee_minor
        change["settled"] = result.occurred_at
        event = PaymentSettledV1(
            **fields,
            provider_reference=result.provider_reference,
            settled_at=result.occurred_at,
            fee_minor=change["fee"],
        )
    elif state.status is Status.failed:
        change["failed"] = result.occurred_at
        reason = result.reason_code or ""
        event = PaymentFailedV1(
            **fields,
            outcome="failed",
            reason_code=reason,
            retryable=domain.is_retryable(reason),
            failed_at=result.occurred_at,
        )
    else:
        change["reversed"] = result.occurred_at
        event = PaymentReversedV1(
            **fields, reason_code=result.reason_code or "NARR", reversed_at=result.occurred_at
        )
    outcomes.events.append(event)
    outcomes.answers.append(ResultOutcome(payment_number=row.number, outcome="applied"))


def _exception_row(
    provider_id: UUID,
    row: Row[Any] | None,
    anomaly: Anomaly,
    result: PaymentResult,
    source: ResultSource,
    source_id: str,
    now: datetime,
) -> dict[str, Any]:
    # Another provider's payment is not linked: its payroll is none of the reporter's business,
    # but the exception is kept for the review of the reporting provider.
    linked = row is not None and anomaly.kind != "other_provider"
    return {
        "id": uuid7(),
        "provider_id": provider_id,
        "payroll_id": row.payroll_id if linked and row is not None else None,
        "payment_id": row.id if linked and row is not None else None,
        "payment_number": result.payment_number[:100],
        "kind": anomaly.kind,
        "detail": anomaly.detail[:500],
        "source": source,
        "source_id": source_id[:200],
        "result_status": result.status,
        "amount_minor": result.amount_minor,
        "currency": result.currency,
        "provider_reference": result.provider_reference,
        "reason_code": result.reason_code[:35] if result.reason_code else None,
        "occurred_at": result.occurred_at,
        "created_at": now,
    }


# --- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookReceipt:
    answer_json: bytes
    replayed: bool


async def provider_webhook_secrets(
    session: AsyncSession, provider_id: UUID, key: bytes, now: datetime
) -> list[str]:
    sealed = await repository.sealed_webhook_secrets(session, provider_id, now)
    return [channels.unseal_cached(key, provider_id, "webhook-secret", value) for value in sealed]


async def receive_webhook(
    session: AsyncSession,
    provider_id: UUID,
    body: bytes,
    headers: Mapping[str, str],
    key: bytes,
    now: datetime,
) -> WebhookReceipt:
    """Verifies, then applies once: a webhook id seen before answers what it answered then."""
    secrets = await provider_webhook_secrets(session, provider_id, key, now)
    try:
        channels.verify_signature(secrets, body, headers)
    except channels.SignatureRefused as refused:
        slug = "stale-webhook" if refused.stale else "invalid-signature"
        raise Problem(401, slug, refused.detail) from refused
    webhook = parse_results_webhook(body)
    webhook_id = headers["webhook-id"][:200]
    body_hash = _sha256(body)
    first = await repository.record_webhook_message(
        session,
        {
            "provider_id": provider_id,
            "webhook_id": webhook_id,
            "body_sha256": body_hash,
            "received_at": now,
        },
    )
    if not first:
        return await _replayed(session, provider_id, webhook_id, body_hash)
    answer, payroll_ids = await apply_results(
        session, provider_id, webhook.results, "webhook", webhook_id, now
    )
    answer_json = answer.model_dump_json()
    # The answer is kept, and the payrolls that may now have nothing open are found, in one
    # round trip; reconcile_if_complete checks them again under lock.
    candidates = await repository.store_answer_and_find_reconcilable(
        session, provider_id, webhook_id, answer_json, payroll_ids
    )
    await reconcile_if_complete(session, candidates, now)
    return WebhookReceipt(answer_json.encode(), replayed=False)


async def _replayed(
    session: AsyncSession, provider_id: UUID, webhook_id: str, body_hash: str
) -> WebhookReceipt:
    message = await repository.get_webhook_message(session, provider_id, webhook_id)
    assert message is not None
    if message.body_sha256 != body_hash:
        raise Problem(409, "webhook-id-reused", "this webhook-id came before with another body")
    return WebhookReceipt(json.dumps(message.answer or {}).encode(), replayed=True)


def parse_results_webhook(body: bytes) -> ResultsWebhook:
    """The body as the contract describes it; text with control characters is refused."""
    try:
        webhook = ResultsWebhook.model_validate_json(body)
    except ValidationError as error:
        raise _body_problem(error) from error
    for index, result in enumerate(webhook.results):
        for name in ("payment_number", "provider_reference", "reason_code"):
            if _has_control_characters(getattr(result, name)):
                field = f"results.{index}.{name}"
                raise Problem(
                    422,
                    "validation-error",
                    f"{field}: control characters are not allowed",
                    errors=[{"field": field, "in": "body", "message": "control characters"}],
                )
    return webhook


def _has_control_characters(value: str | None) -> bool:
    return value is not None and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


def _body_problem(error: ValidationError) -> Problem:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "in": "body", "message": e["msg"]}
        for e in error.errors()[:20]
    ]
    if any(e["type"] == "json_invalid" for e in error.errors()):
        return Problem(400, "malformed-json", "the body is not valid JSON", errors=errors)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Problem(422, "validation-error", detail, errors=errors)


# --- expiry ---------------------------------------------------------------------------------


async def expire_due_payments(session: AsyncSession, now: datetime, limit: int) -> int:
    """Expires open payments past their payment window (PaymentFailed, outcome expired)."""
    rows = await repository.expire_due(session, now, limit, domain.EXPIRED_REASON)
    await add_to_outbox(
        session,
        *(
            PaymentFailedV1(
                **_event_fields(row),
                outcome="expired",
                reason_code=domain.EXPIRED_REASON,
                retryable=domain.is_retryable(domain.EXPIRED_REASON),
                failed_at=now,
            )
            for row in rows
        ),
    )
    await reconcile_if_complete(session, sorted({row.payroll_id for row in rows}), now)
    return len(rows)


# --- reconciliation -------------------------------------------------------------------------


@dataclass(frozen=True)
class PayrollReconciliation:
    payroll: Payroll
    reconciliation: domain.Reconciliation
    fees_minor: int
    exceptions: int


async def reconciliation_of(session: AsyncSession, payroll_id: UUID) -> PayrollReconciliation:
    payroll = await repository.get_payroll(session, payroll_id)
    if payroll is None:
        raise Problem(404, "payroll-not-found", f"No payroll {payroll_id}")
    rows = await repository.totals_by_status(session, payroll_id)
    reconciliation = domain.reconcile(
        Totals(payroll.line_count, payroll.total_amount_minor),
        [(status, count, amount) for status, count, amount, _ in rows],
    )
    return PayrollReconciliation(
        payroll,
        reconciliation,
        fees_minor=sum(fees for *_, fees in rows),
        exceptions=await repository.exception_count(session, payroll_id),
    )


async def reconcile_if_complete(
    session: AsyncSession, payroll_ids: Sequence[UUID], now: datetime
) -> None:
    """Publishes PayrollReconciled, once, for each released payroll with nothing open."""
    for payroll in await repository.open_payrolls_with_nothing_open(session, payroll_ids):
        result = await reconciliation_of(session, payroll.id)
        if not result.reconciliation.complete:
            log.error("payroll %s has nothing open but does not balance", payroll.id)
            continue
        payroll.status = "reconciled"
        payroll.reconciled_at = now
        await add_to_outbox(session, _reconciled_event(result, now))


async def reconcile_missed(session: AsyncSession, now: datetime, limit: int) -> int:
    """Reconciles released payrolls that have nothing open but were not reconciled when their
    last payment closed. Two transactions closing a payroll's last two payments at once each
    see the other's payment still open, so neither reconciles; this sweep catches that."""
    candidates = await repository.released_payrolls_with_nothing_open(session, limit)
    await reconcile_if_complete(session, candidates, now)
    return len(candidates)


def _reconciled_event(result: PayrollReconciliation, now: datetime) -> PayrollReconciledV1:
    payroll, reconciliation = result.payroll, result.reconciliation
    return PayrollReconciledV1(
        payroll_id=payroll.id,
        programme_id=payroll.programme_id,
        cycle_id=payroll.cycle_id,
        currency=payroll.currency,
        line_count=payroll.line_count,
        total_amount_minor=payroll.total_amount_minor,
        by_status={
            status.value: StatusTotalsV1(
                count=reconciliation.of(status).count,
                amount_minor=reconciliation.of(status).amount_minor,
            )
            for status in domain.RECONCILED_STATUSES
        },
        exceptions_open=result.exceptions,
        fees_minor=result.fees_minor,
        reconciled_at=now,
    )


# --- channel secrets ------------------------------------------------------------------------


async def rotate_webhook_secret(
    session: AsyncSession,
    provider_id: UUID,
    key: bytes,
    overlap: timedelta,
    actor: str | None,
    now: datetime,
) -> tuple[WebhookSecret, str]:
    """A new current secret, shown once; the previous one verifies for `overlap` more."""
    await _known_provider(session, provider_id)
    await repository.expire_current_secrets(session, provider_id, now + overlap)
    secret = channels.new_webhook_secret()
    row = WebhookSecret(
        id=uuid7(),
        provider_id=provider_id,
        secret=channels.seal(key, provider_id, "webhook-secret", secret),
        created_at=now,
        created_by=actor,
        expires_at=None,
    )
    repository.add(session, row)
    await session.flush()
    return row, secret


async def webhook_secrets(
    session: AsyncSession, provider_id: UUID, now: datetime
) -> list[WebhookSecret]:
    await _known_provider(session, provider_id)
    return await repository.valid_webhook_secrets(session, provider_id, now)


async def set_api_credential(
    session: AsyncSession,
    provider_id: UUID,
    credential: str,
    key: bytes,
    actor: str | None,
    now: datetime,
) -> None:
    await _known_provider(session, provider_id)
    await repository.upsert_channel(
        session,
        {
            "provider_id": provider_id,
            "api_credential": channels.seal(key, provider_id, "api-credential", credential),
            "updated_at": now,
            "updated_by": actor,
        },
    )


async def api_credential(session: AsyncSession, provider_id: UUID, key: bytes) -> str | None:
    channel = await repository.get_channel(session, provider_id)
    if channel is None or channel.api_credential is None:
        return None
    return channels.unseal(key, provider_id, "api-credential", channel.api_credential)


async def _known_provider(session: AsyncSession, provider_id: UUID) -> None:
    if await repository.get_provider(session, provider_id) is None:
        raise Problem(404, "provider-not-found", f"No provider {provider_id} is known here yet")


# --- batches: files and requeue -------------------------------------------------------------

BatchFileFormat = Literal["csv", "pain001"]


@dataclass(frozen=True)
class BatchFile:
    content: str
    media_type: str
    filename: str


async def download_batch_file(
    session: AsyncSession,
    batch_id: UUID,
    file_format: BatchFileFormat,
    debtor: files.Debtor,
    actor: str,
    now: datetime,
) -> BatchFile:
    """A file-mode batch as CSV or pain.001; its first download marks it (and its pending
    payments) sent, with who downloaded it."""
    batch = await repository.get_batch(session, batch_id, lock=True)
    if batch is None:
        raise not_found("batch", batch_id)
    provider = await repository.get_provider(session, batch.provider_id)
    if provider is None or provider.delivery_mode != "file":
        raise Problem(409, "not-a-file-batch", "this provider's batches go through its API")
    payments = await repository.payments_of_batch(session, batch.id)
    if file_format == "csv":
        delimiter = (provider.file_profile or {}).get("delimiter") or ","
        content = files.batch_csv(payments, provider.pay_point_codes, delimiter)
        result = BatchFile(content, "text/csv; charset=utf-8", f"batch-{batch.id}.csv")
    else:
        content = files.batch_pain001(batch, payments, debtor, now)
        result = BatchFile(content, "application/xml", f"batch-{batch.id}.pain001.xml")
    if batch.status != "sent":
        batch.downloaded_by = actor[:200]
        batch.downloaded_at = now
        await mark_sent(session, batch, now)
    return result


async def mark_sent(session: AsyncSession, batch: Batch, now: datetime) -> None:
    """The provider has the batch: it is sent, and so are its pending payments."""
    if batch.status != "sent":
        batch.status = "sent"
        batch.sent_at = now
        batch.version += 1
    batch.last_error = None
    await repository.mark_batch_payments_sent(session, batch.id, now)


async def requeue_batch(session: AsyncSession, batch_id: UUID, now: datetime) -> Batch:
    """An operator sends a stalled batch again, attempts counted afresh."""
    batch = await repository.get_batch(session, batch_id, lock=True)
    if batch is None:
        raise not_found("batch", batch_id)
    if batch.status != "stalled":
        raise Problem(409, "batch-not-stalled", f"the batch is {batch.status}, not stalled")
    batch.status = "ready"
    batch.attempts = 0
    batch.next_attempt_at = now
    batch.version += 1
    await session.flush()
    return batch


# --- statements -----------------------------------------------------------------------------

StatementFormat = Literal["csv", "camt053"]


@dataclass(frozen=True)
class StatementReceipt:
    statement: Statement
    answer: WebhookAnswer
    not_booked: int
    replayed: bool


async def upload_statement(
    session: AsyncSession,
    provider_id: UUID,
    statement_format: StatementFormat,
    body: bytes,
    actor: str,
    now: datetime,
) -> StatementReceipt:
    """Matches a statement's results like a webhook's; the same file twice applies nothing."""
    await _known_provider(session, provider_id)
    content_hash = _sha256(body)
    earlier = await repository.statement_by_hash(session, provider_id, content_hash)
    if earlier is not None:
        empty = WebhookAnswer(received=0, applied=0, duplicates=0, exceptions=0, results=[])
        return StatementReceipt(earlier, empty, 0, replayed=True)
    parsed = (
        statements.parse_csv(body) if statement_format == "csv" else statements.parse_camt053(body)
    )
    statement = Statement(
        id=uuid7(),
        provider_id=provider_id,
        format=statement_format,
        content_sha256=content_hash,
        uploaded_by=actor[:200],
        uploaded_at=now,
        line_count=len(parsed.results),
        applied=0,
        duplicates=0,
        exceptions=0,
    )
    answers: list[ResultOutcome] = []
    payroll_ids: set[UUID] = set()
    for start in range(0, len(parsed.results), MAX_RESULTS_PER_WEBHOOK):
        part = parsed.results[start : start + MAX_RESULTS_PER_WEBHOOK]
        answer, touched = await apply_results(
            session, provider_id, part, "statement", str(statement.id), now
        )
        answers.extend(answer.results)
        payroll_ids.update(touched)
    await reconcile_if_complete(session, sorted(payroll_ids), now)
    outcomes = _Outcomes(answers, {}, [], [])
    statement.applied = outcomes.count("applied")
    statement.duplicates = outcomes.count("duplicate")
    statement.exceptions = outcomes.count("exception")
    repository.add(session, statement)
    await session.flush()
    return StatementReceipt(statement, outcomes.answer(), parsed.not_booked, replayed=False)


# --- reads ------------------------------------------------------------------------------------


def not_found(kind: str, identifier: object) -> Problem:
    return Problem(404, f"{kind}-not-found", f"No {kind} {identifier}")


async def exceptions_page(session: AsyncSession, **filters: Any) -> list[ReconciliationException]:
    return await repository.list_exceptions(session, **filters)


def now_utc() -> datetime:
    return datetime.now(UTC)
