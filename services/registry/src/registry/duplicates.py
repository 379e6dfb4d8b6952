"""Duplicate detection and review, as use cases. They take the caller's session and never
commit (the batch run, a job, commits per chunk of its own sessions).

Seam for the importers (README, "Registry seams"):

    raised = await duplicates.flag_candidates(session, household_ids, actor=..., source="import",
                                              clashes=[IdentifierClash(household, holder, scheme)])

checks a set of households against the registry in a few set-based queries, recomputes the
open flags naming them, raises new flags (score and reasons), publishes DuplicateFlagged and
opens the duplicate review of every flagged household (`service.set_duplicate_review`: an
active household becomes `under_review`, so payroll leaves it out until a person decides).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast, get_args
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.errors import Problem
from amana_common.etag import IfMatch
from amana_common.events import add_to_outbox
from amana_common.worker import wait_or_stop
from amana_contracts.registry import DuplicateDecision, DuplicateFlaggedV1, DuplicateReviewedV1
from registry import domain, repository, service
from registry import duplicates_repository as queries
from registry.cleaning import HouseholdDraft
from registry.domain import RuleBroken
from registry.matching import (
    Comparison,
    DecisionRequest,
    FlagSource,
    HouseholdRecord,
    check_decidable,
    compare_households,
    member_draft,
    merge,
    ordered_pair,
    outcome,
    person,
)
from registry.models import DuplicateFlag, DuplicateRun, Household, PaymentPreference
from registry.schemas import StatusIn

log = logging.getLogger("registry.duplicates")

MAX_CANDIDATES_PER_HOUSEHOLD = 20
SYSTEM_ACTOR = "registry"


@dataclass(frozen=True)
class IdentifierClash:
    """An import brought for `household_id` an identifier that `holder_id` holds (the
    database keeps one holder per identifier, so the import could not store it)."""

    household_id: UUID
    holder_id: UUID
    scheme: str


# --- detection ---------------------------------------------------------------------------------


async def flag_candidates(
    session: AsyncSession,
    household_ids: Sequence[UUID],
    *,
    actor: str | None,
    source: FlagSource = "import",
    clashes: Sequence[IdentifierClash] = (),
) -> int:
    """Checks these households (just written or changed, in this transaction) against the
    registry; answers how many flags it raised. Open flags naming them are recomputed first:
    one that no longer scores (an identifier corrected, a name fixed) or names an exited
    household is resolved, and a household left with no open flag leaves review."""
    ids = sorted(set(household_ids))
    if not ids:
        return 0
    if source != "enrolment":  # a household enrolled in this transaction has no flag yet
        await recompute_open_flags(session, ids, actor)
    records = await queries.household_records(session, ids)
    probing = [household_id for household_id in ids if _checkable(records.get(household_id))]
    pairs = {
        ordered_pair(probe, other)
        for probe, other in await queries.probe_candidates(
            session, probing, MAX_CANDIDATES_PER_HOUSEHOLD
        )
    }
    clash_schemes: dict[tuple[UUID, UUID], list[str]] = {}
    for clash in clashes:
        pair = ordered_pair(clash.household_id, clash.holder_id)
        clash_schemes.setdefault(pair, []).append(clash.scheme)
        pairs.add(pair)
    pairs -= await queries.flagged_pairs(session, sorted(pairs))
    records = dict(records) | await queries.household_records(
        session, [h for pair in pairs for h in pair if h not in records]
    )
    flagged = await score_and_flag(session, sorted(pairs), clash_schemes, actor, source, records)
    return len(flagged)


def _checkable(record: HouseholdRecord | None) -> bool:
    return record is not None and record.status != domain.EXITED


async def score_and_flag(
    session: AsyncSession,
    pairs: Sequence[tuple[UUID, UUID]],
    clash_schemes: Mapping[tuple[UUID, UUID], Sequence[str]],
    actor: str | None,
    source: FlagSource,
    records: Mapping[UUID, HouseholdRecord] | None = None,
) -> list[DuplicateFlag]:
    """Compares each candidate pair (ordered), raises a flag for each that scores, publishes
    DuplicateFlagged and opens the review of the flagged households."""
    if records is None:
        records = await queries.household_records(session, [h for pair in pairs for h in pair])
    now = datetime.now(UTC)
    rows = []
    for a, b in pairs:
        if not (_checkable(records.get(a)) and _checkable(records.get(b))):
            continue
        comparison = compare_households(records[a], records[b], clash_schemes.get((a, b), ()))
        if comparison.flagged:
            rows.append(_flag_row(comparison, records[a].location_code, source, actor, now))
    raised = await queries.raise_flags(session, rows)
    if raised:
        await add_to_outbox(session, *(_flagged_event(flag) for flag in raised))
        flagged = sorted(
            {h for flag in raised for h in (flag.household_id, flag.other_household_id)}
        )
        await service.set_duplicate_review(session, flagged, open=True, actor=actor)
    return raised


def _flag_row(
    comparison: Comparison, location_code: str, source: FlagSource, actor: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "household_id": comparison.household_id,
        "other_household_id": comparison.other_household_id,
        "status": "open",
        "score": comparison.score,
        "weight": comparison.weight,
        "reasons": comparison.reasons(),
        "comparison": comparison.as_json(),
        "location_code": location_code,
        "source": source,
        "flagged_at": now,
        "flagged_by": actor,
    }


def _flagged_event(flag: DuplicateFlag) -> DuplicateFlaggedV1:
    return DuplicateFlaggedV1(
        flag_id=flag.id,
        household_id=flag.household_id,
        other_household_id=flag.other_household_id,
        location_code=flag.location_code,
        score=flag.score,
        reasons=list(flag.reasons),
        flagged_at=flag.flagged_at,
    )


async def recompute_open_flags(
    session: AsyncSession, household_ids: Sequence[UUID], actor: str | None
) -> int:
    """Scores the open flags naming these households again; resolves those that no longer
    score or name an exited household; answers how many it resolved."""
    flags = await queries.open_flags_of(session, household_ids, for_update=True)
    if not flags:
        return 0
    records = await queries.household_records(
        session, [h for flag in flags for h in (flag.household_id, flag.other_household_id)]
    )
    resolved = []
    for flag in flags:
        a, b = records.get(flag.household_id), records.get(flag.other_household_id)
        if a is None or b is None or not (_checkable(a) and _checkable(b)):
            resolved.append(flag)
            continue
        clash = flag.comparison.get("identifier_clash", [])
        comparison = compare_households(a, b, clash)
        if not comparison.flagged:
            resolved.append(flag)
        elif comparison.as_json() != flag.comparison:
            flag.score, flag.weight = comparison.score, comparison.weight
            flag.reasons, flag.comparison = comparison.reasons(), comparison.as_json()
            flag.version += 1
    now = datetime.now(UTC)
    for flag in resolved:
        _close(flag, "resolved", actor or SYSTEM_ACTOR, now)
    await session.flush()
    if resolved:
        await add_to_outbox(session, *(_reviewed_event(flag) for flag in resolved))
        await close_reviews(
            session,
            [h for flag in resolved for h in (flag.household_id, flag.other_household_id)],
            actor,
        )
    return len(resolved)


def _close(flag: DuplicateFlag, status: Any, actor: str, now: datetime) -> None:
    flag.status = status
    flag.decided_at = now
    flag.decided_by = actor
    flag.version += 1


def _reviewed_event(flag: DuplicateFlag) -> DuplicateReviewedV1:
    assert flag.decided_at is not None
    return DuplicateReviewedV1(
        flag_id=flag.id,
        household_id=flag.household_id,
        other_household_id=flag.other_household_id,
        location_code=flag.location_code,
        decision=_decision(flag.status),
        flagged_at=flag.flagged_at,
        decided_at=flag.decided_at,
        decided_by=flag.decided_by or SYSTEM_ACTOR,
    )


def _decision(status: str) -> DuplicateDecision:
    if status not in get_args(DuplicateDecision):
        raise ValueError(f"a flag that is {status} is not decided")
    return cast(DuplicateDecision, status)


async def close_reviews(
    session: AsyncSession, household_ids: Iterable[UUID], actor: str | None
) -> None:
    """Households among these that no open flag names any more leave review."""
    ids = sorted(set(household_ids))
    still_open = await queries.households_with_open_flags(session, ids)
    closing = [household_id for household_id in ids if household_id not in still_open]
    if closing:
        await service.set_duplicate_review(session, closing, open=False, actor=actor)


# --- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionContext:
    actor: str
    max_members: int


async def decide(
    session: AsyncSession,
    flag_id: UUID,
    request: DecisionRequest,
    note: str | None,
    context: DecisionContext,
) -> DuplicateFlag:
    """A reviewer's decision on one open flag (locked: of two reviewers deciding it at once,
    the second gets a 409 naming the first)."""
    flag = await queries.get_flag(session, flag_id, for_update=True)
    if flag is None:
        raise flag_not_found(flag_id)
    await _decide(session, flag, request, note, context)
    return flag


async def decide_many(
    session: AsyncSession,
    decisions: Sequence[tuple[UUID, DecisionRequest, str | None]],
    context: DecisionContext,
) -> list[DuplicateFlag]:
    """Bulk decisions, all or nothing: the flags are locked in id order, then decided in the
    order given; any refusal refuses the whole request (naming the flag)."""
    ids = [flag_id for flag_id, _, _ in decisions]
    if len(set(ids)) != len(ids):
        raise Problem(
            422,
            "validation-error",
            "decisions: a flag is named twice",
            errors=[{"field": "decisions", "message": "each flag at most once"}],
        )
    flags = {flag.id: flag for flag in await queries.flags_for_update(session, ids)}
    decided = []
    for index, (flag_id, request, note) in enumerate(decisions):
        flag = flags.get(flag_id)
        if flag is None:
            raise flag_not_found(flag_id, f"decisions.{index}.flag_id")
        try:
            await _decide(session, flag, request, note, context)
        except Problem as problem:
            problem.errors = [
                {**error, "field": f"decisions.{index}.{error.get('field', '')}".rstrip(".")}
                for error in (problem.errors or [{"message": str(problem)}])
            ]
            raise
        decided.append(flag)
    return decided


def flag_not_found(flag_id: UUID, field_name: str = "flag_id") -> Problem:
    return Problem(
        404,
        "duplicate-flag-not-found",
        f"No duplicate flag {flag_id}",
        errors=[{"field": field_name, "message": "no such flag"}],
    )


def _refused(error: RuleBroken) -> Problem:
    return Problem(
        error.status,
        error.code,
        error.message,
        errors=[{"field": error.field, "message": error.message}],
    )


async def _decide(
    session: AsyncSession,
    flag: DuplicateFlag,
    request: DecisionRequest,
    note: str | None,
    context: DecisionContext,
) -> None:
    try:
        check_decidable(flag.status, flag.decided_by)
        status, survivor, leaving = outcome(request, flag.household_id, flag.other_household_id)
    except RuleBroken as error:
        raise _refused(error) from error
    if survivor is not None and leaving is not None:
        numbers = await queries.household_numbers(session, [survivor])
        reason = f"duplicate of household {numbers[survivor]}"
        if status == "duplicate_merged":
            await _merge(session, survivor, leaving, reason, context)
        else:
            await _exit(session, leaving, reason, context.actor)
    _close(flag, status, context.actor, datetime.now(UTC))
    flag.note = note
    flag.surviving_household_id = survivor
    await session.flush()
    await add_to_outbox(session, _reviewed_event(flag))
    if leaving is not None:
        await recompute_open_flags(session, [leaving], context.actor)
    await close_reviews(session, [flag.household_id, flag.other_household_id], context.actor)
    if status == "duplicate_merged" and survivor is not None:
        await flag_candidates(session, [survivor], actor=context.actor, source="update")


async def _exit(session: AsyncSession, household_id: UUID, reason: str, actor: str) -> None:
    household = await repository.get_household(session, household_id, for_update=True)
    if household is None or household.status == domain.EXITED:
        raise Problem(409, "household-exited", "the other household has exited already")
    await service.change_status(
        session,
        household_id,
        StatusIn(status="exited", reason=reason),
        IfMatch(frozenset({str(household.version)})),
        actor,
    )


async def _merge(
    session: AsyncSession,
    survivor_id: UUID,
    leaving_id: UUID,
    reason: str,
    context: DecisionContext,
) -> None:
    """Merges the leaving household into the survivor (`matching.merge` says how), after the
    leaving household exited (which frees its identifiers for the survivor)."""
    locked = {
        household.id: household
        for household in await repository.households_for_update(
            session, sorted([survivor_id, leaving_id])
        )
    }
    survivor, leaving = locked[survivor_id], locked[leaving_id]
    if survivor.status == domain.EXITED or leaving.status == domain.EXITED:
        raise Problem(409, "household-exited", "a household of the flag has exited already")
    comparison = compare_households(record_of(survivor), record_of(leaving))
    try:
        plan = merge(
            draft_of(survivor),
            [member.id for member in survivor.members],
            draft_of(leaving),
            [member.id for member in leaving.members],
            [(m.member_id, m.other_member_id) for m in comparison.members],
            context.max_members,
        )
    except RuleBroken as error:
        raise _refused(error) from error
    preference = _copied_preference(leaving) if survivor.payment_preference is None else None
    await _exit(session, leaving_id, reason, context.actor)
    await service.save_household(
        session,
        plan.draft,
        context.actor,
        household=survivor,
        preference=preference,
        action="duplicate_merged",
    )


def _copied_preference(household: Household) -> PaymentPreference | None:
    preference = household.payment_preference
    if preference is None:
        return None
    return PaymentPreference(
        provider_id=preference.provider_id,
        mechanism=preference.mechanism,
        currency=preference.currency,
        pay_point_id=preference.pay_point_id,
        account_kind=preference.account_kind,
        account_value=preference.account_value,
        bank_code=preference.bank_code,
        holder_name=preference.holder_name,
    )


def record_of(household: Household) -> HouseholdRecord:
    return HouseholdRecord(
        household_id=household.id,
        location_code=household.location_code,
        status=household.status,
        members=tuple(
            person(
                m.id,
                m.given_name,
                m.family_name,
                m.date_of_birth,
                m.sex,
                m.relationship,
                ((i.scheme, i.value) for i in m.identifiers),
                m.phone,
            )
            for m in household.members
        ),
        address=household.address,
        phone=household.phone,
        latitude=household.latitude,
        longitude=household.longitude,
    )


def draft_of(household: Household) -> HouseholdDraft:
    return HouseholdDraft(
        location_code=household.location_code,
        members=tuple(
            member_draft(
                m.given_name,
                m.family_name,
                m.sex,
                m.date_of_birth,
                m.relationship,
                disability=m.disability,
                phone=m.phone,
                is_primary_recipient=m.is_primary_recipient,
                identifiers=((i.scheme, i.value) for i in m.identifiers),
            )
            for m in household.members
        ),
        address=household.address,
        phone=household.phone,
        latitude=household.latitude,
        longitude=household.longitude,
        eligibility_attributes=dict(household.eligibility_attributes),
    )


# --- the batch run -------------------------------------------------------------------------

MAX_BLOCK = 100
CHUNK_PAIRS = 5_000
STALE_AFTER = timedelta(minutes=5)
BLOCKING_TIMEOUT = "15min"  # the blocking statements read the whole registry


async def request_run(session: AsyncSession, actor: str | None) -> DuplicateRun:
    """Queues a batch run (the worker, or `python -m registry dedupe`, runs it); 409 while
    another run is queued or running."""
    await queries.lock_runs(session)
    unfinished = await queries.unfinished_run(session)
    if unfinished is not None:
        raise Problem(
            409,
            "duplicate-run-unfinished",
            f"run {unfinished.id} is {unfinished.status}: wait for it to finish",
            errors=[{"field": "run", "message": str(unfinished.id)}],
        )
    run = DuplicateRun(
        id=uuid7(),
        status="queued",
        requested_by=actor,
        requested_at=datetime.now(UTC),
        pairs_total=0,
        pairs_scored=0,
        flags_created=0,
        blocks_skipped=0,
    )
    repository.add(session, run)
    await session.flush()
    return run


async def claim_run(database: Database) -> UUID | None:
    """Takes the oldest queued run (or one whose worker died) and marks it running."""
    now = datetime.now(UTC)
    async with database.sessionmaker() as session, session.begin():
        run = await queries.claim_run(session, now - STALE_AFTER)
        if run is None:
            return None
        run.status, run.started_at, run.heartbeat_at, run.phase = "running", now, now, "blocking"
        return run.id


Progress = Callable[[DuplicateRun], None]


async def execute_run(
    database: Database, run_id: UUID, progress: Progress | None = None
) -> DuplicateRun:
    """Runs a claimed batch run over the whole registry: the candidate pairs are built
    set-based in one temporary table (blocking), then scored in chunks of `CHUNK_PAIRS`, each
    chunk's flags, events and reviews committed with the run's progress. A run that stops
    half way can run again: pairs already flagged are not examined twice."""
    async with database.sessionmaker() as session:
        try:
            await session.execute(text(f"SET LOCAL statement_timeout = '{BLOCKING_TIMEOUT}'"))
            blocking = await queries.build_candidate_pairs(session, MAX_BLOCK)
            await queries.record_progress(
                session,
                run_id,
                phase="scoring",
                pairs_total=blocking.pairs,
                blocks_skipped=blocking.blocks_skipped,
                heartbeat_at=datetime.now(UTC),
            )
            await session.commit()
            await _report(session, run_id, progress)
            await _score_chunks(session, run_id, progress)
            await queries.drop_candidate_pairs(session)
            await queries.record_progress(
                session, run_id, status="done", phase=None, finished_at=datetime.now(UTC)
            )
            await session.commit()
        except Exception as error:
            await session.rollback()
            log.error("duplicate run %s failed: %s", run_id, type(error).__name__)
            await queries.record_progress(
                session,
                run_id,
                status="failed",
                finished_at=datetime.now(UTC),
                error=type(error).__name__,
            )
            await session.commit()
            raise
        run = await queries.get_run(session, run_id)
        assert run is not None
        return run


async def _score_chunks(session: AsyncSession, run_id: UUID, progress: Progress | None) -> None:
    after: tuple[UUID, UUID] | None = None
    scored = flags = 0
    while True:
        pairs = await queries.candidate_pairs_page(session, after, CHUNK_PAIRS)
        if not pairs:
            return
        raised = await score_and_flag(session, pairs, {}, SYSTEM_ACTOR, "batch")
        scored += len(pairs)
        flags += len(raised)
        after = pairs[-1]
        await queries.record_progress(
            session,
            run_id,
            pairs_scored=scored,
            flags_created=flags,
            heartbeat_at=datetime.now(UTC),
        )
        await session.commit()
        await _report(session, run_id, progress)


async def _report(session: AsyncSession, run_id: UUID, progress: Progress | None) -> None:
    if progress is not None:
        run = await queries.get_run(session, run_id)
        assert run is not None
        progress(run)


class DuplicateRunner:
    """The worker's component: runs the batch runs the API queued, one at a time (and takes
    over a run whose worker died: no heartbeat for `STALE_AFTER`)."""

    def __init__(self, database: Database, poll_interval_s: float = 5.0) -> None:
        self.database = database
        self.poll_interval_s = poll_interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            run_id = await claim_run(self.database)
            if run_id is None:
                await wait_or_stop(stop, self.poll_interval_s)
                continue
            log.info("duplicate run %s started", run_id)
            try:
                run = await execute_run(self.database, run_id)
            except Exception as error:  # recorded on the run (failed); the worker goes on
                log.error("duplicate run %s failed: %s", run_id, type(error).__name__)
                continue
            log.info(
                "duplicate run %s done: %s pairs, %s flags",
                run_id,
                run.pairs_scored,
                run.flags_created,
            )
