"""Analytics HTTP routes: thin, they validate, call a use case and shape the response.

Every route reads reporting tables only, which hold no personal data; `analyst`, `admin`,
`programme_manager` and `auditor` read them, `analyst` and `admin` push to DHIS2.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text

from amana_common.auth import Principal, Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem
from amana_common.idempotency import IdempotencyDep
from amana_common.pagination import Cursor, Limit, Page
from analytics import charts, dashboard, service
from analytics.dhis2 import Dhis2Mapping, UnmappedElements
from analytics.domain import REPORTS, InvalidQuery, ReportSpec
from analytics.schemas import (
    PushIn,
    PushOut,
    ReportIndexItem,
    ReportOut,
    ReportQuery,
    parse_report_query,
)
from analytics.settings import AnalyticsSettings

READERS = (Role.analyst, Role.admin, Role.programme_manager, Role.auditor)
PUSHERS = (Role.analyst, Role.admin)

router = APIRouter(responses=PROBLEM_RESPONSES)

# First among a route's parameters: the caller is authenticated before anything else is done.
Reader = Annotated[Principal, require(*READERS)]
Pusher = Annotated[Principal, require(*PUSHERS)]

ReportName = Annotated[str, Path(pattern=r"^[a-z_]{1,30}$", description="A report's name")]
ChartName = Annotated[str, Path(pattern=r"^[a-z_]{1,30}$", description="A chart's name")]


def _settings(request: Request) -> AnalyticsSettings:
    settings: AnalyticsSettings = request.app.state.settings
    return settings


def _spec(name: str) -> ReportSpec:
    spec = REPORTS.get(name)
    if spec is None:
        raise Problem(404, "not-found", f"no report {name!r}: see GET /reports")
    return spec


def _query(
    spec: ReportSpec, request: Request, *, allow: frozenset[str] | None = None
) -> ReportQuery:
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    if allow is not None:
        spec = _restricted(spec, allow)
    try:
        return parse_report_query(spec, params)
    except InvalidQuery as error:
        slug = "invalid-period" if error.field == "period" else "invalid-query"
        if error.field not in spec.parameters:
            slug = "unknown-parameter"
        raise Problem(
            422,
            slug,
            str(error),
            errors=[{"field": error.field, "in": "query", "message": error.message}],
        ) from error


def _restricted(spec: ReportSpec, allow: frozenset[str]) -> ReportSpec:
    """The report's spec taking only `allow` of its parameters (charts, the dashboard)."""
    from dataclasses import replace

    return replace(
        spec,
        filters=tuple(f for f in spec.filters if f in allow),
        dimensions=(),
        default_group_by=(),
        extra=(),
        formats=False,
    )


async def _bounded(session: SessionDep, settings: AnalyticsSettings) -> None:
    timeout_ms = int(settings.report_statement_timeout_s * 1000)
    await session.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))


@router.get(
    "/reports",
    response_model=list[ReportIndexItem],
    summary="The reports and what each takes",
    tags=["reports"],
)
async def list_reports(principal: Reader) -> list[ReportIndexItem]:
    return [
        ReportIndexItem(
            name=spec.name,
            title=spec.title,
            parameters=sorted(spec.parameters),
            dimensions=list(spec.dimensions),
            href=f"/reports/{spec.name}",
        )
        for spec in REPORTS.values()
    ]


@router.get(
    "/reports/{name}",
    response_model=ReportOut,
    summary="A report, as JSON or CSV",
    description=(
        "Filters: `programme` (id or code), `cycle` (id), `period` (DHIS2 or ISO form: "
        "`2026`, `2026Q4`, `202611`, `2026-11`, `2026W45`, `2026-11-05`, "
        "`2026-11-01..2026-11-30`), `location` (code), `level` (1 = outermost), `provider` (id "
        "or code); `group_by` (comma-separated dimensions of the report); `interval` "
        "(enrolment: day, week, month, quarter, year); `format=csv` for CSV. An unknown "
        "parameter, or one the report does not take, is 422 naming it."
    ),
    responses={200: {"content": {"text/csv": {}}}},
    tags=["reports"],
)
async def get_report(
    principal: Reader, name: ReportName, request: Request, session: SessionDep
) -> Response:
    spec = _spec(name)
    query = _query(spec, request)
    settings = _settings(request)
    await _bounded(session, settings)
    report = await service.run_report(session, name, query, settings.report_max_rows)
    if query.format == "csv":
        return Response(
            service.report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return _json(service.report_document(report))


def _json(document: Any) -> Response:
    """Reports may have thousands of rows: encoded by json directly (FastAPI's encoder walks
    every value in Python first)."""
    return Response(
        json.dumps(document, default=_json_value, separators=(",", ":")),
        media_type="application/json",
    )


def _json_value(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


CHART_REPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "coverage": ("coverage", ()),
    "outcomes": ("outcomes", ("provider",)),
    "non_payment_reasons": ("non_payment_reasons", ()),
    "timeliness": ("timeliness", ("cycle",)),
}


async def _chart(
    session: SessionDep, settings: AnalyticsSettings, chart: str, query: ReportQuery
) -> bytes:
    report_name, group_by = CHART_REPORTS[chart]
    from dataclasses import replace

    report = await service.run_report(
        session, report_name, replace(query, group_by=group_by), settings.report_max_rows
    )
    return await charts.render(chart, report.rows)


@router.get(
    "/charts/{chart}.png",
    summary="A chart as a PNG: coverage, outcomes, non_payment_reasons, timeliness",
    description="Takes the filters of its report (no `group_by`, no `format`).",
    responses={200: {"content": {"image/png": {}}}},
    tags=["charts"],
)
async def get_chart(
    principal: Reader, chart: ChartName, request: Request, session: SessionDep
) -> Response:
    if chart not in CHART_REPORTS:
        raise Problem(
            404, "not-found", f"no chart {chart!r} (there are {', '.join(CHART_REPORTS)})"
        )
    spec = REPORTS[CHART_REPORTS[chart][0]]
    query = _query(spec, request, allow=frozenset(spec.filters))
    settings = _settings(request)
    await _bounded(session, settings)
    png = await _chart(session, settings, chart, query)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    summary="The dashboard: key figures and the four charts, one HTML page without scripts",
    description="Takes the summary's filters. Charts are inlined, so the page needs only its "
    "own authenticated request.",
    tags=["dashboard"],
)
async def get_dashboard(principal: Reader, request: Request, session: SessionDep) -> HTMLResponse:
    spec = REPORTS["summary"]
    query = _query(spec, request, allow=frozenset(spec.filters))
    settings = _settings(request)
    await _bounded(session, settings)
    summary = await service.run_report(session, "summary", query, settings.report_max_rows)
    pngs = {chart: await _chart(session, settings, chart, query) for chart in CHART_REPORTS}
    html = dashboard.page(query.echo(), summary.rows[0], pngs)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": dashboard.CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


# --- DHIS2 ------------------------------------------------------------------------------------


def _mapping(request: Request) -> Dhis2Mapping:
    mapping: Dhis2Mapping | None = request.app.state.dhis2_mapping
    if mapping is None:
        raise Problem(
            422,
            "dhis2-not-configured",
            "no DHIS2 mapping is configured (ANALYTICS_DHIS2_MAPPING or _FILE)",
            errors=[{"field": "mapping", "message": "not configured"}],
        )
    return mapping


def _unmapped(error: UnmappedElements) -> Problem:
    return Problem(
        422,
        "dhis2-unmapped",
        f"the DHIS2 mapping cannot express this report: {error}",
        errors=list(service.iter_unmapped(error)),
    )


@router.get(
    "/dhis2/dataValueSets/{name}",
    summary="A report as a DHIS2 dataValueSets document, through the configured mapping",
    description="Takes the report's filters. 422 `dhis2-unmapped` names every location, "
    "category combination or column the mapping lacks.",
    tags=["dhis2"],
)
async def get_data_value_set(
    principal: Reader, name: ReportName, request: Request, session: SessionDep
) -> Response:
    spec = _spec(name)
    query = _query(spec, request, allow=frozenset((*spec.filters, *spec.extra)))
    settings = _settings(request)
    await _bounded(session, settings)
    try:
        payload = await service.export_data_value_set(
            session, name, query, _mapping(request), settings.report_max_rows
        )
    except UnmappedElements as error:
        raise _unmapped(error) from error
    return _json(payload)


@router.post(
    "/dhis2/pushes",
    status_code=201,
    response_model=PushOut,
    summary="Push a report to the configured DHIS2 instance and record its import summary",
    description="Honours `Idempotency-Key`. 422 when the report cannot be mapped (nothing is "
    "sent); a DHIS2 that fails or cannot be reached is recorded with its error.",
    tags=["dhis2"],
)
async def push_report(
    principal: Pusher,
    body: PushIn,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Response:
    spec = _spec(body.report)
    params = body.filters.params()
    allowed = _restricted(spec, frozenset((*spec.filters, *spec.extra)))
    allowed = _with_extra(allowed, spec.extra)
    try:
        query = parse_report_query(allowed, params)
    except InvalidQuery as error:
        raise Problem(
            422,
            "invalid-query",
            str(error),
            errors=[{"field": f"filters.{error.field}", "in": "body", "message": error.message}],
        ) from error
    settings = _settings(request)
    mapping = _mapping(request)

    async def push() -> JSONResponse:
        try:
            record = await service.push_to_dhis2(
                session, settings, mapping, body.report, query, body.dry_run
            )
        except UnmappedElements as error:
            raise _unmapped(error) from error
        out = PushOut.model_validate(record)
        return JSONResponse(
            out.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/dhis2/pushes/{out.push_id}"},
        )

    return await idempotency.run(push)


def _with_extra(spec: ReportSpec, extra: tuple[str, ...]) -> ReportSpec:
    from dataclasses import replace

    return replace(spec, extra=extra)


@router.get(
    "/dhis2/pushes",
    response_model=Page[PushOut],
    summary="The pushes to DHIS2, newest first, with their import summaries",
    tags=["dhis2"],
)
async def list_pushes(
    principal: Reader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[PushOut]:
    return await service.list_pushes(session, limit, cursor)


@router.get(
    "/dhis2/pushes/{push_id}",
    response_model=PushOut,
    summary="One push to DHIS2 and its import summary",
    tags=["dhis2"],
)
async def get_push(principal: Reader, push_id: UUID, session: SessionDep) -> PushOut:
    record = await service.get_push(session, push_id)
    if record is None:
        raise Problem(404, "not-found", "no such push")
    return PushOut.model_validate(record)


__all__ = ["Depends", "router"]
