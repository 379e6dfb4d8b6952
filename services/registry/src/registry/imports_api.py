"""Bulk import routes: upload (CSV or FHIR NDJSON) to a job, its progress, its report, and
the CSV template. Thin: `imports.py` does the work."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, problem_doc
from amana_common.idempotency import Idempotency, IdempotencyKeyHeader
from amana_common.validation import Text
from registry import imports
from registry.generate import csv_columns
from registry.reference import attribute_types
from registry.settings import RegistrySettings

router = APIRouter(prefix="/imports", tags=["imports"], responses=PROBLEM_RESPONSES)

WRITE = require(Role.registrar, Role.admin)
READ = require(Role.registrar, Role.programme_manager, Role.auditor, Role.admin)
Source = Annotated[str, Text(pattern=r"^[A-Za-z0-9._:-]{1,100}$")]


class ImportJobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    format: str
    source: str
    status: str
    phase: str
    size_bytes: int
    staged: int
    processed: int
    created: int
    updated: int
    rejected: int
    flagged: int
    error: str | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _attribute_names(request: Request) -> list[str]:
    schema: Any = request.app.state.cleaning_rules.attributes.schema
    return list(attribute_types(schema))


class _StreamedIdempotency(Idempotency):
    """Idempotency-Key over a streamed body: its hash is computed while it is stored."""

    def __init__(self, request: Request, session: Any, key: str | None, digest: str) -> None:
        super().__init__(request, session, key)
        self.digest = digest

    async def _request_hash(self) -> str:
        return self.digest


@router.post(
    "",
    status_code=202,
    response_model=ImportJobOut,
    summary="Start a bulk import (CSV or FHIR NDJSON)",
    description="The body is the file: `text/csv` (one row per member, grouped by "
    "household_code; the columns of GET /imports/templates/households.csv) or "
    "`application/fhir+ndjson` (Group, Patient and RelatedPerson resources, one a line). It is "
    "streamed to storage (413 over REGISTRY_IMPORT_MAX_BYTES) and a worker imports it; poll "
    "the `Location`. `source` names the system the records come from: a re-import of the same "
    "source updates the households it created. Honours `Idempotency-Key`.",
    responses={
        413: problem_doc("The file is over the import size limit"),
        415: problem_doc("Neither CSV nor NDJSON"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/fhir+ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    dependencies=[WRITE],
)
async def start_import(
    request: Request,
    session: SessionDep,
    source: Source = "default",
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    settings: RegistrySettings = request.app.state.settings
    principal = getattr(request.state, "principal", None)
    job, digest = await imports.receive(
        session,
        request.stream(),
        file_format=imports.format_of(request.headers.get("content-type")),
        source=source,
        actor=getattr(principal, "subject", None),
        max_bytes=settings.import_max_bytes,
        attribute_names=_attribute_names(request),
    )

    async def answer() -> JSONResponse:
        location = str(request.url_for("get_import", import_id=job.id))
        body = ImportJobOut.model_validate(job).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Location": location})

    response = await _StreamedIdempotency(request, session, idempotency_key, digest).run(answer)
    if response.headers.get("Idempotent-Replayed"):
        await session.rollback()  # the replayed import is not stored twice
    return response


@router.get(
    "/templates/households.csv",
    summary="The CSV import template: its header",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The header line"}},
    dependencies=[READ],
)
async def csv_template(request: Request) -> Response:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(csv_columns(_attribute_names(request)))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="households.csv"'},
    )


@router.get(
    "/{import_id}",
    response_model=ImportJobOut,
    summary="An import's progress",
    description="status queued, running, done or failed; records processed, created, updated, "
    "rejected and flagged (an identifier held by another household, or a likely duplicate).",
    dependencies=[READ],
)
async def get_import(import_id: UUID, session: SessionDep) -> ImportJobOut:
    return ImportJobOut.model_validate(await imports.job_by_id(session, import_id))


@router.get(
    "/{import_id}/report",
    summary="An import's per-record report: outcome, errors, cleaning changes",
    description="NDJSON (one record a line: position, line, source_id, outcome, household_id, "
    "duplicate_flagged, errors with field/code/message, changes with field/before/after/rule) "
    "or CSV (one row per error or change). Holds personal data (the values cleaned).",
    response_class=StreamingResponse,
    dependencies=[READ],
)
async def import_report(
    import_id: UUID,
    request: Request,
    session: SessionDep,
    format: Annotated[Literal["ndjson", "csv"], Query()] = "ndjson",
) -> StreamingResponse:
    await imports.job_by_id(session, import_id)
    sessionmaker = request.app.state.database.sessionmaker

    async def ndjson() -> AsyncIterator[bytes]:
        async for page in imports.report_pages(sessionmaker, import_id):
            yield "".join(
                json.dumps(imports.report_line(record), ensure_ascii=False, default=str) + "\n"
                for record in page
            ).encode()

    async def as_csv() -> AsyncIterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(imports.REPORT_CSV_HEADER)
        async for page in imports.report_pages(sessionmaker, import_id):
            writer.writerows(imports.report_csv_rows(page))
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
        yield out.getvalue().encode()

    if format == "csv":
        return StreamingResponse(as_csv(), media_type="text/csv")
    return StreamingResponse(ndjson(), media_type="application/x-ndjson")
