"""Analytics use cases: they orchestrate, and never commit.

Ingest: each `apply_*` takes a whole batch of events of one kind, keeps what analytics may
keep of them, and writes it with one statement per table, whatever the batch's size.
Reports: filters resolved to ids and dates, grouped reads of the totals, ids labelled with
codes, ratios computed here. DHIS2: the export of a report through the mapping, and its push.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, get_args
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.errors import Problem
from amana_common.pagination import Page, page
from amana_contracts.disbursement import PaymentEventV1, PayrollReconciledV1
from amana_contracts.envelope import CloudEvent
from amana_contracts.payroll import (
    ExclusionReason,
    PayrollApprovedV1,
    PayrollEventV1,
    PayrollGeneratedV1,
    PayrollRejectedV1,
    ProgrammeSnapshotV1,
)
from amana_contracts.provider import ProviderSnapshotV1, ProviderStatusChangeV1
from amana_contracts.registry import (
    DuplicateFlaggedV1,
    DuplicateReviewedV1,
    HouseholdSnapshotV1,
)
from analytics import dhis2_client, repository
from analytics.dhis2 import (
    Dhis2Mapping,
    UnmappedElements,
    check_measures,
    data_value_set,
    disaggregation_dimensions,
)
from analytics.domain import (
    INTERVAL_PERIOD_TYPE,
    OUTCOMES,
    REASON_DESCRIPTIONS,
    REPORTS,
    Deltas,
    HouseholdRow,
    Interval,
    ReportSpec,
    hours,
    household_contributions,
    household_row,
    interval_label,
    is_newer_household,
    payment_contribution,
    payment_row,
    pseudonym,
    ratio,
    supersedes,
    winners,
)
from analytics.models import Dhis2Push
from analytics.repository import Scope
from analytics.schemas import PushOut, ReportQuery
from analytics.settings import AnalyticsSettings

Batch = Sequence[tuple[Any, CloudEvent]]
EXCLUSION_REASONS: tuple[str, ...] = get_args(ExclusionReason)


# --- ingest -----------------------------------------------------------------------------------


async def apply_household_snapshots(
    session: AsyncSession, batch: Sequence[tuple[HouseholdSnapshotV1, CloudEvent]], secret: bytes
) -> None:
    """Each household's newest version replaces the one held, and the totals move from the
    old version's figures to the new one's."""
    rows = winners(
        (household_row(snapshot, event.time.date(), secret) for snapshot, event in batch),
        key=lambda row: row.household_key,
        beats=is_newer_household,
    )
    held = await repository.lock_household_facts(session, sorted(r.household_key for r in rows))
    changed = [row for row in rows if is_newer_household(row, held.get(row.household_key))]
    households, members = Deltas(2), Deltas(1)
    for row in changed:
        _move_household(households, members, held.get(row.household_key), row)
    await repository.upsert_household_facts(session, changed)
    await repository.add_household_totals(session, households.rows())
    await repository.add_member_totals(session, members.rows())


def _move_household(
    households: Deltas, members: Deltas, old: HouseholdRow | None, new: HouseholdRow
) -> None:
    for row, sign in ((old, -1), (new, 1)):
        if row is not None:
            household_part, member_part = household_contributions(row, sign)
            households.add(household_part)
            members.add(member_part)


async def apply_payment_outcomes(
    session: AsyncSession, batch: Sequence[tuple[PaymentEventV1, CloudEvent]], secret: bytes
) -> None:
    """Each payment's outcome of the highest rank is kept; the totals follow. Most outcomes
    are a payment's first: those are inserted at once, and only the others are read back."""
    rows = winners(
        (payment_row(payload, secret) for payload, _ in batch),
        key=lambda row: row.payment_key,
        beats=supersedes,
    )
    totals = Deltas(3)
    first = await repository.insert_new_payment_facts(session, rows)
    seen_before = sorted(r.payment_key for r in rows if r.payment_key not in first)
    held = await repository.lock_payment_facts(session, seen_before) if seen_before else {}
    changed = [
        row for row in rows if row.payment_key in held and supersedes(row, held[row.payment_key])
    ]
    for row in rows:
        if row.payment_key in first:
            totals.add(payment_contribution(row, 1))
    for row in changed:
        totals.add(payment_contribution(held[row.payment_key], -1))
        totals.add(payment_contribution(row, 1))
    await repository.upsert_payment_facts(session, changed)
    await repository.add_payment_totals(session, totals.rows())


async def apply_programmes(
    session: AsyncSession, batch: Sequence[tuple[ProgrammeSnapshotV1, CloudEvent]]
) -> None:
    newest = winners(
        (p for p, _ in batch),
        key=lambda p: p.programme_id,
        beats=lambda a, b: a.version > b.version,
    )
    await repository.upsert_programmes(
        session,
        [
            {
                "programme_id": p.programme_id,
                "code": p.code,
                "currency": p.currency,
                "status": p.status,
                "payment_window_days": p.frequency.payment_window_days,
                "budget_per_cycle_minor": p.budget_per_cycle_minor,
                "version": p.version,
            }
            for p in newest
        ],
    )


async def apply_provider_snapshots(
    session: AsyncSession, batch: Sequence[tuple[ProviderSnapshotV1, CloudEvent]]
) -> None:
    newest = winners(
        (p for p, _ in batch), key=lambda p: p.provider_id, beats=lambda a, b: a.version > b.version
    )
    await repository.upsert_providers(
        session,
        [
            {"provider_id": p.provider_id, "code": p.code, "status": p.status, "version": p.version}
            for p in newest
        ],
    )


async def apply_provider_status(
    session: AsyncSession, batch: Sequence[tuple[ProviderStatusChangeV1, CloudEvent]]
) -> None:
    for change, _ in batch:
        status = "suspended" if change.event_name == "ProviderSuspended" else "active"
        await repository.update_provider_status(
            session, change.provider_id, change.code, status, change.version
        )


def _payroll_header(payload: PayrollEventV1) -> dict[str, Any]:
    return {
        "payroll_id": payload.payroll_id,
        "programme_id": payload.programme_id,
        "cycle_id": payload.cycle_id,
        "period_start": payload.period_start,
        "period_end": payload.period_end,
        "currency": payload.currency,
    }


async def apply_payrolls_generated(
    session: AsyncSession, batch: Sequence[tuple[PayrollGeneratedV1, CloudEvent]]
) -> None:
    for payload, _ in batch:
        await repository.record_payroll(
            session,
            _payroll_header(payload),
            {
                "window_start": payload.payment_window_start,
                "window_end": payload.payment_window_end,
                "line_count": payload.line_count,
                "total_amount_minor": payload.total_amount_minor,
                "budget_minor": payload.budget_minor,
                "eligible_count": payload.eligible_count,
                "generated_at": payload.generated_at,
            },
        )
        await repository.insert_payroll_breakdown(
            session,
            payload.payroll_id,
            {str(reason): count for reason, count in payload.exclusions.items()},
            [
                (row.location_code, row.eligible, row.on_payroll, row.amount_minor)
                for row in payload.by_location
            ],
        )


async def apply_payrolls_approved(
    session: AsyncSession, batch: Sequence[tuple[PayrollApprovedV1, CloudEvent]]
) -> None:
    """The header fills in the approval; each chunk's lines are counted once, by where,
    through whom and to whom (sex, age band) they are paid; names, identifiers, phones and
    accounts of the lines are never read."""
    for chunk, _ in batch:
        header = _payroll_header(chunk)
        await repository.record_payroll(
            session,
            header,
            {
                "window_start": chunk.payment_window_start,
                "window_end": chunk.payment_window_end,
                "line_count": chunk.line_count,
                "total_amount_minor": chunk.total_amount_minor,
                "approved_at": chunk.approved_at,
            },
        )
        if not await repository.claim_payroll_chunk(session, chunk.payroll_id, chunk.chunk_index):
            continue
        lines = Deltas(2)
        for line in chunk.lines:
            key = (
                line.location_code,
                line.provider_id,
                line.mechanism,
                line.recipient.sex,
                line.recipient.age_band,
            )
            lines.add({key: (1, line.amount_minor)})
        await repository.add_payroll_line_totals(session, header, lines.rows())


async def apply_payrolls_rejected(
    session: AsyncSession, batch: Sequence[tuple[PayrollRejectedV1, CloudEvent]]
) -> None:
    for payload, _ in batch:
        await repository.record_payroll(
            session, _payroll_header(payload), {"rejected_at": payload.rejected_at}
        )


async def apply_payrolls_reconciled(
    session: AsyncSession, batch: Sequence[tuple[PayrollReconciledV1, CloudEvent]]
) -> None:
    for payload, _ in batch:
        await repository.record_reconciliation(
            session,
            {
                "payroll_id": payload.payroll_id,
                "reconciled_at": payload.reconciled_at,
                "line_count": payload.line_count,
                "total_amount_minor": payload.total_amount_minor,
                "fees_minor": payload.fees_minor,
                "exceptions_open": payload.exceptions_open,
            },
        )


async def apply_duplicate_flags(
    session: AsyncSession,
    batch: Sequence[tuple[DuplicateFlaggedV1 | DuplicateReviewedV1, CloudEvent]],
    secret: bytes,
) -> None:
    """Where and when a flag was raised and decided, never who or which households."""
    for payload, _ in batch:
        row: dict[str, Any] = {
            "flag_key": pseudonym(secret, "duplicate-flag", payload.flag_id),
            "location_code": payload.location_code,
            "flagged_at": payload.flagged_at,
            "score": 0.0,
            "decided_at": None,
            "decision": None,
        }
        if isinstance(payload, DuplicateReviewedV1):
            row.update(decided_at=payload.decided_at, decision=payload.decision)
        else:
            row.update(score=payload.score)
        await repository.record_duplicate_flag(session, row)


# --- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    spec: ReportSpec
    query: ReportQuery
    columns: list[str]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Labels:
    programmes: dict[UUID, str]
    providers: dict[UUID, str]
    cycles: dict[UUID, tuple[date, date]]


class TooManyRows(Problem):
    def __init__(self, limit: int) -> None:
        super().__init__(
            422,
            "report-too-large",
            f"the report has more than {limit} rows: filter it or group it by fewer "
            "dimensions or at a higher location level",
        )


async def resolve_scope(session: AsyncSession, query: ReportQuery) -> Scope:
    programme_ids = provider_ids = None
    if query.programme is not None:
        programme_ids = tuple(await repository.programmes_matching(session, query.programme))
        if not programme_ids:
            raise _unknown("programme", f"no programme {query.programme!r} is known")
    if query.provider is not None:
        provider_ids = tuple(await repository.providers_matching(session, query.provider))
        if not provider_ids:
            raise _unknown("provider", f"no provider {query.provider!r} is known")
    return Scope(
        programme_ids=programme_ids,
        cycle_id=query.cycle,
        period=(query.period.start, query.period.end) if query.period else None,
        location=query.location,
        level=query.level,
        provider_ids=provider_ids,
    )


def _unknown(field: str, message: str) -> Problem:
    return Problem(
        422, "unknown-filter-value", message, errors=[{"field": field, "message": message}]
    )


async def labels(session: AsyncSession) -> Labels:
    return Labels(
        await repository.programme_codes(session),
        await repository.provider_codes(session),
        await repository.cycle_periods(session),
    )


async def run_report(session: AsyncSession, name: str, query: ReportQuery, max_rows: int) -> Report:
    spec = REPORTS[name]
    scope = await resolve_scope(session, query)
    builder = _BUILDERS[name]
    columns, rows = await builder(session, spec, query, scope, max_rows)
    if len(rows) > max_rows:
        raise TooManyRows(max_rows)
    return Report(spec, query, columns, rows)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _label_dims(row: Mapping[str, Any], group_by: Sequence[str], names: Labels) -> dict[str, Any]:
    """The dimension columns of a row: ids with their codes, cycles with their period."""
    out: dict[str, Any] = {}
    for dim in group_by:
        value = row[dim]
        if dim == "programme":
            out["programme_id"] = value
            out["programme"] = names.programmes.get(value)
        elif dim == "provider":
            out["provider_id"] = value
            out["provider"] = names.providers.get(value)
        elif dim == "cycle":
            out["cycle_id"] = value
            start, end = names.cycles.get(value, (None, None))
            out["period_start"], out["period_end"] = start, end
        else:
            out[dim] = value
    return out


def _by_labels(rows: list[dict[str, Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Rows in the order of what they show (codes, periods), not of the ids behind them."""

    def key(row: Mapping[str, Any]) -> tuple[str, ...]:
        parts: list[str] = []
        for dim in group_by:
            if dim == "cycle":
                parts.append(str(row.get("period_start") or ""))
            parts.append(str(row.get(dim) if dim in row else row.get(f"{dim}_id") or ""))
        return tuple(parts)

    return sorted(rows, key=key)


def _dim_columns(group_by: Sequence[str]) -> list[str]:
    columns: list[str] = []
    for dim in group_by:
        columns += {
            "programme": ["programme_id", "programme"],
            "provider": ["provider_id", "provider"],
            "cycle": ["cycle_id", "period_start", "period_end"],
        }.get(dim, [dim])
    return columns


def _key(row: Mapping[str, Any], dims: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[d] for d in dims)


def _with_cycle_programme(group_by: Sequence[str]) -> tuple[str, ...]:
    """A cycle belongs to a programme: grouping by cycle groups by programme too."""
    if "cycle" in group_by and "programme" not in group_by:
        return ("programme", *group_by)
    return tuple(group_by)


async def _outcomes(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    group_by = _with_cycle_programme(query.group_by)
    names = await labels(session)
    outcomes = await repository.payment_outcomes(session, scope, group_by, limit)
    lines = {
        _key(row, (*group_by, "currency")): row
        for row in await repository.payroll_lines(session, scope, (*group_by, "currency"), None)
    }
    rows = []
    for raw in outcomes:
        row = {k: _plain(v) for k, v in raw.items()}
        ended = sum(row[o] for o in OUTCOMES)
        on_payroll = _plain(lines.get(_key(row, (*group_by, "currency")), {}).get("on_payroll"))
        rows.append(
            {
                **_label_dims(row, group_by, names),
                "currency": row["currency"],
                "on_payroll": on_payroll,
                **{k: row[k] for k in _OUTCOME_MEASURES},
                "fees_minor": row["fees_minor"],
                "pending": None if on_payroll is None else max(on_payroll - ended, 0),
                "success_rate": ratio(row["settled"], ended),
            }
        )
    rows = _by_labels(rows, (*group_by, "currency"))
    columns = [
        *_dim_columns(group_by),
        "currency",
        "on_payroll",
        *_OUTCOME_MEASURES,
        "fees_minor",
        "pending",
        "success_rate",
    ]
    return columns, rows


_OUTCOME_MEASURES = tuple(m for o in OUTCOMES for m in (o, f"{o}_amount_minor"))


async def _non_payment(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    group_by = _with_cycle_programme(query.group_by)
    names = await labels(session)
    raw_rows = await repository.payment_outcomes(session, scope, group_by, limit, reasons=True)
    total = sum(int(row["payments"]) for row in raw_rows)
    rows = []
    for raw in raw_rows:
        row = {k: _plain(v) for k, v in raw.items()}
        rows.append(
            {
                **_label_dims(row, group_by, names),
                "outcome": row["outcome"],
                "reason_code": row["reason_code"],
                "reason": REASON_DESCRIPTIONS.get(row["reason_code"]),
                "currency": row["currency"],
                "payments": row["payments"],
                "amount_minor": row["amount_minor"],
                "share": ratio(row["payments"], total),
            }
        )
    rows = _by_labels(rows, (*group_by, "outcome", "reason_code", "currency"))
    columns = [
        *_dim_columns(group_by),
        "outcome",
        "reason_code",
        "reason",
        "currency",
        "payments",
        "amount_minor",
        "share",
    ]
    return columns, rows


async def _timeliness(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    group_by = _with_cycle_programme(query.group_by)
    names = await labels(session)
    delays = await repository.settlement_delays(session, scope, group_by, limit)
    lines: dict[tuple[Any, ...], int] = {}
    for row in await repository.payroll_lines(session, scope, group_by, None):
        lines[_key(row, group_by)] = int(row["on_payroll"])
    rows = []
    for raw in delays:
        on_payroll = lines.get(_key(raw, group_by))
        rows.append(
            {
                **_label_dims(raw, group_by, names),
                "on_payroll": on_payroll,
                "settled": raw["settled"],
                "median_hours": hours(raw["median_s"]),
                "p90_hours": hours(raw["p90_s"]),
                "within_window": raw["within_window"],
                "share_within_window": ratio(raw["within_window"], on_payroll),
            }
        )
    rows = _by_labels(rows, group_by)
    columns = [
        *_dim_columns(group_by),
        "on_payroll",
        "settled",
        "median_hours",
        "p90_hours",
        "within_window",
        "share_within_window",
    ]
    return columns, rows


async def _coverage(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Per cycle and location: households enrolled now (not exited), eligible and on the
    payroll (PayrollGenerated's counts of payrolls not rejected), paid (settled payments).
    With a provider filter, enrolled and eligible cannot be told and are null, and on the
    payroll counts that provider's approved lines."""
    names = await labels(session)
    cycle_dims = ("programme", "cycle", "location")
    by_provider = scope.provider_ids is not None
    enrolled: dict[str, int] = {}
    if not by_provider:
        for row in await repository.households(
            session, replace(scope, period=None), ("location",), None, exclude_exited=True
        ):
            enrolled[row["location"]] = int(row["households"])
    planned: dict[tuple[Any, ...], dict[str, Any]] = {}
    if by_provider:
        for row in await repository.payroll_lines(session, scope, cycle_dims, None):
            planned[_key(row, cycle_dims)] = {
                "eligible": None,
                "on_payroll": _plain(row["on_payroll"]),
            }
    else:
        for row in await repository.payroll_locations(session, scope, cycle_dims, None):
            planned[_key(row, cycle_dims)] = {
                "eligible": _plain(row["eligible"]),
                "on_payroll": _plain(row["on_payroll"]),
            }
    paid: dict[tuple[Any, ...], int] = {}
    for row in await repository.payment_outcomes(session, scope, cycle_dims, None):
        key = _key(row, cycle_dims)
        paid[key] = paid.get(key, 0) + int(row["settled"])
    cycles = sorted({k[:2] for k in (*planned, *paid)}, key=lambda c: (str(c[0]), str(c[1])))
    rows = []
    for programme_id, cycle_id in cycles or [(None, None)]:
        locations = set(enrolled) | {
            k[2] for k in (*planned, *paid) if k[:2] == (programme_id, cycle_id)
        }
        for location in sorted(locations):
            key = (programme_id, cycle_id, location)
            plan = planned.get(key, {"eligible": None if by_provider else 0, "on_payroll": 0})
            base = {"programme": programme_id, "cycle": cycle_id, "location": location}
            dims = _label_dims(base, cycle_dims, names)
            households = None if by_provider else enrolled.get(location, 0)
            settled = paid.get(key, 0)
            rows.append(
                {
                    **dims,
                    "enrolled": households,
                    "eligible": plan["eligible"],
                    "on_payroll": plan["on_payroll"],
                    "paid": settled,
                    "eligible_rate": ratio(plan["eligible"], households),
                    "payroll_rate": ratio(plan["on_payroll"], plan["eligible"]),
                    "paid_rate": ratio(settled, plan["on_payroll"]),
                }
            )
            if len(rows) > limit:
                return _COVERAGE_COLUMNS, rows
    return _COVERAGE_COLUMNS, rows


_COVERAGE_COLUMNS = [
    *_dim_columns(("programme", "cycle", "location")),
    "enrolled",
    "eligible",
    "on_payroll",
    "paid",
    "eligible_rate",
    "payroll_rate",
    "paid_rate",
]


async def _payroll(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Per payroll: eligible, households and amount on it, budget and its use, exclusions by
    reason. With a location or provider filter, only what can be told of them is given."""
    names = await labels(session)
    payrolls = await repository.payrolls(session, scope, limit)
    ids = [row["payroll_id"] for row in payrolls]
    partial = scope.location is not None or scope.provider_ids is not None
    exclusions = {} if partial else await repository.payroll_exclusions(session, ids)
    scoped_lines: dict[UUID, dict[str, Any]] = {}
    scoped_plan: dict[UUID, dict[str, Any]] = {}
    if partial:
        lines_dims = ("payroll",)
        for row in await repository.payroll_lines(session, scope, lines_dims, None):
            scoped_lines[row["payroll"]] = row
        if scope.provider_ids is None:
            for row in await repository.payroll_locations(session, scope, lines_dims, None):
                scoped_plan[row["payroll"]] = row
    rows = []
    for p in payrolls:
        payroll_id = p["payroll_id"]
        if partial:
            line = scoped_lines.get(payroll_id, {})
            eligible = _plain(scoped_plan.get(payroll_id, {}).get("eligible"))
            households = _plain(line.get("on_payroll"))
            amount = _plain(line.get("amount_minor"))
            budget = None
        else:
            eligible, households = p["eligible_count"], p["line_count"]
            amount, budget = p["total_amount_minor"], p["budget_minor"]
        excluded = exclusions.get(payroll_id, {})
        rows.append(
            {
                **_label_dims({"programme": p["programme_id"]}, ("programme",), names),
                "cycle_id": p["cycle_id"],
                "payroll_id": payroll_id,
                "period_start": p["period_start"],
                "period_end": p["period_end"],
                "status": _payroll_status(p),
                "currency": p["currency"],
                "eligible": eligible,
                "households": households,
                "amount_minor": amount,
                "budget_minor": budget,
                "budget_used": ratio(amount, budget),
                **{
                    f"excluded_{reason}": None if partial else excluded.get(reason, 0)
                    for reason in EXCLUSION_REASONS
                },
                "approved_at": p["approved_at"],
                "reconciled_at": p["reconciled_at"],
            }
        )
    columns = [
        "programme_id",
        "programme",
        "cycle_id",
        "payroll_id",
        "period_start",
        "period_end",
        "status",
        "currency",
        "eligible",
        "households",
        "amount_minor",
        "budget_minor",
        "budget_used",
        *(f"excluded_{reason}" for reason in EXCLUSION_REASONS),
        "approved_at",
        "reconciled_at",
    ]
    return columns, rows


def _payroll_status(payroll: Mapping[str, Any]) -> str:
    if payroll["rejected_at"] is not None:
        return "rejected"
    if payroll["reconciled_at"] is not None:
        return "reconciled"
    if payroll["approved_at"] is not None:
        return "approved"
    return "generated"


async def _enrolment(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Households enrolled per interval (by enrolment date), with the running total."""
    group_by = (*query.group_by, "period_start")
    raw_rows = await repository.households(session, scope, group_by, limit, interval=query.interval)
    running: dict[tuple[Any, ...], int] = {}
    rows = []
    for raw in raw_rows:
        place = _key(raw, query.group_by)
        running[place] = running.get(place, 0) + int(raw["households"])
        rows.append(
            {
                **{dim: raw[dim] for dim in query.group_by},
                "period_start": raw["period_start"],
                "period": interval_label(raw["period_start"], query.interval),
                "households": _plain(raw["households"]),
                "members": _plain(raw["members"]),
                "cumulative_households": running[place],
            }
        )
    columns = [
        *query.group_by,
        "period_start",
        "period",
        "households",
        "members",
        "cumulative_households",
    ]
    return columns, rows


async def _households(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    raw_rows = await repository.households(session, scope, query.group_by, limit)
    rows = [{k: _plain(v) for k, v in row.items()} for row in raw_rows]
    return [*query.group_by, "households", "members"], rows


async def _members(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    raw_rows = await repository.members(session, scope, query.group_by, limit)
    rows = [{k: _plain(v) for k, v in row.items()} for row in raw_rows]
    return [*query.group_by, "members"], rows


async def _duplicates(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    raw_rows = await repository.duplicate_reviews(session, scope, query.group_by, limit)
    rows = [
        {
            **{dim: raw[dim] for dim in query.group_by},
            "flags": raw["flags"],
            "open": raw["open"],
            "decided": raw["decided"],
            "oldest_open_flagged_at": raw["oldest_open_flagged_at"],
            "median_decision_hours": hours(raw["median_decision_s"]),
            "p90_decision_hours": hours(raw["p90_decision_s"]),
        }
        for raw in raw_rows
    ]
    columns = [
        *query.group_by,
        "flags",
        "open",
        "decided",
        "oldest_open_flagged_at",
        "median_decision_hours",
        "p90_decision_hours",
    ]
    return columns, rows


async def _summary(
    session: AsyncSession, spec: ReportSpec, query: ReportQuery, scope: Scope, limit: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """The key figures over everything the filters select (cycles added up)."""
    by_provider = scope.provider_ids is not None
    household_rows = (
        []
        if by_provider
        else await repository.households(
            session, replace(scope, period=None), (), None, exclude_exited=True
        )
    )
    plan = [] if by_provider else await repository.payroll_locations(session, scope, (), None)
    lines = await repository.payroll_lines(session, scope, ("currency",), None)
    outcomes = await repository.payment_outcomes(session, scope, (), None)
    delays = await repository.settlement_delays(session, scope, (), None)
    flags = (
        []
        if by_provider
        else await repository.duplicate_reviews(session, replace(scope, period=None), (), None)
    )
    ended: dict[str, int] = {o: sum(int(r[o]) for r in outcomes) for o in OUTCOMES}
    on_payroll = sum(int(r["on_payroll"]) for r in lines)
    delay = delays[0] if delays else {}
    figures: dict[str, Any] = {
        "households": None if by_provider else sum(int(r["households"]) for r in household_rows),
        "members": None if by_provider else sum(int(r["members"]) for r in household_rows),
        "eligible": None if by_provider else sum(int(r["eligible"] or 0) for r in plan),
        "on_payroll": on_payroll,
        **ended,
        "success_rate": ratio(ended["settled"], sum(ended.values())),
        "median_hours": hours(delay.get("median_s")),
        "p90_hours": hours(delay.get("p90_s")),
        "share_within_window": ratio(delay.get("within_window"), on_payroll),
        "open_duplicate_flags": None if by_provider else sum(int(r["open"]) for r in flags),
    }
    for row in sorted(outcomes, key=lambda r: r["currency"]):
        figures[f"paid_amount_minor_{row['currency']}"] = _plain(row["settled_amount_minor"])
    for row in sorted(lines, key=lambda r: r["currency"]):
        figures[f"on_payroll_amount_minor_{row['currency']}"] = _plain(row["amount_minor"])
    return list(figures), [figures]


_BUILDERS = {
    "enrolment": _enrolment,
    "households": _households,
    "members": _members,
    "coverage": _coverage,
    "payroll": _payroll,
    "outcomes": _outcomes,
    "non_payment_reasons": _non_payment,
    "timeliness": _timeliness,
    "duplicates": _duplicates,
    "summary": _summary,
}


def report_document(report: Report) -> dict[str, Any]:
    return {
        "report": report.spec.name,
        "title": report.spec.title,
        "filters": report.query.echo(),
        "group_by": list(report.query.group_by),
        "columns": report.columns,
        "rows": [{c: row.get(c) for c in report.columns} for row in report.rows],
    }


_FORMULA_START = ("=", "+", "@", "\t", "\r")


def report_csv(report: Report) -> str:
    """RFC 4180 CSV with a header; text that a spreadsheet would run as a formula is quoted
    with a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([_csv_cell(row.get(column)) for column in report.columns])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


# --- DHIS2 ------------------------------------------------------------------------------------

DHIS2_REPORTS = tuple(name for name in REPORTS if name != "summary")


def dhis2_query(spec: ReportSpec, query: ReportQuery, mapping: Dhis2Mapping) -> ReportQuery:
    """The report grouped as the export needs: by location, by the dimensions that choose
    category option combos, by cycle when rows are per cycle; enrolment at the interval of
    the mapping's period type."""
    report_mapping = mapping.reports.get(spec.name)
    wanted = ["location"] if "location" in spec.dimensions else []
    if report_mapping is not None:
        wanted += [d for d in disaggregation_dimensions(report_mapping) if d not in wanted]
    if spec.by_cycle and "cycle" in spec.dimensions:
        wanted.insert(0, "cycle")
    unknown = [d for d in wanted if d not in spec.dimensions]
    if unknown:
        raise Problem(
            422,
            "dhis2-unmapped",
            f"{spec.name} cannot be disaggregated by {', '.join(unknown)}",
            errors=[
                {"field": f"reports.{spec.name}", "message": f"no dimension {d}"} for d in unknown
            ],
        )
    interval = query.interval
    if spec.name == "enrolment":
        interval = _interval_of(mapping)
    return replace(query, group_by=tuple(wanted), interval=interval)


def _interval_of(mapping: Dhis2Mapping) -> Interval:
    for interval, period_type in INTERVAL_PERIOD_TYPE.items():
        if period_type == mapping.period_type:
            return interval
    raise Problem(
        422,
        "dhis2-unmapped",
        f"enrolment cannot be counted by {mapping.period_type} periods",
        errors=[
            {"field": "period_type", "message": "use Daily, Weekly, Monthly, Quarterly or Yearly"}
        ],
    )


async def export_data_value_set(
    session: AsyncSession,
    name: str,
    query: ReportQuery,
    mapping: Dhis2Mapping,
    max_rows: int,
) -> dict[str, Any]:
    spec = REPORTS[name]
    if name not in DHIS2_REPORTS:
        raise Problem(422, "dhis2-unmapped", f"{name} cannot be exported to DHIS2")
    report = await run_report(session, name, dhis2_query(spec, query, mapping), max_rows)
    report_mapping = mapping.reports.get(name)
    if report_mapping is not None:
        check_measures(name, report_mapping, report.columns)
    rows = _rows_with_place_and_period(report, mapping)
    return data_value_set(name, rows, mapping, "_period_day")


def _rows_with_place_and_period(report: Report, mapping: Dhis2Mapping) -> list[dict[str, Any]]:
    """Every row but rejected payrolls', with the location its value is reported for (the
    mapping's root org unit for rows of no location) and the day its DHIS2 period is of."""
    fixed_day: date | None = report.query.period.start if report.query.period else None
    out = []
    for row in report.rows:
        if row.get("status") == "rejected":
            continue  # a rejected payroll paid nothing and is not reported
        day = row.get("period_start") or fixed_day
        if day is None:
            raise Problem(
                422,
                "dhis2-period-required",
                f"{report.spec.name} rows have no period: give `period`",
                errors=[{"field": "period", "message": "required for this export"}],
            )
        location = row.get("location") or ROOT_LOCATION
        out.append({**row, "location": location, "_period_day": day})
    return out


ROOT_LOCATION = "ROOT"
"""The location a row without one is reported for: map it in `org_units` as the root."""


def iter_unmapped(error: UnmappedElements) -> Iterable[dict[str, str]]:
    for problem in error.problems:
        yield {"field": problem.field, "message": problem.message}


async def push_to_dhis2(
    session: AsyncSession,
    settings: AnalyticsSettings,
    mapping: Dhis2Mapping,
    name: str,
    query: ReportQuery,
    dry_run: bool,
) -> Dhis2Push:
    """Builds the payload (a mapping problem raises before anything is sent or written),
    sends it, and records what DHIS2 answered, or why it could not be reached."""
    payload = await export_data_value_set(session, name, query, mapping, settings.report_max_rows)
    try:
        target = dhis2_client.import_url(settings, mapping, dry_run)
    except dhis2_client.NotConfigured as error:
        raise Problem(
            422,
            "dhis2-not-configured",
            str(error),
            errors=[{"field": "dhis2_url", "message": "not configured"}],
        ) from error
    result = await dhis2_client.send(settings, target, payload)
    return await repository.add_push(
        session,
        {
            "push_id": uuid7(),
            "report": name,
            "filters": {**query.echo(), **({"dry_run": True} if dry_run else {})},
            "target": target,
            "data_values": len(payload["dataValues"]),
            "status": result.status,
            "http_status": result.http_status,
            "imported": result.summary.imported if result.summary else 0,
            "updated": result.summary.updated if result.summary else 0,
            "ignored": result.summary.ignored if result.summary else 0,
            "deleted": result.summary.deleted if result.summary else 0,
            "conflicts": result.summary.conflicts if result.summary else [],
            "error": result.error,
            "requested_at": datetime.now(UTC),
        },
    )


async def list_pushes(session: AsyncSession, limit: int, after: UUID | None) -> Page[PushOut]:
    records = await repository.list_pushes(session, limit, after)
    return page(records, limit, PushOut.model_validate, lambda record: record.push_id)


async def get_push(session: AsyncSession, push_id: UUID) -> Dhis2Push | None:
    return await repository.get_push(session, push_id)
