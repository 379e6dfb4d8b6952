"""Disbursement HTTP routes: thin, they validate, call a use case and shape the response.

Routers by gateway prefix: /payments, /batches, /reconciliation, /statements, /reason-codes,
/channels (provider channel secrets) and /webhooks (public: signed by the provider).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from amana_common.auth import Principal, Role, ensure_provider_scope, public, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc
from amana_common.etag import etag
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from disbursement import domain, files, repository, service
from disbursement.schemas import (
    ApiCredentialIn,
    BatchOut,
    ExceptionOut,
    PaymentOut,
    PayrollOut,
    ReasonCodeOut,
    ReconciliationOut,
    StatementOut,
    StatementReceiptOut,
    TotalsOut,
    WebhookSecretCreated,
    WebhookSecretOut,
)
from disbursement.settings import DisbursementSettings

READERS = (
    Role.admin,
    Role.finance,
    Role.auditor,
    Role.programme_manager,
    Role.payroll_approver,
)
READ_ANY = require(*READERS)
READ_OWN = require(*READERS, Role.provider)
MANAGE = require(Role.admin, Role.finance)
ADMIN = require(Role.admin)
CONFLICT: dict[int | str, dict[str, Any]] = {409: problem_doc("Conflict")}

payments = APIRouter(prefix="/payments", tags=["payments"], responses=PROBLEM_RESPONSES)
batches = APIRouter(prefix="/batches", tags=["batches"], responses=PROBLEM_RESPONSES)
reconciliation = APIRouter(
    prefix="/reconciliation", tags=["reconciliation"], responses=PROBLEM_RESPONSES
)
statements = APIRouter(prefix="/statements", tags=["statements"], responses=PROBLEM_RESPONSES)
reasons = APIRouter(prefix="/reason-codes", tags=["reason codes"], responses=PROBLEM_RESPONSES)
channels = APIRouter(
    prefix="/channels/{provider_id}", tags=["channel secrets"], responses=PROBLEM_RESPONSES
)
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def _settings(request: Request) -> DisbursementSettings:
    # async: a plain function would be run in the thread pool, a hop for every request
    settings: DisbursementSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[DisbursementSettings, Depends(_settings)]
Reader = Annotated[Principal, READ_OWN]


def _scoped(principal: Principal, provider_id: UUID | None) -> UUID | None:
    """A provider's token sees its own provider's objects only."""
    return principal.provider_id if principal.is_provider_scoped else provider_id


# --- payments ---------------------------------------------------------------------------------


@payments.get(
    "/{number}",
    response_model=PaymentOut,
    summary="Trace a payment by its number to its household and payroll",
)
async def get_payment(number: str, principal: Reader, session: SessionDep) -> JSONResponse:
    if not domain.is_payment_number(number):
        raise Problem(404, "payment-not-found", "no payment has this number (check digits)")
    payment = await repository.payment_by_number(session, number)
    if payment is None:
        raise service.not_found("payment", number)
    ensure_provider_scope(principal, payment.provider_id)
    body = PaymentOut.model_validate(payment).model_dump(mode="json")
    return JSONResponse(body, headers={"ETag": etag(payment.version)})


@payments.get("", response_model=Page[PaymentOut], summary="List payments")
async def list_payments(
    principal: Reader,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    payroll_id: UUID | None = None,
    provider_id: UUID | None = None,
    batch_id: UUID | None = None,
    status: domain.Status | None = None,
) -> Page[PaymentOut]:
    rows = await repository.list_payments(
        session,
        limit=limit,
        after=cursor,
        payroll_id=payroll_id,
        provider_id=_scoped(principal, provider_id),
        batch_id=batch_id,
        status=status.value if status else None,
    )
    return page(rows, limit, PaymentOut.model_validate, lambda p: p.id)


# --- batches ----------------------------------------------------------------------------------


async def _batch(session: SessionDep, batch_id: UUID, principal: Principal) -> Any:
    batch = await repository.get_batch(session, batch_id)
    if batch is None:
        raise service.not_found("batch", batch_id)
    ensure_provider_scope(principal, batch.provider_id)
    return batch


@batches.get("", response_model=Page[BatchOut], summary="List batches")
async def list_batches(
    principal: Reader,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    payroll_id: UUID | None = None,
    provider_id: UUID | None = None,
    status: str | None = Query(default=None, pattern="^(ready|sent|stalled)$"),
) -> Page[BatchOut]:
    rows = await repository.list_batches(
        session,
        limit=limit,
        after=cursor,
        payroll_id=payroll_id,
        provider_id=_scoped(principal, provider_id),
        status=status,
    )
    return page(rows, limit, BatchOut.model_validate, lambda b: b.id)


@batches.get("/{batch_id}", response_model=BatchOut, summary="Read a batch")
async def get_batch(batch_id: UUID, principal: Reader, session: SessionDep) -> BatchOut:
    return BatchOut.model_validate(await _batch(session, batch_id, principal))


@batches.get(
    "/{batch_id}/file",
    summary="Download a file-mode batch as CSV or ISO 20022 pain.001.001.09",
    description="The first download marks the batch and its payments sent, with who downloaded "
    "it. For providers whose delivery mode is `file` (409 otherwise).",
    responses={**CONFLICT, 200: {"content": {"text/csv": {}, "application/xml": {}}}},
)
async def download_batch_file(
    batch_id: UUID,
    principal: Annotated[Principal, require(Role.admin, Role.finance, Role.provider)],
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[service.BatchFileFormat, Query(description="csv or pain001")] = "csv",
) -> Response:
    await _batch(session, batch_id, principal)
    debtor = files.Debtor(settings.debtor_name, settings.debtor_account)
    file = await service.download_batch_file(
        session, batch_id, format, debtor, principal.subject, service.now_utc()
    )
    disposition = f'attachment; filename="{file.filename}"'
    return Response(
        file.content, media_type=file.media_type, headers={"Content-Disposition": disposition}
    )


@batches.post(
    "/{batch_id}/requeue",
    response_model=BatchOut,
    responses=CONFLICT,
    summary="Send a stalled batch again",
    dependencies=[MANAGE],
)
async def requeue_batch(batch_id: UUID, session: SessionDep) -> BatchOut:
    batch = await service.requeue_batch(session, batch_id, service.now_utc())
    return BatchOut.model_validate(batch)


# --- reconciliation ---------------------------------------------------------------------------


@reconciliation.get(
    "", response_model=Page[PayrollOut], summary="Payrolls received", dependencies=[READ_ANY]
)
async def list_payrolls(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    status: str | None = Query(default=None, pattern="^(staging|held|released|reconciled)$"),
) -> Page[PayrollOut]:
    rows = await repository.list_payrolls(session, limit, cursor, status)
    return page(rows, limit, PayrollOut.model_validate, lambda p: p.id)


@reconciliation.get(
    "/exceptions",
    response_model=Page[ExceptionOut],
    summary="Results kept for review: unknown numbers, mismatches, late or conflicting ones",
)
async def list_exceptions(
    principal: Reader,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    payroll_id: UUID | None = None,
    provider_id: UUID | None = None,
    kind: str | None = Query(default=None, max_length=30, pattern="^[a-z_]+$"),
) -> Page[ExceptionOut]:
    rows = await service.exceptions_page(
        session,
        limit=limit,
        after=cursor,
        payroll_id=payroll_id,
        provider_id=_scoped(principal, provider_id),
        kind=kind,
    )
    return page(rows, limit, ExceptionOut.model_validate, lambda e: e.id)


def _totals(totals: domain.Totals) -> TotalsOut:
    return TotalsOut(count=totals.count, amount_minor=totals.amount_minor)


@reconciliation.get(
    "/{payroll_id}",
    response_model=ReconciliationOut,
    summary="A payroll's reconciliation: counts and amounts by status, fees, exceptions",
    dependencies=[READ_ANY],
)
async def get_reconciliation(payroll_id: UUID, session: SessionDep) -> ReconciliationOut:
    result = await service.reconciliation_of(session, payroll_id)
    r = result.reconciliation
    S = domain.Status
    return ReconciliationOut(
        payroll=PayrollOut.model_validate(result.payroll),
        payroll_totals=_totals(r.payroll),
        settled=_totals(r.of(S.settled)),
        failed=_totals(r.of(S.failed)),
        expired=_totals(r.of(S.expired)),
        reversed=_totals(r.of(S.reversed)),
        pending=_totals(r.of(S.pending)),
        sent=_totals(r.of(S.sent)),
        open=_totals(r.open),
        balanced=r.balanced,
        complete=r.complete,
        fees_minor=result.fees_minor,
        exceptions=result.exceptions,
    )


EXPORT_COLUMNS = (
    "payment_number",
    "household_number",
    "provider_id",
    "mechanism",
    "currency",
    "amount_minor",
    "fee_minor",
    "status",
    "reason_code",
    "provider_reference",
    "status_changed_at",
)


@reconciliation.get(
    "/{payroll_id}/export.csv",
    summary="Every payment of the payroll with its outcome, as CSV (streamed)",
    responses={200: {"content": {"text/csv": {}}}},
    dependencies=[READ_ANY],
)
async def export_reconciliation(
    payroll_id: UUID, request: Request, session: SessionDep
) -> StreamingResponse:
    await service.reconciliation_of(session, payroll_id)  # 404 for an unknown payroll
    # The body is sent after the request's session has ended: the rows stream in their own.
    sessionmaker = request.app.state.database.sessionmaker

    async def lines() -> AsyncIterator[str]:
        yield ",".join(EXPORT_COLUMNS) + "\r\n"
        async with sessionmaker() as export_session:
            rows = await repository.export_rows(export_session, payroll_id)
            async for part in rows.partitions(5000):
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\r\n")
                writer.writerows(part)
                yield out.getvalue()

    disposition = f'attachment; filename="reconciliation-{payroll_id}.csv"'
    return StreamingResponse(
        lines(), media_type="text/csv", headers={"Content-Disposition": disposition}
    )


# --- statements -------------------------------------------------------------------------------

STATEMENT_TYPES: dict[str, service.StatementFormat] = {
    "text/csv": "csv",
    "application/xml": "camt053",
    "text/xml": "camt053",
}


@statements.post(
    "",
    status_code=201,
    response_model=StatementReceiptOut,
    summary="Upload a provider's statement: CSV or ISO 20022 camt.053.001.08",
    description="The body is the file: `Content-Type: text/csv` or `application/xml`. Each "
    "result is matched like a webhook's; the same file uploaded again applies nothing "
    "(`replayed`). A provider's token uploads for its own provider; finance names "
    "`provider_id`. Honours `Idempotency-Key`.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}, "application/xml": {}},
        }
    },
)
async def upload_statement(
    request: Request,
    principal: Annotated[Principal, require(Role.admin, Role.finance, Role.provider)],
    session: SessionDep,
    idempotency: IdempotencyDep,
    provider_id: UUID | None = None,
) -> Response:
    owner = _scoped(principal, provider_id)
    if owner is None:
        raise Problem(
            422,
            "validation-error",
            "provider_id is required",
            errors=[{"field": "provider_id", "in": "query", "message": "required"}],
        )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    statement_format = STATEMENT_TYPES.get(media)
    if statement_format is None:
        raise Problem(415, "unsupported-media-type", "send text/csv or application/xml")
    body = await request.body()

    async def upload() -> JSONResponse:
        receipt = await service.upload_statement(
            session,
            owner,
            statement_format,
            body,
            principal.subject,
            service.now_utc(),
        )
        answer = StatementReceiptOut(
            statement=StatementOut.model_validate(receipt.statement),
            replayed=receipt.replayed,
            not_booked=receipt.not_booked,
            exception_results=[r for r in receipt.answer.results if r.outcome == "exception"][
                :1000
            ],
        )
        location = str(request.url_for("get_statement", statement_id=receipt.statement.id))
        return JSONResponse(
            answer.model_dump(mode="json"), status_code=201, headers={"Location": location}
        )

    return await idempotency.run(upload)


@statements.get("/{statement_id}", response_model=StatementOut, summary="Read a statement")
async def get_statement(statement_id: UUID, principal: Reader, session: SessionDep) -> StatementOut:
    statement = await repository.get_statement(session, statement_id)
    if statement is None:
        raise service.not_found("statement", statement_id)
    ensure_provider_scope(principal, statement.provider_id)
    return StatementOut.model_validate(statement)


# --- reason codes -----------------------------------------------------------------------------


@reasons.get(
    "",
    response_model=list[ReasonCodeOut],
    summary="Why a payment was not paid: ISO 20022 ExternalStatusReason codes and Amana's own",
    dependencies=[require(*READERS, Role.provider, Role.analyst, Role.registrar)],
)
async def list_reason_codes() -> list[ReasonCodeOut]:
    return [
        ReasonCodeOut(
            code=r.code,
            name=r.name,
            description=r.description,
            retryable=r.retryable,
            source=r.source,
        )
        for r in domain.REASON_CODES.values()
    ]


# --- channel secrets --------------------------------------------------------------------------


@channels.post(
    "/webhook-secrets",
    status_code=201,
    response_model=WebhookSecretCreated,
    summary="Create or rotate the provider's webhook signing secret (shown once)",
    description="The new `whsec_` secret is answered this once and stored sealed. The previous "
    "one keeps verifying for `DISBURSEMENT_WEBHOOK_SECRET_OVERLAP_S` (a day by default), so "
    "the provider can switch without losing a webhook.",
    dependencies=[ADMIN],
)
async def rotate_webhook_secret(
    provider_id: UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> JSONResponse:
    principal: Principal = request.state.principal
    row, secret = await service.rotate_webhook_secret(
        session,
        provider_id,
        settings.secrets_key_bytes(),
        timedelta(seconds=settings.webhook_secret_overlap_s),
        principal.subject,
        service.now_utc(),
    )
    created = WebhookSecretCreated(
        id=row.id, created_at=row.created_at, expires_at=None, secret=secret
    )
    return JSONResponse(
        created.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"}
    )


@channels.get(
    "/webhook-secrets",
    response_model=list[WebhookSecretOut],
    summary="The provider's secrets that verify now (never the secrets themselves)",
    dependencies=[MANAGE],
)
async def list_webhook_secrets(provider_id: UUID, session: SessionDep) -> list[WebhookSecretOut]:
    rows = await service.webhook_secrets(session, provider_id, service.now_utc())
    return [WebhookSecretOut.model_validate(row) for row in rows]


@channels.put(
    "/api-credential",
    status_code=204,
    summary="Set the credential Amana presents to the provider's API (stored sealed)",
    dependencies=[ADMIN],
)
async def set_api_credential(
    provider_id: UUID,
    body: ApiCredentialIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    principal: Principal = request.state.principal
    await service.set_api_credential(
        session,
        provider_id,
        body.credential,
        settings.secrets_key_bytes(),
        principal.subject,
        service.now_utc(),
    )
    return Response(status_code=204)


# --- webhooks ---------------------------------------------------------------------------------


@webhooks.post(
    "/providers/{provider_id}",
    summary="A provider's payment results, signed with Standard Webhooks",
    description="Headers `webhook-id`, `webhook-timestamp` (within 5 minutes) and "
    "`webhook-signature` (`v1,<base64 HMAC-SHA256>` with the provider's `whsec_` secret). "
    "The answer says per result: applied, duplicate, or exception (kept for review). A "
    "webhook-id seen before is answered as the first time (`Webhook-Replayed: true`) and "
    "applies nothing.",
    responses={
        401: problem_doc("Missing, wrong or stale signature"),
        409: problem_doc("The webhook-id came before with another body"),
        413: problem_doc("Body too large"),
        422: problem_doc("The body breaks the contract"),
    },
    dependencies=[public("signed by the provider (Standard Webhooks), verified here")],
)
async def receive_webhook(
    provider_id: UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    body = await request.body()
    if len(body) > settings.webhook_max_body_bytes:
        raise Problem(413, "payload-too-large", "the webhook body is too large")
    receipt = await service.receive_webhook(
        session,
        provider_id,
        body,
        {
            name: request.headers.get(name, "")
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        },
        settings.secrets_key_bytes(),
        service.now_utc(),
    )
    headers = {"Webhook-Replayed": "true"} if receipt.replayed else {}
    return Response(receipt.answer_json, media_type="application/json", headers=headers)
