"""Registry HTTP routes: thin, they validate, call a use case and shape the response."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from amana_common.audit import audited_read
from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, problem_doc
from amana_common.etag import IF_MATCH_RESPONSES, IfMatchDep, etag
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import Text, Timestamp
from amana_contracts.registry import HouseholdStatus, IdentifierScheme
from registry import duplicates, repository, search, service
from registry.matching import FlagSource
from registry.models import Household
from registry.schemas import (
    HouseholdChangeOut,
    HouseholdIn,
    HouseholdOut,
    HouseholdPatch,
    MemberPatch,
    NewMemberIn,
    PaymentPreferenceIn,
    SearchResults,
    StatusChangeOut,
    StatusIn,
)
from registry.settings import RegistrySettings

router = APIRouter(prefix="/households", tags=["households"], responses=PROBLEM_RESPONSES)

# Who may do what (README, "Roles").
WRITE = require(Role.registrar, Role.admin)
READ = require(Role.registrar, Role.programme_manager, Role.auditor, Role.admin)
# Households hold names and identifiers: every read leaves an audit record with the ids it
# answered and the filters that hold no personal data (never a searched name, phone or number).
AUDITED = audited_read(
    "household",
    filters=(
        "location_code",
        "status",
        "updated_since",
        "duplicate_review_open",
        "attribute",
        "cursor",
        "limit",
    ),
)
AUDITED_SEARCH = audited_read("household", filters=("scheme", "limit"))
AUDITED_HISTORY = audited_read("household-history", filters=("cursor", "limit"))

SearchName = Annotated[str, Text(min_length=search.MIN_NAME_LENGTH, max_length=200)]
SearchNumber = Annotated[str, Text(pattern=r"^[A-Za-z0-9]{1,20}$")]
SearchIdentifier = Annotated[str, Text(pattern=r"^[A-Za-z0-9 ./-]{1,64}$")]
SearchPhone = Annotated[str, Text(pattern=r"^[0-9+ ()./-]{1,32}$")]

CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **IF_MATCH_RESPONSES,
    409: problem_doc("Conflict: an identifier held elsewhere, or a rule of the household"),
}


def _context(request: Request) -> service.Context:
    settings: RegistrySettings = request.app.state.settings
    principal = getattr(request.state, "principal", None)
    return service.Context(
        rules=request.app.state.cleaning_rules,
        default_currency=settings.default_currency,
        max_members=settings.max_members_per_household,
        actor=getattr(principal, "subject", None),
    )


ContextDep = Annotated[service.Context, Depends(_context)]


async def _check_duplicates(
    session: SessionDep, household_id: UUID, context: service.Context, source: FlagSource
) -> None:
    """Enrolments and changes are checked for duplicates in their own transaction (README,
    "Duplicate detection"): a flagged household answers `under_review`."""
    await duplicates.flag_candidates(session, [household_id], actor=context.actor, source=source)


def _answer(
    household: Household, status_code: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": etag(household.version)} | ({"Location": location} if location else {})
    body = service.present(household).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=HouseholdOut,
    responses={409: problem_doc("An identifier is held by another household")},
    summary="Enrol a household",
    dependencies=[WRITE],
    description="Cleans the input (README, 'Cleaning rules'), then writes the household and its "
    "HouseholdEnrolled event in one transaction. Honours `Idempotency-Key`.",
)
async def enrol_household(
    body: HouseholdIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
    context: ContextDep,
) -> Response:
    async def enrol() -> JSONResponse:
        household = await service.enrol_household(session, body, context)
        await _check_duplicates(session, household.id, context, "enrolment")
        location = str(request.url_for("get_household", household_id=household.id))
        return _answer(household, 201, location)

    return await idempotency.run(enrol)


@router.get(
    "/search",
    response_model=SearchResults,
    summary="Find households by number, identifier, phone or name",
    description="Give exactly one of `number`, `identifier` (with an optional `scheme`), `phone` "
    "or `name`. Names match accent- and case-insensitively by trigram word similarity, best "
    "first; the others match exactly after the same cleaning as at entry.",
    dependencies=[READ, AUDITED_SEARCH],
)
async def search_households(
    session: SessionDep,
    context: ContextDep,
    number: SearchNumber | None = None,
    identifier: SearchIdentifier | None = None,
    scheme: IdentifierScheme | None = None,
    phone: SearchPhone | None = None,
    name: SearchName | None = None,
    limit: Annotated[int, Query(ge=1, le=search.MAX_HITS)] = search.DEFAULT_HITS,
) -> SearchResults:
    query = search.SearchQuery(number, identifier, scheme, phone, name, limit)
    return await search.run(session, query, context.rules)


@router.get(
    "/{household_id}",
    response_model=HouseholdOut,
    summary="Read a household",
    dependencies=[READ, AUDITED],
)
async def get_household(household_id: UUID, session: SessionDep) -> JSONResponse:
    return _answer(await service.household_by_id(session, household_id))


@router.get(
    "",
    response_model=Page[HouseholdOut],
    summary="List households, in enrolment order",
    description="Filters combine. `location_code`: that area and every area below it. "
    "`attribute`: `name:op:value`, op one of eq, gt, gte, lt, lte (ranges on number and "
    "integer attributes), e.g. `attribute=pmt_score:lt:30&attribute=housing_type:eq:temporary`.",
    dependencies=[READ, AUDITED],
)
async def list_households(
    session: SessionDep,
    context: ContextDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    location_code: search.LocationPrefix | None = None,
    status: HouseholdStatus | None = None,
    updated_since: Timestamp | None = None,
    duplicate_review_open: bool | None = None,
    attribute: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006 (checked below)
) -> Page[HouseholdOut]:
    filters = search.attribute_filters(attribute, context.rules)
    location = search.location_filter(location_code)
    rows = await repository.list_households(
        session,
        limit=limit,
        after=cursor,
        location=location,
        status=status,
        updated_since=updated_since,
        duplicate_review_open=duplicate_review_open,
        attributes=filters,
    )
    return page(rows, limit, service.present, lambda household: household.id)


@router.patch(
    "/{household_id:uuid}",  # typed, so that PATCH /households/search is 405, not a 422
    response_model=HouseholdOut,
    responses={**CHANGE_RESPONSES, 405: problem_doc("Not a household id: nothing to change")},
    summary="Change a household's own fields",
    description="Requires `If-Match`. Publishes HouseholdUpdated.",
    dependencies=[WRITE],
)
async def update_household(
    household_id: UUID,
    body: HouseholdPatch,
    session: SessionDep,
    if_match: IfMatchDep,
    context: ContextDep,
) -> JSONResponse:
    await service.update_household(session, household_id, body, if_match, context)
    await _check_duplicates(session, household_id, context, "update")
    return _answer(await service.household_by_id(session, household_id))


@router.post(
    "/{household_id}/status",
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Change a household's status, with a reason",
    description="Requires `If-Match`. active <-> suspended; any -> exited (final: frees the "
    "household's identifiers). A household with an open duplicate review cannot be made "
    "active. Publishes HouseholdStatusChanged.",
    dependencies=[WRITE],
)
async def change_status(
    household_id: UUID,
    body: StatusIn,
    session: SessionDep,
    if_match: IfMatchDep,
    context: ContextDep,
) -> JSONResponse:
    await service.change_status(session, household_id, body, if_match, context.actor)
    await _check_duplicates(session, household_id, context, "update")
    return _answer(await service.household_by_id(session, household_id))


@router.get(
    "/{household_id}/status-history",
    response_model=Page[StatusChangeOut],
    summary="A household's status changes, oldest first",
    dependencies=[READ, AUDITED_HISTORY],
)
async def status_history(
    household_id: UUID, session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[StatusChangeOut]:
    await service.household_by_id(session, household_id)
    rows = await repository.status_history(session, household_id, limit, cursor)
    return page(rows, limit, StatusChangeOut.model_validate, lambda change: change.id)


@router.get(
    "/{household_id}/history",
    response_model=Page[HouseholdChangeOut],
    summary="Who changed what and when, oldest first",
    description="One entry per version, with every field that changed, before and after.",
    dependencies=[READ, AUDITED_HISTORY],
)
async def change_history(
    household_id: UUID, session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[HouseholdChangeOut]:
    await service.household_by_id(session, household_id)
    rows = await repository.change_history(session, household_id, limit, cursor)
    return page(rows, limit, HouseholdChangeOut.model_validate, lambda change: change.id)


@router.post(
    "/{household_id}/members",
    status_code=201,
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Add a member",
    description="Requires `If-Match`; honours `Idempotency-Key`. Publishes HouseholdUpdated.",
    dependencies=[WRITE],
)
async def add_member(
    household_id: UUID,
    body: NewMemberIn,
    request: Request,
    session: SessionDep,
    if_match: IfMatchDep,
    idempotency: IdempotencyDep,
    context: ContextDep,
) -> Response:
    async def add() -> JSONResponse:
        member = await service.add_member(session, household_id, body, if_match, context)
        await _check_duplicates(session, household_id, context, "update")
        household = await service.household_by_id(session, household_id)
        location = str(request.url_for("get_household", household_id=household_id))
        return _answer(household, 201, f"{location}#member-{member.id}")

    return await idempotency.run(add)


@router.patch(
    "/{household_id}/members/{member_id}",
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Change a member",
    description="Requires `If-Match` (the household's ETag). Publishes HouseholdUpdated.",
    dependencies=[WRITE],
)
async def update_member(
    household_id: UUID,
    member_id: UUID,
    body: MemberPatch,
    session: SessionDep,
    if_match: IfMatchDep,
    context: ContextDep,
) -> JSONResponse:
    await service.update_member(session, household_id, member_id, body, if_match, context)
    await _check_duplicates(session, household_id, context, "update")
    return _answer(await service.household_by_id(session, household_id))


@router.delete(
    "/{household_id}/members/{member_id}",
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Remove a member",
    description="Requires `If-Match`. The head cannot be removed (make another member head "
    "first); removing the primary recipient gives the role back to the head.",
    dependencies=[WRITE],
)
async def remove_member(
    household_id: UUID,
    member_id: UUID,
    session: SessionDep,
    if_match: IfMatchDep,
    context: ContextDep,
) -> JSONResponse:
    await service.remove_member(session, household_id, member_id, if_match, context.actor)
    await _check_duplicates(session, household_id, context, "update")
    return _answer(await service.household_by_id(session, household_id))


@router.put(
    "/{household_id}/payment-preference",
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Set the payment preference",
    description="Requires `If-Match`. The provider must exist and be active, offer the "
    "mechanism and the currency, serve the household's location and, for cash, own an active "
    "pay point serving it; the account is checked (E.164, IBAN, bank code). Publishes "
    "HouseholdUpdated.",
    dependencies=[WRITE],
)
async def set_payment_preference(
    household_id: UUID,
    body: PaymentPreferenceIn,
    session: SessionDep,
    if_match: IfMatchDep,
    context: ContextDep,
) -> JSONResponse:
    household = await service.set_payment_preference(session, household_id, body, if_match, context)
    return _answer(household)


@router.delete(
    "/{household_id}/payment-preference",
    response_model=HouseholdOut,
    responses=CHANGE_RESPONSES,
    summary="Clear the payment preference",
    description="Requires `If-Match`. Publishes HouseholdUpdated (not payable).",
    dependencies=[WRITE],
)
async def clear_payment_preference(
    household_id: UUID, session: SessionDep, if_match: IfMatchDep, context: ContextDep
) -> JSONResponse:
    household = await service.clear_payment_preference(
        session, household_id, if_match, context.actor
    )
    return _answer(household)
