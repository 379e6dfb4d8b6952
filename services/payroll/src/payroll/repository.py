"""Payroll queries. Nothing here commits: the caller owns the session.

Bulk work is set-based: projections are applied as one INSERT ... ON CONFLICT per batch of
events, generation evaluates every household in one pass into a temporary table and writes the
lines with INSERT ... SELECT, simulation is one aggregate query, and PayrollApproved chunks are
built as JSON by PostgreSQL and written to the outbox with one INSERT ... SELECT.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.pagination import keyset
from amana_common.tables import outbox
from payroll.domain import (
    HouseholdColumns,
    LocationTally,
    MemberArrays,
    MemberCounts,
    MemberFilter,
    PaymentColumns,
    PayrollStatus,
    ProgrammeRules,
    ProviderColumns,
    RankingColumns,
    SimulatedGroup,
    amount_sql,
    born_by,
    exclusion_sql,
    member_count_sql,
    priority_keys,
    priority_order,
    rule_sql,
)
from payroll.models import (
    CarryOver,
    Cycle,
    HouseholdProjection,
    PayPointProjection,
    Payroll,
    PayrollLine,
    PayrollLocation,
    PayrollProgress,
    Programme,
    ProviderProjection,
    RuleVersion,
)

households = cast(Table, HouseholdProjection.__table__)
providers = cast(Table, ProviderProjection.__table__)
pay_points = cast(Table, PayPointProjection.__table__)
lines = cast(Table, PayrollLine.__table__)
carry_overs = cast(Table, CarryOver.__table__)
cycles = cast(Table, Cycle.__table__)
payrolls = cast(Table, Payroll.__table__)
programmes = cast(Table, Programme.__table__)

# Sorts and hashes over every household stay in memory with this much (for the transaction
# only; a parallel query may use it once per worker).
BULK_WORK_MEM = "128MB"


async def for_bulk_work(session: AsyncSession) -> None:
    """Lets this transaction's set-based statements sort in memory."""
    await session.execute(text(f"SET LOCAL work_mem = '{BULK_WORK_MEM}'"))


def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)


# --- projections --------------------------------------------------------------------------


async def insert_rows(
    session: AsyncSession, statement: Any, rows: Sequence[dict[str, Any]]
) -> None:
    """Many rows through one cached statement (SQLAlchemy batches them as multi-row VALUES)."""
    if rows:
        await session.execute(statement, list(rows))


def _json_value(value: object) -> str:
    """Dates and times (ISO 8601) and UUIDs, as PostgreSQL reads them back."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


@cache
def _recordset(table: Table, names: tuple[str, ...]) -> Any:
    """`jsonb_to_recordset(:rows) AS r(<column> <type>, ...)` for these columns of `table`:
    a batch of rows arrives as one JSON parameter, whatever its size (the names and types
    come from the table's definition, never from a request)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    columns = ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in names)
    recordset = text(f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({columns})")
    return select(*(literal_column(f"r.{name}") for name in names)).select_from(recordset)


async def upsert_newer(
    session: AsyncSession, table: Table, key: str, rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Inserts the rows, or replaces the held row of the same key when theirs is of a higher
    `version`, in one statement; answers the keys that were written. Each key must appear
    once in `rows`."""
    if not rows:
        return []
    names = tuple(rows[0])
    values = insert(table).from_select(list(names), _recordset(table, names))
    statement = values.on_conflict_do_update(
        index_elements=[key],
        set_={name: values.excluded[name] for name in names if name != key},
        where=table.c.version < values.excluded.version,
    ).returning(table.c[key])
    payload = json.dumps(list(rows), default=_json_value)
    return list((await session.scalars(statement, {"rows": payload})).all())


async def replace_pay_points(
    session: AsyncSession, provider_ids: Sequence[UUID], rows: Sequence[dict[str, Any]]
) -> None:
    """The pay points of these providers become exactly `rows`."""
    if not provider_ids:
        return
    await session.execute(delete(pay_points).where(pay_points.c.provider_id.in_(provider_ids)))
    await insert_rows(session, insert(pay_points), rows)


async def set_provider_status(
    session: AsyncSession, provider_id: UUID, status: str, version: int
) -> bool:
    """A suspension or reactivation of a provider already known, when newer than its row."""
    result = await session.execute(
        update(providers)
        .where(providers.c.provider_id == provider_id, providers.c.version < version)
        .values(status=status, version=version, projected_at=func.now())
        .returning(providers.c.provider_id)
    )
    return result.first() is not None


async def insert_carry_overs(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(session, insert(carry_overs).on_conflict_do_nothing(), rows)


async def carried_over_line_ids(session: AsyncSession, line_ids: Sequence[UUID]) -> set[UUID]:
    """Of these payroll lines, those that were themselves a carry-over (never carried twice)."""
    if not line_ids:
        return set()
    rows = await session.scalars(
        select(lines.c.line_id).where(
            lines.c.line_id.in_(line_ids), lines.c.carried_over_payment_id.is_not(None)
        )
    )
    return set(rows.all())


async def active_provider_serves(session: AsyncSession, currency: str) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    providers.c.status == "active",
                    literal(currency, String()) == func.any(providers.c.currencies),
                )
            )
        )
    )


# --- programmes, versions, cycles -----------------------------------------------------


async def get_programme(
    session: AsyncSession, programme_id: UUID, *, lock: bool = False
) -> Programme | None:
    statement = select(Programme).where(Programme.id == programme_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(statement)).one_or_none()


async def programme_code_taken(session: AsyncSession, code: str) -> bool:
    return bool(await session.scalar(select(exists().where(Programme.code == code))))


async def list_programmes(
    session: AsyncSession, *, limit: int, after: UUID | None, status: str | None
) -> list[Programme]:
    statement = keyset(select(Programme), Programme.id, limit, after)
    if status is not None:
        statement = statement.where(Programme.status == status)
    return list((await session.scalars(statement)).all())


async def get_rule_version(
    session: AsyncSession, programme_id: UUID, version: int
) -> RuleVersion | None:
    return await session.get(RuleVersion, (programme_id, version))


async def list_rule_versions(
    session: AsyncSession, programme_id: UUID, *, limit: int, before: int | None
) -> list[RuleVersion]:
    """Newest first, `limit` + 1 rows."""
    statement = (
        select(RuleVersion)
        .where(RuleVersion.programme_id == programme_id)
        .order_by(RuleVersion.version.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(RuleVersion.version < before)
    return list((await session.scalars(statement)).all())


async def insert_cycles(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Adds the cycles not stored yet (the unique (programme, sequence) keeps one of each)."""
    statement = insert(cycles).on_conflict_do_nothing(index_elements=["programme_id", "sequence"])
    await insert_rows(session, statement, rows)


async def delete_unused_cycles(
    session: AsyncSession, programme_id: UUID, from_sequence: int = 1
) -> None:
    """Removes the programme's cycles from `from_sequence` on that no payroll refers to."""
    await session.execute(
        delete(cycles).where(
            cycles.c.programme_id == programme_id,
            cycles.c.sequence >= from_sequence,
            ~exists().where(payrolls.c.cycle_id == cycles.c.id),
        )
    )


async def move_generation_dates(session: AsyncSession, programme_id: UUID, lead_days: int) -> None:
    """The programme's cycles without a payroll are generated `lead_days` before payment."""
    await session.execute(
        update(cycles)
        .where(
            cycles.c.programme_id == programme_id,
            ~exists().where(payrolls.c.cycle_id == cycles.c.id),
        )
        .values(generate_on=cycles.c.payment_date - lead_days)
    )


async def last_cycle_with_payroll(session: AsyncSession, programme_id: UUID) -> Cycle | None:
    statement = (
        select(Cycle)
        .where(Cycle.programme_id == programme_id, exists().where(Payroll.cycle_id == Cycle.id))
        .order_by(Cycle.sequence.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).one_or_none()


async def get_cycle(session: AsyncSession, cycle_id: UUID) -> Cycle | None:
    return await session.get(Cycle, cycle_id)


async def cycle_by_sequence(
    session: AsyncSession, programme_id: UUID, sequence: int
) -> Cycle | None:
    statement = select(Cycle).where(Cycle.programme_id == programme_id, Cycle.sequence == sequence)
    return (await session.scalars(statement)).one_or_none()


async def list_cycles(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None,
    programme_id: UUID | None,
    payment_from: date | None,
    payment_to: date | None,
) -> list[Cycle]:
    statement = keyset(select(Cycle), Cycle.id, limit, after)
    if programme_id is not None:
        statement = statement.where(Cycle.programme_id == programme_id)
    if payment_from is not None:
        statement = statement.where(Cycle.payment_date >= payment_from)
    if payment_to is not None:
        statement = statement.where(Cycle.payment_date <= payment_to)
    return list((await session.scalars(statement)).all())


async def active_programmes(session: AsyncSession) -> list[Programme]:
    return list(
        (await session.scalars(select(Programme).where(Programme.status == "active"))).all()
    )


# --- payrolls -------------------------------------------------------------------------


# The predicate of uq_payrolls_live_cycle, written into the statement: sent as a parameter,
# PostgreSQL cannot match it to the index once it plans the statement generically (from the
# sixth run on a connection), and every ON CONFLICT naming it fails.
LIVE_PAYROLL = payrolls.c.status != literal(PayrollStatus.REJECTED.value, literal_execute=True)


async def insert_payroll(session: AsyncSession, values: dict[str, Any]) -> UUID | None:
    """The new payroll's id, or None when the cycle already has a live payroll (the partial
    unique index decides, also against a concurrent insert)."""
    statement = (
        insert(payrolls)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["programme_id", "cycle_id"],
            index_where=LIVE_PAYROLL,
        )
        .returning(payrolls.c.id)
    )
    return cast(UUID | None, await session.scalar(statement))


async def schedule_due_payrolls(session: AsyncSession, today: date) -> list[UUID]:
    """One GENERATING payroll for every due cycle of an active programme that never had one:
    due from its `generate_on` until its payment window closes. A rejected payroll is not
    regenerated here (an operator decides). Safe to run from several workers at once."""
    no_payroll_yet = ~exists().where(payrolls.c.cycle_id == cycles.c.id)
    due = (
        select(
            func.uuid7(),
            programmes.c.id,
            cycles.c.id,
            programmes.c.rules_version,
            literal(PayrollStatus.GENERATING.value),
            programmes.c.currency,
            programmes.c.budget_per_cycle_minor,
            literal(0),
            literal(0),
            literal(0),
            literal(0),
            literal({}, JSONB()),
            literal("schedule"),
            literal("system:scheduler"),
            func.now(),
            literal(1),
        )
        .select_from(cycles.join(programmes, programmes.c.id == cycles.c.programme_id))
        .where(
            programmes.c.status == "active",
            cycles.c.generate_on <= today,
            cycles.c.window_end >= today,
            no_payroll_yet,
        )
    )
    columns = [
        "id",
        "programme_id",
        "cycle_id",
        "rules_version",
        "status",
        "currency",
        "budget_minor",
        "eligible_count",
        "line_count",
        "carried_over_count",
        "total_amount_minor",
        "exclusions",
        "trigger",
        "generated_by",
        "created_at",
        "version",
    ]
    statement = (
        insert(payrolls)
        .from_select(columns, due)
        .on_conflict_do_nothing(
            index_elements=["programme_id", "cycle_id"],
            index_where=LIVE_PAYROLL,
        )
        .returning(payrolls.c.id)
    )
    return list((await session.scalars(statement)).all())


async def get_payroll(
    session: AsyncSession, payroll_id: UUID, *, lock: bool = False
) -> Payroll | None:
    statement = select(Payroll).where(Payroll.id == payroll_id)
    if lock:
        statement = statement.with_for_update(key_share=False).execution_options(
            populate_existing=True
        )
    return (await session.scalars(statement)).one_or_none()


async def claim_generating(session: AsyncSession) -> Payroll | None:
    """The oldest GENERATING payroll no other worker holds, locked (without blocking the key
    share a progress row would take) until the caller's transaction ends: a worker that dies
    releases it with its connection, and another takes it over."""
    statement = (
        select(Payroll)
        .where(Payroll.status == PayrollStatus.GENERATING.value)
        .order_by(Payroll.created_at)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_payrolls(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None,
    programme_id: UUID | None,
    cycle_id: UUID | None,
    status: str | None,
) -> list[Payroll]:
    statement = keyset(select(Payroll), Payroll.id, limit, after)
    if programme_id is not None:
        statement = statement.where(Payroll.programme_id == programme_id)
    if cycle_id is not None:
        statement = statement.where(Payroll.cycle_id == cycle_id)
    if status is not None:
        statement = statement.where(Payroll.status == status)
    return list((await session.scalars(statement)).all())


async def latest_payroll(session: AsyncSession, programme_id: UUID) -> Payroll | None:
    """The programme's most recently generated payroll."""
    statement = (
        select(Payroll)
        .where(Payroll.programme_id == programme_id, Payroll.generated_at.is_not(None))
        .order_by(Payroll.generated_at.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).one_or_none()


async def live_payrolls(session: AsyncSession, cycle_ids: Sequence[UUID]) -> dict[UUID, Payroll]:
    """The payroll of each of these cycles that is not rejected, by cycle."""
    if not cycle_ids:
        return {}
    statement = select(Payroll).where(
        Payroll.cycle_id.in_(cycle_ids), Payroll.status != PayrollStatus.REJECTED.value
    )
    return {p.cycle_id: p for p in (await session.scalars(statement)).all()}


async def get_progress(session: AsyncSession, payroll_id: UUID) -> PayrollProgress | None:
    return await session.get(PayrollProgress, payroll_id)


async def record_progress(
    session: AsyncSession, payroll_id: UUID, phase: str, rows_done: int, rows_total: int
) -> None:
    await session.execute(
        update(PayrollProgress)
        .where(PayrollProgress.payroll_id == payroll_id)
        .values(phase=phase, rows_done=rows_done, rows_total=rows_total, updated_at=func.now())
    )


async def start_attempt(session: AsyncSession, payroll_id: UUID) -> int:
    """Counts a generation attempt; answers how many there were, this one included."""
    statement = (
        insert(PayrollProgress)
        .values(
            payroll_id=payroll_id,
            phase="starting",
            rows_done=0,
            rows_total=0,
            attempts=1,
            started_at=func.now(),
            updated_at=func.now(),
        )
        .on_conflict_do_update(
            index_elements=["payroll_id"],
            set_={
                "phase": "starting",
                "rows_done": 0,
                "rows_total": 0,
                "attempts": PayrollProgress.attempts + 1,
                "started_at": func.now(),
                "updated_at": func.now(),
            },
        )
        .returning(PayrollProgress.attempts)
    )
    return int(await session.scalar(statement) or 1)


async def reset_attempts(session: AsyncSession, payroll_id: UUID) -> None:
    await session.execute(delete(PayrollProgress).where(PayrollProgress.payroll_id == payroll_id))


async def payroll_locations(session: AsyncSession, payroll_id: UUID) -> list[PayrollLocation]:
    statement = (
        select(PayrollLocation)
        .where(PayrollLocation.payroll_id == payroll_id)
        .order_by(PayrollLocation.location_code)
    )
    return list((await session.scalars(statement)).all())


async def list_lines(
    session: AsyncSession,
    payroll_id: UUID,
    *,
    limit: int,
    after: UUID | None,
    location_code: str | None,
    provider_id: UUID | None,
) -> list[PayrollLine]:
    statement = keyset(
        select(PayrollLine).where(PayrollLine.payroll_id == payroll_id),
        PayrollLine.line_id,
        limit,
        after,
    )
    if location_code is not None:
        statement = statement.where(PayrollLine.location_code == location_code)
    if provider_id is not None:
        statement = statement.where(PayrollLine.provider_id == provider_id)
    return list((await session.scalars(statement)).all())


async def stream_lines(
    session: AsyncSession, payroll_id: UUID, batch: int = 5_000
) -> AsyncIterator[Sequence[Any]]:
    """Every line of the payroll in line order, a batch of rows at a time (server-side)."""
    result = await session.stream(
        select(lines).where(lines.c.payroll_id == payroll_id).order_by(lines.c.line_id),
        execution_options={"yield_per": batch},
    )
    async for partition in result.partitions(batch):
        yield partition


async def release_carry_overs(session: AsyncSession, payroll_id: UUID) -> None:
    """A rejected payroll's carry-overs wait for the next payroll again."""
    await session.execute(
        update(carry_overs)
        .where(carry_overs.c.carried_into_payroll_id == payroll_id)
        .values(carried_into_payroll_id=None, outcome=None)
    )


# --- compiled rules over the projection -----------------------------------------------


def household_columns(table: Any) -> HouseholdColumns:
    return HouseholdColumns(
        household_number=table.c.household_number,
        location_code=table.c.location_code,
        location_ancestors=table.c.location_ancestors,
        status=table.c.status,
        size=table.c.size,
        attributes=table.c.eligibility_attributes,
    )


def evaluated_once(*columns: Any) -> list[Any]:
    """`columns` and a volatile (but parallel-safe) marker: PostgreSQL never merges a
    subquery whose output holds a volatile function into the query above it, so each
    expression is computed once per row rather than once per use above; unlike an `OFFSET 0`
    fence, the subquery may still be scanned, aggregated and sorted by parallel workers."""
    return [*columns, func.clock_timestamp().label("evaluated_at")]


def ranking_columns(table: Any) -> RankingColumns:
    return RankingColumns(size=table.c.size, attributes=table.c.eligibility_attributes)


def _payment_columns(h: Any) -> PaymentColumns:
    return PaymentColumns(
        status=h.c.status,
        duplicate_review_open=h.c.duplicate_review_open,
        payable=h.c.payable,
        not_payable_reasons=h.c.not_payable_reasons,
        recipient_member_id=h.c.recipient_member_id,
        provider_id=h.c.provider_id,
        mechanism=h.c.mechanism,
        pay_point_id=h.c.pay_point_id,
    )


def with_providers(source: Any, h: Any) -> tuple[Any, ProviderColumns]:
    """`source` outer-joined with the household's provider and (active) pay point."""
    p = providers.alias("p")
    pp = pay_points.alias("pp")
    joined = source.outerjoin(p, p.c.provider_id == h.c.provider_id).outerjoin(
        pp,
        and_(
            pp.c.pay_point_id == h.c.pay_point_id,
            pp.c.provider_id == h.c.provider_id,
            pp.c.status == "active",
        ),
    )
    columns = ProviderColumns(
        provider_id=p.c.provider_id,
        status=p.c.status,
        currencies=p.c.currencies,
        mechanisms=p.c.mechanisms,
        active_pay_point_id=pp.c.pay_point_id,
    )
    return joined, columns


def member_counts(h: Any, filters: Sequence[MemberFilter], on: date) -> MemberCounts:
    """Each category's member count on `on`, as an expression over the household's row."""
    arrays = MemberArrays(h.c.member_birth_dates, h.c.member_keys)
    return {f: member_count_sql(f, arrays, on) for f in filters}


def age_band_sql(date_of_birth: Any, on: date) -> Any:
    """The age band on `on`, as `amana_contracts.demographics.age_band` computes it."""
    return case(
        (date_of_birth <= born_by(on, 60), "60+"),
        (date_of_birth <= born_by(on, 35), "35-59"),
        (date_of_birth <= born_by(on, 18), "18-34"),
        (date_of_birth <= born_by(on, 5), "5-17"),
        else_="0-4",
    )


SNAPSHOT_COLUMNS = [
    "household_id",
    "household_number",
    "location_code",
    "recipient_member_id",
    "recipient_given_name",
    "recipient_family_name",
    "recipient_sex",
    "recipient_age_band",
    "recipient_identifier_scheme",
    "recipient_identifier_value",
    "recipient_phone",
    "provider_id",
    "mechanism",
    "pay_point_id",
    "account_kind",
    "account_value",
    "account_bank_code",
    "account_holder_name",
]


def _snapshot(h: Any, on: date) -> list[Any]:
    """A line's snapshot of a household, in SNAPSHOT_COLUMNS order."""
    return [
        age_band_sql(h.c.recipient_date_of_birth, on).label(name)
        if name == "recipient_age_band"
        else h.c[name]
        for name in SNAPSHOT_COLUMNS
    ]


@dataclass(frozen=True)
class Evaluation:
    """A version of rules over the projection on a cycle date: from which households, and for
    each whether it is eligible, why it is left out (NULL: payable) and its amount."""

    source: Any
    eligible: Any
    reason: Any
    amount: Any


def evaluation(rules: ProgrammeRules, on: date, currency: str) -> Evaluation:
    h = households
    counts = member_counts(h, rules.member_filters(), on)
    source, provider = with_providers(h, h)
    return Evaluation(
        source=source,
        eligible=rule_sql(rules.eligibility, household_columns(h), counts),
        reason=exclusion_sql(_payment_columns(h), provider, currency),
        amount=amount_sql(rules.formula, counts),
    )


async def tally_eligible(
    session: AsyncSession, rules: ProgrammeRules, on: date, currency: str
) -> list[LocationTally]:
    """Households meeting the rules, by location and exclusion reason (None: payable), with
    their amounts: one aggregate pass over the projection, which PostgreSQL may run in
    parallel and which sorts nothing."""
    await for_bulk_work(session)
    e = evaluation(rules, on, currency)
    evaluated = (
        select(
            *evaluated_once(
                households.c.location_code.label("location_code"),
                e.reason.label("reason"),
                e.amount.label("amount"),
            )
        )
        .select_from(e.source)
        .where(e.eligible)
        .subquery("evaluated")
    )
    v = evaluated.c
    rows = await session.execute(
        select(v.location_code, v.reason, func.count(), func.sum(v.amount)).group_by(
            v.location_code, v.reason
        )
    )
    return [LocationTally(code, reason, n, int(amount or 0)) for code, reason, n, amount in rows]


OVER_BUDGET = Table(
    "over_budget",
    MetaData(),
    Column("household_id", PgUUID(as_uuid=True), primary_key=True),
    Column("location_code", Text),
    Column("amount_minor", BigInteger),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


async def mark_over_budget(
    session: AsyncSession, rules: ProgrammeRules, on: date, currency: str, budget_minor: int
) -> list[LocationTally]:
    """The payable households past the budget, into the temporary table `over_budget`: in
    priority order, the first whose running total exceeds the budget and every one after it.
    Sorts only what the order needs (keys, number, amount); answers them by location."""
    e = evaluation(rules, on, currency)
    h = households
    payable = (
        select(
            *evaluated_once(
                h.c.household_id,
                h.c.location_code,
                h.c.household_number,
                e.amount.label("amount"),
                *_labelled("key", priority_keys(rules.priority, ranking_columns(h))),
            )
        )
        .select_from(e.source)
        .where(e.eligible, e.reason.is_(None))
        .subquery("payable")
    )
    ranked = select(
        payable.c.household_id,
        payable.c.location_code,
        payable.c.amount,
        func.sum(payable.c.amount)
        .over(order_by=_order(payable, rules), rows=(None, 0))
        .label("running"),
    ).subquery("ranked")
    await session.execute(text("DROP TABLE IF EXISTS over_budget"))
    await (await session.connection()).run_sync(OVER_BUDGET.create)
    past = select(ranked.c.household_id, ranked.c.location_code, ranked.c.amount).where(
        ranked.c.running > budget_minor
    )
    await session.execute(
        insert(OVER_BUDGET).from_select(["household_id", "location_code", "amount_minor"], past)
    )
    await session.execute(text("ANALYZE over_budget"))
    o = OVER_BUDGET.c
    rows = await session.execute(
        select(o.location_code, func.count(), func.sum(o.amount_minor)).group_by(o.location_code)
    )
    return [LocationTally(code, "over_budget", n, int(amount)) for code, n, amount in rows]


async def drop_over_budget(session: AsyncSession) -> None:
    await session.execute(text("DROP TABLE IF EXISTS over_budget"))


async def household_pages(session: AsyncSession) -> int:
    """How many pages the projection takes now (the generation's chunks are page ranges)."""
    size = await session.scalar(
        text("SELECT pg_relation_size('households') / current_setting('block_size')::int")
    )
    return int(size or 0)


async def write_lines(
    session: AsyncSession,
    payroll_id: UUID,
    rules: ProgrammeRules,
    on: date,
    currency: str,
    pages: tuple[int, int | None],
    over_budget: bool,
) -> int:
    """Writes the lines of the payable households stored in the page range [first, after)
    of the projection (after None: to its end), leaving out those in `over_budget` when
    asked: one INSERT ... SELECT, which PostgreSQL answers with a TID range scan. Answers how
    many lines it wrote."""
    first, after = pages
    e = evaluation(rules, on, currency)
    h = households
    in_pages = text("households.ctid >= CAST(:first_page AS tid)").bindparams(
        first_page=f"({first},0)"
    )
    chosen = (
        select(
            literal(payroll_id, PgUUID(as_uuid=True)),
            func.uuid7(),
            *_snapshot(h, on),
            e.amount,
        )
        .select_from(e.source)
        .where(in_pages, e.eligible, e.reason.is_(None))
    )
    if after is not None:
        chosen = chosen.where(
            text("households.ctid < CAST(:after_page AS tid)").bindparams(after_page=f"({after},0)")
        )
    if over_budget:
        chosen = chosen.where(~exists().where(OVER_BUDGET.c.household_id == h.c.household_id))
    statement = insert(lines).from_select(
        ["payroll_id", "line_id", *SNAPSHOT_COLUMNS, "amount_minor"], chosen
    )
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def carry_over_into(
    session: AsyncSession,
    payroll_id: UUID,
    programme_id: UUID,
    before_sequence: int,
    currency: str,
    on: date,
) -> None:
    """Takes the programme's failed payments of earlier cycles not carried yet into this
    payroll: each gets the outcome `carried` (and a line, through the household's current
    payment details) or the reason it could not be (it is not carried again either way)."""
    h = households
    co = carry_overs.alias("co")
    source, provider = with_providers(co.join(h, h.c.household_id == co.c.household_id), h)
    failed_cycle = cycles.alias("failed_cycle")
    waiting = (
        select(
            co.c.payment_id,
            func.coalesce(exclusion_sql(_payment_columns(h), provider, currency), "carried").label(
                "outcome"
            ),
        )
        .select_from(source.join(failed_cycle, failed_cycle.c.id == co.c.cycle_id, isouter=True))
        .where(
            co.c.programme_id == programme_id,
            co.c.carried_into_payroll_id.is_(None),
            co.c.currency == currency,
            func.coalesce(failed_cycle.c.sequence, 0) < before_sequence,
        )
        .subquery("waiting")
    )
    await session.execute(
        update(carry_overs)
        .where(carry_overs.c.payment_id == waiting.c.payment_id)
        .values(carried_into_payroll_id=payroll_id, outcome=waiting.c.outcome)
    )
    carried = (
        select(
            literal(payroll_id, PgUUID(as_uuid=True)),
            func.uuid7(),
            *_snapshot(h, on),
            carry_overs.c.amount_minor,
            carry_overs.c.payment_id,
        )
        .select_from(carry_overs.join(h, h.c.household_id == carry_overs.c.household_id))
        .where(
            carry_overs.c.carried_into_payroll_id == payroll_id,
            carry_overs.c.outcome == "carried",
        )
    )
    await session.execute(
        insert(lines).from_select(
            ["payroll_id", "line_id", *SNAPSHOT_COLUMNS, "amount_minor", "carried_over_payment_id"],
            carried,
        )
    )


@dataclass(frozen=True)
class LineTotals:
    lines: int
    amount_minor: int


async def carried_totals(session: AsyncSession, payroll_id: UUID) -> LineTotals:
    row = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(lines.c.amount_minor), 0)).where(
                lines.c.payroll_id == payroll_id, lines.c.carried_over_payment_id.is_not(None)
            )
        )
    ).one()
    return LineTotals(int(row[0]), int(row[1]))


async def carried_by_location(
    session: AsyncSession, payroll_id: UUID
) -> dict[str, tuple[int, int]]:
    rows = await session.execute(
        select(lines.c.location_code, func.count(), func.sum(lines.c.amount_minor))
        .where(lines.c.payroll_id == payroll_id, lines.c.carried_over_payment_id.is_not(None))
        .group_by(lines.c.location_code)
    )
    return {code: (int(n), int(amount)) for code, n, amount in rows}


async def insert_locations(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(session, insert(PayrollLocation), rows)


async def delete_payroll_output(session: AsyncSession, payroll_id: UUID) -> None:
    """What a failed attempt may have left (nothing, as it rolled back; kept for retries)."""
    await session.execute(delete(lines).where(lines.c.payroll_id == payroll_id))
    await session.execute(delete(PayrollLocation).where(PayrollLocation.payroll_id == payroll_id))


# --- simulation -----------------------------------------------------------------------


def location_at_level(code: Any, level: int | None) -> Any:
    """The code cut after its `level`-th part (`KE-047-0101` at 2 is `KE-047`)."""
    if level is None:
        return code
    return func.substring(code, "^[^.-]+" + "(?:[.-][^.-]+)?" * (level - 1))


async def simulate(
    session: AsyncSession,
    current: ProgrammeRules,
    candidate: ProgrammeRules,
    on: date,
    currency: str,
    budget_minor: int,
    location_level: int | None,
    *,
    likely_over_budget: bool = False,
) -> list[SimulatedGroup]:
    """Both versions over every household, grouped by location, by why each version leaves a
    household out (None: it pays it) and by whether it meets each version's rules; nothing is
    written. A budget that binds needs the payable households ranked (one sort when both
    versions share their priority); one that does not, a single aggregate pass. Unless the
    caller expects the budget to bind, the aggregate runs first and the ranking only if
    needed."""
    await for_bulk_work(session)
    if not likely_over_budget:
        e = _both_versions(current, candidate, on, currency, location_level).c
        rows = await _group_simulated(session, e, e.reason, e.reason)
        costs = (
            sum(r.current_amount_minor for r in rows if r.current_reason is None),
            sum(r.candidate_amount_minor for r in rows if r.candidate_reason is None),
        )
        if max(costs) <= budget_minor:
            return rows
    e = _both_versions(current, candidate, on, currency, location_level).c
    shared = candidate.priority == current.priority
    cur_order = priority_order(current.priority, _keys(e, "cur_key", current), e.household_number)
    cand_order = (
        cur_order
        if shared
        else priority_order(candidate.priority, _keys(e, "cand_key", candidate), e.household_number)
    )
    ranked = select(
        *(e[name] for name in ("location_code", "cur_ok", "cand_ok", "reason")),
        e.cur_amount,
        e.cand_amount,
        _running(e.cur_amount, e.cur_ok & e.reason.is_(None), cur_order).label("cur_run"),
        _running(e.cand_amount, e.cand_ok & e.reason.is_(None), cand_order).label("cand_run"),
    ).subquery("ranked")
    r = ranked.c
    over = budget_minor
    return await _group_simulated(
        session,
        r,
        case((r.reason.is_not(None), r.reason), (r.cur_run > over, "over_budget"), else_=null()),
        case((r.reason.is_not(None), r.reason), (r.cand_run > over, "over_budget"), else_=null()),
    )


def _both_versions(
    current: ProgrammeRules,
    candidate: ProgrammeRules,
    on: date,
    currency: str,
    location_level: int | None,
) -> Any:
    """Per household meeting either version's rules: each version's verdict and amount, the
    exclusion reason and the values of each version's priority keys (every expression
    computed once per row: `evaluated_once`)."""
    h = households
    filters = list(dict.fromkeys([*current.member_filters(), *candidate.member_filters()]))
    counts = member_counts(h, filters, on)
    source, provider = with_providers(h, h)
    columns = household_columns(h)
    ranking = ranking_columns(h)
    evaluated = (
        select(
            *evaluated_once(
                location_at_level(h.c.location_code, location_level).label("location_code"),
                h.c.household_number,
                rule_sql(current.eligibility, columns, counts).label("cur_ok"),
                rule_sql(candidate.eligibility, columns, counts).label("cand_ok"),
                exclusion_sql(_payment_columns(h), provider, currency).label("reason"),
                amount_sql(current.formula, counts).label("cur_amount"),
                amount_sql(candidate.formula, counts).label("cand_amount"),
                *_labelled("cur_key", priority_keys(current.priority, ranking)),
                *_labelled("cand_key", priority_keys(candidate.priority, ranking)),
            )
        )
        .select_from(source)
        .subquery("evaluated")
    )
    return select(evaluated).where(evaluated.c.cur_ok | evaluated.c.cand_ok).subquery("either")


def _labelled(prefix: str, values: Sequence[Any]) -> list[Any]:
    return [value.label(f"{prefix}{i}") for i, value in enumerate(values)]


def _keys(columns: Any, prefix: str, rules: ProgrammeRules) -> list[Any]:
    return [columns[f"{prefix}{i}"] for i in range(len(rules.priority))]


def _order(ranked: Any, rules: ProgrammeRules, prefix: str = "key") -> list[Any]:
    """The priority order over a subquery's `<prefix>0..n` key columns."""
    keys = _keys(ranked.c, prefix, rules)
    return priority_order(rules.priority, keys, ranked.c.household_number)


def _running(amount: Any, payable: Any, order: list[Any]) -> Any:
    return func.sum(amount).filter(payable).over(order_by=order, rows=(None, 0))


async def _group_simulated(
    session: AsyncSession, c: Any, cur_reason: Any, cand_reason: Any
) -> list[SimulatedGroup]:
    current = case((~c.cur_ok, "not_eligible"), else_=cur_reason)
    proposed = case((~c.cand_ok, "not_eligible"), else_=cand_reason)
    grouped = select(
        c.location_code,
        current,
        proposed,
        c.cur_ok,
        c.cand_ok,
        func.count(),
        func.sum(c.cur_amount),
        func.sum(c.cand_amount),
    ).group_by(c.location_code, current, proposed, c.cur_ok, c.cand_ok)
    rows = await session.execute(grouped)
    return [
        SimulatedGroup(code, cur, cand, bool(cur_ok), bool(cand_ok), n, int(ca), int(na))
        for code, cur, cand, cur_ok, cand_ok, n, ca, na in rows
    ]


# --- PayrollApproved chunks -----------------------------------------------------------


def _json_string(value: Any) -> Any:
    """A text column as a JSON string (escaped by PostgreSQL), or null."""
    return func.coalesce(func.cast(func.to_json(value), Text), "null")


def _json_plain(value: Any) -> Any:
    """A UUID or a value of a fixed vocabulary (nothing to escape) as a JSON string, or null."""
    return func.coalesce(literal('"') + func.cast(value, Text) + literal('"'), "null")


def _json_object(*members: tuple[str, Any]) -> Any:
    parts: list[Any] = []
    for index, (key, value) in enumerate(members):
        parts.extend([("{" if index == 0 else ",") + f'"{key}":', value])
    return func.concat(*parts, "}")


def _optional_object(present: Any, *members: tuple[str, Any]) -> Any:
    return case((present.is_(None), "null"), else_=_json_object(*members))


def line_json(line: Any) -> Any:
    """A line as compact PayrollLineV1 JSON text, assembled by PostgreSQL."""
    c = line.c
    return _json_object(
        ("line_id", _json_plain(c.line_id)),
        ("household_id", _json_plain(c.household_id)),
        ("household_number", _json_string(c.household_number)),
        ("location_code", _json_string(c.location_code)),
        (
            "recipient",
            _json_object(
                ("member_id", _json_plain(c.recipient_member_id)),
                ("given_name", _json_string(c.recipient_given_name)),
                ("family_name", _json_string(c.recipient_family_name)),
                ("sex", _json_plain(c.recipient_sex)),
                ("age_band", _json_plain(c.recipient_age_band)),
                (
                    "identifier",
                    _optional_object(
                        c.recipient_identifier_scheme,
                        ("scheme", _json_string(c.recipient_identifier_scheme)),
                        ("value", _json_string(c.recipient_identifier_value)),
                    ),
                ),
                ("phone", _json_string(c.recipient_phone)),
            ),
        ),
        ("provider_id", _json_plain(c.provider_id)),
        ("mechanism", _json_plain(c.mechanism)),
        ("pay_point_id", _json_plain(c.pay_point_id)),
        (
            "account",
            _optional_object(
                c.account_kind,
                ("kind", _json_plain(c.account_kind)),
                ("value", _json_string(c.account_value)),
                ("bank_code", _json_string(c.account_bank_code)),
                ("holder_name", _json_string(c.account_holder_name)),
            ),
        ),
        ("amount_minor", func.cast(c.amount_minor, Text)),
        ("carried_over_payment_id", _json_plain(c.carried_over_payment_id)),
    )


async def widest_line(session: AsyncSession, payroll_id: UUID) -> int:
    """The size in bytes of the payroll's widest line as JSON (an aggregate PostgreSQL may
    compute in parallel)."""
    await for_bulk_work(session)
    widest = await session.scalar(
        select(func.max(func.octet_length(line_json(lines)))).where(
            lines.c.payroll_id == payroll_id
        )
    )
    return int(widest or 0)


async def chunk_first_lines(
    session: AsyncSession, payroll_id: UUID, lines_per_chunk: int
) -> list[UUID]:
    """The id of every chunk's first line: lines 0, n, 2n, ... in line id order (read from
    the primary key's index alone)."""
    numbered = (
        select(
            lines.c.line_id,
            (func.row_number().over(order_by=lines.c.line_id) - 1).label("n"),
        )
        .where(lines.c.payroll_id == payroll_id)
        .subquery("numbered")
    )
    rows = await session.scalars(
        select(numbered.c.line_id)
        .where(numbered.c.n % lines_per_chunk == 0)
        .order_by(numbered.c.line_id)
    )
    return list(rows.all())


@dataclass(frozen=True)
class ChunkEnvelope:
    """The CloudEvent of a PayrollApproved chunk as text around what PostgreSQL fills in:
    `before_id` + event id + `before_index` + chunk index + `,"lines":[` + lines + `]}}`."""

    before_id: str
    before_index: str
    topic: str
    key: str
    event_type: str

    def room_for_lines(self, max_event_bytes: int) -> int:
        framing = 36 + 20 + len(',"lines":[') + len("]}}")
        return max_event_bytes - len(self.before_id) - len(self.before_index) - framing


# Above every UUID: the upper bound of the last chunk's range.
PAST_EVERY_LINE = UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")


async def write_chunk_events(
    session: AsyncSession, payroll_id: UUID, first_lines: Sequence[UUID], envelope: ChunkEnvelope
) -> int:
    """One outbox row per chunk, in chunk order: chunk i holds the lines from its first line
    id up to the next chunk's, assembled by PostgreSQL from that index range of the payroll's
    lines (one chunk in memory at a time), compressed with lz4. Answers how many."""
    await session.execute(text("SET LOCAL default_toast_compression = 'lz4'"))
    ids = ARRAY(PgUUID(as_uuid=True))
    bounds = (
        func.unnest(
            bindparam("first", list(first_lines), ids),
            bindparam("after", [*first_lines[1:], PAST_EVERY_LINE], ids),
        )
        .table_valued("first", "after", with_ordinality="position")
        .render_derived(name="bounds")
    )
    body = (
        select(func.string_agg(line_json(lines), aggregate_order_by(literal(","), lines.c.line_id)))
        .where(
            lines.c.payroll_id == payroll_id,
            lines.c.line_id >= bounds.c.first,
            lines.c.line_id < bounds.c.after,
        )
        .scalar_subquery()
    )
    events = select(
        func.uuid7().label("id"), (bounds.c.position - 1).label("chunk"), body.label("body")
    ).subquery("events")
    payload = func.concat(
        envelope.before_id,
        func.cast(events.c.id, Text),
        envelope.before_index,
        events.c.chunk,
        ',"lines":[',
        events.c.body,
        "]}}",
    )
    rows = select(
        events.c.id,
        literal(envelope.topic),
        literal(envelope.key),
        literal(envelope.event_type),
        func.convert_to(payload, "UTF8"),
    ).order_by(events.c.chunk)
    result = await session.execute(
        insert(outbox).from_select(["event_id", "topic", "key", "event_type", "payload"], rows)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def largest_event(session: AsyncSession, key: str) -> int:
    """The largest outbox event of `key` in bytes (read from the stored length, nothing is
    decompressed)."""
    largest = await session.scalar(
        select(func.max(func.octet_length(outbox.c.payload))).where(outbox.c.key == key)
    )
    return int(largest or 0)
