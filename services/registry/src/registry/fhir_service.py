"""FHIR use cases: a Bundle of households (transaction or batch), reading households as FHIR,
the Group searchset and bulk export. They take the caller's session and never commit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.errors import Problem
from registry import repository, service
from registry.fhir import (
    ACCEPTED_TYPES,
    group_resource,
    instant,
    label,
    member_references,
    patient_resource,
)
from registry.import_records import Record, fhir_record
from registry.imports import (
    ApplyContext,
    Outcome,
    _flag_taken_identifiers,
    _matches,
    _remember_sources,
    claim_leased,
    flag_duplicate_candidates,
)
from registry.models import ExportJob, Household, JobBlock, Member
from registry.repository import within

FHIR_JSON = "application/fhir+json"
EXPORT_TYPES = ("Group", "Patient")
EXPORT_LEASE_S = 600.0  # an export is written in one transaction; a dead worker's is redone


# --- POST /fhir: a Bundle of households -------------------------------------------------------


@dataclass
class BundleEntry:
    index: int
    resource: dict[str, Any]
    full_url: str | None


def parse_bundle(body: bytes) -> tuple[str, list[BundleEntry]]:
    """A transaction or batch Bundle, validated with fhir.resources; a broken one is a 400
    (not JSON) or a 422 naming the entry and element."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise Problem(
            400, "malformed-json", f"The request body is not valid JSON: {error}"
        ) from error
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise _invalid("resourceType", "wrong-resource-type", "POST /fhir takes a Bundle")
    if document.get("type") not in ("transaction", "batch"):
        raise _invalid("type", "bundle-type", "a Bundle of type transaction or batch")
    raw_entries = document.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise _invalid("entry", "required", "the Bundle has no entries")
    for index, entry in enumerate(raw_entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise _invalid(f"entry[{index}].resource", "required", "each entry has a resource")
        if resource.get("resourceType") not in ACCEPTED_TYPES:
            raise _invalid(
                f"entry[{index}].resource.resourceType",
                "wrong-resource-type",
                f"{resource.get('resourceType')!r} is not accepted: one of "
                f"{', '.join(ACCEPTED_TYPES)}",
            )
    # The envelope here; each resource with its household, so that a batch refuses one
    # household, not the Bundle.
    envelope = {
        **document,
        "entry": [{k: v for k, v in entry.items() if k != "resource"} for entry in raw_entries],
    }
    try:
        Bundle.model_validate(envelope)
    except ValidationError as error:
        raise Problem(
            422,
            "invalid-fhir",
            "the Bundle is not valid FHIR R4",
            errors=[
                {
                    "field": ".".join(str(part) for part in item["loc"]),
                    "code": "invalid-fhir",
                    "message": str(item["msg"]).splitlines()[0][:300],
                }
                for item in error.errors()
            ],
        ) from error
    entries = [
        BundleEntry(index, entry["resource"], entry.get("fullUrl"))
        for index, entry in enumerate(raw_entries)
    ]
    return str(document["type"]), entries


def _invalid(field_name: str, code: str, message: str) -> Problem:
    return Problem(
        422,
        "invalid-fhir",
        message,
        errors=[{"field": field_name, "code": code, "message": message}],
    )


def _resolver(entries: Sequence[BundleEntry]) -> dict[str, BundleEntry]:
    """Reference -> entry: by fullUrl (urn:uuid:... or absolute) and by `Type/id`."""
    found: dict[str, BundleEntry] = {}
    for entry in entries:
        if entry.full_url:
            found.setdefault(entry.full_url, entry)
        if isinstance(entry.resource.get("id"), str):
            found.setdefault(label(entry.resource), entry)
    return found


@dataclass
class EntryResult:
    record: Record
    entries: list[int]  # the Group's entry and those it took
    outcome: Outcome


async def import_bundle(
    session: AsyncSession,
    kind: str,
    entries: list[BundleEntry],
    source: str,
    context: ApplyContext,
) -> list[EntryResult]:
    """Reads every Group of the Bundle with what it references, then writes them: a
    transaction writes all or nothing (any refusal is a 422 naming the entries and fields); a
    batch writes each household in a savepoint and answers each its outcome."""
    by_reference = _resolver(entries)
    results = [
        _read_group(entry, by_reference, context)
        for entry in entries
        if entry.resource.get("resourceType") == "Group"
    ]
    _refuse_strays(entries, results)
    matches = await _matches(session, source, [r.record for r in results])
    await _flag_taken_identifiers(session, [r.record for r in results], matches)
    if kind == "transaction":
        refused = [r for r in results if not r.record.accepted] + _stray_results(entries, results)
        if refused:
            raise _bundle_problem(refused)
    for result in results:
        if not result.record.accepted:
            result.outcome.outcome = "flagged" if _taken(result.record) else "rejected"
            continue
        await _write_one(session, result, matches, context, kind == "batch")
    await _remember_sources(session, source, [r.outcome for r in results])
    written = [r.outcome.household_id for r in results if r.outcome.household_id]
    await flag_duplicate_candidates(session, written, context.actor)
    return results


def _read_group(
    entry: BundleEntry, by_reference: Mapping[str, BundleEntry], context: ApplyContext
) -> EntryResult:
    def resolve(reference: str) -> Mapping[str, Any] | None:
        found = by_reference.get(reference)
        return found.resource if found else None

    group = entry.resource
    referenced = [by_reference[ref] for ref in member_references(group) if ref in by_reference]
    record = fhir_record(
        entry.index,
        entry.index,
        group,
        resolve,
        [e.resource for e in referenced],
        context.rules,
        datetime.now(UTC).date(),
    )
    taken = [by_reference[ref].index for ref in record.claims if ref in by_reference]
    for error in record.errors:
        error["entry"] = entry.index
    return EntryResult(record, [entry.index, *taken], Outcome(record))


def _refuse_strays(entries: Sequence[BundleEntry], results: list[EntryResult]) -> None:
    """A Patient twice in the Bundle's Groups refuses the later Group."""
    owners: dict[int, int] = {}
    for result in results:
        for index in result.entries[1:]:
            if index in owners:
                result.record.refuse(
                    f"entry[{result.entries[0]}].resource.member",
                    "member-of-another-group",
                    f"entry {index} is a member of the Group in entry {owners[index]} already",
                    entry=result.entries[0],
                )
            owners.setdefault(index, result.entries[0])


def _stray_results(entries: Sequence[BundleEntry], results: list[EntryResult]) -> list[EntryResult]:
    """Patients and RelatedPersons no Group took: a Patient in no Group."""
    taken = {index for result in results for index in result.entries}
    strays = []
    for entry in entries:
        if entry.index in taken:
            continue
        record = Record(entry.index, entry.index, label(entry.resource))
        record.refuse(
            f"entry[{entry.index}].resource",
            "in-no-group",
            f"{label(entry.resource)} is in no Group of the Bundle",
            entry=entry.index,
        )
        strays.append(EntryResult(record, [entry.index], Outcome(record)))
    return strays


def _taken(record: Record) -> bool:
    return any(error["code"] == "identifier-taken" for error in record.errors)


def _bundle_problem(refused: list[EntryResult]) -> Problem:
    errors = [
        {"entry": error.get("entry", result.entries[0]), **error}
        for result in refused
        for error in result.record.errors
    ]
    status = 409 if all(e["code"] == "identifier-taken" for e in errors) else 422
    detail = "; ".join(f"entry {e['entry']}: {e['field']}: {e['message']}" for e in errors[:5])
    return Problem(
        status, "identifier-taken" if status == 409 else "invalid-fhir", detail, errors=errors
    )


async def _write_one(
    session: AsyncSession,
    result: EntryResult,
    matches: Mapping[int, UUID],
    context: ApplyContext,
    savepoint: bool,
) -> None:
    record = result.record
    assert record.draft is not None
    match = matches.get(record.position)
    try:
        async with session.begin_nested() if savepoint else _no_savepoint():
            household = None
            if match is not None:
                household = await repository.get_household(session, match, for_update=True)
                if household is None or household.status == "exited":
                    raise Problem(
                        409, "household-exited", "the household this Group updates has exited"
                    )
            saved = await service.save_household(
                session, record.draft, context.actor, household=household
            )
    except Problem as problem:
        if not savepoint:
            raise
        for error in problem.errors or [{"field": "entry", "message": problem.detail}]:
            record.refuse(str(error.get("field")), problem.slug, str(error.get("message")))
        result.outcome.outcome = "flagged" if problem.slug == "identifier-taken" else "rejected"
        return
    result.outcome.outcome = "updated" if household is not None else "created"
    result.outcome.household_id = saved.id


class _no_savepoint:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def response_bundle(
    kind: str, entries: list[BundleEntry], results: list[EntryResult]
) -> dict[str, Any]:
    """The transaction-response or batch-response: per entry, in order, its status and, for
    a Group written, where it is; a refused entry carries an OperationOutcome naming its
    fields."""
    by_entry: dict[int, EntryResult] = {}
    for result in results + _stray_results(entries, results):
        for index in result.entries:
            by_entry.setdefault(index, result)
    answer = []
    for entry in entries:
        result = by_entry[entry.index]
        outcome = result.outcome
        if outcome.household_id is not None:
            is_group = entry.index == result.entries[0]
            status = "201 Created" if outcome.outcome == "created" else "200 OK"
            answer.append(
                {
                    "response": {
                        "status": status,
                        **({"location": f"Group/{outcome.household_id}"} if is_group else {}),
                    }
                }
            )
            continue
        status = "409 Conflict" if outcome.outcome == "flagged" else "422 Unprocessable Entity"
        response: dict[str, Any] = {
            "status": status,
            "outcome": operation_outcome(result.record.errors),
        }
        answer.append({"response": response})
    return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": answer}


def operation_outcome(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "conflict" if error.get("code") == "identifier-taken" else "invalid",
                "details": {"text": str(error.get("message"))},
                "expression": [str(error.get("field"))],
            }
            for error in errors
        ]
        or [{"severity": "error", "code": "invalid", "details": {"text": "refused"}}],
    }


# --- reading households as FHIR ---------------------------------------------------------------


async def group(session: AsyncSession, household_id: UUID) -> dict[str, Any]:
    household = await repository.get_household(session, household_id)
    if household is None:
        raise Problem(404, "not-found", f"No Group {household_id}")
    return group_resource(household)


async def patient(session: AsyncSession, member_id: UUID) -> dict[str, Any]:
    household_id = await session.scalar(select(Member.household_id).where(Member.id == member_id))
    household = await repository.get_household(session, household_id) if household_id else None
    member = next((m for m in household.members if m.id == member_id), None) if household else None
    if household is None or member is None:
        raise Problem(404, "not-found", f"No Patient {member_id}")
    return patient_resource(member, household)


@dataclass(frozen=True)
class GroupSearch:
    """`_lastUpdated` comparisons (gt, ge, lt, le, eq as a day or instant) and `address-state`
    (a location code: that area and every area below it)."""

    updated_after: datetime | None = None
    updated_before: datetime | None = None
    after_inclusive: bool = False
    before_inclusive: bool = False
    location: str | None = None


async def search_groups(
    session: AsyncSession, search: GroupSearch, after: tuple[datetime, UUID] | None, count: int
) -> list[Household]:
    """A page of households by (updated_at, id), so that a client polling `_lastUpdated=gt`
    sees every change once."""
    statement = select(Household).options(*repository._whole())
    if search.updated_after is not None:
        statement = statement.where(
            Household.updated_at >= search.updated_after
            if search.after_inclusive
            else Household.updated_at > search.updated_after
        )
    if search.updated_before is not None:
        statement = statement.where(
            Household.updated_at <= search.updated_before
            if search.before_inclusive
            else Household.updated_at < search.updated_before
        )
    if search.location is not None:
        statement = statement.where(within(Household.location_code, search.location))
    if after is not None:
        statement = statement.where(
            func.row(Household.updated_at, Household.id) > func.row(after[0], after[1])
        )
    statement = statement.order_by(Household.updated_at, Household.id).limit(count + 1)
    return list((await session.scalars(statement)).all())


# --- bulk export ----------------------------------------------------------------------------


async def start_export(
    session: AsyncSession, types: list[str], since: datetime | None, url: str, actor: str | None
) -> ExportJob:
    job = ExportJob(
        id=uuid7(),
        status="queued",
        types=types,
        since=since,
        request_url=url[:2000],
        counts={},
        created_by=actor,
        created_at=datetime.now(UTC),
    )
    repository.add(session, job)
    await session.flush()
    return job


async def export_job(session: AsyncSession, job_id: UUID) -> ExportJob:
    job = await session.get(ExportJob, job_id)
    if job is None:
        raise Problem(404, "export-not-found", f"No export {job_id}")
    return job


async def run_exports(database: Database, owner: str, page: int = 500) -> bool:
    """Claims the oldest queued export and writes its NDJSON files (a block per page of
    households); False when none waits. An export whose worker died is written again."""
    async with database.sessionmaker() as session, session.begin():
        job = await claim_leased(session, ExportJob, owner, EXPORT_LEASE_S)
    if job is None:
        return False
    async with database.sessionmaker() as session, session.begin():
        await session.execute(delete(JobBlock).where(JobBlock.job_id == job.id))
        counts = await _write_export(session, job, page)
        await session.execute(
            update(ExportJob)
            .where(ExportJob.id == job.id)
            .values(status="done", counts=counts, finished_at=datetime.now(UTC), lease_owner=None)
        )
    return True


async def _write_export(session: AsyncSession, job: ExportJob, page: int) -> dict[str, int]:
    counts = dict.fromkeys(job.types, 0)
    seq = dict.fromkeys(job.types, 0)
    cursor: UUID | None = None
    assert job.transaction_time is not None
    while True:
        statement = (
            select(Household)
            .options(*repository._whole())
            .where(Household.updated_at <= job.transaction_time)
            .order_by(Household.id)
            .limit(page)
        )
        if job.since is not None:
            statement = statement.where(Household.updated_at > job.since)
        if cursor is not None:
            statement = statement.where(Household.id > cursor)
        households = list((await session.scalars(statement)).all())
        if not households:
            return counts
        lines: dict[str, list[str]] = {kind: [] for kind in job.types}
        for household in households:
            if "Group" in lines:
                lines["Group"].append(json.dumps(group_resource(household), ensure_ascii=False))
            if "Patient" in lines:
                lines["Patient"].extend(
                    json.dumps(patient_resource(m, household), ensure_ascii=False)
                    for m in household.members
                )
        for kind, written in lines.items():
            if written:
                data = ("\n".join(written) + "\n").encode()
                repository.add(
                    session, JobBlock(job_id=job.id, part=kind, seq=seq[kind], data=data)
                )
                seq[kind] += 1
                counts[kind] += len(written)
        await session.flush()
        session.expunge_all()
        cursor = households[-1].id


def export_manifest(job: ExportJob, base_url: str) -> dict[str, Any]:
    return {
        "transactionTime": instant(job.transaction_time or job.created_at),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": kind, "url": f"{base_url}/{job.id}/{kind}.ndjson", "count": count}
            for kind, count in sorted(job.counts.items())
            if count
        ],
        "error": [],
    }


async def export_blocks(database: Database, job_id: UUID, kind: str) -> Any:
    """The NDJSON file of one resource type, a block at a time."""
    seq = 0
    while True:
        async with database.sessionmaker() as session:
            data = await session.scalar(
                select(JobBlock.data).where(
                    JobBlock.job_id == job_id, JobBlock.part == kind, JobBlock.seq == seq
                )
            )
        if data is None:
            return
        yield data
        seq += 1
