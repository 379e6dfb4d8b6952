"""Provider HTTP routes: thin, they validate, call a use case and shape the response.

Three routers, so that a policy can be attached to each: `providers` (providers and their
status), `pay_points` (one provider's pay points) and `directory` (read-only queries across
providers, for enrolment screens).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.auth import Principal, Role, ensure_provider_scope, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, problem_doc
from amana_common.etag import IF_MATCH_RESPONSES, IfMatchDep, etag
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import LocationCode
from amana_contracts.provider import Mechanism, PayPointStatus, ProviderStatus
from provider import repository, service
from provider.models import PayPoint, Provider
from provider.schemas import (
    PayPointIn,
    PayPointOut,
    PayPointPatch,
    ProviderIn,
    ProviderOut,
    ProviderPatch,
    ReasonIn,
    Serving,
    ServingProvider,
    StatusChangeOut,
)
from provider.settings import ProviderSettings

CONFLICT_RESPONSES: dict[int | str, dict[str, Any]] = {409: problem_doc("Conflict")}

providers = APIRouter(prefix="/providers", tags=["providers"], responses=PROBLEM_RESPONSES)
pay_points = APIRouter(
    prefix="/providers/{provider_id}/pay-points", tags=["pay points"], responses=PROBLEM_RESPONSES
)
directory = APIRouter(tags=["directory"], responses=PROBLEM_RESPONSES)

# Who may do what (README, "Roles"). A provider's own token reads its own provider only.
READERS = (
    Role.admin,
    Role.finance,
    Role.programme_manager,
    Role.payroll_approver,
    Role.registrar,
    Role.auditor,
)
MANAGE = require(Role.admin, Role.finance)
READ_ANY = require(*READERS)
READ_OWN = require(*READERS, Role.provider)


async def _own_provider(provider_id: UUID, principal: Principal = READ_OWN) -> Principal:
    """A provider token on another provider's objects is 404: they cannot even be found."""
    ensure_provider_scope(principal, provider_id)
    return principal


OWN_PROVIDER = Depends(_own_provider)

Serves = Annotated[
    LocationCode | None,
    Query(description="Only pay points serving this location: one of theirs covers it"),
]
Within = Annotated[
    LocationCode | None,
    Query(description="Only pay points with a location in this area (it or any code below)"),
]


def _rules(request: Request) -> service.Rules:
    settings: ProviderSettings = request.app.state.settings
    return service.Rules(
        api_urls=settings.api_url_policy(), max_pay_points=settings.max_pay_points_per_provider
    )


def _actor(request: Request) -> str | None:
    """Who acts, for the status history: the authenticated subject, once there is one."""
    return getattr(getattr(request.state, "principal", None), "subject", None)


RulesDep = Annotated[service.Rules, Depends(_rules)]
ActorDep = Annotated[str | None, Depends(_actor)]


def _answer(
    model: type[BaseModel],
    row: Provider | PayPoint,
    status_code: int = 200,
    location: str | None = None,
) -> JSONResponse:
    """`row` shaped by `model`, with its version as ETag."""
    headers = {"ETag": etag(row.version)} | ({"Location": location} if location else {})
    body = model.model_validate(row).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=headers)


# --- providers ---------------------------------------------------------------------------


@providers.post(
    "",
    status_code=201,
    response_model=ProviderOut,
    responses=CONFLICT_RESPONSES,
    summary="Register a provider",
    description="Writes the provider and its ProviderRegistered event in one transaction. "
    "Honours `Idempotency-Key`. A duplicate code is 409.",
    dependencies=[MANAGE],
)
async def register_provider(
    body: ProviderIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
    rules: RulesDep,
    actor: ActorDep,
) -> Response:
    async def register() -> JSONResponse:
        provider = await service.register_provider(session, body, rules, actor)
        location = str(request.url_for("get_provider", provider_id=provider.id))
        return _answer(ProviderOut, provider, 201, location)

    return await idempotency.run(register)


@providers.get(
    "", response_model=Page[ProviderOut], summary="List providers", dependencies=[READ_ANY]
)
async def list_providers(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    mechanism: Mechanism | None = None,
    location_code: Annotated[
        LocationCode | None, Query(description="Only providers whose service areas cover it")
    ] = None,
    status: ProviderStatus | None = None,
) -> Page[ProviderOut]:
    rows = await repository.list_providers(
        session,
        limit=limit,
        after=cursor,
        mechanism=mechanism,
        location_code=location_code,
        status=status,
    )
    return page(rows, limit, ProviderOut.model_validate, lambda provider: provider.id)


@providers.get(
    "/{provider_id}",
    response_model=ProviderOut,
    summary="Read a provider",
    dependencies=[OWN_PROVIDER],
)
async def get_provider(provider_id: UUID, session: SessionDep) -> JSONResponse:
    return _answer(ProviderOut, await service.provider_by_id(session, provider_id))


@providers.patch(
    "/{provider_id}",
    response_model=ProviderOut,
    responses=IF_MATCH_RESPONSES,
    summary="Change a provider",
    description="Requires `If-Match` with the provider's ETag. Publishes ProviderUpdated.",
    dependencies=[MANAGE],
)
async def update_provider(
    provider_id: UUID,
    body: ProviderPatch,
    session: SessionDep,
    if_match: IfMatchDep,
    rules: RulesDep,
) -> JSONResponse:
    provider = await service.update_provider(session, provider_id, body, if_match, rules)
    return _answer(ProviderOut, provider)


def _status_route(action: str, status: ProviderStatus, summary: str, event: str) -> None:
    """`POST /providers/{id}/suspend` and `.../reactivate`: one handler, two routes."""

    @providers.post(
        f"/{{provider_id}}/{action}",
        response_model=ProviderOut,
        responses=CONFLICT_RESPONSES,
        name=f"{action}_provider",
        dependencies=[MANAGE],
        summary=summary,
        description=f"409 when it is {status} already. Publishes {event}. The reason is kept "
        "in the status history. Honours `Idempotency-Key`.",
    )
    async def change_status(
        provider_id: UUID,
        body: ReasonIn,
        session: SessionDep,
        idempotency: IdempotencyDep,
        actor: ActorDep,
    ) -> Response:
        async def change() -> JSONResponse:
            provider = await service.change_status(session, provider_id, status, body.reason, actor)
            return _answer(ProviderOut, provider)

        return await idempotency.run(change)


_status_route("suspend", "suspended", "Suspend a provider", "ProviderSuspended")
_status_route("reactivate", "active", "Reactivate a suspended provider", "ProviderReactivated")


@providers.get(
    "/{provider_id}/status-history",
    response_model=list[StatusChangeOut],
    summary="A provider's status changes, newest first",
    dependencies=[OWN_PROVIDER],
)
async def status_history(
    provider_id: UUID, session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE
) -> list[StatusChangeOut]:
    changes = await service.status_history(session, provider_id, limit)
    return [StatusChangeOut.model_validate(change) for change in changes]


# --- pay points --------------------------------------------------------------------------


@pay_points.post(
    "",
    status_code=201,
    response_model=PayPointOut,
    responses=CONFLICT_RESPONSES,
    summary="Add a pay point",
    description="The provider must offer cash_pay_point and its service areas must cover "
    "every location of the pay point. Publishes ProviderUpdated. Honours `Idempotency-Key`.",
    dependencies=[MANAGE],
)
async def add_pay_point(
    provider_id: UUID,
    body: PayPointIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
    rules: RulesDep,
) -> Response:
    async def add() -> JSONResponse:
        point = await service.add_pay_point(session, provider_id, body, rules)
        location = str(
            request.url_for("get_pay_point", provider_id=provider_id, pay_point_id=point.id)
        )
        return _answer(PayPointOut, point, 201, location)

    return await idempotency.run(add)


@pay_points.get(
    "",
    response_model=Page[PayPointOut],
    summary="List a provider's pay points",
    dependencies=[OWN_PROVIDER],
)
async def list_provider_pay_points(
    provider_id: UUID,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    serves: Serves = None,
    within: Within = None,
    status: PayPointStatus | None = None,
) -> Page[PayPointOut]:
    await service.provider_by_id(session, provider_id)
    return await _pay_points_page(session, limit, cursor, serves, within, status, provider_id)


@pay_points.get(
    "/{pay_point_id}",
    response_model=PayPointOut,
    summary="Read a pay point",
    dependencies=[OWN_PROVIDER],
)
async def get_pay_point(provider_id: UUID, pay_point_id: UUID, session: SessionDep) -> JSONResponse:
    return _answer(PayPointOut, await service.pay_point_by_id(session, provider_id, pay_point_id))


@pay_points.patch(
    "/{pay_point_id}",
    response_model=PayPointOut,
    responses=IF_MATCH_RESPONSES,
    summary="Change a pay point",
    description="Requires `If-Match` with the pay point's ETag. Publishes ProviderUpdated.",
    dependencies=[MANAGE],
)
async def update_pay_point(
    provider_id: UUID,
    pay_point_id: UUID,
    body: PayPointPatch,
    session: SessionDep,
    if_match: IfMatchDep,
) -> JSONResponse:
    point = await service.update_pay_point(session, provider_id, pay_point_id, body, if_match)
    return _answer(PayPointOut, point)


@pay_points.delete(
    "/{pay_point_id}",
    status_code=204,
    responses=IF_MATCH_RESPONSES,
    summary="Remove a pay point",
    description="Requires `If-Match` with the pay point's ETag. Publishes ProviderUpdated. "
    "To close a pay point for a while, set its status to inactive instead.",
    dependencies=[MANAGE],
)
async def remove_pay_point(
    provider_id: UUID, pay_point_id: UUID, session: SessionDep, if_match: IfMatchDep
) -> Response:
    await service.remove_pay_point(session, provider_id, pay_point_id, if_match)
    return Response(status_code=204)


# --- directory ---------------------------------------------------------------------------


@directory.get(
    "/pay-points", response_model=Page[PayPointOut], summary="List pay points by location"
)
async def list_pay_points(
    principal: Annotated[Principal, READ_OWN],  # first: no database work for a refused call
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    serves: Serves = None,
    within: Within = None,
    status: PayPointStatus | None = None,
    provider_id: UUID | None = None,
) -> Page[PayPointOut]:
    if principal.is_provider_scoped:  # a provider lists its own pay points only
        provider_id = principal.provider_id
    return await _pay_points_page(session, limit, cursor, serves, within, status, provider_id)


async def _pay_points_page(
    session: AsyncSession,
    limit: int,
    cursor: UUID | None,
    serves: str | None,
    within: str | None,
    status: str | None,
    provider_id: UUID | None,
) -> Page[PayPointOut]:
    rows = await repository.list_pay_points(
        session,
        limit=limit,
        after=cursor,
        provider_id=provider_id,
        serves=serves,
        within=within,
        status=status,
    )
    return page(rows, limit, PayPointOut.model_validate, lambda point: point.id)


@directory.get(
    "/lookup",
    response_model=Serving,
    summary="Which active providers and pay points serve a location",
    description="For enrolment screens: active providers whose service areas cover the "
    "location and, for cash, their active pay points serving it (a provider offering only "
    "cash with no such pay point is left out). A location code covers itself and every "
    "code below it.",
    dependencies=[READ_ANY],
)
async def lookup(
    session: SessionDep, location_code: LocationCode, mechanism: Mechanism | None = None
) -> Serving:
    offers = await service.serving(session, location_code, mechanism)
    return Serving(
        location_code=location_code,
        mechanism=mechanism,
        providers=[
            ServingProvider(
                id=offer.provider.id,
                code=offer.provider.code,
                legal_name=offer.provider.legal_name,
                currencies=offer.provider.currencies,
                mechanisms=offer.mechanisms,
                fee=offer.provider.fee,
                pay_points=[PayPointOut.model_validate(p) for p in offer.pay_points],
            )
            for offer in offers
        ],
    )
