"""Registry queries. Nothing here commits: the request or message that called owns the session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Float,
    Numeric,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.base import ExecutableOption

from amana_common.locations import ancestors_or_self, descendant_prefixes
from amana_common.pagination import keyset
from amana_contracts.provider import ProviderSnapshotV1, ProviderStatus
from registry.domain import PayPointView, ProviderView
from registry.models import (
    Household,
    HouseholdChange,
    HouseholdStatusChange,
    Member,
    MemberIdentifier,
    PaymentPreference,
    PayPointProjection,
    ProviderProjection,
)


def _whole() -> tuple[ExecutableOption, ...]:
    return (
        selectinload(Household.members).selectinload(Member.identifiers),
        selectinload(Household.payment_preference),
    )


async def next_household_sequence(session: AsyncSession) -> int:
    value = await session.scalar(text("SELECT nextval('household_number_seq')"))
    assert value is not None
    return int(value)


async def reserve_household_numbers(session: AsyncSession, count: int) -> int:
    """Takes `count` household number sequences in one statement; answers the first."""
    last = await session.scalar(
        text("SELECT setval('household_number_seq', nextval('household_number_seq') + :n - 1)"),
        {"n": count},
    )
    assert last is not None
    return int(last) - count + 1


async def copy_rows(
    session: AsyncSession, tables: Sequence[tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]]
) -> None:
    """COPY rows into tables, in the session's transaction (asyncpg's binary COPY)."""
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    for table, columns, rows in tables:
        if rows:
            await raw.copy_records_to_table(table, records=rows, columns=list(columns))


def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)


async def get_household(
    session: AsyncSession, household_id: UUID, *, for_update: bool = False
) -> Household | None:
    """The household with its members, identifiers and payment preference; `for_update` locks
    its row until the transaction ends, so that concurrent changes apply one after the other."""
    statement = select(Household).where(Household.id == household_id).options(*_whole())
    if for_update:
        statement = statement.with_for_update(of=Household)
    return (await session.scalars(statement)).one_or_none()


async def households_for_update(
    session: AsyncSession, household_ids: Sequence[UUID]
) -> list[Household]:
    """Several households locked in id order (two callers locking overlapping sets in the same
    order cannot deadlock)."""
    statement = (
        select(Household)
        .where(Household.id.in_(household_ids))
        .order_by(Household.id)
        .options(*_whole())
        .with_for_update(of=Household)
    )
    return list((await session.scalars(statement)).all())


@dataclass(frozen=True)
class IdentifierHolder:
    scheme: str
    value: str
    household_id: UUID
    household_number: str


async def identifier_holders(
    session: AsyncSession, identifiers: Sequence[tuple[str, str]], other_than: UUID | None
) -> list[IdentifierHolder]:
    """Households that have not exited and hold one of `identifiers` (scheme, value)."""
    if not identifiers:
        return []
    statement = (
        select(
            MemberIdentifier.scheme,
            MemberIdentifier.value,
            Household.id,
            Household.household_number,
        )
        .join(Household, Household.id == MemberIdentifier.household_id)
        .where(
            ~MemberIdentifier.household_exited,
            func.row(MemberIdentifier.scheme, MemberIdentifier.value).in_(
                [func.row(scheme, value) for scheme, value in identifiers]
            ),
        )
    )
    if other_than is not None:
        statement = statement.where(MemberIdentifier.household_id != other_than)
    return [IdentifierHolder(*row) for row in (await session.execute(statement)).all()]


async def identifier_holders_of_many(
    session: AsyncSession, identifiers: Sequence[tuple[str, str]]
) -> list[IdentifierHolder]:
    """`identifier_holders` for thousands of identifiers at once (a bulk import's chunk): a
    join with the arrays, so that each is one probe of the unique index."""
    if not identifiers:
        return []
    rows = await session.execute(
        text(
            "SELECT i.scheme, i.value, h.id, h.household_number "
            "FROM unnest(CAST(:schemes AS text[]), CAST(:ids AS text[])) AS w(scheme, value) "
            "JOIN member_identifiers i ON i.scheme = w.scheme AND i.value = w.value "
            "AND NOT i.household_exited "
            "JOIN households h ON h.id = i.household_id"
        ),
        {"schemes": [scheme for scheme, _ in identifiers], "ids": [v for _, v in identifiers]},
    )
    return [IdentifierHolder(*row) for row in rows.all()]


async def households_paying_through(
    session: AsyncSession, provider_id: UUID, after: UUID | None, limit: int
) -> list[Household]:
    """One batch, in id order after `after`, of the households that have not exited whose
    payment preference names the provider, whole and locked."""
    statement = (
        select(Household)
        .join(PaymentPreference, PaymentPreference.household_id == Household.id)
        .where(PaymentPreference.provider_id == provider_id, Household.status != "exited")
        .order_by(Household.id)
        .limit(limit)
        .options(*_whole())
        .with_for_update(of=Household)
    )
    if after is not None:
        statement = statement.where(Household.id > after)
    return list((await session.scalars(statement)).all())


async def next_versions(
    session: AsyncSession, household_ids: Sequence[UUID], now: datetime
) -> None:
    """One UPDATE: these households' next version (the loaded objects follow)."""
    await session.execute(
        update(Household)
        .where(Household.id.in_(household_ids))
        .values(version=Household.version + 1, updated_at=now)
        .execution_options(synchronize_session="evaluate")
    )


async def under_duplicate_review(session: AsyncSession, household_ids: Sequence[UUID]) -> set[UUID]:
    """Which of these households have an open duplicate flag."""
    rows = await session.scalars(
        select(Household.id).where(
            Household.id.in_(household_ids), Household.duplicate_review_open.is_(True)
        )
    )
    return set(rows)


async def lock_identifiers(session: AsyncSession, identifiers: Sequence[tuple[str, str]]) -> None:
    """Serialises the transactions that enrol the same identifiers: a transaction-scoped
    advisory lock per (scheme, value), taken in a fixed order so that two transactions cannot
    deadlock. The second waits for the first to commit, then sees its holder."""
    if not identifiers:
        return
    keys = sorted({f"{scheme}:{value}" for scheme, value in identifiers})
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) "
            "FROM unnest(CAST(:keys AS text[])) AS key ORDER BY key"
        ),
        {"keys": keys},
    )


async def free_identifiers(session: AsyncSession, household_id: UUID) -> None:
    """An exited household's identifiers may be enrolled again in another household."""
    await session.execute(
        update(MemberIdentifier)
        .where(MemberIdentifier.household_id == household_id)
        .values(household_exited=True)
    )


# --- lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeFilter:
    name: str
    operator: str  # eq, gt, gte, lt, lte
    value: bool | int | float | str


def _attribute_condition(condition: AttributeFilter) -> ColumnElement[bool]:
    if condition.operator == "eq":
        return Household.eligibility_attributes.contains({condition.name: condition.value})
    number = Household.eligibility_attributes[condition.name].astext.cast(Numeric)
    bound = bindparam(None, condition.value, type_=Float)
    comparisons: dict[str, ColumnElement[bool]] = {
        "gt": number > bound,
        "gte": number >= bound,
        "lt": number < bound,
        "lte": number <= bound,
    }
    return comparisons[condition.operator]


def within(column: Any, area: str) -> ColumnElement[bool]:
    """`column` is `area` or a code below it (a pattern index answers the LIKEs)."""
    escaped = [prefix.replace("_", r"\_") + "%" for prefix in descendant_prefixes(area)]
    return or_(column == area, *(column.like(pattern, escape="\\") for pattern in escaped))


async def list_households(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None = None,
    location: str | None = None,
    status: str | None = None,
    updated_since: datetime | None = None,
    duplicate_review_open: bool | None = None,
    attributes: Sequence[AttributeFilter] = (),
) -> list[Household]:
    """One page in id order (ids are uuid7, so this is enrolment order), `limit` + 1 rows so the
    caller can tell whether another page follows."""
    statement = keyset(select(Household).options(*_whole()), Household.id, limit, after)
    if location is not None:
        statement = statement.where(within(Household.location_code, location))
    if status is not None:
        statement = statement.where(Household.status == status)
    if updated_since is not None:
        statement = statement.where(Household.updated_at >= updated_since)
    if duplicate_review_open is not None:
        statement = statement.where(Household.duplicate_review_open.is_(duplicate_review_open))
    for condition in attributes:
        statement = statement.where(_attribute_condition(condition))
    return list((await session.scalars(statement)).all())


async def status_history(
    session: AsyncSession, household_id: UUID, limit: int, after: UUID | None
) -> list[HouseholdStatusChange]:
    statement = keyset(
        select(HouseholdStatusChange).where(HouseholdStatusChange.household_id == household_id),
        HouseholdStatusChange.id,
        limit,
        after,
    )
    return list((await session.scalars(statement)).all())


async def change_history(
    session: AsyncSession, household_id: UUID, limit: int, after: UUID | None
) -> list[HouseholdChange]:
    statement = keyset(
        select(HouseholdChange).where(HouseholdChange.household_id == household_id),
        HouseholdChange.id,
        limit,
        after,
    )
    return list((await session.scalars(statement)).all())


# --- search ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    id: UUID  # the household's
    household_number: str
    location_code: str
    status: str
    member_id: UUID | None
    given_name: str | None
    family_name: str | None
    date_of_birth: Any
    score: float


_HOUSEHOLD_COLUMNS = (
    Household.id,
    Household.household_number,
    Household.location_code,
    Household.status,
)
_MEMBER_COLUMNS = (Member.id, Member.given_name, Member.family_name, Member.date_of_birth)


async def _hits(session: AsyncSession, statement: Any) -> list[Hit]:
    return [Hit(*row) for row in (await session.execute(statement)).all()]


async def search_by_number(session: AsyncSession, number: str) -> list[Hit]:
    statement = select(
        *_HOUSEHOLD_COLUMNS,
        literal(None),
        literal(None),
        literal(None),
        literal(None),
        literal(1.0),
    ).where(Household.household_number == number)
    return await _hits(session, statement)


async def search_by_identifier(
    session: AsyncSession, value: str, scheme: str | None, limit: int
) -> list[Hit]:
    """Exited households too: a clerk looks up who held an identifier."""
    statement = (
        select(*_HOUSEHOLD_COLUMNS, *_MEMBER_COLUMNS, literal(1.0))
        .select_from(MemberIdentifier)
        .join(Member, Member.id == MemberIdentifier.member_id)
        .join(Household, Household.id == MemberIdentifier.household_id)
        .where(MemberIdentifier.value == value)
        .order_by(Household.id)
        .limit(limit)
    )
    if scheme is not None:
        statement = statement.where(MemberIdentifier.scheme == scheme)
    return await _hits(session, statement)


async def search_by_phone(session: AsyncSession, phone: str, limit: int) -> list[Hit]:
    """A member's phone, or the household's contact phone (then no member is named)."""
    members = (
        select(*_HOUSEHOLD_COLUMNS, *_MEMBER_COLUMNS, literal(1.0))
        .join(Member, Member.household_id == Household.id)
        .where(Member.phone == phone)
    )
    households = select(
        *_HOUSEHOLD_COLUMNS,
        literal(None),
        literal(None),
        literal(None),
        literal(None),
        literal(1.0),
    ).where(Household.phone == phone)
    return await _hits(session, members.union(households).limit(limit))


async def search_by_name(session: AsyncSession, name: str, limit: int) -> list[Hit]:
    """Members whose name holds every word of the query once folded (unaccent, lower) come
    first, score 1, and stop early: a common family name alone, held by thousands, costs no
    more than a rare one. Then, to fill the page, members whose name holds for each word of
    the query a word near it (pg_trgm similarity of at least `pg_trgm.similarity_threshold`,
    0.3 by default, looked up in the small `name_words` table; a query word near no word at
    all, a typo in a short name, is left out), ranked by the similarity of the whole name to
    the query."""
    query = func.registry_fold(bindparam("query", name))
    words = func.string_to_array(query, " ")
    exact = (
        select(Member.id, literal(1.0).label("score"))
        .where(Member.search_words.contains(words))
        .limit(limit)
    )
    hits = await _member_hits(session, exact)
    if len(hits) == limit:
        return hits
    near_words = [near for near in await _near_words(session, name) if near]
    if not near_words:
        return hits
    score = func.similarity(query, Member.search_name)
    nearest = (
        select(Member.id, score.label("score"))
        .where(
            *(Member.search_words.overlap(near) for near in near_words),
            ~Member.search_words.contains(words),
        )
        .order_by(score.desc(), Member.id)
        .limit(limit - len(hits))
    )
    return hits + await _member_hits(session, nearest)


async def _near_words(session: AsyncSession, name: str) -> list[list[str]]:
    """For each folded word of `name`, the words of `name_words` near it (itself included)."""
    rows = await session.execute(
        text(
            "SELECT q.word, array_remove(array_agg(n.word), NULL) "
            "FROM unnest(string_to_array(registry_fold(:name), ' ')) AS q(word) "
            "LEFT JOIN name_words n ON n.word % q.word GROUP BY q.word"
        ),
        {"name": name},
    )
    return [list(near) for _, near in rows.all()]


async def _member_hits(session: AsyncSession, members: Any) -> list[Hit]:
    """The page of `members` (id, score), with their households, in the page's order."""
    page = members.subquery()
    statement = (
        select(*_HOUSEHOLD_COLUMNS, *_MEMBER_COLUMNS, page.c.score)
        .select_from(page)
        .join(Member, Member.id == page.c.id)
        .join(Household, Household.id == Member.household_id)
        .order_by(page.c.score.desc(), Member.id)
    )
    return await _hits(session, statement)


# --- providers -------------------------------------------------------------------------------


async def provider_view(session: AsyncSession, provider_id: UUID) -> ProviderView | None:
    """The provider as the registry's projection of provider events knows it, or None."""
    views = await provider_views(session, [provider_id])
    return views.get(provider_id)


async def provider_views(
    session: AsyncSession, provider_ids: Sequence[UUID]
) -> dict[UUID, ProviderView]:
    """Providers by id from the projection of provider events, with their pay points."""
    if not provider_ids:
        return {}
    providers = await session.scalars(
        select(ProviderProjection).where(ProviderProjection.provider_id.in_(provider_ids))
    )
    points = await session.scalars(
        select(PayPointProjection).where(PayPointProjection.provider_id.in_(provider_ids))
    )
    by_provider: dict[UUID, dict[UUID, PayPointView]] = {}
    for point in points:
        by_provider.setdefault(point.provider_id, {})[point.pay_point_id] = PayPointView(
            point.pay_point_id, point.status == "active", tuple(point.location_codes)
        )
    return {
        provider.provider_id: ProviderView(
            provider_id=provider.provider_id,
            active=provider.status == "active",
            mechanisms=frozenset(provider.mechanisms),
            currencies=frozenset(provider.currencies),
            service_areas=tuple(provider.service_areas),
            pay_points=by_provider.get(provider.provider_id, {}),
        )
        for provider in providers
    }


# --- the provider projection (from provider events) --------------------------------------


async def apply_provider_snapshot(session: AsyncSession, snapshot: ProviderSnapshotV1) -> bool:
    """Replaces the provider and its pay points with `snapshot` when it is newer than what the
    projection holds; False (and nothing written) for an older or the same version."""
    values = {
        "provider_id": snapshot.provider_id,
        "code": snapshot.code,
        "status": snapshot.status,
        "mechanisms": list(snapshot.mechanisms),
        "currencies": list(snapshot.currencies),
        "service_areas": list(snapshot.service_areas),
        "version": snapshot.version,
        "updated_at": snapshot.updated_at,
    }
    statement = upsert(ProviderProjection).values(values)
    newer = statement.on_conflict_do_update(
        index_elements=[ProviderProjection.provider_id],
        set_={name: statement.excluded[name] for name in values if name != "provider_id"},
        where=ProviderProjection.version < statement.excluded.version,
    ).returning(ProviderProjection.provider_id)
    if await session.scalar(newer) is None:
        return False
    await session.execute(
        delete(PayPointProjection).where(PayPointProjection.provider_id == snapshot.provider_id)
    )
    if snapshot.pay_points:
        await session.execute(
            insert(PayPointProjection),
            [
                {
                    "pay_point_id": point.pay_point_id,
                    "provider_id": snapshot.provider_id,
                    "code": point.code,
                    "status": point.status,
                    "location_codes": list(point.location_codes),
                }
                for point in snapshot.pay_points
            ],
        )
    return True


async def apply_provider_status(
    session: AsyncSession,
    provider_id: UUID,
    status: ProviderStatus,
    version: int,
    changed_at: datetime,
) -> bool:
    """Sets the provider's status when `version` is newer than the projection's; False when
    it is not, or when no snapshot of the provider arrived yet (the next one carries it)."""
    statement = (
        update(ProviderProjection)
        .where(ProviderProjection.provider_id == provider_id, ProviderProjection.version < version)
        .values(status=status, version=version, updated_at=changed_at)
        .returning(ProviderProjection.provider_id)
    )
    return await session.scalar(statement) is not None


async def provider_offers(
    session: AsyncSession, provider_id: UUID, mechanism: str, currency: str, location_code: str
) -> bool:
    """Provider P is active, offers mechanism M in currency C and serves location L."""
    statement = select(
        exists().where(
            ProviderProjection.provider_id == provider_id,
            ProviderProjection.status == "active",
            ProviderProjection.mechanisms.contains([mechanism]),
            ProviderProjection.currencies.contains([currency]),
            ProviderProjection.service_areas.overlap(ancestors_or_self(location_code)),
        )
    )
    return bool(await session.scalar(statement))


async def pay_point_serves(
    session: AsyncSession, provider_id: UUID, pay_point_id: UUID, location_code: str
) -> bool:
    """Pay point X belongs to provider P, is active and serves location L."""
    statement = select(
        exists().where(
            PayPointProjection.pay_point_id == pay_point_id,
            PayPointProjection.provider_id == provider_id,
            PayPointProjection.status == "active",
            PayPointProjection.location_codes.overlap(ancestors_or_self(location_code)),
        )
    )
    return bool(await session.scalar(statement))
