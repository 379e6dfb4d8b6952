"""Registry HTTP routes: thin, they validate, call a use case and shape the response."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from amana_common.audit import audited_read
from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import LocationCode
from amana_contracts.registry import HouseholdStatus
from registry import repository, service
from registry.schemas import HouseholdIn, HouseholdOut

router = APIRouter(prefix="/households", tags=["households"], responses=PROBLEM_RESPONSES)

ENROL = require(Role.registrar, Role.admin)
READ = require(Role.registrar, Role.programme_manager, Role.auditor, Role.admin)
# Households hold names and identifiers: every read leaves an audit record (ids, never names).
AUDITED = audited_read("household", filters=("location_code", "status", "cursor", "limit"))


@router.post(
    "",
    status_code=201,
    response_model=HouseholdOut,
    summary="Enrol a household",
    dependencies=[ENROL],
    description="Writes the household and its HouseholdEnrolled event in one transaction. "
    "Honours `Idempotency-Key`.",
)
async def enrol_household(
    body: HouseholdIn, request: Request, session: SessionDep, idempotency: IdempotencyDep
) -> Response:
    async def enrol() -> JSONResponse:
        household = await service.enrol_household(session, body)
        return JSONResponse(
            HouseholdOut.model_validate(household).model_dump(mode="json"),
            status_code=201,
            headers={
                "Location": str(request.url_for("get_household", household_id=household.id)),
                "ETag": f'"{household.version}"',
            },
        )

    return await idempotency.run(enrol)


@router.get(
    "/{household_id}",
    response_model=HouseholdOut,
    summary="Read a household",
    dependencies=[READ, AUDITED],
)
async def get_household(
    household_id: UUID, session: SessionDep, response: Response
) -> HouseholdOut:
    household = await service.household_by_id(session, household_id)
    response.headers["ETag"] = f'"{household.version}"'
    return HouseholdOut.model_validate(household)


@router.get(
    "",
    response_model=Page[HouseholdOut],
    summary="List households, in enrolment order",
    dependencies=[READ, AUDITED],
)
async def list_households(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    location_code: LocationCode | None = None,
    status: HouseholdStatus | None = None,
) -> Page[HouseholdOut]:
    rows = await repository.list_households(
        session, limit=limit, after=cursor, location_code=location_code, status=status
    )
    return page(rows, limit, HouseholdOut.model_validate, lambda household: household.id)
