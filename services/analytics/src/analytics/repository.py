"""Analytics queries: set-based writes of a whole batch of events (one statement per table, the
rows passed as arrays and unnested by PostgreSQL), and the grouped reads of the reports."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.tables import processed_events
from analytics.domain import HouseholdRow, PaymentRow
from analytics.models import (
    REPORTING_TABLES,
    Dhis2Push,
    DuplicateFlag,
    HouseholdTotal,
    MemberTotal,
    PaymentFact,
    PaymentTotal,
    Payroll,
    PayrollExclusion,
    PayrollLineTotal,
    PayrollLocation,
    PayrollReconciliation,
    Programme,
    Provider,
)

# --- writes -----------------------------------------------------------------------------------


async def lock_household_facts(
    session: AsyncSession, keys: list[bytes]
) -> dict[bytes, HouseholdRow]:
    result = await session.execute(
        text(
            """
            SELECT household_key, version, location_code, status, enrolled_on, head_sex,
                   head_age_band, composition
            FROM household_facts WHERE household_key = ANY(CAST(:keys AS bytea[]))
            ORDER BY household_key FOR UPDATE
            """
        ),
        {"keys": keys},
    )
    return {row.household_key: HouseholdRow(*row) for row in result}


async def upsert_household_facts(session: AsyncSession, rows: Sequence[HouseholdRow]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            INSERT INTO household_facts AS h (household_key, version, location_code, status,
                enrolled_on, head_sex, head_age_band, composition)
            SELECT * FROM unnest(CAST(:keys AS bytea[]), CAST(:versions AS int[]),
                CAST(:locations AS text[]), CAST(:statuses AS text[]),
                CAST(:enrolled AS date[]), CAST(:sexes AS text[]), CAST(:bands AS text[]),
                CAST(:compositions AS jsonb[]))
            ON CONFLICT (household_key) DO UPDATE SET
                version = excluded.version, location_code = excluded.location_code,
                status = excluded.status, enrolled_on = excluded.enrolled_on,
                head_sex = excluded.head_sex, head_age_band = excluded.head_age_band,
                composition = excluded.composition
            WHERE h.version < excluded.version
            """
        ),
        {
            "keys": [r.household_key for r in rows],
            "versions": [r.version for r in rows],
            "locations": [r.location_code for r in rows],
            "statuses": [r.status for r in rows],
            "enrolled": [r.enrolled_on for r in rows],
            "sexes": [r.head_sex for r in rows],
            "bands": [r.head_age_band for r in rows],
            "compositions": [_json(dict(r.composition)) for r in rows],
        },
    )


def _json(value: Mapping[str, int]) -> str:
    return json.dumps(value, sort_keys=True)


async def add_household_totals(
    session: AsyncSession, changes: list[tuple[tuple[object, ...], list[int]]]
) -> None:
    if not changes:
        return
    keys = [key for key, _ in changes]
    await session.execute(
        text(
            """
            INSERT INTO household_totals AS t (location_code, enrolled_on, status, head_sex,
                head_age_band, households, members)
            SELECT * FROM unnest(CAST(:locations AS text[]), CAST(:enrolled AS date[]),
                CAST(:statuses AS text[]), CAST(:sexes AS text[]), CAST(:bands AS text[]),
                CAST(:households AS int[]), CAST(:members AS int[]))
            ON CONFLICT (location_code, enrolled_on, status, head_sex, head_age_band)
            DO UPDATE SET households = t.households + excluded.households,
                          members = t.members + excluded.members
            """
        ),
        {
            "locations": [k[0] for k in keys],
            "enrolled": [k[1] for k in keys],
            "statuses": [k[2] for k in keys],
            "sexes": [k[3] for k in keys],
            "bands": [k[4] for k in keys],
            "households": [values[0] for _, values in changes],
            "members": [values[1] for _, values in changes],
        },
    )


async def add_member_totals(
    session: AsyncSession, changes: list[tuple[tuple[object, ...], list[int]]]
) -> None:
    if not changes:
        return
    keys = [key for key, _ in changes]
    await session.execute(
        text(
            """
            INSERT INTO member_totals AS t (location_code, enrolled_on, status, sex, age_band,
                members)
            SELECT * FROM unnest(CAST(:locations AS text[]), CAST(:enrolled AS date[]),
                CAST(:statuses AS text[]), CAST(:sexes AS text[]), CAST(:bands AS text[]),
                CAST(:members AS int[]))
            ON CONFLICT (location_code, enrolled_on, status, sex, age_band)
            DO UPDATE SET members = t.members + excluded.members
            """
        ),
        {
            "locations": [k[0] for k in keys],
            "enrolled": [k[1] for k in keys],
            "statuses": [k[2] for k in keys],
            "sexes": [k[3] for k in keys],
            "bands": [k[4] for k in keys],
            "members": [values[0] for _, values in changes],
        },
    )


_PAYMENT_COLUMNS = (
    "payment_key, payroll_id, programme_id, cycle_id, location_code, provider_id, mechanism, "
    "sex, age_band, currency, amount_minor, fee_minor, outcome, reason_code, outcome_at, rank"
)


async def lock_payment_facts(session: AsyncSession, keys: list[bytes]) -> dict[bytes, PaymentRow]:
    result = await session.execute(
        text(
            f"""
            SELECT {_PAYMENT_COLUMNS} FROM payment_facts
            WHERE payment_key = ANY(CAST(:keys AS bytea[]))
            ORDER BY payment_key FOR UPDATE
            """  # noqa: S608 - a constant column list
        ),
        {"keys": keys},
    )
    return {row.payment_key: PaymentRow(*row) for row in result}


async def insert_new_payment_facts(session: AsyncSession, rows: Sequence[PaymentRow]) -> set[bytes]:
    """Inserts the payments not held yet; answers their keys."""
    if not rows:
        return set()
    result = await session.execute(
        text(
            f"""
            INSERT INTO payment_facts ({_PAYMENT_COLUMNS})
            {_PAYMENT_ROWS}
            ON CONFLICT (payment_key) DO NOTHING
            RETURNING payment_key
            """
        ),
        _payment_parameters(rows),
    )
    return set(result.scalars())


async def upsert_payment_facts(session: AsyncSession, rows: Sequence[PaymentRow]) -> None:
    """Replaces held outcomes with ones of a higher rank."""
    if not rows:
        return
    await session.execute(
        text(
            f"""
            INSERT INTO payment_facts AS f ({_PAYMENT_COLUMNS})
            {_PAYMENT_ROWS}
            ON CONFLICT (payment_key) DO UPDATE SET
                outcome = excluded.outcome, reason_code = excluded.reason_code,
                outcome_at = excluded.outcome_at, rank = excluded.rank,
                fee_minor = excluded.fee_minor
            WHERE f.rank < excluded.rank
            """
        ),
        _payment_parameters(rows),
    )


_PAYMENT_ROWS = """
    SELECT * FROM unnest(CAST(:keys AS bytea[]), CAST(:payrolls AS uuid[]),
        CAST(:programmes AS uuid[]), CAST(:cycles AS uuid[]),
        CAST(:locations AS text[]), CAST(:providers AS uuid[]),
        CAST(:mechanisms AS text[]), CAST(:sexes AS text[]), CAST(:bands AS text[]),
        CAST(:currencies AS text[]), CAST(:amounts AS bigint[]),
        CAST(:fees AS bigint[]), CAST(:outcomes AS text[]), CAST(:reasons AS text[]),
        CAST(:times AS timestamptz[]), CAST(:ranks AS smallint[]))
"""


def _payment_parameters(rows: Sequence[PaymentRow]) -> dict[str, list[Any]]:
    return {
        "keys": [r.payment_key for r in rows],
        "payrolls": [r.payroll_id for r in rows],
        "programmes": [r.programme_id for r in rows],
        "cycles": [r.cycle_id for r in rows],
        "locations": [r.location_code for r in rows],
        "providers": [r.provider_id for r in rows],
        "mechanisms": [r.mechanism for r in rows],
        "sexes": [r.sex for r in rows],
        "bands": [r.age_band for r in rows],
        "currencies": [r.currency for r in rows],
        "amounts": [r.amount_minor for r in rows],
        "fees": [r.fee_minor for r in rows],
        "outcomes": [r.outcome for r in rows],
        "reasons": [r.reason_code for r in rows],
        "times": [r.outcome_at for r in rows],
        "ranks": [r.rank for r in rows],
    }


async def add_payment_totals(
    session: AsyncSession, changes: list[tuple[tuple[object, ...], list[int]]]
) -> None:
    if not changes:
        return
    keys = [key for key, _ in changes]
    names = (
        "programmes uuid",
        "cycles uuid",
        "payrolls uuid",
        "locations text",
        "providers uuid",
        "mechanisms text",
        "sexes text",
        "bands text",
        "currencies text",
        "outcomes text",
        "reasons text",
    )
    params: dict[str, list[Any]] = {
        name.split()[0]: [key[index] for key in keys] for index, name in enumerate(names)
    }
    params["payments"] = [values[0] for _, values in changes]
    params["amounts"] = [values[1] for _, values in changes]
    params["fees"] = [values[2] for _, values in changes]
    arrays = ", ".join(f"CAST(:{n.split()[0]} AS {n.split()[1]}[])" for n in names)
    await session.execute(
        text(
            f"""
            INSERT INTO payment_totals AS t (programme_id, cycle_id, payroll_id, location_code,
                provider_id, mechanism, sex, age_band, currency, outcome, reason_code,
                payments, amount_minor, fee_minor)
            SELECT * FROM unnest({arrays}, CAST(:payments AS bigint[]),
                CAST(:amounts AS bigint[]), CAST(:fees AS bigint[]))
            ON CONFLICT (programme_id, cycle_id, payroll_id, location_code, provider_id,
                mechanism, sex, age_band, currency, outcome, reason_code)
            DO UPDATE SET payments = t.payments + excluded.payments,
                          amount_minor = t.amount_minor + excluded.amount_minor,
                          fee_minor = t.fee_minor + excluded.fee_minor
            """  # noqa: S608 - constant names and types
        ),
        params,
    )


async def upsert_programmes(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await _upsert_versioned(session, Programme.__table__, "programme_id", rows)


async def upsert_providers(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await _upsert_versioned(session, Provider.__table__, "provider_id", rows)


async def _upsert_versioned(
    session: AsyncSession, table: Any, key: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Inserts, or replaces with a higher version; an older or equal version changes nothing."""
    from sqlalchemy.dialects.postgresql import insert

    if not rows:
        return
    statement = insert(table).values(list(rows))
    update = {c: statement.excluded[c] for c in rows[0] if c != key}
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_=update,
            where=table.c.version < statement.excluded.version,
        )
    )


async def update_provider_status(
    session: AsyncSession, provider_id: UUID, code: str, status: str, version: int
) -> None:
    await _upsert_versioned(
        session,
        Provider.__table__,
        "provider_id",
        [{"provider_id": provider_id, "code": code, "status": status, "version": version}],
    )


async def record_payroll(
    session: AsyncSession, header: dict[str, Any], first_seen: Mapping[str, Any]
) -> None:
    """Creates the payroll's row or fills in what this event tells; what is set stays set."""
    from sqlalchemy.dialects.postgresql import insert

    statement = insert(Payroll).values({**header, **first_seen})
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["payroll_id"],
            set_={
                column: func.coalesce(getattr(Payroll, column), statement.excluded[column])
                for column in first_seen
            },
        )
    )


async def insert_payroll_breakdown(
    session: AsyncSession,
    payroll_id: UUID,
    exclusions: Mapping[str, int],
    by_location: Sequence[tuple[str, int, int, int]],
) -> None:
    from sqlalchemy.dialects.postgresql import insert

    if exclusions:
        await session.execute(
            insert(PayrollExclusion)
            .values(
                [
                    {"payroll_id": payroll_id, "reason": reason, "households": count}
                    for reason, count in sorted(exclusions.items())
                ]
            )
            .on_conflict_do_nothing()
        )
    if by_location:
        await session.execute(
            text(
                """
                INSERT INTO payroll_locations (payroll_id, location_code, eligible, on_payroll,
                    amount_minor)
                SELECT CAST(:payroll AS uuid), * FROM unnest(CAST(:locations AS text[]),
                    CAST(:eligible AS int[]), CAST(:on_payroll AS int[]),
                    CAST(:amounts AS bigint[]))
                ON CONFLICT DO NOTHING
                """
            ),
            {
                "payroll": payroll_id,
                "locations": [row[0] for row in by_location],
                "eligible": [row[1] for row in by_location],
                "on_payroll": [row[2] for row in by_location],
                "amounts": [row[3] for row in by_location],
            },
        )


async def claim_payroll_chunk(session: AsyncSession, payroll_id: UUID, chunk_index: int) -> bool:
    """True the first time a chunk is seen: its lines are then counted, never twice."""
    claimed = await session.scalar(
        text(
            """
            INSERT INTO payroll_chunks (payroll_id, chunk_index) VALUES (:payroll, :chunk)
            ON CONFLICT DO NOTHING RETURNING chunk_index
            """
        ),
        {"payroll": payroll_id, "chunk": chunk_index},
    )
    return claimed is not None


async def add_payroll_line_totals(
    session: AsyncSession,
    header: Mapping[str, Any],
    changes: list[tuple[tuple[object, ...], list[int]]],
) -> None:
    if not changes:
        return
    keys = [key for key, _ in changes]
    await session.execute(
        text(
            """
            INSERT INTO payroll_line_totals AS t (payroll_id, location_code, provider_id,
                mechanism, sex, age_band, programme_id, cycle_id, currency, lines, amount_minor)
            SELECT CAST(:payroll AS uuid), l, p, m, s, b, CAST(:programme AS uuid),
                   CAST(:cycle AS uuid), CAST(:currency AS text), n, a
            FROM unnest(CAST(:locations AS text[]), CAST(:providers AS uuid[]),
                CAST(:mechanisms AS text[]), CAST(:sexes AS text[]), CAST(:bands AS text[]),
                CAST(:lines AS int[]), CAST(:amounts AS bigint[])) AS r(l, p, m, s, b, n, a)
            ON CONFLICT (payroll_id, location_code, provider_id, mechanism, sex, age_band)
            DO UPDATE SET lines = t.lines + excluded.lines,
                          amount_minor = t.amount_minor + excluded.amount_minor
            """
        ),
        {
            "payroll": header["payroll_id"],
            "programme": header["programme_id"],
            "cycle": header["cycle_id"],
            "currency": header["currency"],
            "locations": [k[0] for k in keys],
            "providers": [k[1] for k in keys],
            "mechanisms": [k[2] for k in keys],
            "sexes": [k[3] for k in keys],
            "bands": [k[4] for k in keys],
            "lines": [values[0] for _, values in changes],
            "amounts": [values[1] for _, values in changes],
        },
    )


async def record_reconciliation(session: AsyncSession, row: dict[str, Any]) -> None:
    from sqlalchemy.dialects.postgresql import insert

    await session.execute(insert(PayrollReconciliation).values(row).on_conflict_do_nothing())


async def record_duplicate_flag(session: AsyncSession, row: dict[str, Any]) -> None:
    """A flag, or its decision: a decision fills in what the flag lacked and is kept."""
    from sqlalchemy.dialects.postgresql import insert

    statement = insert(DuplicateFlag).values(row)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["flag_key"],
            set_={
                "decided_at": func.coalesce(
                    DuplicateFlag.decided_at, statement.excluded.decided_at
                ),
                "decision": func.coalesce(DuplicateFlag.decision, statement.excluded.decision),
            },
        )
    )


async def empty_reporting_tables(session: AsyncSession, consumer: str) -> None:
    """What a rebuild starts from: no reporting rows and no memory of the events applied."""
    await session.execute(text(f"TRUNCATE {', '.join(REPORTING_TABLES)}"))
    await session.execute(processed_events.delete().where(processed_events.c.consumer == consumer))


# --- report scope -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Resolved filters: ids instead of codes, a period as dates, a location level."""

    programme_ids: tuple[UUID, ...] | None = None
    cycle_id: UUID | None = None
    period: tuple[date, date] | None = None
    location: str | None = None
    level: int = 2
    provider_ids: tuple[UUID, ...] | None = None


def location_rollup(column: Any, level: int) -> ColumnElement[str]:
    """The ancestor of a location code at `level` (the code cut after its `level`-th part, at
    `-` or `.`), or the code itself when it is shallower."""
    return func.substring(column, f"^((?:[^.-]+[.-]){{0,{int(level) - 1}}}[^.-]+)")


def _location_filter(scope: Scope, column: Any) -> list[ColumnElement[bool]]:
    """The location and every code below it (`KE-047` covers `KE-047-0101`, not `KE-0470`)."""
    if scope.location is None:
        return []
    area = scope.location
    return [
        or_(
            column == area,
            func.starts_with(column, area + "-"),
            func.starts_with(column, area + "."),
        )
    ]


def _payroll_period(scope: Scope, payroll_column: Any) -> list[ColumnElement[bool]]:
    if scope.period is None:
        return []
    start, end = scope.period
    in_period = select(Payroll.payroll_id).where(
        Payroll.period_start >= start, Payroll.period_start < end
    )
    return [payroll_column.in_(in_period)]


def _programme_cycle(scope: Scope, table: Any) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if scope.programme_ids is not None:
        where.append(table.programme_id.in_(scope.programme_ids))
    if scope.cycle_id is not None:
        where.append(table.cycle_id == scope.cycle_id)
    return where


def _provider(scope: Scope, table: Any) -> list[ColumnElement[bool]]:
    return [] if scope.provider_ids is None else [table.provider_id.in_(scope.provider_ids)]


def payment_dimensions(table: Any, level: int) -> dict[str, Any]:
    return {
        "programme": table.programme_id,
        "cycle": table.cycle_id,
        "payroll": table.payroll_id,
        "location": location_rollup(table.location_code, level),
        "provider": table.provider_id,
        "mechanism": table.mechanism,
        "sex": table.sex,
        "age_band": table.age_band,
    }


async def _rows(session: AsyncSession, statement: Any, limit: int | None) -> list[dict[str, Any]]:
    if limit is not None:
        statement = statement.limit(limit + 1)
    result = await session.execute(statement)
    return [dict(row._mapping) for row in result]


def _grouped(statement: Any, dimensions: Mapping[str, Any], group_by: Sequence[str]) -> Any:
    columns = [dimensions[name].label(name) for name in group_by]
    return statement.add_columns(*columns).group_by(*columns).order_by(*columns)


# --- reports ----------------------------------------------------------------------------------


async def payment_outcomes(
    session: AsyncSession,
    scope: Scope,
    group_by: Sequence[str],
    limit: int | None,
    reasons: bool = False,
) -> list[dict[str, Any]]:
    """Payments and amounts per outcome from the totals; with `reasons`, per outcome and
    reason of the payments not made."""
    t = PaymentTotal
    measures: list[ColumnElement[Any]] = []
    if reasons:
        extra = {"outcome": t.outcome, "reason_code": t.reason_code}
        dims = {**payment_dimensions(t, scope.level), **extra}
        group = [*group_by, "outcome", "reason_code", "currency"]
        measures = [
            func.sum(t.payments).label("payments"),
            func.sum(t.amount_minor).label("amount_minor"),
        ]
    else:
        dims = payment_dimensions(t, scope.level)
        group = [*group_by, "currency"]
        for outcome in ("settled", "failed", "expired", "reversed"):
            chosen = t.outcome == outcome
            measures.append(func.sum(case((chosen, t.payments), else_=0)).label(f"{outcome}"))
            measures.append(
                func.sum(case((chosen, t.amount_minor), else_=0)).label(f"{outcome}_amount_minor")
            )
        measures.append(func.sum(t.fee_minor).label("fees_minor"))
    dims["currency"] = t.currency
    statement = select(*measures).select_from(t.__table__)
    where = [
        *_programme_cycle(scope, t),
        *_provider(scope, t),
        *_location_filter(scope, t.location_code),
        *_payroll_period(scope, t.payroll_id),
    ]
    if reasons:
        where.append(t.outcome.in_(("failed", "expired", "reversed")))
    statement = _grouped(statement.where(*where), dims, group).having(func.sum(t.payments) != 0)
    return await _rows(session, statement, limit)


async def payroll_lines(
    session: AsyncSession, scope: Scope, group_by: Sequence[str], limit: int | None
) -> list[dict[str, Any]]:
    """Approved payroll lines (count and amount) by the same dimensions as payments."""
    t = PayrollLineTotal
    dims = {**payment_dimensions(t, scope.level), "currency": t.currency}
    statement = select(
        func.sum(t.lines).label("on_payroll"), func.sum(t.amount_minor).label("amount_minor")
    ).select_from(t.__table__)
    where = [
        *_programme_cycle(scope, t),
        *_provider(scope, t),
        *_location_filter(scope, t.location_code),
        *_payroll_period(scope, t.payroll_id),
        t.payroll_id.in_(select(Payroll.payroll_id).where(Payroll.rejected_at.is_(None))),
    ]
    return await _rows(session, _grouped(statement.where(*where), dims, group_by), limit)


async def settlement_delays(
    session: AsyncSession, scope: Scope, group_by: Sequence[str], limit: int | None
) -> list[dict[str, Any]]:
    """Approval to settlement of settled payments: count, median and p90 in seconds, and how
    many were settled by the end of the payroll's payment window (its last day included)."""
    f = PaymentFact
    delay = func.extract("epoch", f.outcome_at - Payroll.approved_at)
    # Midnight (UTC) after the window's last day.
    window_close: ColumnElement[datetime] = literal_column(
        "((payrolls.window_end + 1)::timestamp AT TIME ZONE 'UTC')"
    )
    dims = payment_dimensions(f, scope.level)
    statement = (
        select(
            func.count().label("settled"),
            func.percentile_cont(0.5).within_group(delay).label("median_s"),
            func.percentile_cont(0.9).within_group(delay).label("p90_s"),
            func.count().filter(f.outcome_at < window_close).label("within_window"),
        )
        .select_from(f.__table__.join(Payroll, Payroll.payroll_id == f.payroll_id))
        .where(
            f.outcome == "settled",
            Payroll.approved_at.is_not(None),
            *_programme_cycle(scope, f),
            *_provider(scope, f),
            *_location_filter(scope, f.location_code),
            *_payroll_period(scope, f.payroll_id),
        )
    )
    return await _rows(session, _grouped(statement, dims, group_by), limit)


async def payrolls(session: AsyncSession, scope: Scope, limit: int | None) -> list[dict[str, Any]]:
    p = Payroll
    statement = (
        select(
            p.payroll_id,
            p.programme_id,
            p.cycle_id,
            p.period_start,
            p.period_end,
            p.currency,
            p.line_count,
            p.total_amount_minor,
            p.budget_minor,
            p.eligible_count,
            p.generated_at,
            p.approved_at,
            p.rejected_at,
            p.window_start,
            p.window_end,
            PayrollReconciliation.reconciled_at,
        )
        .outerjoin(PayrollReconciliation, PayrollReconciliation.payroll_id == p.payroll_id)
        .where(*_programme_cycle(scope, p))
        .order_by(p.period_start, p.programme_id, p.generated_at, p.payroll_id)
    )
    if scope.period is not None:
        statement = statement.where(
            p.period_start >= scope.period[0], p.period_start < scope.period[1]
        )
    return await _rows(session, statement, limit)


async def payroll_exclusions(
    session: AsyncSession, payroll_ids: Sequence[UUID]
) -> dict[UUID, dict[str, int]]:
    result = await session.execute(
        select(PayrollExclusion).where(PayrollExclusion.payroll_id.in_(payroll_ids))
    )
    found: dict[UUID, dict[str, int]] = {}
    for row in result.scalars():
        found.setdefault(row.payroll_id, {})[row.reason] = row.households
    return found


async def payroll_locations(
    session: AsyncSession, scope: Scope, group_by: Sequence[str], limit: int | None
) -> list[dict[str, Any]]:
    """PayrollGenerated's eligible, on-payroll and amount per location, of payrolls not
    rejected, by programme, cycle, payroll and/or location."""
    t = PayrollLocation
    dims: dict[str, Any] = {
        "programme": Payroll.programme_id,
        "cycle": Payroll.cycle_id,
        "payroll": t.payroll_id,
        "location": location_rollup(t.location_code, scope.level),
    }
    statement = (
        select(
            func.sum(t.eligible).label("eligible"),
            func.sum(t.on_payroll).label("on_payroll"),
            func.sum(t.amount_minor).label("amount_minor"),
        )
        .select_from(t.__table__.join(Payroll, Payroll.payroll_id == t.payroll_id))
        .where(
            Payroll.rejected_at.is_(None),
            *_programme_cycle(scope, Payroll),
            *_location_filter(scope, t.location_code),
            *_payroll_period(scope, t.payroll_id),
        )
    )
    return await _rows(session, _grouped(statement, dims, group_by), limit)


async def households(
    session: AsyncSession,
    scope: Scope,
    group_by: Sequence[str],
    limit: int | None,
    exclude_exited: bool = False,
    interval: str | None = None,
) -> list[dict[str, Any]]:
    t = HouseholdTotal
    dims: dict[str, Any] = {
        "location": location_rollup(t.location_code, scope.level),
        "status": t.status,
        "head_sex": t.head_sex,
        "head_age_band": t.head_age_band,
    }
    if interval is not None:
        dims["period_start"] = func.date_trunc(interval, t.enrolled_on).cast(date_type())
    statement = select(
        func.sum(t.households).label("households"), func.sum(t.members).label("members")
    ).select_from(t.__table__)
    where = [*_location_filter(scope, t.location_code), *_enrolled_in(scope, t.enrolled_on)]
    if exclude_exited:
        where.append(t.status != "exited")
    statement = _grouped(statement.where(*where), dims, group_by).having(
        or_(func.sum(t.households) != 0, func.sum(t.members) != 0)
    )
    return await _rows(session, statement, limit)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def date_type() -> Any:
    from sqlalchemy import Date

    return Date()


def _enrolled_in(scope: Scope, column: Any) -> list[ColumnElement[bool]]:
    if scope.period is None:
        return []
    return [and_(column >= scope.period[0], column < scope.period[1])]


async def members(
    session: AsyncSession, scope: Scope, group_by: Sequence[str], limit: int | None
) -> list[dict[str, Any]]:
    t = MemberTotal
    dims: dict[str, Any] = {
        "location": location_rollup(t.location_code, scope.level),
        "status": t.status,
        "sex": t.sex,
        "age_band": t.age_band,
    }
    statement = select(func.sum(t.members).label("members")).select_from(t.__table__)
    statement = _grouped(
        statement.where(
            *_location_filter(scope, t.location_code), *_enrolled_in(scope, t.enrolled_on)
        ),
        dims,
        group_by,
    ).having(func.sum(t.members) != 0)
    return await _rows(session, statement, limit)


async def duplicate_reviews(
    session: AsyncSession, scope: Scope, group_by: Sequence[str], limit: int | None
) -> list[dict[str, Any]]:
    t = DuplicateFlag
    decision_s = func.extract("epoch", t.decided_at - t.flagged_at)
    dims: dict[str, Any] = {
        "location": location_rollup(t.location_code, scope.level),
        "decision": func.coalesce(t.decision, "open"),
    }
    statement = select(
        func.count().label("flags"),
        func.count().filter(t.decided_at.is_(None)).label("open"),
        func.count().filter(t.decided_at.is_not(None)).label("decided"),
        func.min(t.flagged_at).filter(t.decided_at.is_(None)).label("oldest_open_flagged_at"),
        func.percentile_cont(0.5).within_group(decision_s).label("median_decision_s"),
        func.percentile_cont(0.9).within_group(decision_s).label("p90_decision_s"),
    ).select_from(t.__table__)
    where = [*_location_filter(scope, t.location_code)]
    if scope.period is not None:
        start, end = scope.period
        where += [t.flagged_at >= _midnight(start), t.flagged_at < _midnight(end)]
    return await _rows(session, _grouped(statement.where(*where), dims, group_by), limit)


async def programme_codes(session: AsyncSession) -> dict[UUID, str]:
    result = await session.execute(select(Programme.programme_id, Programme.code))
    return {row.programme_id: row.code for row in result}


async def provider_codes(session: AsyncSession) -> dict[UUID, str]:
    result = await session.execute(select(Provider.provider_id, Provider.code))
    return {row.provider_id: row.code for row in result}


async def cycle_periods(session: AsyncSession) -> dict[UUID, tuple[date, date]]:
    result = await session.execute(
        select(
            Payroll.cycle_id, func.min(Payroll.period_start), func.max(Payroll.period_end)
        ).group_by(Payroll.cycle_id)
    )
    return {row[0]: (row[1], row[2]) for row in result}


async def programmes_matching(session: AsyncSession, value: str) -> list[UUID]:
    condition = Programme.code == value
    if (as_uuid := _as_uuid(value)) is not None:
        condition = or_(condition, Programme.programme_id == as_uuid)
    found = list(await session.scalars(select(Programme.programme_id).where(condition)))
    if not found and as_uuid is not None:
        return [as_uuid]  # payments may arrive before the programme's own events
    return found


async def providers_matching(session: AsyncSession, value: str) -> list[UUID]:
    condition = Provider.code == value
    if (as_uuid := _as_uuid(value)) is not None:
        condition = or_(condition, Provider.provider_id == as_uuid)
    found = list(await session.scalars(select(Provider.provider_id).where(condition)))
    if not found and as_uuid is not None:
        return [as_uuid]
    return found


def _as_uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


# --- DHIS2 pushes -----------------------------------------------------------------------------


async def add_push(session: AsyncSession, row: dict[str, Any]) -> Dhis2Push:
    push = Dhis2Push(**row)
    session.add(push)
    await session.flush()
    return push


async def list_pushes(session: AsyncSession, limit: int, after: UUID | None) -> Sequence[Dhis2Push]:
    statement = select(Dhis2Push).order_by(Dhis2Push.push_id.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(Dhis2Push.push_id < after)
    return (await session.scalars(statement)).all()


async def get_push(session: AsyncSession, push_id: UUID) -> Dhis2Push | None:
    return await session.get(Dhis2Push, push_id)


async def latest_event_time(session: AsyncSession, consumer: str) -> datetime | None:
    value: datetime | None = await session.scalar(
        select(func.max(processed_events.c.processed_at)).where(
            processed_events.c.consumer == consumer
        )
    )
    return value
