"""Payroll queries. Nothing here commits: the caller owns the session.

Bulk work is set-based: projections are applied as one INSERT ... ON CONFLICT per batch of
events, generation evaluates every household in one pass into a temporary table and writes the
lines with INSERT ... SELECT, simulation is one aggregate query, and PayrollApproved chunks are
built as JSON by PostgreSQL and written to the outbox with one INSERT ... SELECT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    FromClause,
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
    null,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.pagination import keyset
from amana_common.tables import outbox
from payroll.domain import (
    HouseholdColumns,
    LocationTally,
    MemberColumns,
    MemberCounts,
    MemberFilter,
    PaymentColumns,
    PayrollStatus,
    ProgrammeRules,
    ProviderColumns,
    RankingColumns,
    amount_sql,
    born_by,
    exclusion_sql,
    member_filter_sql,
    priority_sql,
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

# asyncpg refuses a statement with more than 32767 parameters.
MAX_PARAMETERS = 30_000


def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)


# --- projections --------------------------------------------------------------------------


def _batches(rows: Sequence[dict[str, Any]]) -> list[Sequence[dict[str, Any]]]:
    if not rows:
        return []
    size = max(1, MAX_PARAMETERS // len(rows[0]))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def upsert_newer(
    session: AsyncSession, table: Table, key: str, rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Inserts the rows, or replaces the held row of the same key when theirs is of a higher
    `version` (one statement per batch); answers the keys that were written. Each key must
    appear once in `rows`."""
    written: list[Any] = []
    for batch in _batches(rows):
        values = insert(table).values(list(batch))
        columns = {name: values.excluded[name] for name in batch[0] if name != key}
        statement = values.on_conflict_do_update(
            index_elements=[key],
            set_=columns,
            where=table.c.version < values.excluded.version,
        ).returning(table.c[key])
        written.extend((await session.scalars(statement)).all())
    return written


async def replace_pay_points(
    session: AsyncSession, provider_ids: Sequence[UUID], rows: Sequence[dict[str, Any]]
) -> None:
    """The pay points of these providers become exactly `rows`."""
    if not provider_ids:
        return
    await session.execute(delete(pay_points).where(pay_points.c.provider_id.in_(provider_ids)))
    for batch in _batches(rows):
        await session.execute(insert(pay_points).values(list(batch)))


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
    for batch in _batches(rows):
        await session.execute(insert(carry_overs).values(list(batch)).on_conflict_do_nothing())


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
    for batch in _batches(rows):
        await session.execute(
            insert(cycles)
            .values(list(batch))
            .on_conflict_do_nothing(index_elements=["programme_id", "sequence"])
        )


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


async def insert_payroll(session: AsyncSession, values: dict[str, Any]) -> UUID | None:
    """The new payroll's id, or None when the cycle already has a live payroll (the partial
    unique index decides, also against a concurrent insert)."""
    statement = (
        insert(payrolls)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["programme_id", "cycle_id"],
            index_where=payrolls.c.status != PayrollStatus.REJECTED.value,
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
            index_where=payrolls.c.status != PayrollStatus.REJECTED.value,
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
        status=table.c.status,
        size=table.c.size,
        attributes=table.c.eligibility_attributes,
    )


def ranking_columns(table: Any) -> RankingColumns:
    return RankingColumns(
        household_number=table.c.household_number,
        size=table.c.size,
        attributes=table.c.eligibility_attributes,
    )


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


def with_member_counts(
    source: Any, h: Any, filters: Sequence[MemberFilter], on: date
) -> tuple[Any, MemberCounts]:
    """`source` joined laterally with one row counting each category of the household's
    members: one unnest per household, whatever the number of categories."""
    if not filters:
        return source, {}
    members = (
        func.unnest(h.c.member_birth_dates, h.c.member_sexes, h.c.member_disabilities)
        .table_valued("date_of_birth", "sex", "disability")
        .render_derived(name="m")
    )
    m = MemberColumns(members.c.date_of_birth, members.c.sex, members.c.disability)
    counted = (
        select(
            *(
                func.count().filter(member_filter_sql(f, m, on)).label(f"n{i}")
                for i, f in enumerate(filters)
            )
        )
        .select_from(members)
        .lateral("mc")
    )
    counts = {f: counted.c[f"n{i}"] for i, f in enumerate(filters)}
    return source.join(counted, true()), counts


def age_band_sql(date_of_birth: Any, on: date) -> Any:
    """The age band on `on`, as `amana_contracts.demographics.age_band` computes it."""
    return case(
        (date_of_birth <= born_by(on, 60), "60+"),
        (date_of_birth <= born_by(on, 35), "35-59"),
        (date_of_birth <= born_by(on, 18), "18-34"),
        (date_of_birth <= born_by(on, 5), "5-17"),
        else_="0-4",
    )


@dataclass(frozen=True)
class Evaluated:
    """One rules version evaluated over the projection: per household (meeting the rules or
    not) its eligibility, exclusion reason and amount."""

    eligible: Any
    reason: Any
    amount: Any


def _evaluated(rules: ProgrammeRules, h: Any, counts: MemberCounts, payment: Any) -> Evaluated:
    return Evaluated(
        eligible=rule_sql(rules.eligibility, household_columns(h), counts),
        reason=payment,
        amount=amount_sql(rules.formula, counts),
    )


# --- generation -----------------------------------------------------------------------


CANDIDATES = Table(
    "payroll_candidates",
    MetaData(),
    Column("paid_seq", BigInteger),
    Column("reason", Text),
    Column("amount_minor", BigInteger),
    Column("household_id", PgUUID(as_uuid=True)),
    Column("household_number", Text),
    Column("location_code", Text),
    Column("recipient_member_id", PgUUID(as_uuid=True)),
    Column("recipient_given_name", Text),
    Column("recipient_family_name", Text),
    Column("recipient_sex", Text),
    Column("recipient_age_band", Text),
    Column("recipient_identifier_scheme", Text),
    Column("recipient_identifier_value", Text),
    Column("recipient_phone", Text),
    Column("provider_id", PgUUID(as_uuid=True)),
    Column("mechanism", Text),
    Column("pay_point_id", PgUUID(as_uuid=True)),
    Column("account_kind", Text),
    Column("account_value", Text),
    Column("account_bank_code", Text),
    Column("account_holder_name", Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
SNAPSHOT_COLUMNS = [c.name for c in CANDIDATES.columns][3:]


def _snapshot(h: Any, on: date) -> list[Any]:
    """The line's snapshot of a household, in SNAPSHOT_COLUMNS order."""
    values = {name: h.c[name] for name in SNAPSHOT_COLUMNS if name in h.c}
    values["recipient_age_band"] = age_band_sql(h.c.recipient_date_of_birth, on)
    return [values[name].label(name) for name in SNAPSHOT_COLUMNS]


async def evaluate_candidates(
    session: AsyncSession,
    rules: ProgrammeRules,
    on: date,
    currency: str,
    budget_minor: int,
) -> None:
    """One pass over the projection into the temporary table `payroll_candidates`: every
    household meeting the rules, with its amount, its exclusion reason (over_budget decided
    by a running total in priority order) and, for those paid, its place `paid_seq`."""
    await session.execute(text("DROP TABLE IF EXISTS payroll_candidates"))
    connection = await session.connection()
    await connection.run_sync(CANDIDATES.create)
    h = households
    source, counts = with_member_counts(h, h, rules.member_filters(), on)
    source, provider = with_providers(source, h)
    evaluated = (
        select(
            exclusion_sql(_payment_columns(h), provider, currency).label("reason"),
            amount_sql(rules.formula, counts).label("amount_minor"),
            h.c.size,
            h.c.eligibility_attributes,
            *_snapshot(h, on),
        )
        .select_from(source)
        .where(rule_sql(rules.eligibility, household_columns(h), counts))
        .subquery("evaluated")
    )
    payable = evaluated.c.reason.is_(None)
    order = priority_sql(rules.priority, ranking_columns(evaluated))
    running = (
        func.sum(evaluated.c.amount_minor).filter(payable).over(order_by=order, rows=(None, 0))
    )
    place = func.count().filter(payable).over(order_by=order, rows=(None, 0))
    ranked = select(
        evaluated.c.reason,
        evaluated.c.amount_minor,
        running.label("running"),
        place.label("place"),
        *(evaluated.c[name] for name in SNAPSHOT_COLUMNS),
    ).subquery("ranked")
    over_budget = and_(ranked.c.reason.is_(None), ranked.c.running > budget_minor)
    final = select(
        case((ranked.c.reason.is_not(None), null()), (over_budget, null()), else_=ranked.c.place),
        case((over_budget, "over_budget"), else_=ranked.c.reason),
        ranked.c.amount_minor,
        *(ranked.c[name] for name in SNAPSHOT_COLUMNS),
    )
    await session.execute(insert(CANDIDATES).from_select([c.name for c in CANDIDATES.c], final))
    await session.execute(text("CREATE INDEX ON payroll_candidates (paid_seq)"))
    await session.execute(text("ANALYZE payroll_candidates"))


async def write_candidate_lines(
    session: AsyncSession, payroll_id: UUID, first: int, last: int
) -> int:
    """Writes the lines of the candidates paid in places `first` to `last` (one INSERT ...
    SELECT); answers how many."""
    c = CANDIDATES
    chosen = select(
        literal(payroll_id, PgUUID(as_uuid=True)),
        func.uuid7(),
        *(c.c[name] for name in SNAPSHOT_COLUMNS),
        c.c.amount_minor,
    ).where(c.c.paid_seq.between(first, last))
    statement = insert(lines).from_select(
        ["payroll_id", "line_id", *SNAPSHOT_COLUMNS, "amount_minor"], chosen
    )
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def paid_candidates(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count()).where(CANDIDATES.c.paid_seq.is_not(None))) or 0
    )


async def candidate_tallies(session: AsyncSession) -> list[LocationTally]:
    c = CANDIDATES
    rows = await session.execute(
        select(c.c.location_code, c.c.reason, func.count(), func.sum(c.c.amount_minor)).group_by(
            c.c.location_code, c.c.reason
        )
    )
    return [LocationTally(code, reason, n, int(amount or 0)) for code, reason, n, amount in rows]


async def drop_candidates(session: AsyncSession) -> None:
    await session.execute(text("DROP TABLE IF EXISTS payroll_candidates"))


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
    for batch in _batches(rows):
        await session.execute(insert(PayrollLocation).values(list(batch)))


async def delete_payroll_output(session: AsyncSession, payroll_id: UUID) -> None:
    """What a failed attempt may have left (nothing, as it rolled back; kept for retries)."""
    await session.execute(delete(lines).where(lines.c.payroll_id == payroll_id))
    await session.execute(delete(PayrollLocation).where(PayrollLocation.payroll_id == payroll_id))


# --- simulation -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationRow:
    location_code: str
    current_reason: str | None
    candidate_reason: str | None
    current_eligible: bool
    candidate_eligible: bool
    households: int
    current_amount_minor: int
    candidate_amount_minor: int


def location_at_level(code: Any, level: int | None) -> Any:
    """The code cut after its `level`-th part (`KE-047-0101` at 2 is `KE-047`)."""
    if level is None:
        return code
    pattern = "^[^.-]+" + "([.-][^.-]+)?" * (level - 1)
    return func.substring(code, pattern) if level > 1 else func.substring(code, "^[^.-]+")


async def simulate(
    session: AsyncSession,
    current: ProgrammeRules,
    candidate: ProgrammeRules,
    on: date,
    currency: str,
    budget_minor: int,
    location_level: int | None,
) -> list[SimulationRow]:
    """Both versions over every household in one pass, grouped by location, reason and
    whether each version pays the household; nothing is written."""
    h = households
    filters = list(dict.fromkeys([*current.member_filters(), *candidate.member_filters()]))
    source, counts = with_member_counts(h, h, filters, on)
    source, provider = with_providers(source, h)
    current_ok = rule_sql(current.eligibility, household_columns(h), counts)
    candidate_ok = rule_sql(candidate.eligibility, household_columns(h), counts)
    evaluated = (
        select(
            location_at_level(h.c.location_code, location_level).label("location_code"),
            h.c.household_number,
            h.c.size,
            h.c.eligibility_attributes,
            current_ok.label("cur_ok"),
            candidate_ok.label("cand_ok"),
            exclusion_sql(_payment_columns(h), provider, currency).label("reason"),
            amount_sql(current.formula, counts).label("cur_amount"),
            amount_sql(candidate.formula, counts).label("cand_amount"),
        )
        .select_from(source)
        .where(current_ok | candidate_ok)
        .subquery("evaluated")
    )
    e = evaluated.c
    ranked = select(
        e.location_code,
        e.cur_ok,
        e.cand_ok,
        e.reason,
        e.cur_amount,
        e.cand_amount,
        _running(evaluated, current, e.cur_ok, e.cur_amount).label("cur_running"),
        _running(evaluated, candidate, e.cand_ok, e.cand_amount).label("cand_running"),
    ).subquery("ranked")
    r = ranked.c
    cur_reason = _final_reason(r.cur_ok, r.reason, r.cur_running, budget_minor)
    cand_reason = _final_reason(r.cand_ok, r.reason, r.cand_running, budget_minor)
    grouped = (
        select(
            r.location_code,
            cur_reason.label("cur_reason"),
            cand_reason.label("cand_reason"),
            r.cur_ok,
            r.cand_ok,
            func.count(),
            func.sum(r.cur_amount),
            func.sum(r.cand_amount),
        )
        .group_by(r.location_code, cur_reason, cand_reason, r.cur_ok, r.cand_ok)
        .order_by(r.location_code)
    )
    rows = await session.execute(grouped)
    return [
        SimulationRow(code, cur, cand, bool(cur_ok), bool(cand_ok), n, int(ca), int(na))
        for code, cur, cand, cur_ok, cand_ok, n, ca, na in rows
    ]


def _running(evaluated: FromClause, rules: ProgrammeRules, eligible: Any, amount: Any) -> Any:
    payable = and_(eligible, evaluated.c.reason.is_(None))
    order = priority_sql(rules.priority, ranking_columns(evaluated))
    return func.sum(amount).filter(payable).over(order_by=order, rows=(None, 0))


def _final_reason(eligible: Any, reason: Any, running: Any, budget_minor: int) -> Any:
    """NULL for a household that version pays; 'not_eligible' when it does not meet them."""
    return case(
        (~eligible, "not_eligible"),
        (reason.is_not(None), reason),
        (running > budget_minor, "over_budget"),
        else_=null(),
    )


# --- PayrollApproved chunks -----------------------------------------------------------


def _line_json(line: Any) -> Any:
    """A line as PayrollLineV1 JSON, built by PostgreSQL (json, so text is passed through)."""
    identifier = case(
        (
            line.c.recipient_identifier_scheme.is_not(None),
            func.json_build_object(
                "scheme",
                line.c.recipient_identifier_scheme,
                "value",
                line.c.recipient_identifier_value,
            ),
        ),
        else_=null(),
    )
    account = case(
        (
            line.c.account_kind.is_not(None),
            func.json_build_object(
                "kind",
                line.c.account_kind,
                "value",
                line.c.account_value,
                "bank_code",
                line.c.account_bank_code,
                "holder_name",
                line.c.account_holder_name,
            ),
        ),
        else_=null(),
    )
    recipient = func.json_build_object(
        "member_id",
        line.c.recipient_member_id,
        "given_name",
        line.c.recipient_given_name,
        "family_name",
        line.c.recipient_family_name,
        "sex",
        line.c.recipient_sex,
        "age_band",
        line.c.recipient_age_band,
        "identifier",
        identifier,
        "phone",
        line.c.recipient_phone,
    )
    return func.json_build_object(
        "line_id",
        line.c.line_id,
        "household_id",
        line.c.household_id,
        "household_number",
        line.c.household_number,
        "location_code",
        line.c.location_code,
        "recipient",
        recipient,
        "provider_id",
        line.c.provider_id,
        "mechanism",
        line.c.mechanism,
        "pay_point_id",
        line.c.pay_point_id,
        "account",
        account,
        "amount_minor",
        line.c.amount_minor,
        "carried_over_payment_id",
        line.c.carried_over_payment_id,
    )


async def line_json_sizes(session: AsyncSession, payroll_id: UUID) -> list[int]:
    """The byte size of every line's JSON, in line order."""
    result = await session.execute(
        select(func.octet_length(func.cast(_line_json(lines), Text)))
        .where(lines.c.payroll_id == payroll_id)
        .order_by(lines.c.line_id)
    )
    return [int(size) for (size,) in result]


async def write_chunk_events(
    session: AsyncSession,
    payroll_id: UUID,
    chunk_starts: Sequence[int],
    event_ids: Sequence[UUID],
    envelope: ChunkEnvelope,
) -> None:
    """One outbox row per chunk, in chunk order, assembled by PostgreSQL:
    `before_id` + event id + `before_index` + chunk index + `,"lines":[` + the chunk's lines +
    `]}}`. Line n (in line id order) belongs to the chunk whose first line is the last start
    at or before n (`width_bucket` over the starts)."""
    starts = bindparam("starts", list(chunk_starts), ARRAY(BigInteger))
    numbered = (
        select(
            (func.row_number().over(order_by=lines.c.line_id) - 1).label("n"),
            func.cast(_line_json(lines), Text).label("doc"),
        )
        .where(lines.c.payroll_id == payroll_id)
        .subquery("numbered")
    )
    chunked = select(
        (func.width_bucket(numbered.c.n, starts) - 1).label("chunk"),
        numbered.c.n,
        numbered.c.doc,
    ).subquery("chunked")
    per_chunk = (
        select(
            chunked.c.chunk,
            func.string_agg(chunked.c.doc, aggregate_order_by(literal(","), chunked.c.n)).label(
                "body"
            ),
        )
        .group_by(chunked.c.chunk)
        .subquery("per_chunk")
    )
    ids = (
        func.unnest(bindparam("event_ids", list(event_ids), ARRAY(PgUUID(as_uuid=True))))
        .table_valued("event_id", with_ordinality="position")
        .render_derived(name="ids")
    )
    payload = func.concat(
        envelope.before_id,
        func.cast(ids.c.event_id, Text),
        envelope.before_index,
        per_chunk.c.chunk,
        ',"lines":[',
        per_chunk.c.body,
        "]}}",
    )
    rows = (
        select(
            ids.c.event_id,
            literal(envelope.topic),
            literal(envelope.key),
            literal(envelope.event_type),
            func.convert_to(payload, "UTF8"),
        )
        .select_from(per_chunk.join(ids, ids.c.position == per_chunk.c.chunk + 1))
        .order_by(per_chunk.c.chunk)
    )
    await session.execute(
        insert(outbox).from_select(["event_id", "topic", "key", "event_type", "payload"], rows)
    )


@dataclass(frozen=True)
class ChunkEnvelope:
    """The CloudEvent text around a chunk's id, index and lines (see write_chunk_events)."""

    before_id: str
    before_index: str
    topic: str
    key: str
    event_type: str
