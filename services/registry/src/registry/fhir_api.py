"""FHIR R4 routes (`application/fhir+json`): a Bundle of households, Group and Patient reads,
the Group searchset and bulk export (README, "FHIR"). Thin: `fhir_service.py` does the work."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from amana_common.audit import audited_read
from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc
from amana_common.validation import Text
from registry import fhir_service
from registry.fhir import group_resource, instant
from registry.fhir_service import FHIR_JSON, GroupSearch
from registry.imports import ApplyContext
from registry.settings import RegistrySettings

router = APIRouter(prefix="/fhir", tags=["fhir"], responses=PROBLEM_RESPONSES)

WRITE = require(Role.registrar, Role.admin)
READ = require(Role.registrar, Role.programme_manager, Role.auditor, Role.admin)
AUDITED = audited_read("household-fhir", filters=("_lastUpdated", "address-state", "_count"))
Source = Annotated[str, Text(pattern=r"^[A-Za-z0-9._:-]{1,100}$")]
LastUpdated = Annotated[
    str, Text(pattern=r"^(gt|ge|lt|le|eq)?\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2}))?$")
]
StateCode = Annotated[str, Text(pattern=r"^[A-Za-z0-9._-]{1,50}$")]
PageToken = Annotated[str, Text(pattern=r"^[A-Za-z0-9_=-]{1,200}$")]
ExportTypes = Annotated[str, Text(pattern=r"^(Group|Patient)(,(Group|Patient))?$")]
MAX_COUNT = 200


def fhir_json(
    body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, media_type=FHIR_JSON, headers=headers)


@router.post(
    "",
    summary="Import households: a FHIR Bundle (transaction or batch)",
    description="Group (the household, members as Group.member), Patient (each member) and "
    "RelatedPerson (a member's relationship to the head) resources; Amana's and openIMIS's "
    "extensions (README, 'FHIR mapping'). A transaction writes everything or nothing: any "
    "refused entry is a 422 (409 for an identifier held by another household) problem+json "
    "naming the entry and field. A batch answers a batch-response Bundle with each entry's "
    "status and an OperationOutcome for a refused one. `source` names the sending system.",
    responses={409: problem_doc("An identifier is held by another household")},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        }
    },
    dependencies=[WRITE],
)
async def post_bundle(
    request: Request, session: SessionDep, source: Source = "fhir"
) -> JSONResponse:
    kind = (request.headers.get("content-type") or "").split(";")[0].strip()
    if kind not in (FHIR_JSON, "application/json"):
        raise Problem(415, "unsupported-media-type", "send application/fhir+json")
    bundle_type, entries = fhir_service.parse_bundle(await request.body())
    settings: RegistrySettings = request.app.state.settings
    principal = getattr(request.state, "principal", None)
    context = ApplyContext(
        rules=request.app.state.cleaning_rules,
        default_currency=settings.default_currency,
        actor=getattr(principal, "subject", None) or "fhir",
    )
    results = await fhir_service.import_bundle(session, bundle_type, entries, source, context)
    return fhir_json(fhir_service.response_bundle(bundle_type, entries, results))


@router.get(
    "/Group/{household_id}",
    summary="A household as a FHIR Group",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}, "description": "An R4 Group"}},
    dependencies=[READ, AUDITED],
)
async def read_group(household_id: UUID, session: SessionDep) -> JSONResponse:
    group = await fhir_service.group(session, household_id)
    return fhir_json(group, headers={"ETag": f'W/"{group["meta"]["versionId"]}"'})


@router.get(
    "/Patient/{member_id}",
    summary="A member as a FHIR Patient",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}, "description": "An R4 Patient"}},
    dependencies=[READ, AUDITED],
)
async def read_patient(member_id: UUID, session: SessionDep) -> JSONResponse:
    return fhir_json(await fhir_service.patient(session, member_id))


def _search(values: list[str], location: str | None) -> GroupSearch:
    after = before = None
    after_inclusive = before_inclusive = False
    for value in values:
        prefix, moment = re.match(r"^(gt|ge|lt|le|eq)?(.*)$", value).groups()  # type: ignore[union-attr]
        try:
            parsed = datetime.fromisoformat(moment if "T" in moment else f"{moment}T00:00:00+00:00")
        except ValueError as error:
            raise Problem(
                422,
                "validation-error",
                "_lastUpdated: not a date or instant",
                errors=[{"field": "_lastUpdated", "in": "query", "message": str(error)}],
            ) from error
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if prefix in ("gt", "ge", "eq", None):
            after, after_inclusive = parsed, prefix != "gt"
        if prefix in ("lt", "le"):
            before, before_inclusive = parsed, prefix == "le"
    return GroupSearch(
        after, before, after_inclusive, before_inclusive, location and location.upper()
    )


def _page_token(updated_at: datetime, household_id: UUID) -> str:
    raw = json.dumps([updated_at.isoformat(), str(household_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(token: str | None) -> tuple[datetime, UUID] | None:
    if token is None:
        return None
    try:
        moment, identifier = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(moment), UUID(identifier)
    except (ValueError, TypeError) as error:
        raise Problem(
            422,
            "validation-error",
            "_page: not a page token of this server",
            errors=[{"field": "_page", "in": "query", "message": "invalid"}],
        ) from error


@router.get(
    "/Group",
    summary="Search households as FHIR Groups (searchset Bundle, paged)",
    description="`_lastUpdated=gt2026-01-01T00:00:00Z` (gt, ge, lt, le, eq), "
    "`address-state=KE-047` (a location code: that area and below), `_count` (1-200). "
    "Ordered by last update, so polling `gt` the last `meta.lastUpdated` seen gets each change "
    "once; follow the `next` link.",
    response_class=JSONResponse,
    responses={200: {"content": {FHIR_JSON: {}}, "description": "A searchset Bundle"}},
    dependencies=[READ, AUDITED],
)
async def search_groups(
    request: Request,
    session: SessionDep,
    last_updated: Annotated[LastUpdated | None, Query(alias="_lastUpdated")] = None,
    address_state: Annotated[StateCode | None, Query(alias="address-state")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = 50,
    page: Annotated[PageToken | None, Query(alias="_page")] = None,
) -> JSONResponse:
    search = _search([last_updated] if last_updated else [], address_state)
    households = await fhir_service.search_groups(session, search, _after(page), count)
    more = len(households) > count
    households = households[:count]
    base = str(request.url.remove_query_params("_page"))
    links = [{"relation": "self", "url": str(request.url)}]
    if more:
        last = households[-1]
        token = _page_token(last.updated_at, last.id)
        links.append(
            {"relation": "next", "url": str(request.url.include_query_params(_page=token))}
        )
    links.append({"relation": "first", "url": base})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": instant(datetime.now(UTC)),
        "link": links,
        "entry": [
            {
                "fullUrl": str(request.url_for("read_group", household_id=h.id)),
                "resource": group_resource(h),
                "search": {"mode": "match"},
            }
            for h in households
        ],
    }
    return fhir_json(bundle)


@router.get(
    "/$export",
    status_code=202,
    summary="Bulk export kick-off (FHIR Bulk Data): Group and Patient NDJSON",
    description="Requires `Prefer: respond-async`. `_type` Group, Patient or both; `_since` an "
    "instant (households changed after it). 202 with `Content-Location` of the status.",
    dependencies=[WRITE],
)
async def export_kick_off(
    request: Request,
    session: SessionDep,
    prefer: Annotated[str | None, Header()] = None,
    types: Annotated[ExportTypes | None, Query(alias="_type")] = None,
    since: Annotated[datetime | None, Query(alias="_since")] = None,
) -> Response:
    if prefer is None or "respond-async" not in prefer:
        raise Problem(
            422,
            "validation-error",
            "bulk export needs Prefer: respond-async",
            errors=[{"field": "Prefer", "in": "header", "message": "respond-async"}],
        )
    principal = getattr(request.state, "principal", None)
    job = await fhir_service.start_export(
        session,
        (types or "Group,Patient").split(","),
        since,
        str(request.url),
        getattr(principal, "subject", None),
    )
    status = str(request.url_for("export_status", export_id=job.id))
    return Response(status_code=202, headers={"Content-Location": status})


@router.get(
    "/$export-status/{export_id}",
    summary="Bulk export status: 202 while running, the manifest when done",
    responses={202: {"description": "Running"}},
    dependencies=[WRITE],
)
async def export_status(export_id: UUID, request: Request, session: SessionDep) -> Response:
    job = await fhir_service.export_job(session, export_id)
    if job.status in ("queued", "running"):
        return Response(status_code=202, headers={"X-Progress": job.status, "Retry-After": "2"})
    if job.status == "failed":
        return fhir_json(fhir_service.operation_outcome([{"message": job.error}]), 500)
    base = str(request.url_for("export_status", export_id=job.id)).replace(
        f"/$export-status/{job.id}", "/$export-files"
    )
    return JSONResponse(fhir_service.export_manifest(job, base))


@router.get(
    "/$export-files/{export_id}/{resource_type}.ndjson",
    summary="A bulk export file (NDJSON)",
    response_class=StreamingResponse,
    dependencies=[WRITE],
)
async def export_file(
    export_id: UUID,
    resource_type: Annotated[str, Text(pattern=r"^(Group|Patient)$")],
    request: Request,
    session: SessionDep,
) -> StreamingResponse:
    job = await fhir_service.export_job(session, export_id)
    if job.status != "done" or resource_type not in job.types:
        raise Problem(404, "not-found", "no such file (yet)")
    database = request.app.state.database
    return StreamingResponse(
        fhir_service.export_blocks(database, export_id, resource_type),
        media_type="application/fhir+ndjson",
    )
