"""Sandbox HTTP routes: thin, they validate, call a use case and shape the response.

Two routers: `psp`, the provider API Amana calls (authenticated by a simulated provider's API
key, subject to the injected request faults), and `control`, the sandbox's own configuration,
faults and delivery log (an Amana admin token).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from amana_common.auth import (
    POLICY_ATTRIBUTE,
    Principal,
    Role,
    bearer_scheme,
    require,
    unauthenticated,
)
from amana_common.db import Database, SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc, problem_response
from amana_common.etag import OptionalIfMatchHeader, etag, parse_if_match
from amana_common.idempotency import HEADER as IDEMPOTENCY_KEY
from amana_common.idempotency import IdempotencyKeyHeader
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import Text
from amana_contracts.psp import BatchAccepted
from psp_sandbox import repository, service
from psp_sandbox.domain import DeliveryStatus, FaultKind, RequestDecision, Verdict
from psp_sandbox.models import Delivery, Fault, FaultInjection, SandboxProvider
from psp_sandbox.schemas import (
    AttemptOut,
    BatchStatusOut,
    DeliveryDetailOut,
    DeliveryOut,
    FaultIn,
    FaultOut,
    FaultsIn,
    InjectionOut,
    PaymentBatchIn,
    ProviderConfigIn,
    ProviderConfigOut,
)

psp = APIRouter(tags=["PSP API"], responses=PROBLEM_RESPONSES)
control = APIRouter(
    prefix="/sandbox",
    tags=["sandbox control"],
    responses=PROBLEM_RESPONSES,
    dependencies=[require(Role.admin)],
)

FAULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    500: problem_doc("Injected error (error_500 fault)"),
    503: problem_doc("Injected outage (outage fault)"),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- the PSP API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PspCall:
    provider: SandboxProvider
    faults: RequestDecision


async def psp_call(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> PspCall:
    """The provider whose API key the call carries, after the request faults in force had
    their way: a wait, a 503 or a 500. Decided (and logged) in a short transaction of its
    own, so that a slow answer holds no lock."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthenticated("the provider's API key is required as a bearer token")
    route = getattr(request.scope.get("route"), "path", request.url.path)
    database: Database = request.app.state.database
    async with database.sessionmaker() as session, session.begin():
        provider = await service.authenticate(session, credentials.credentials)
        if provider is None:
            raise unauthenticated("unknown API key")
        request.state.principal = Principal(f"psp:{provider.id}", frozenset())  # for the audit
        decision = await service.request_faults(
            session, provider.id, f"{request.method} {route}", utc_now()
        )
    if decision.delay_s:
        await asyncio.sleep(decision.delay_s)
    if decision.answer == "unavailable":
        raise Problem(
            503,
            "unavailable",
            "The provider is unavailable (injected outage)",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    if decision.answer == "error":
        raise Problem(500, "internal-error", "The provider failed (injected error)")
    return PspCall(provider, decision)


setattr(psp_call, POLICY_ATTRIBUTE, "psp api key: a simulated provider's api_key as bearer")
PspCallDep = Annotated[PspCall, Depends(psp_call)]


def _lost_answer() -> JSONResponse:
    return problem_response(
        500, "internal-error", "The provider failed after doing the work (injected lost answer)"
    )


def _require_batch_key(key: str | None, batch_id: UUID) -> None:
    if key is None:
        raise Problem(
            400, "idempotency-key-required", f"{IDEMPOTENCY_KEY} is required: the batch id"
        )
    try:
        same = UUID(key) == batch_id
    except ValueError:
        same = False
    if not same:
        message = "must be the batch id"
        raise Problem(
            422,
            "validation-error",
            f"{IDEMPOTENCY_KEY}: {message}",
            errors=[{"field": IDEMPOTENCY_KEY, "in": "header", "message": message}],
        )


@psp.post(
    "/batches",
    status_code=202,
    response_model=BatchAccepted,
    responses={409: problem_doc("A payment number was already accepted"), **FAULT_RESPONSES},
    summary="Accept a batch of payments",
    description="`Idempotency-Key` must be the batch id. The same batch again is answered as "
    "the first (`Idempotent-Replayed: true`) and pays nothing twice; another body under the "
    "same id is 422; a payment number already accepted in another batch is 409.",
)
async def post_batch(
    batch: PaymentBatchIn,
    call: PspCallDep,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    _require_batch_key(idempotency_key, batch.batch_id)
    now = utc_now()
    accepted, replayed = await service.accept_batch(session, call.provider, batch, now)
    if call.faults.answer == "error_after_accept":
        await service.log_lost_answer(session, call.faults, call.provider.id, batch.batch_id, now)
        return _lost_answer()
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=headers)


@psp.get(
    "/batches/{batch_id}",
    response_model=BatchStatusOut,
    responses=FAULT_RESPONSES,
    summary="A batch's status and each payment's outcome",
    description="A payment shows `pending` until its result happened.",
)
async def get_batch(batch_id: UUID, call: PspCallDep, session: SessionDep) -> Response:
    now = utc_now()
    status = await service.batch_status(session, call.provider, batch_id, now)
    if call.faults.answer == "error_after_accept":
        await service.log_lost_answer(session, call.faults, call.provider.id, batch_id, now)
        return _lost_answer()
    return JSONResponse(status.model_dump(mode="json"))


# --- provider accounts ---------------------------------------------------------------------


def _config_answer(
    provider: SandboxProvider, status_code: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": etag(provider.version)} | ({"Location": location} if location else {})
    body = ProviderConfigOut.model_validate(provider).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=headers)


@control.put(
    "/providers/{provider_id}",
    response_model=ProviderConfigOut,
    responses={201: {"description": "Created"}, 409: problem_doc("api_key in use")},
    summary="Create or replace a simulated provider account",
    description="`provider_id` is the provider's id in Amana. `If-Match` is optional: when "
    "given it must name the current version (412 otherwise). Secrets are never answered.",
)
async def put_provider(
    provider_id: UUID,
    body: ProviderConfigIn,
    request: Request,
    session: SessionDep,
    if_match: OptionalIfMatchHeader = None,
) -> Response:
    condition = parse_if_match(if_match) if if_match is not None else None
    provider, created = await service.configure_provider(
        session, provider_id, body, condition, utc_now()
    )
    location = str(request.url_for("get_provider", provider_id=provider_id)) if created else None
    return _config_answer(provider, 201 if created else 200, location)


@control.get(
    "/providers/{provider_id}", response_model=ProviderConfigOut, summary="A provider account"
)
async def get_provider(provider_id: UUID, session: SessionDep) -> Response:
    return _config_answer(await service.get_provider(session, provider_id))


@control.get("/providers", response_model=Page[ProviderConfigOut], summary="Provider accounts")
async def list_providers(
    session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[ProviderConfigOut]:
    rows = await repository.list_providers(session, limit, cursor)
    return page(rows, limit, ProviderConfigOut.model_validate, lambda row: row.id)


# --- faults --------------------------------------------------------------------------------


def _fault_out(fault: Fault, now: datetime) -> FaultOut:
    return FaultOut(
        id=fault.id,
        provider_id=fault.provider_id,
        kind=fault.kind,
        params=fault.params,
        max_count=fault.max_count,
        active_until=fault.active_until,
        seen=fault.seen,
        applied=fault.applied,
        in_force=service.fault_in_force(fault, now),
        created_at=fault.created_at,
        cleared_at=fault.cleared_at,
    )


def _refusals(body: FaultsIn) -> list[FaultIn]:
    return [fault for fault in body.faults if fault.refuses_connections]


@control.put(
    "/faults",
    response_model=list[FaultOut],
    responses={409: problem_doc("A refuse outage needs the sandbox's own server")},
    summary="Replace the faults applied to every provider",
    description="Ends the faults in force for every provider and puts these in force instead "
    '(`{"faults": []}` ends them). Each fault ends after `count` applications or `for_s` '
    "seconds. An `outage` in `refuse` mode closes the sandbox's port once this call answered.",
)
async def put_faults(body: FaultsIn, request: Request, session: SessionDep) -> list[FaultOut]:
    refusals = _refusals(body)
    port = getattr(request.app.state, "port_control", None)
    if refusals and port is None:
        raise Problem(
            409,
            "refuse-unavailable",
            "a refuse outage needs the sandbox's own server (python -m psp_sandbox api)",
        )
    now = utc_now()
    faults = await service.replace_faults(session, None, body, now)
    if refusals and port is not None:
        port.refuse_for(max(float(f.for_s or 0) for f in refusals))
    return [_fault_out(fault, now) for fault in faults]


@control.put(
    "/providers/{provider_id}/faults",
    response_model=list[FaultOut],
    summary="Replace the faults applied to one provider",
    description="As `PUT /sandbox/faults`, for this provider's calls and webhooks only; a "
    "`refuse` outage closes the port for everyone and belongs there.",
)
async def put_provider_faults(
    provider_id: UUID, body: FaultsIn, session: SessionDep
) -> list[FaultOut]:
    if _refusals(body):
        raise Problem(
            422,
            "validation-error",
            "faults: a refuse outage closes the port for every provider: use PUT /sandbox/faults",
            errors=[{"field": "faults", "in": "body", "message": "refuse outage is global"}],
        )
    now = utc_now()
    faults = await service.replace_faults(session, provider_id, body, now)
    return [_fault_out(fault, now) for fault in faults]


@control.delete("/faults", status_code=204, summary="End every fault, for every provider")
async def delete_faults(session: SessionDep) -> Response:
    await service.clear_every_fault(session, utc_now())
    return Response(status_code=204)


@control.get("/faults", response_model=Page[FaultOut], summary="Faults, in creation order")
async def list_faults(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    provider_id: UUID | None = None,
    in_force: bool | None = None,
) -> Page[FaultOut]:
    now = utc_now()
    rows = await repository.list_faults(session, now, limit, cursor, provider_id, in_force)
    return page(rows, limit, lambda fault: _fault_out(fault, now), lambda fault: fault.id)


@control.get(
    "/injections",
    response_model=Page[InjectionOut],
    summary="Each application of a fault",
    description="Which call, batch, payment or delivery each fault touched, in order.",
)
async def list_injections(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    fault_id: UUID | None = None,
    kind: FaultKind | None = None,
    provider_id: UUID | None = None,
    batch_id: UUID | None = None,
) -> Page[InjectionOut]:
    filters = {
        "fault_id": fault_id,
        "kind": kind.value if kind else None,
        "provider_id": provider_id,
        "batch_id": batch_id,
    }
    rows = await repository.list_injections(session, limit, cursor, filters)
    return page(rows, limit, _injection_out, lambda row: row.id)


def _injection_out(row: FaultInjection) -> InjectionOut:
    return InjectionOut.model_validate(row)


# --- the delivery log ----------------------------------------------------------------------


@control.get(
    "/deliveries",
    response_model=Page[DeliveryOut],
    summary="The webhook delivery log",
    description="Every webhook sent or to send, genuine (`kind: results`) or a fault's, with "
    "Amana's last answer, what Amana was expected to answer and the verdict. "
    "`fault=` lists the deliveries a fault shaped.",
)
async def list_deliveries(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    provider_id: UUID | None = None,
    kind: Annotated[Annotated[str, Text(pattern=r"^[a-z_0-9]{1,30}$")] | None, Query()] = None,
    fault: FaultKind | None = None,
    fault_id: UUID | None = None,
    status: DeliveryStatus | None = None,
    verdict: Verdict | None = None,
    webhook_id: Annotated[
        Annotated[str, Text(pattern=r"^[\x21-\x7e]{1,64}$")] | None, Query()
    ] = None,
) -> Page[DeliveryOut]:
    filters = {
        "provider_id": provider_id,
        "kind": kind,
        "fault": fault.value if fault else None,
        "fault_id": fault_id,
        "status": status,
        "verdict": verdict,
        "webhook_id": webhook_id,
    }
    rows = await repository.list_deliveries(session, limit, cursor, filters)
    return page(rows, limit, DeliveryOut.model_validate, lambda row: row.id)


@control.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetailOut,
    summary="One delivery with its body and every attempt",
)
async def get_delivery(delivery_id: UUID, session: SessionDep) -> DeliveryDetailOut:
    delivery = await repository.get_delivery(session, delivery_id)
    if delivery is None:
        raise Problem(404, "delivery-not-found", f"No delivery {delivery_id}")
    attempts = await repository.delivery_attempts(session, delivery_id)
    return _delivery_detail(delivery, [AttemptOut.model_validate(a) for a in attempts])


def _delivery_detail(delivery: Delivery, attempts: list[AttemptOut]) -> DeliveryDetailOut:
    summary = DeliveryOut.model_validate(delivery).model_dump()
    return DeliveryDetailOut(
        **summary,
        payment_numbers=delivery.payment_numbers,
        signing=delivery.signing,
        depends_on=delivery.depends_on,
        body=json.loads(delivery.body),
        attempt_log=attempts,
    )
