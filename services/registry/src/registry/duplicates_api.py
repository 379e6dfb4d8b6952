"""Duplicate review and batch run routes: thin, they validate, call a use case and shape the
response."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from amana_common.audit import audited_read
from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import Timestamp
from registry import duplicates, search, service
from registry import duplicates_repository as queries
from registry.duplicates_schemas import (
    BulkDecisionsIn,
    BulkDecisionsOut,
    DecisionIn,
    FlagDetailOut,
    FlagOut,
    RunOut,
)
from registry.matching import FlagSource, FlagStatus
from registry.models import DuplicateFlag
from registry.settings import RegistrySettings

router = APIRouter(prefix="/duplicates", tags=["duplicates"], responses=PROBLEM_RESPONSES)

# Who may do what (README, "Roles"): registrars review, admins too and start batch runs;
# auditors read.
REVIEW = require(Role.registrar, Role.admin)
READ = require(Role.registrar, Role.admin, Role.auditor)
RUN = require(Role.admin)
READ_RUNS = require(Role.admin, Role.registrar, Role.auditor)
AUDITED_LIST = audited_read(
    "duplicate-flag",
    filters=(
        "status",
        "location_code",
        "household_id",
        "min_score",
        "source",
        "flagged_since",
        "cursor",
        "limit",
    ),
)
AUDITED_DETAIL = audited_read("duplicate-flag")

DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such flag"),
    409: problem_doc("The flag was decided already (naming who), or the merge is refused"),
}


def _actor(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return str(getattr(principal, "subject", None) or "unknown")


def _decision_context(request: Request) -> duplicates.DecisionContext:
    settings: RegistrySettings = request.app.state.settings
    return duplicates.DecisionContext(
        actor=_actor(request), max_members=settings.max_members_per_household
    )


async def _summaries(session: SessionDep, flags: list[DuplicateFlag]) -> list[FlagOut]:
    numbers = await queries.household_numbers(
        session, [h for flag in flags for h in (flag.household_id, flag.other_household_id)]
    )
    return [
        FlagOut.model_validate(flag).model_copy(
            update={
                "household_number": numbers.get(flag.household_id),
                "other_household_number": numbers.get(flag.other_household_id),
            }
        )
        for flag in flags
    ]


# --- batch runs (before /{flag_id}) ------------------------------------------------------------


@router.post(
    "/runs",
    status_code=202,
    response_model=RunOut,
    responses={409: problem_doc("Another run is queued or running")},
    summary="Start a batch duplicate detection over the whole registry",
    description="Queues a run; the registry worker runs it (`python -m registry dedupe` runs "
    "one from the command line). Follow it with `GET /duplicates/runs/{id}`. Honours "
    "`Idempotency-Key`.",
    dependencies=[RUN],
)
async def start_run(request: Request, session: SessionDep, idempotency: IdempotencyDep) -> Response:
    async def start() -> JSONResponse:
        run = await duplicates.request_run(session, _actor(request))
        location = str(request.url_for("get_run", run_id=run.id))
        body = RunOut.model_validate(run).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Location": location})

    return await idempotency.run(start)


@router.get(
    "/runs/{run_id:uuid}",
    response_model=RunOut,
    summary="A batch run and its progress",
    dependencies=[READ_RUNS],
)
async def get_run(run_id: UUID, session: SessionDep) -> RunOut:
    run = await queries.get_run(session, run_id)
    if run is None:
        raise Problem(404, "duplicate-run-not-found", f"No duplicate run {run_id}")
    return RunOut.model_validate(run)


@router.get(
    "/runs",
    response_model=Page[RunOut],
    summary="Batch runs, oldest first",
    dependencies=[READ_RUNS],
)
async def list_runs(
    session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[RunOut]:
    runs = await queries.list_runs(session, limit, cursor)
    return page(runs, limit, RunOut.model_validate, lambda run: run.id)


# --- flags ---------------------------------------------------------------------------------


@router.get(
    "",
    response_model=Page[FlagOut],
    summary="List duplicate flags (open ones by default), in flagging order",
    description="Filters combine: `status` (default `open`), `location_code` (that area and "
    "below), `household_id` (flags naming it), `min_score`, `source`, `flagged_since`.",
    dependencies=[READ, AUDITED_LIST],
)
async def list_flags(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    status: FlagStatus = "open",
    location_code: search.LocationPrefix | None = None,
    household_id: UUID | None = None,
    min_score: Annotated[float, Query(ge=0, le=1)] | None = None,
    source: FlagSource | None = None,
    flagged_since: Timestamp | None = None,
) -> Page[FlagOut]:
    filters = queries.FlagFilters(
        status=status,
        location=search.location_filter(location_code),
        household_id=household_id,
        min_score=min_score,
        source=source,
        flagged_since=flagged_since,
    )
    flags = await queries.list_flags(session, filters, limit, cursor)
    shown = await _summaries(session, flags[:limit])
    next_cursor = str(flags[limit - 1].id) if len(flags) > limit else None
    return Page(items=shown, next_cursor=next_cursor)


# Before /{flag_id}: the gateway matches a path to the first documented template it fits.
@router.post(
    "/decisions",
    response_model=BulkDecisionsOut,
    responses=DECISION_RESPONSES,
    summary="Decide several flags at once (all or nothing)",
    description="Up to 100 decisions, each as for one flag; applied in one transaction, so a "
    "refused one (naming `decisions.<i>`) refuses them all.",
    dependencies=[REVIEW],
)
async def decide_many(
    body: BulkDecisionsIn, request: Request, session: SessionDep
) -> BulkDecisionsOut:
    decided = await duplicates.decide_many(
        session,
        [(item.flag_id, item.request(), item.note) for item in body.decisions],
        _decision_context(request),
    )
    return BulkDecisionsOut(items=await _summaries(session, decided))


@router.get(
    "/{flag_id:uuid}",  # typed, so that GET /duplicates/decisions is 405, not a 422
    response_model=FlagDetailOut,
    summary="A flag with both households side by side and what agreed",
    dependencies=[READ, AUDITED_DETAIL],
)
async def get_flag(flag_id: UUID, session: SessionDep) -> FlagDetailOut:
    flag = await queries.get_flag(session, flag_id)
    if flag is None:
        raise duplicates.flag_not_found(flag_id)
    return await _detail(session, flag)


async def _detail(session: SessionDep, flag: DuplicateFlag) -> FlagDetailOut:
    household = await service.household_by_id(session, flag.household_id)
    other = await service.household_by_id(session, flag.other_household_id)
    [summary] = await _summaries(session, [flag])
    return FlagDetailOut(
        **summary.model_dump(),
        comparison=flag.comparison,
        household=service.present(household),
        other_household=service.present(other),
    )


@router.post(
    "/{flag_id:uuid}/decision",
    response_model=FlagOut,
    responses=DECISION_RESPONSES,
    summary="Decide a flag: not_duplicate, or duplicate (merge or exit the other)",
    description="`not_duplicate` is remembered (the pair is never flagged again). `duplicate` "
    "with `action: merge` merges the other household into the surviving one (README, "
    "'Merging'), with `action: exit` exits the other; either way the other household exits "
    "with the reason `duplicate of household <number>`. A household left with no open flag "
    "leaves review. Publishes DuplicateReviewed.",
    dependencies=[REVIEW],
)
async def decide(flag_id: UUID, body: DecisionIn, request: Request, session: SessionDep) -> FlagOut:
    flag = await duplicates.decide(
        session, flag_id, body.request(), body.note, _decision_context(request)
    )
    [summary] = await _summaries(session, [flag])
    return summary
