"""Bulk imports (README, "Imports"): a CSV file (one row per member, grouped by household
code) or FHIR NDJSON (Group, Patient and RelatedPerson resources, in any order).

1. Upload (`receive`): the request body is streamed into `job_blocks` (1 MiB each, a bounded
   total: 413 past it) and the job is queued, in the request's transaction. A CSV's header is
   checked first (a wrong header is a 422 naming the columns, and nothing is kept).
2. Staging (worker): the blocks are read one at a time and parsed record by record (a CSV
   household, an NDJSON line) into `import_items` with COPY, in batches. A record that cannot
   be parsed or stored gets its report line at once. Staging is redone from the start when a
   worker resumes a job that had not finished it: it writes nothing anyone else reads.
3. Apply (worker): households in chunks, in file order. For each chunk, in ONE transaction:
   the chunk's staged records and the resources they reference are read (a query per kind),
   validated with fhir.resources and cleaned (the Python work, batched); matched against
   earlier imports (`household_sources`) and Amana household numbers; identifiers held by
   another household are flagged; new households are written set-based (COPY), existing ones
   replaced (`service.save_household`, each in a savepoint); the report lines, the events
   (HouseholdEnrolled / HouseholdUpdated), the duplicate checks and the job's cursor and
   counters are written, and the job's lease renewed. A worker killed mid-chunk loses the
   chunk's transaction only: the next worker (once the lease lapsed) resumes after the last
   committed chunk, so no record is applied twice.
4. Finish: Patients and RelatedPersons no Group took are rejected ("in no Group"), the staged
   items and the upload are deleted, the job is done. The report stays.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import json
import logging
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.errors import Problem
from amana_common.events import add_to_outbox
from amana_common.worker import wait_or_stop
from amana_contracts.registry import HouseholdEnrolledV1
from registry import duplicates, repository, service
from registry.cleaning import CleaningRules
from registry.generate import csv_columns
from registry.import_readers import Readers, csv_wire_records, fhir_wire_records, ndjson_verdicts
from registry.import_records import Record, check_preference, from_wire, storage_problem
from registry.import_rows import PlainPreference, Rows, new_household
from registry.models import (
    Household,
    HouseholdSource,
    ImportItem,
    ImportJob,
    ImportRecord,
    JobBlock,
)

log = logging.getLogger("amana.registry.imports")

BLOCK_BYTES = 1024 * 1024
UPLOAD = "upload"
STAGING_BATCH = 2000
HEADER_LIMIT = 64 * 1024
CSV_TYPES = ("text/csv", "application/csv")
NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson", "application/x-ndjson")
HOUSEHOLD_KINDS = ("Group", "household")


@dataclass(frozen=True)
class ImportSettings:
    """How the worker runs imports (REGISTRY_IMPORT_* settings)."""

    chunk_size: int = 500
    lease_s: float = 30.0
    poll_s: float = 1.0


def format_of(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in CSV_TYPES:
        return "csv"
    if kind in NDJSON_TYPES:
        return "fhir_ndjson"
    raise Problem(
        415,
        "unsupported-media-type",
        f"send text/csv or application/fhir+ndjson, not {kind or 'no content type'}",
        errors=[{"field": "Content-Type", "in": "header", "message": "text/csv or NDJSON"}],
    )


# --- 1. upload --------------------------------------------------------------------------------


@dataclass
class Upload:
    job_id: UUID
    size: int = 0
    blocks: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


async def receive(
    session: AsyncSession,
    chunks: AsyncIterator[bytes],
    *,
    file_format: str,
    source: str,
    actor: str | None,
    max_bytes: int,
    attribute_names: Sequence[str],
) -> tuple[ImportJob, str]:
    """Streams the body into blocks and queues the job (not committed: the request does).
    Answers the job and the body's SHA-256 (for Idempotency-Key)."""
    upload = Upload(uuid7())
    pending = bytearray()
    header_checked = file_format != "csv"
    async for chunk in chunks:
        upload.size += len(chunk)
        if upload.size > max_bytes:
            raise Problem(
                413,
                "import-too-large",
                f"an import file is at most {max_bytes} bytes",
                errors=[{"field": "body", "in": "body", "message": f"over {max_bytes} bytes"}],
            )
        upload.digest.update(chunk)
        pending += chunk
        if not header_checked:
            header_checked = _check_header_when_whole(pending, attribute_names)
        while len(pending) >= BLOCK_BYTES:
            await _store_block(session, upload, bytes(pending[:BLOCK_BYTES]))
            del pending[:BLOCK_BYTES]
    if not header_checked:
        check_header(bytes(pending), attribute_names, final=True)
    if pending:
        await _store_block(session, upload, bytes(pending))
    if upload.size == 0:
        raise Problem(
            422,
            "empty-import",
            "the import file is empty",
            errors=[{"field": "body", "in": "body", "message": "empty"}],
        )
    now = datetime.now(UTC)
    job = ImportJob(
        id=upload.job_id,
        format=file_format,
        source=source,
        status="queued",
        phase="stage",
        size_bytes=upload.size,
        blocks=upload.blocks,
        staged=0,
        cursor=0,
        processed=0,
        created=0,
        updated=0,
        rejected=0,
        flagged=0,
        created_by=actor,
        created_at=now,
    )
    repository.add(session, job)
    await session.flush()
    return job, upload.digest.hexdigest()


async def _store_block(session: AsyncSession, upload: Upload, data: bytes) -> None:
    await session.execute(
        insert(JobBlock).values(job_id=upload.job_id, part=UPLOAD, seq=upload.blocks, data=data)
    )
    upload.blocks += 1


def _check_header_when_whole(pending: bytearray, attribute_names: Sequence[str]) -> bool:
    if b"\n" not in pending and len(pending) < HEADER_LIMIT:
        return False
    check_header(bytes(pending), attribute_names, final=False)
    return True


def check_header(start: bytes, attribute_names: Sequence[str], *, final: bool) -> None:
    """The CSV's first line must name the template's columns (any order; `attr.<name>` for
    the attributes the schema knows): a 422 names the missing and the unknown ones."""
    first = start.split(b"\n", 1)[0]
    if b"\n" not in start and not final:
        raise _header_problem("the header line is longer than 64 KiB", [], [])
    text_line = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    header = next(csv.reader([text_line]), [])
    expected = csv_columns(attribute_names)
    required = set(expected) - {f"attr.{name}" for name in attribute_names}
    missing = [column for column in expected if column in required and column not in header]
    unknown = [column for column in header if column not in expected]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if missing or unknown or repeated:
        raise _header_problem(
            "the CSV header does not match the template (GET /imports/templates/households.csv)",
            missing,
            unknown + repeated,
        )


def _header_problem(detail: str, missing: list[str], unknown: list[str]) -> Problem:
    errors = [
        {"field": f"header.{column}", "in": "body", "code": "missing-column", "message": "missing"}
        for column in missing
    ] + [
        {
            "field": f"header.{column}",
            "in": "body",
            "code": "unknown-column",
            "message": "not a column of the template (or repeated)",
        }
        for column in unknown
    ]
    if missing:
        detail += f"; missing: {', '.join(missing)}"
    if unknown:
        detail += f"; unknown: {', '.join(unknown)}"
    return Problem(422, "csv-header", detail, errors=errors or None)


async def discard_upload(session: AsyncSession, job_id: UUID) -> None:
    """An upload whose Idempotency-Key replayed an earlier answer is not kept."""
    await session.execute(delete(JobBlock).where(JobBlock.job_id == job_id))


# --- reading the upload back ------------------------------------------------------------------


async def _blocks(
    sessionmaker: async_sessionmaker[AsyncSession], job: ImportJob
) -> AsyncIterator[bytes]:
    """The upload, one block at a time (never the whole file in memory)."""
    for seq in range(job.blocks):
        async with sessionmaker() as session:
            data = await session.scalar(
                select(JobBlock.data).where(
                    JobBlock.job_id == job.id, JobBlock.part == UPLOAD, JobBlock.seq == seq
                )
            )
        if data is None:
            raise RuntimeError(f"block {seq} of the upload is missing")
        yield data


async def _lines(blocks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Complete lines (without their line break), a block's worth at a time. Bytes that are
    not UTF-8 become U+FFFD, which the cleaning refuses where it lands in a field."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    first = True
    async for block in blocks:
        text_block = rest + decoder.decode(block)
        if first:
            text_block = text_block.lstrip("\ufeff")
            first = False
        lines = text_block.split("\n")
        rest = lines.pop()
        yield [line.removesuffix("\r") for line in lines]
    rest += decoder.decode(b"", final=True)
    if rest:
        yield [rest.removesuffix("\r")]


# --- 2. staging -------------------------------------------------------------------------------


@dataclass
class Staged:
    """Staged rows and report lines of one batch."""

    items: list[tuple[Any, ...]] = field(default_factory=list)
    report: list[tuple[Any, ...]] = field(default_factory=list)


ITEM_COLUMNS = ("job_id", "position", "kind", "source_id", "line", "body")
REPORT_COLUMNS = (
    "job_id",
    "position",
    "line",
    "source_id",
    "outcome",
    "household_id",
    "duplicate_flagged",
    "errors",
    "changes",
)


def _rejected_line(
    job_id: UUID, position: int, line: int, source_id: str | None, errors: list[dict[str, Any]]
) -> tuple[Any, ...]:
    return (job_id, position, line, source_id, "rejected", None, False, json.dumps(errors), "[]")


async def stage(
    sessionmaker: async_sessionmaker[AsyncSession], job: ImportJob, lease: Lease, readers: Readers
) -> int:
    """Parses the upload into `import_items` (and report lines for what cannot be staged), in
    batches of STAGING_BATCH records, a batch read by the readers while the ones before it
    are written; answers how many records were staged."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(ImportItem).where(ImportItem.job_id == job.id))
        await session.execute(delete(ImportRecord).where(ImportRecord.job_id == job.id))
        await lease.renew(session)
    records = _csv_records(job) if job.format == "csv" else _ndjson_lines(job)
    window: deque[asyncio.Future[Staged]] = deque()
    count = 0
    try:
        async for batch in _batched(records(sessionmaker), STAGING_BATCH):
            window.append(asyncio.ensure_future(_staged_batch(job, batch, readers)))
            while len(window) > readers.slices:
                count = await _write_staged(sessionmaker, await window.popleft(), count, lease)
        while window:
            count = await _write_staged(sessionmaker, await window.popleft(), count, lease)
    finally:
        for pending in window:
            pending.cancel()
    async with sessionmaker() as session, session.begin():
        await lease.renew(session, phase="apply")
    return count


async def _staged_batch(job: ImportJob, batch: list[Any], readers: Readers) -> Staged:
    staged = Staged()
    if job.format == "csv":
        for step in batch:
            step(staged)
        return staged
    verdicts = await readers.run_sliced(ndjson_verdicts, batch)
    for (number, line), (kind, source_id, errors) in zip(batch, verdicts, strict=True):
        if errors is None:
            staged.items.append((job.id, number, kind, source_id, number, line))
        else:
            staged.report.append(_rejected_line(job.id, number, number, source_id, errors))
    return staged


async def _write_staged(
    sessionmaker: async_sessionmaker[AsyncSession], staged: Staged, count: int, lease: Lease
) -> int:
    count += len(staged.items)
    async with sessionmaker() as session, session.begin():
        await repository.copy_rows(
            session,
            [
                ("import_items", ITEM_COLUMNS, staged.items),
                ("import_report", REPORT_COLUMNS, staged.report),
            ],
        )
        await lease.renew(session, staged=count, rejected=len(staged.report))
    return count


async def _batched(items: AsyncIterator[Any], size: int) -> AsyncIterator[list[Any]]:
    batch = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


StageStep = Any  # a callable adding one record's rows to a Staged batch


def _ndjson_lines(job: ImportJob) -> Any:
    """The NDJSON's lines that are not blank, numbered."""

    async def lines(
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> AsyncIterator[tuple[int, str]]:
        number = 0
        async for block in _lines(_blocks(sessionmaker, job)):
            for line in block:
                number += 1
                if line.strip():
                    yield number, line

    return lines


def _csv_records(job: ImportJob) -> Any:
    """CSV households: consecutive rows with the same household_code. A record (a row) may
    span lines inside quotes; the quote count tells where it ends (RFC 4180)."""

    async def records(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[StageStep]:
        header: list[str] | None = None
        household: list[tuple[int, dict[str, str]]] = []
        seen: set[str] = set()
        position = 0
        async for number, row in _csv_rows(_lines(_blocks(sessionmaker, job))):
            if header is None:
                header = row
                continue
            values = dict(zip(header, row, strict=False))
            code = values.get("household_code", "")
            if household and household[0][1].get("household_code") != code:
                position += 1
                yield _csv_step(job.id, position, household, seen)
                household = []
            household.append((number, values))
        if household:
            position += 1
            yield _csv_step(job.id, position, household, seen)

    return records


async def _csv_rows(lines: AsyncIterator[list[str]]) -> AsyncIterator[tuple[int, list[str]]]:
    number = 0
    pending: list[str] = []
    start = 0
    async for batch in lines:
        for line in batch:
            number += 1
            if not pending:
                start = number
            pending.append(line)
            if sum(part.count('"') for part in pending) % 2:
                continue  # inside a quoted field: the record goes on
            record = "\n".join(pending)
            pending = []
            if record.strip():
                yield start, next(csv.reader([record]))
    if pending:
        yield start, next(csv.reader(["\n".join(pending)]))


def _csv_step(
    job_id: UUID, position: int, rows: list[tuple[int, dict[str, str]]], seen: set[str]
) -> StageStep:
    def step(staged: Staged) -> None:
        lines = [number for number, _ in rows]
        code = rows[0][1].get("household_code", "")
        problem = _csv_household_problem(code, rows, seen)
        if problem is not None:
            staged.report.append(
                _rejected_line(job_id, position, lines[0], code[:64] or None, [problem])
            )
            return
        seen.add(code)
        body = json.dumps({"lines": lines, "rows": [row for _, row in rows]}, ensure_ascii=False)
        staged.items.append((job_id, position, "household", code, lines[0], body))

    return step


def _csv_household_problem(
    code: str, rows: list[tuple[int, dict[str, str]]], seen: set[str]
) -> dict[str, Any] | None:
    line = rows[0][0]
    if not code.strip():
        return {"field": f"line {line}: household_code", "code": "required", "message": "required"}
    if len(code) > 64:
        return {"field": f"line {line}: household_code", "code": "too-long", "message": "≤ 64"}
    if code in seen:
        return {
            "field": f"line {line}: household_code",
            "code": "rows-not-consecutive",
            "message": f"rows of household {code} appear again after other households: "
            "a household's rows are consecutive",
        }
    for number, row in rows:
        for column, value in row.items():
            if storage_problem(value) is not None:
                return {
                    "field": f"line {number}: {column}",
                    "code": "control-character",
                    "message": "contains NUL or a lone surrogate",
                }
    return None


# --- 3. apply ---------------------------------------------------------------------------------


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow to renew its lease)."""


@dataclass
class Lease:
    job_id: UUID
    owner: str
    seconds: float

    async def renew(self, session: AsyncSession, **values: Any) -> None:
        """Renews the lease, adding `values` to the job (counters are added, others set), in
        the caller's transaction; raises LeaseLost when the job is no longer ours."""
        counters = {"processed", "created", "updated", "rejected", "flagged"}
        changes: dict[str, Any] = {
            name: (getattr(ImportJob, name) + value if name in counters else value)
            for name, value in values.items()
        }
        changes["lease_until"] = func.now() + timedelta(seconds=self.seconds)
        renewed = await session.scalar(
            update(ImportJob)
            .where(ImportJob.id == self.job_id, ImportJob.lease_owner == self.owner)
            .values(**changes)
            .returning(ImportJob.id)
        )
        if renewed is None:
            raise LeaseLost(str(self.job_id))


@dataclass(frozen=True)
class ApplyContext:
    rules: CleaningRules
    default_currency: str
    actor: str


async def apply_chunk(
    session: AsyncSession,
    job: ImportJob,
    after: int,
    size: int,
    context: ApplyContext,
    readers: Readers,
) -> tuple[int, dict[str, int]] | None:
    """Applies the next chunk of households after position `after`; answers the last
    position applied and the counts, or None when no household is left."""
    rows = (
        await session.execute(
            text(
                "SELECT position, line, body::text, ARRAY(SELECT jsonb_path_query(body, "
                "'$.member[*].entity.reference') #>> '{}') FROM import_items "
                "WHERE job_id = :job AND position > :after AND kind = ANY(:kinds) "
                "ORDER BY position LIMIT :size"
            ),
            {"job": job.id, "after": after, "kinds": list(HOUSEHOLD_KINDS), "size": size},
        )
    ).all()
    if not rows:
        return None
    today = datetime.now(UTC).date()
    households = [(position, line, body) for position, line, body, _ in rows]
    if job.format == "csv":
        wires = await readers.run_sliced(
            csv_wire_records, households, today, context.default_currency
        )
        records = [from_wire(wire) for wire in wires]
    else:
        records = await _fhir_records(session, job.id, rows, readers, today)
    counts = await _write(session, job, records, context)
    return rows[-1][0], counts


@dataclass(frozen=True)
class StagedResource:
    """A Patient or RelatedPerson a chunk's Groups reference: its JSON, the position of the
    Group that took it (None while none did), and the RelatedPersons it links to."""

    body: str
    claimed_by: int | None
    links: list[str]


async def _fhir_records(
    session: AsyncSession,
    job_id: UUID,
    rows: Sequence[Any],
    readers: Readers,
    today: date,
) -> list[Record]:
    """The chunk's Groups with the Patients they name and the RelatedPersons those link to
    (a query per kind; references are read by PostgreSQL, the JSON by the readers); a
    resource another Group took already is refused."""
    patient_refs = {ref for *_, refs in rows for ref in refs if ref.startswith("Patient/")}
    patients = await _staged(session, job_id, "Patient", patient_refs)
    related_refs = {
        ref for patient in patients.values() for ref in patient.links if ref.startswith(RELATED)
    }
    staged = patients | await _staged(session, job_id, "RelatedPerson", related_refs)
    size = -(-len(rows) // readers.slices)
    parts = [rows[start : start + size] for start in range(0, len(rows), size)]
    answers = await asyncio.gather(
        *(
            readers.run(
                fhir_wire_records,
                [(position, line, body) for position, line, body, _ in part],
                _referenced_bodies(part, staged),
                today,
            )
            for part in parts
        )
    )
    records = [from_wire(wire) for answer in answers for wire in answer]
    await _claim(session, job_id, records, staged)
    return records


RELATED = "RelatedPerson/"


def _referenced_bodies(rows: Sequence[Any], staged: Mapping[str, StagedResource]) -> dict[str, str]:
    """What the Groups of `rows` reference, as `reference -> JSON`."""
    bodies: dict[str, str] = {}
    for *_, refs in rows:
        for ref in refs:
            patient = staged.get(ref)
            if patient is None or ref in bodies:
                continue
            bodies[ref] = patient.body
            for link in patient.links:
                related = staged.get(link)
                if related is not None and link.startswith(RELATED):
                    bodies[link] = related.body
    return bodies


async def _claim(
    session: AsyncSession,
    job_id: UUID,
    records: list[Record],
    staged: Mapping[str, StagedResource],
) -> None:
    """Each Patient and RelatedPerson goes to the first Group that takes it: a later Group
    (in this chunk or after it) naming it is refused."""
    taken: dict[str, int] = {}
    for record in records:
        for ref in record.claims:
            owner = taken.get(ref, staged[ref].claimed_by if ref in staged else None)
            if owner is not None and owner != record.position:
                record.refuse(
                    f"{record.label}.member",
                    "member-of-another-group",
                    f"{ref} is a member of the Group at line {owner} already",
                )
        if record.accepted or not any(
            e["code"] == "member-of-another-group" for e in record.errors
        ):
            taken.update(dict.fromkeys(record.claims, record.position))
    claims = [(ref.split("/", 1)[1], ref.split("/", 1)[0], owner) for ref, owner in taken.items()]
    if claims:
        await session.execute(
            text(
                "UPDATE import_items i SET claimed_by = c.owner "
                "FROM unnest(CAST(:ids AS text[]), CAST(:kinds AS text[]), CAST(:owners AS int[])) "
                "AS c(id, kind, owner) "
                "WHERE i.job_id = :job AND i.kind = c.kind AND i.source_id = c.id "
                "AND i.claimed_by IS NULL"
            ),
            {
                "ids": [c[0] for c in claims],
                "kinds": [c[1] for c in claims],
                "owners": [c[2] for c in claims],
                "job": job_id,
            },
        )


async def _staged(
    session: AsyncSession, job_id: UUID, kind: str, references: set[str]
) -> dict[str, StagedResource]:
    """The staged resources of `kind` named by `references` (`Kind/<id>`); the first in the
    file when an id is staged twice."""
    if not references:
        return {}
    rows = await session.execute(
        text(
            "SELECT source_id, body::text, claimed_by, ARRAY(SELECT jsonb_path_query(body, "
            "'$.link[*].other.reference') #>> '{}') FROM import_items "
            "WHERE job_id = :job AND kind = :kind AND source_id = ANY(:ids) ORDER BY position"
        ),
        {"job": job_id, "kind": kind, "ids": [ref.split("/", 1)[1] for ref in references]},
    )
    found: dict[str, StagedResource] = {}
    for source_id, body, claimed_by, links in rows.all():
        found.setdefault(f"{kind}/{source_id}", StagedResource(body, claimed_by, links))
    return found


# --- writing a chunk --------------------------------------------------------------------------


@dataclass
class Outcome:
    record: Record
    outcome: str = "rejected"
    household_id: UUID | None = None
    duplicate_flagged: bool = False


async def _write(
    session: AsyncSession, job: ImportJob, records: list[Record], context: ApplyContext
) -> dict[str, int]:
    await _check_preferences(session, records)
    matches = await _matches(session, job.source, records)
    await _flag_taken_identifiers(session, records, matches)
    outcomes = [Outcome(record) for record in records]
    new = [o for o in outcomes if o.record.accepted and o.record.position not in matches]
    replaced = [o for o in outcomes if o.record.accepted and o.record.position in matches]
    for outcome in outcomes:
        if not outcome.record.accepted:
            outcome.outcome = "flagged" if _flagged(outcome.record) else "rejected"
    await _create(session, job, new, context)
    await _replace(session, replaced, matches, context)
    await _remember_sources(session, job.source, outcomes)
    written = [o.household_id for o in outcomes if o.household_id is not None]
    under_review = await flag_duplicate_candidates(session, written, context.actor)
    for outcome in outcomes:
        outcome.duplicate_flagged = outcome.household_id in under_review
    await _report(session, job.id, outcomes)
    return {
        "processed": len(outcomes),
        "created": sum(o.outcome == "created" for o in outcomes),
        "updated": sum(o.outcome == "updated" for o in outcomes),
        "rejected": sum(o.outcome == "rejected" for o in outcomes),
        "flagged": sum(o.outcome == "flagged" or o.duplicate_flagged for o in outcomes),
    }


async def flag_duplicate_candidates(
    session: AsyncSession, household_ids: Sequence[UUID], actor: str | None
) -> set[UUID]:
    """DUPLICATE CHECKS ON: the one call site of item 6's set-based duplicate check
    (`duplicates.flag_candidates`), for every household a chunk (or a FHIR Bundle) created or
    replaced, in its transaction; answers which of them are held for duplicate review after it
    (a flag raised now, or one still open from before)."""
    if not household_ids:
        return set()
    await duplicates.flag_candidates(session, list(household_ids), actor=actor, source="import")
    return await repository.under_duplicate_review(session, household_ids)


def _flagged(record: Record) -> bool:
    return any(error["code"] == "identifier-taken" for error in record.errors)


async def _check_preferences(session: AsyncSession, records: list[Record]) -> None:
    ids = sorted({r.preference.provider_id for r in records if r.preference and r.accepted})
    providers = await repository.provider_views(session, ids)
    for record in records:
        if record.preference is not None and record.accepted:
            check_preference(record, providers.get(record.preference.provider_id))


async def _matches(session: AsyncSession, source: str, records: list[Record]) -> dict[int, UUID]:
    """Record position -> the household it updates: one another import of this source named
    with one of the record's keys, or whose Amana household number the record carries."""
    keys = {key: r.position for r in records if r.accepted for key in r.keys}
    numbers = {r.household_number: r.position for r in records if r.accepted and r.household_number}
    matches: dict[int, UUID] = {}
    if keys:
        rows = await session.execute(
            select(HouseholdSource.source_key, HouseholdSource.household_id).where(
                HouseholdSource.source == source, HouseholdSource.source_key.in_(list(keys))
            )
        )
        for key, household_id in rows.all():
            matches.setdefault(keys[key], household_id)
    if numbers:
        rows = await session.execute(
            select(Household.household_number, Household.id).where(
                Household.household_number.in_(list(numbers))
            )
        )
        for number, household_id in rows.all():
            matches.setdefault(numbers[number], household_id)
    return matches


async def _flag_taken_identifiers(
    session: AsyncSession, records: list[Record], matches: Mapping[int, UUID]
) -> None:
    """An identifier held by another household that has not exited (or by an earlier record
    of the chunk) flags the record for review: it is not written. Locks the identifiers, so a
    concurrent enrolment of one of them waits for this chunk."""
    wanted = {
        (i.scheme, i.value)
        for r in records
        if r.accepted and r.draft
        for m in r.draft.members
        for i in m.identifiers
    }
    await repository.lock_identifiers(session, sorted(wanted))
    holders: dict[tuple[str, str], list[repository.IdentifierHolder]] = {}
    for holder in await repository.identifier_holders_of_many(session, sorted(wanted)):
        holders.setdefault((holder.scheme, holder.value), []).append(holder)
    in_chunk: dict[tuple[str, str], Record] = {}
    for record in records:
        if not record.accepted or record.draft is None:
            continue
        own = matches.get(record.position)
        problems = []
        for index, member in enumerate(record.draft.members):
            for position, identifier in enumerate(member.identifiers):
                key = (identifier.scheme, identifier.value)
                field_name = record.identifier_fields[index][position]
                for holder in holders.get(key, []):
                    if holder.household_id != own:
                        problems.append(
                            (
                                field_name,
                                f"held by household {holder.household_number}",
                                {
                                    "household_id": str(holder.household_id),
                                    "household_number": holder.household_number,
                                },
                            )
                        )
                earlier = in_chunk.get(key)
                if earlier is not None and earlier is not record:
                    problems.append(
                        (field_name, f"given for the record at line {earlier.line} too", {})
                    )
        if problems:
            for field_name, message, extra in problems:
                record.refuse(field_name, "identifier-taken", message, **extra)
            continue
        for member in record.draft.members:
            for identifier in member.identifiers:
                in_chunk[(identifier.scheme, identifier.value)] = record


async def _create(
    session: AsyncSession, job: ImportJob, outcomes: list[Outcome], context: ApplyContext
) -> None:
    """New households, set-based: numbered in one statement, COPY into every table, their
    events in one insert."""
    if not outcomes:
        return
    now = datetime.now(UTC)
    first = await repository.reserve_household_numbers(session, len(outcomes))
    rows = Rows()
    providers = await repository.provider_views(
        session,
        sorted({o.record.preference.provider_id for o in outcomes if o.record.preference}),
    )
    events = []
    for offset, outcome in enumerate(outcomes):
        record = outcome.record
        assert record.draft is not None
        household = new_household(record.draft, first + offset, now, _preference(record, now))
        rows.enrolled(household, context.actor, now)
        preference = household.payment_preference
        provider = providers.get(preference.provider_id) if preference is not None else None
        events.append(HouseholdEnrolledV1(**service.snapshot(household, provider)))
        outcome.outcome = "created"
        outcome.household_id = household.id
    await repository.copy_rows(session, rows.tables())
    await add_to_outbox(session, *events)


def _preference(record: Record, now: datetime) -> PlainPreference | None:
    draft = record.preference
    if draft is None:
        return None
    account = draft.account
    return PlainPreference(
        provider_id=draft.provider_id,
        mechanism=draft.mechanism,
        currency=draft.currency,
        pay_point_id=draft.pay_point_id,
        account_kind=account.kind if account else None,
        account_value=account.value if account else None,
        bank_code=account.bank_code if account else None,
        holder_name=account.holder_name if account else None,
        set_at=now,
    )


async def _replace(
    session: AsyncSession,
    outcomes: list[Outcome],
    matches: Mapping[int, UUID],
    context: ApplyContext,
) -> None:
    """Households imported before, replaced through the registry's use case (members matched
    by identifier, else by name and birth date; history; HouseholdUpdated), each in a
    savepoint so that a refused one leaves the others. The payment preference stays as it is
    (it changes through the API)."""
    if not outcomes:
        return
    ids = sorted({matches[o.record.position] for o in outcomes})
    households = {h.id: h for h in await repository.households_for_update(session, ids)}
    for outcome in outcomes:
        record = outcome.record
        household = households.get(matches[record.position])
        assert record.draft is not None
        if household is None or household.status == "exited":
            record.refuse(
                record.label,
                "household-exited",
                "the household this record updates has exited: enrol it again by hand",
            )
            continue
        try:
            async with session.begin_nested():
                await service.save_household(
                    session, record.draft, context.actor, household=household
                )
        except Problem as problem:
            for error in problem.errors or [{"field": "record", "message": problem.detail}]:
                record.refuse(str(error.get("field")), problem.slug, str(error.get("message")))
            await session.refresh(household)
            continue
        outcome.outcome = "updated"
        outcome.household_id = household.id


async def _remember_sources(session: AsyncSession, source: str, outcomes: list[Outcome]) -> None:
    pairs = [
        (key, o.household_id)
        for o in outcomes
        if o.household_id is not None
        for key in o.record.keys
    ]
    if not pairs:
        return
    await session.execute(
        text(
            "INSERT INTO household_sources (source, source_key, household_id) "
            "SELECT :source, k, h "
            "FROM unnest(CAST(:keys AS text[]), CAST(:ids AS uuid[])) AS p(k, h) "
            "ON CONFLICT (source, source_key) DO UPDATE SET household_id = EXCLUDED.household_id"
        ),
        {"source": source, "keys": [p[0][:300] for p in pairs], "ids": [p[1] for p in pairs]},
    )


async def _report(session: AsyncSession, job_id: UUID, outcomes: list[Outcome]) -> None:
    rows = [
        (
            job_id,
            o.record.position,
            o.record.line,
            (o.record.source_id or "")[:200] or None,
            o.outcome,
            o.household_id,
            o.duplicate_flagged,
            json.dumps(o.record.errors, default=str),
            json.dumps(o.record.changes, default=str, ensure_ascii=False),
        )
        for o in outcomes
    ]
    await repository.copy_rows(session, [("import_report", REPORT_COLUMNS, rows)])


# --- 4. finish --------------------------------------------------------------------------------


async def finish(session: AsyncSession, job: ImportJob, lease: Lease) -> None:
    """Patients and RelatedPersons no Group took are rejected records; the staged items and
    the upload go; the job is done."""
    orphans = (
        await session.execute(
            select(ImportItem.position, ImportItem.line, ImportItem.kind, ImportItem.source_id)
            .where(
                ImportItem.job_id == job.id,
                ImportItem.kind.in_(("Patient", "RelatedPerson")),
                ImportItem.claimed_by.is_(None),
            )
            .order_by(ImportItem.position)
        )
    ).all()
    rows = [
        _rejected_line(
            job.id,
            position,
            line,
            source_id,
            [
                {
                    "field": f"{kind}/{source_id}",
                    "code": "in-no-group",
                    "message": "a Patient that no Group lists as a member"
                    if kind == "Patient"
                    else "a RelatedPerson no member's Patient.link names",
                }
            ],
        )
        for position, line, kind, source_id in orphans
    ]
    await repository.copy_rows(session, [("import_report", REPORT_COLUMNS, rows)])
    await session.execute(delete(ImportItem).where(ImportItem.job_id == job.id))
    await session.execute(delete(JobBlock).where(JobBlock.job_id == job.id))
    await lease.renew(
        session,
        processed=len(rows),
        rejected=len(rows),
        status="done",
        finished_at=datetime.now(UTC),
        lease_owner=None,
    )


# --- the worker's part ------------------------------------------------------------------------


async def claim(session: AsyncSession, owner: str, lease_s: float) -> ImportJob | None:
    """The oldest import waiting or whose worker's lease lapsed, now leased to `owner`."""
    job: ImportJob | None = await claim_leased(session, ImportJob, owner, lease_s)
    return job


async def claim_leased(session: AsyncSession, model: Any, owner: str, lease_s: float) -> Any:
    """The oldest job of `model` (import or export) queued, or running under a lease that
    lapsed (its worker died), now running and leased to `owner`; None when none waits."""
    waiting = (
        select(model.id)
        .where(
            model.status.in_(("queued", "running")),
            (model.lease_until.is_(None)) | (model.lease_until < func.now()),
        )
        .order_by(model.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    started = (
        {"started_at": func.coalesce(model.started_at, func.now())}
        if model is ImportJob
        else {"transaction_time": func.clock_timestamp()}
    )
    return await session.scalar(
        update(model)
        .where(model.id == waiting)
        .values(
            status="running",
            lease_owner=owner,
            lease_until=func.now() + timedelta(seconds=lease_s),
            **started,
        )
        .returning(model)
    )


async def run_job(
    database: Database,
    job: ImportJob,
    owner: str,
    context: ApplyContext,
    settings: ImportSettings,
    readers: Readers,
) -> None:
    """Stages (again, when it had not finished) and applies the job from its cursor."""
    lease = Lease(job.id, owner, settings.lease_s)
    sessionmaker = database.sessionmaker
    if job.phase == "stage":
        await stage(sessionmaker, job, lease, readers)
    cursor = job.cursor
    while True:
        async with sessionmaker() as session, session.begin():
            applied = await apply_chunk(session, job, cursor, settings.chunk_size, context, readers)
            if applied is None:
                await finish(session, job, lease)
                return
            cursor, counts = applied
            await lease.renew(session, cursor=cursor, **counts)


class ImportWorker:
    """The worker component that runs import jobs, one at a time per worker; several
    workers share the queue (each job is leased). `readers` read the records (in this
    process when not given)."""

    def __init__(
        self,
        database: Database,
        context: ApplyContext,
        settings: ImportSettings,
        readers: Readers | None = None,
    ) -> None:
        self.database = database
        self.context = context
        self.settings = settings
        self.readers = readers or Readers(context.rules)
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid7().hex[-8:]}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.run_once():
                await wait_or_stop(stop, self.settings.poll_s)

    async def run_once(self) -> bool:
        """Claims and runs one job; False when none is waiting."""
        async with self.database.sessionmaker() as session, session.begin():
            job = await claim(session, self.owner, self.settings.lease_s)
        if job is None:
            return False
        log.info("import %s: running from position %s", job.id, job.cursor)
        try:
            await run_job(self.database, job, self.owner, self.context, self.settings, self.readers)
        except LeaseLost:
            log.warning("import %s: lease lost to another worker", job.id)
        except Exception as error:
            log.exception("import %s failed", job.id)
            self.readers.close()  # a reader process may have died with it: start afresh
            await self._fail(job, error)
        return True

    async def _fail(self, job: ImportJob, error: Exception) -> None:
        async with self.database.sessionmaker() as session, session.begin():
            await session.execute(
                update(ImportJob)
                .where(ImportJob.id == job.id, ImportJob.lease_owner == self.owner)
                .values(
                    status="failed",
                    error=f"{type(error).__name__} (see the worker's log)",
                    finished_at=datetime.now(UTC),
                    lease_owner=None,
                )
            )


# --- reading a job and its report -------------------------------------------------------------


async def job_by_id(session: AsyncSession, job_id: UUID) -> ImportJob:
    job = await session.get(ImportJob, job_id)
    if job is None:
        raise Problem(404, "import-not-found", f"No import {job_id}")
    return job


async def report_pages(
    sessionmaker: async_sessionmaker[AsyncSession], job_id: UUID, page: int = 1000
) -> AsyncIterator[list[ImportRecord]]:
    """The report in position order, a page at a time, each page read in its own session."""
    after = 0
    while True:
        async with sessionmaker() as session:
            rows = list(
                (
                    await session.scalars(
                        select(ImportRecord)
                        .where(ImportRecord.job_id == job_id, ImportRecord.position > after)
                        .order_by(ImportRecord.position)
                        .limit(page)
                    )
                ).all()
            )
        if not rows:
            return
        yield rows
        after = rows[-1].position


def report_line(record: ImportRecord) -> dict[str, Any]:
    return {
        "position": record.position,
        "line": record.line,
        "source_id": record.source_id,
        "outcome": record.outcome,
        "household_id": str(record.household_id) if record.household_id else None,
        "duplicate_flagged": record.duplicate_flagged,
        "errors": record.errors,
        "changes": record.changes,
    }


def report_csv_rows(records: Sequence[ImportRecord]) -> Iterator[list[str]]:
    """One row per error or change (a record without either still gets one)."""
    for record in records:
        base = [
            str(record.position),
            str(record.line),
            record.source_id or "",
            record.outcome,
            str(record.household_id or ""),
            "true" if record.duplicate_flagged else "false",
        ]
        items = [
            ("error", e.get("field"), e.get("code"), e.get("message"), "", "")
            for e in record.errors
        ] + [
            ("change", c.get("field"), c.get("rule"), "", c.get("before"), c.get("after"))
            for c in record.changes
        ]
        if not items:
            yield [*base, "", "", "", "", "", ""]
        for item in items:
            yield [*base, *("" if part is None else str(part) for part in item)]


REPORT_CSV_HEADER = [
    "position",
    "line",
    "source_id",
    "outcome",
    "household_id",
    "duplicate_flagged",
    "kind",
    "field",
    "code",
    "message",
    "before",
    "after",
]
