"""Payroll HTTP routes: thin, they validate, call a use case and shape the response.

Three routers, one per resource the gateway routes: `/programmes` (with their versions,
cycles, simulation and the trigger of a cycle's payroll), `/cycles` and `/payrolls`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from amana_common.audit import audited_read
from amana_common.auth import Principal, Role, require
from amana_common.db import Database, SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc
from amana_common.etag import IF_MATCH_RESPONSES, IfMatchDep, etag
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import DEFAULT_PAGE_SIZE, Cursor, Limit, Page, page
from amana_common.validation import Date, LocationCode
from amana_contracts.payroll import ProgrammeStatus
from payroll import repository, service
from payroll.domain import PayrollStatus
from payroll.models import Cycle, Payroll, PayrollLine, Programme
from payroll.schemas import (
    AccountOut,
    CycleOut,
    Difference,
    IdentifierOut,
    LineOut,
    LocationComparison,
    LocationOut,
    OptionalReasonIn,
    PayrollOut,
    ProgrammeIn,
    ProgrammeOut,
    ProgrammePatch,
    ProgressOut,
    ReasonIn,
    RuleVersionOut,
    SimulationIn,
    SimulationOut,
    SummaryOut,
    Tally,
    TriggerIn,
    VersionIn,
)
from payroll.settings import PayrollSettings

CONFLICT: dict[int | str, dict[str, Any]] = {409: problem_doc("Conflict with the current state")}

programmes = APIRouter(prefix="/programmes", tags=["programmes"], responses=PROBLEM_RESPONSES)
cycles = APIRouter(prefix="/cycles", tags=["cycles"], responses=PROBLEM_RESPONSES)
payrolls = APIRouter(prefix="/payrolls", tags=["payrolls"], responses=PROBLEM_RESPONSES)

# Who may do what (README, "Roles"). Analysts see counts and amounts, never a line.
MANAGE = require(Role.admin, Role.programme_manager)
DECIDE = require(Role.payroll_approver)
SIMULATE = require(Role.admin, Role.programme_manager, Role.analyst)
READ = require(
    Role.admin,
    Role.programme_manager,
    Role.payroll_approver,
    Role.finance,
    Role.auditor,
    Role.analyst,
)
READ_LINES = require(
    Role.admin, Role.programme_manager, Role.payroll_approver, Role.finance, Role.auditor
)

Manager = Annotated[Principal, MANAGE]
Approver = Annotated[Principal, DECIDE]


def _settings(request: Request) -> PayrollSettings:
    settings: PayrollSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[PayrollSettings, Depends(_settings)]


def _today() -> date:
    return datetime.now(UTC).date()


def _answer(
    body: BaseModel, version: int, status_code: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": etag(version)} | ({"Location": location} if location else {})
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


def programme_out(programme: Programme) -> ProgrammeOut:
    return ProgrammeOut.model_validate(programme)


def _programme(
    programme: Programme, status_code: int = 200, location: str | None = None
) -> JSONResponse:
    return _answer(programme_out(programme), programme.version, status_code, location)


# --- programmes -------------------------------------------------------------------------


@programmes.post(
    "",
    status_code=201,
    response_model=ProgrammeOut,
    responses=CONFLICT,
    summary="Define a programme",
    description="A draft programme with version 1 of its eligibility rules, benefit formula "
    "and budget priority (see the EligibilityRule, BenefitFormula and PriorityKey schemas), "
    "and its cycles. An active provider must serve the currency. Publishes ProgrammeCreated. "
    "Honours `Idempotency-Key`; a duplicate code is 409.",
)
async def create_programme(
    principal: Manager,
    body: ProgrammeIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
    settings: SettingsDep,
) -> Response:
    async def create() -> JSONResponse:
        programme = await service.create_programme(
            session, body, principal.subject, settings.eligibility_attributes, _today()
        )
        location = str(request.url_for("get_programme", programme_id=programme.id))
        return _programme(programme, 201, location)

    return await idempotency.run(create)


@programmes.get(
    "", response_model=Page[ProgrammeOut], summary="List programmes", dependencies=[READ]
)
async def list_programmes(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    status: ProgrammeStatus | None = None,
) -> Page[ProgrammeOut]:
    rows = await repository.list_programmes(session, limit=limit, after=cursor, status=status)
    return page(rows, limit, programme_out, lambda p: p.id)


@programmes.get(
    "/{programme_id}", response_model=ProgrammeOut, summary="Read a programme", dependencies=[READ]
)
async def get_programme(programme_id: UUID, session: SessionDep) -> JSONResponse:
    return _programme(await service.programme_by_id(session, programme_id))


@programmes.patch(
    "/{programme_id}",
    response_model=ProgrammeOut,
    responses=IF_MATCH_RESPONSES | CONFLICT,
    summary="Change a programme",
    description="Requires `If-Match`. Currency, start date and frequency change only in a "
    "draft; cycles past a new end date are dropped (409 if one has a payroll). Publishes "
    "ProgrammeUpdated.",
)
async def update_programme(
    principal: Manager,
    programme_id: UUID,
    body: ProgrammePatch,
    session: SessionDep,
    if_match: IfMatchDep,
) -> JSONResponse:
    programme = await service.update_programme(
        session, programme_id, body, if_match, principal.subject, _today()
    )
    return _programme(programme)


def _status_route(action: str, status: str, summary: str) -> None:
    """`POST /programmes/{id}/activate`, `.../suspend`, `.../close`: one handler each."""

    @programmes.post(
        f"/{{programme_id}}/{action}",
        response_model=ProgrammeOut,
        responses=CONFLICT,
        name=f"{action}_programme",
        summary=summary,
        description="draft → active → suspended ↔ active; any → closed (final). 409 when "
        "the change is not allowed from the current status. Publishes ProgrammeUpdated.",
    )
    async def change_status(
        principal: Manager, programme_id: UUID, body: OptionalReasonIn, session: SessionDep
    ) -> JSONResponse:
        programme = await service.change_programme_status(
            session, programme_id, status, body.reason, principal.subject
        )
        return _programme(programme)


_status_route("activate", "active", "Activate a programme (the scheduler starts generating)")
_status_route("suspend", "suspended", "Suspend a programme (nothing is generated or approved)")
_status_route("close", "closed", "Close a programme for good")


@programmes.post(
    "/{programme_id}/versions",
    status_code=201,
    response_model=RuleVersionOut,
    responses=IF_MATCH_RESPONSES | CONFLICT,
    summary="Change rules, formula or priority: a new version",
    description="Requires `If-Match` with the programme's ETag. The new version is the one "
    "payrolls generated from now on use; past payrolls keep theirs. Publishes "
    "ProgrammeUpdated.",
)
async def add_version(
    principal: Manager,
    programme_id: UUID,
    body: VersionIn,
    request: Request,
    session: SessionDep,
    if_match: IfMatchDep,
    settings: SettingsDep,
) -> JSONResponse:
    version = await service.add_rule_version(
        session, programme_id, body, if_match, principal.subject, settings.eligibility_attributes
    )
    location = str(
        request.url_for("get_version", programme_id=programme_id, version=version.version)
    )
    return _answer(RuleVersionOut.model_validate(version), version.version, 201, location)


@programmes.get(
    "/{programme_id}/versions",
    response_model=list[RuleVersionOut],
    summary="A programme's versions of rules and formula, newest first",
    dependencies=[READ],
)
async def list_versions(
    programme_id: UUID,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    before: Annotated[int | None, Query(ge=1, description="Versions older than this")] = None,
) -> list[RuleVersionOut]:
    await service.programme_by_id(session, programme_id)
    rows = await repository.list_rule_versions(session, programme_id, limit=limit, before=before)
    return [RuleVersionOut.model_validate(row) for row in rows[:limit]]


@programmes.get(
    "/{programme_id}/versions/{version}",
    response_model=RuleVersionOut,
    summary="One version of a programme's rules and formula",
    dependencies=[READ],
)
async def get_version(
    programme_id: UUID, version: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep
) -> RuleVersionOut:
    return RuleVersionOut.model_validate(await service.rule_version(session, programme_id, version))


@programmes.post(
    "/{programme_id}/simulate",
    response_model=SimulationOut,
    summary="What-if: candidate rules against the current version",
    description="Evaluates the candidate rules, formula and priority (any left out are the "
    "current version's) and the current version over every household, on a cycle's date and "
    "budget, and answers who is eligible, paid, left out and why, the cost, per location, and "
    "the difference: households newly included, newly excluded, and the cost delta. Writes "
    "nothing. Carry-overs are not simulated.",
)
async def simulate(
    principal: Annotated[Principal, SIMULATE],
    programme_id: UUID,
    body: SimulationIn,
    session: SessionDep,
    settings: SettingsDep,
) -> SimulationOut:
    result = await service.simulate(
        session, programme_id, body, settings.eligibility_attributes, _today(), body.location_level
    )
    return _simulation_out(result, settings.max_simulation_locations)


def _simulation_out(result: service.SimulationResult, max_locations: int) -> SimulationOut:
    comparison = result.comparison
    codes = sorted(comparison.locations)
    return SimulationOut(
        programme_id=result.programme.id,
        current_version=result.programme.rules_version,
        cycle_sequence=result.cycle.sequence,
        cycle_date=result.cycle.period_start,
        budget_minor=result.budget_minor,
        candidate=Tally.model_validate(asdict(comparison.candidate)),
        current=Tally.model_validate(asdict(comparison.current)),
        difference=Difference(
            newly_included=comparison.newly_included,
            newly_excluded=comparison.newly_excluded,
            cost_delta_minor=comparison.cost_delta_minor,
        ),
        by_location=[
            LocationComparison.model_validate(asdict(comparison.locations[code]))
            for code in codes[:max_locations]
        ],
        locations_truncated=len(codes) > max_locations,
    )


@programmes.get(
    "/{programme_id}/cycles",
    response_model=Page[CycleOut],
    summary="A programme's cycles, with their payroll",
    dependencies=[READ],
)
async def list_programme_cycles(
    programme_id: UUID, session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: Cursor = None
) -> Page[CycleOut]:
    await service.programme_by_id(session, programme_id)
    return await _cycles_page(session, limit, cursor, programme_id, None, None)


@programmes.post(
    "/{programme_id}/payrolls",
    status_code=202,
    response_model=PayrollOut,
    responses=CONFLICT,
    summary="Generate a cycle's payroll now",
    description="For an active programme and one of its cycles (422 when the cycle falls "
    "outside the programme's dates, 409 when the programme is not active or the cycle has a "
    "payroll that is not rejected). The payroll is created GENERATING and the worker "
    "generates it: follow its `progress`. You become its maker: someone else approves it. "
    "Honours `Idempotency-Key`.",
)
async def trigger_payroll(
    principal: Manager,
    programme_id: UUID,
    body: TriggerIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Response:
    async def trigger() -> JSONResponse:
        payroll = await service.trigger_payroll(
            session, programme_id, body.cycle_sequence, principal.subject
        )
        location = str(request.url_for("get_payroll", payroll_id=payroll.id))
        return _answer(payroll_out(payroll, None), payroll.version, 202, location)

    return await idempotency.run(trigger)


# --- cycles -----------------------------------------------------------------------------


async def _cycles_page(
    session: Any,
    limit: int,
    cursor: UUID | None,
    programme_id: UUID | None,
    payment_from: date | None,
    payment_to: date | None,
) -> Page[CycleOut]:
    rows = await repository.list_cycles(
        session,
        limit=limit,
        after=cursor,
        programme_id=programme_id,
        payment_from=payment_from,
        payment_to=payment_to,
    )
    live = await repository.live_payrolls(session, [c.id for c in rows[:limit]])
    return page(rows, limit, lambda c: _cycle_out(c, live.get(c.id)), lambda c: c.id)


def _cycle_out(cycle: Cycle, payroll: Payroll | None) -> CycleOut:
    out = CycleOut.model_validate(cycle)
    if payroll is not None:
        out.payroll_id = payroll.id
        out.payroll_status = PayrollStatus(payroll.status)
    return out


@cycles.get("", response_model=Page[CycleOut], summary="List cycles", dependencies=[READ])
async def list_cycles(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    programme_id: UUID | None = None,
    payment_from: Annotated[Date | None, Query(description="Paid on or after")] = None,
    payment_to: Annotated[Date | None, Query(description="Paid on or before")] = None,
) -> Page[CycleOut]:
    return await _cycles_page(session, limit, cursor, programme_id, payment_from, payment_to)


@cycles.get("/{cycle_id}", response_model=CycleOut, summary="Read a cycle", dependencies=[READ])
async def get_cycle(cycle_id: UUID, session: SessionDep) -> CycleOut:
    cycle = await repository.get_cycle(session, cycle_id)
    if cycle is None:
        raise Problem(404, "cycle-not-found", f"No cycle {cycle_id}")
    live = await repository.live_payrolls(session, [cycle.id])
    return _cycle_out(cycle, live.get(cycle.id))


# --- payrolls ---------------------------------------------------------------------------


def payroll_out(payroll: Payroll, progress: Any) -> PayrollOut:
    out = PayrollOut.model_validate(payroll)
    out.progress = None if progress is None else ProgressOut.model_validate(progress)
    return out


async def _payroll(session: Any, payroll: Payroll) -> JSONResponse:
    progress = await repository.get_progress(session, payroll.id)
    return _answer(payroll_out(payroll, progress), payroll.version)


@payrolls.get("", response_model=Page[PayrollOut], summary="List payrolls", dependencies=[READ])
async def list_payrolls(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    programme_id: UUID | None = None,
    cycle_id: UUID | None = None,
    status: PayrollStatus | None = None,
) -> Page[PayrollOut]:
    rows = await repository.list_payrolls(
        session,
        limit=limit,
        after=cursor,
        programme_id=programme_id,
        cycle_id=cycle_id,
        status=status,
    )
    return page(rows, limit, lambda p: payroll_out(p, None), lambda p: p.id)


@payrolls.get(
    "/{payroll_id}",
    response_model=PayrollOut,
    summary="Read a payroll, with its progress while it generates",
    dependencies=[READ],
)
async def get_payroll(payroll_id: UUID, session: SessionDep) -> JSONResponse:
    return await _payroll(session, await service.payroll_by_id(session, payroll_id))


@payrolls.get(
    "/{payroll_id}/summary",
    response_model=SummaryOut,
    summary="Exclusions by reason and counts per location",
    dependencies=[READ],
)
async def payroll_summary(payroll_id: UUID, session: SessionDep) -> SummaryOut:
    payroll = await service.payroll_by_id(session, payroll_id)
    locations = await repository.payroll_locations(session, payroll_id)
    return SummaryOut(
        payroll_id=payroll.id,
        status=PayrollStatus(payroll.status),
        eligible_count=payroll.eligible_count,
        line_count=payroll.line_count,
        total_amount_minor=payroll.total_amount_minor,
        exclusions=payroll.exclusions,
        by_location=[LocationOut.model_validate(row) for row in locations],
    )


def line_out(line: PayrollLine) -> LineOut:
    identifier = (
        IdentifierOut(
            scheme=line.recipient_identifier_scheme, value=line.recipient_identifier_value
        )
        if line.recipient_identifier_scheme and line.recipient_identifier_value
        else None
    )
    account = (
        AccountOut(
            kind=line.account_kind,
            value=line.account_value,
            bank_code=line.account_bank_code,
            holder_name=line.account_holder_name,
        )
        if line.account_kind
        else None
    )
    fields = {name: getattr(line, name) for name in LineOut.model_fields if hasattr(line, name)}
    return LineOut.model_validate(
        fields | {"id": line.line_id, "recipient_identifier": identifier, "account": account}
    )


@payrolls.get(
    "/{payroll_id}/lines",
    response_model=Page[LineOut],
    summary="A payroll's lines (personal data)",
    dependencies=[
        READ_LINES,
        audited_read("payroll_line", ("location_code", "provider_id", "cursor", "limit")),
    ],
)
async def list_lines(
    payroll_id: UUID,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
    location_code: LocationCode | None = None,
    provider_id: UUID | None = None,
) -> Page[LineOut]:
    await service.payroll_by_id(session, payroll_id)
    rows = await repository.list_lines(
        session,
        payroll_id,
        limit=limit,
        after=cursor,
        location_code=location_code,
        provider_id=provider_id,
    )
    return page(rows, limit, line_out, lambda line: line.line_id)


CSV_COLUMNS = ["line_id", *repository.SNAPSHOT_COLUMNS, "amount_minor", "carried_over_payment_id"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT = {"recipient_given_name", "recipient_family_name", "account_holder_name"}


def _cell(name: str, value: object) -> object:
    """Free text that a spreadsheet would run as a formula is quoted with a leading '."""
    if name in _FREE_TEXT and isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@payrolls.get(
    "/{payroll_id}/lines.csv",
    summary="Export a payroll's lines as CSV (personal data)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The lines, streamed"}},
    dependencies=[READ_LINES, audited_read("payroll_lines_export")],
)
async def export_lines(
    payroll_id: UUID, request: Request, session: SessionDep
) -> StreamingResponse:
    await service.payroll_by_id(session, payroll_id)
    database: Database = request.app.state.database
    filename = f"payroll-{payroll_id}.csv"
    return StreamingResponse(
        _csv_rows(database, payroll_id),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _csv_rows(database: Database, payroll_id: UUID) -> AsyncIterator[str]:
    """Streams in batches from its own session (the request's ends when the route returns)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    async with database.sessionmaker() as session:
        async for rows in repository.stream_lines(session, payroll_id):
            buffer.seek(0)
            buffer.truncate()
            for row in rows:
                writer.writerow([_cell(name, row._mapping[name]) for name in CSV_COLUMNS])
            yield buffer.getvalue()


@payrolls.post(
    "/{payroll_id}/approve",
    response_model=PayrollOut,
    responses=CONFLICT,
    summary="Approve a payroll",
    description="Only a payroll_approver who neither generated (triggered) nor last changed it "
    "(403 maker-checker); the programme must be active and the total within its budget as it "
    "is now (409 over-budget). Publishes PayrollApproved in chunks of at most 1,000 lines, "
    "each repeating the header (totals, line count, chunk count). Approving twice is 409. "
    "Honours `Idempotency-Key`.",
)
async def approve_payroll(
    principal: Approver, payroll_id: UUID, session: SessionDep, idempotency: IdempotencyDep
) -> Response:
    async def approve() -> JSONResponse:
        payroll = await service.approve_payroll(session, payroll_id, principal.subject)
        return await _payroll(session, payroll)

    return await idempotency.run(approve)


@payrolls.post(
    "/{payroll_id}/reject",
    response_model=PayrollOut,
    responses=CONFLICT,
    summary="Reject a payroll",
    description="Needs a `reason`; maker-checker as for approval. Nothing of it is paid, its "
    "carry-overs wait for the next payroll, and the cycle may be generated again. Publishes "
    "PayrollRejected. Honours `Idempotency-Key`.",
)
async def reject_payroll(
    principal: Approver,
    payroll_id: UUID,
    body: ReasonIn,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Response:
    async def reject() -> JSONResponse:
        payroll = await service.reject_payroll(session, payroll_id, principal.subject, body.reason)
        return await _payroll(session, payroll)

    return await idempotency.run(reject)


@payrolls.post(
    "/{payroll_id}/retry",
    response_model=PayrollOut,
    responses=CONFLICT,
    summary="Retry a failed payroll",
    description="A FAILED payroll goes back to GENERATING with the programme's current rules; "
    "you become one of its makers. 409 for a payroll that has not failed.",
)
async def retry_payroll(principal: Manager, payroll_id: UUID, session: SessionDep) -> JSONResponse:
    payroll = await service.retry_payroll(session, payroll_id, principal.subject)
    return await _payroll(session, payroll)
